"""The tables' filter syntax and sort order, as a user types and presses them."""

from __future__ import annotations

from tasker_tui.format import SPARK_CHARS, sparkline
from tasker_tui.table_query import SortColumn, SortOrder, letter_position, ordered, parse_filter

FIELDS = ("name", "region", "site", "source", "tag")
DB = {"name": ["db-iad-1"], "region": ["us-east"], "site": ["Ashburn"], "source": ["coal"], "tag": ["prod", "db"]}
WEB = {"name": ["web-dub-1"], "region": ["eu-west"], "site": ["Dublin"], "source": ["wind"], "tag": ["prod", "web"]}


def shown(text: str) -> list[str]:
    query = parse_filter(text, FIELDS)
    return [row["name"][0] for row in (DB, WEB) if query.matches(row)]


def test_bare_words_match_any_field_and_all_must_match():
    assert shown("") == ["db-iad-1", "web-dub-1"]
    assert shown("prod") == ["db-iad-1", "web-dub-1"]
    assert shown("PROD ashburn") == ["db-iad-1"]
    assert shown("coal web") == []


def test_a_field_limits_the_match_to_that_field():
    assert shown("source:coal") == ["db-iad-1"]
    assert shown("name:web") == ["web-dub-1"]
    assert shown("site:coal") == []
    assert shown("tag:db") == ["db-iad-1"]  # any of several tags


def test_wildcards_match_a_whole_value():
    assert shown("region:eu-*") == ["web-dub-1"]
    assert shown("region:*-east") == ["db-iad-1"]
    assert shown("name:web-???-1") == ["web-dub-1"]
    assert shown("region:eu") == ["web-dub-1"]  # without a wildcard, a part is enough
    assert shown("region:eu-") == ["web-dub-1"]


def test_an_equals_sign_matches_the_whole_value_only():
    assert shown("name:=web-dub-1") == ["web-dub-1"]
    assert shown("name:=WEB-DUB-1") == ["web-dub-1"]  # case-insensitive like the rest
    assert shown("name:=web-dub") == []  # a part is not enough
    assert shown("name:web-dub") == ["web-dub-1"]
    assert shown("!name:=web-dub-1") == ["db-iad-1"]
    assert shown("=prod") == []  # without a field, = is a character like any other


def test_a_bang_excludes():
    assert shown("!source:coal") == ["web-dub-1"]
    assert shown("prod !dublin") == ["db-iad-1"]
    assert shown("!") == []  # a lone ! is the character, which no server has


def test_a_field_name_may_be_shortened_while_unambiguous():
    assert shown("sou:coal") == ["db-iad-1"]
    assert shown("reg:eu-*") == ["web-dub-1"]


def test_an_unknown_or_ambiguous_field_is_said_and_shows_nothing():
    query = parse_filter("colour:red", FIELDS)
    assert query.error == 'no field "colour"; fields: name, region, site, source, tag'
    assert not query.matches(DB)
    assert parse_filter("s:coal", FIELDS).error == '"s:" could be site or source'
    assert parse_filter(":coal", FIELDS).error is None  # no field name: the word as it is


def test_the_same_key_reverses_another_starts_in_its_natural_direction():
    name = SortColumn("name", "Name", "n")
    watts = SortColumn("power", "W", "w", descending_first=True)
    order = SortOrder("name")
    assert order.pressed(name) == SortOrder("name", True)
    assert order.pressed(watts) == SortOrder("power", True)  # biggest first
    assert order.pressed(watts).pressed(watts) == SortOrder("power", False)


def test_rows_without_a_value_come_last_either_way_and_ties_keep_their_order():
    rows = [("b", 2.0), ("a", None), ("c", 2.0), ("d", 1.0)]
    up = ordered(rows, lambda r: r[1], lambda r: r[0], reverse=False)
    down = ordered(rows, lambda r: r[1], lambda r: r[0], reverse=True)
    assert [r[0] for r in up] == ["d", "b", "c", "a"]
    assert [r[0] for r in down] == ["b", "c", "d", "a"]


def test_the_sort_letter_is_found_in_the_label():
    assert letter_position("Power 5m", "p") == 0 and letter_position("CO2 5m", "o") == 1
    assert letter_position("g/h", "c") is None


def test_a_sparkline_with_a_ceiling_is_drawn_from_zero():
    now = 300_000
    steady = [(i * 1000, 220.0 + (i % 37 == 0)) for i in range(300)]
    assert len(set(sparkline(steady, now, 10, 300))) > 1  # own min..max: noise looks like cliffs
    assert sparkline(steady, now, 10, 300, ceiling=400) == SPARK_CHARS[4] * 10  # 220 of 400
    above = [(i * 1000, 800.0) for i in range(300)]
    assert sparkline(above, now, 4, 300, ceiling=400) == SPARK_CHARS[-1] * 4  # beyond it: the top
