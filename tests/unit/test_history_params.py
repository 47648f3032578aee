"""History parameters: instants in three notations, defaults, limits."""

from __future__ import annotations

import pytest

from backend.ports import NotFound
from backend.services.errors import InvalidField
from backend.services.history import parse_range
from backend.services.timestamps import parse_instant

NOW = 1_795_000_000_000
SID = "srv_abcdefghij"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("now", NOW),
        ("1794990000000", 1_794_990_000_000),
        ("-1h", NOW - 3_600_000),
        ("-30d", NOW - 30 * 86_400_000),
        ("-15m", NOW - 900_000),
        ("-10s", NOW - 10_000),
        ("-2w", NOW - 14 * 86_400_000),
        ("1970-01-01T00:00:01Z", 1_000),
        ("1970-01-01T01:00:01+01:00", 1_000),
    ],
)
def test_instants(text, expected):
    assert parse_instant(text, NOW) == expected


@pytest.mark.parametrize("text", ["-1y", "yesterday", "1h", "2026-01-01T00:00:00", "-h", "1e12"])
def test_bad_instants_say_which_forms_are_accepted(text):
    with pytest.raises(ValueError):
        parse_instant(text, NOW)


def test_defaults_are_power_over_the_last_hour():
    query = parse_range(SID, {}, NOW)
    assert (query.metric, query.from_ms, query.to_ms) == ("power", NOW - 3_600_000, NOW)


def test_from_defaults_to_an_hour_before_to():
    query = parse_range(SID, {"to": "-1d", "metric": "co2"}, NOW)
    assert (query.metric, query.to_ms - query.from_ms) == ("co2", 3_600_000)


@pytest.mark.parametrize(
    "params, field",
    [
        ({"metric": "voltage"}, "metric"),
        ({"from": "soon"}, "from"),
        ({"to": "later"}, "to"),
        ({"from": "-1h", "to": "-2h"}, "from"),
    ],
)
def test_bad_parameters_name_their_field(params, field):
    with pytest.raises(InvalidField) as caught:
        parse_range(SID, params, NOW)
    assert caught.value.field == field


def test_a_server_id_with_cql_in_it_never_reaches_the_store():
    with pytest.raises(NotFound):
        parse_range("srv_x'; DROP TABLE readings; --", {}, NOW)
