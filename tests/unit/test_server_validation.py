"""Server forms: required fields, ranges, defaults of carbon intensity, PATCH semantics, ids."""

from __future__ import annotations

import re

import pytest

from backend.ports import NotFound
from backend.services.servers import (
    FormRejected,
    check_server_id,
    new_server,
    new_server_id,
    patched_server,
    server_json,
)
from tasker.domain import REGIONS, SOURCE_INTENSITY_G_PER_KWH


def form(**changes):
    body = {
        "name": "web-1",
        "location": {"region": "eu-west", "site": "Dublin"},
        "energy_source": "wind",
        "idle_watts": 80,
        "max_watts": 350,
        "cores": 32,
        "tags": ["prod", "web"],
    }
    body.update(changes)
    return body


def fields_of(exc: FormRejected) -> dict[str, str]:
    return {d["field"]: d["reason"] for d in exc.details}


def rejected(body) -> dict[str, str]:
    with pytest.raises(FormRejected) as caught:
        new_server(body, "alice", 1_000)
    return fields_of(caught.value)


def test_a_new_server_gets_an_id_defaults_and_provenance():
    record = new_server(form(), "alice", 1_000)
    assert re.fullmatch(r"srv_[a-z2-7]{10}", record.id)
    assert record.pue == 1.5
    assert record.carbon_intensity_g_per_kwh == SOURCE_INTENSITY_G_PER_KWH["wind"]
    assert "wind" in record.carbon_intensity_source
    assert (record.created_by, record.created_at_ms, record.updated_at_ms) == ("alice", 1_000, 1_000)
    shown = server_json(record)
    assert shown["location"] == {"region": "eu-west", "site": "Dublin"}
    assert shown["created_at"] == "1970-01-01T00:00:01.000Z"


def test_grid_mix_takes_the_intensity_of_its_region():
    record = new_server(form(energy_source="grid-mix", location={"region": "eu-north"}), "alice", 1)
    assert record.carbon_intensity_g_per_kwh == REGIONS["eu-north"][1]
    assert "eu-north" in record.carbon_intensity_source
    assert record.site == ""


def test_a_given_intensity_is_kept_and_marked_as_set_by_the_user():
    record = new_server(form(carbon_intensity_g_per_kwh=123.5), "alice", 1)
    assert (record.carbon_intensity_g_per_kwh, record.carbon_intensity_source) == (123.5, "set by user")


def test_ids_are_random():
    assert len({new_server_id() for _ in range(200)}) == 200


@pytest.mark.parametrize(
    "changes, field, reason_part",
    [
        ({"name": ""}, "name", "1-64 characters"),
        ({"name": "web 1"}, "name", "1-64 characters"),
        ({"name": "x" * 65}, "name", "1-64 characters"),
        ({"name": {"$gt": ""}}, "name", "1-64 characters"),
        ({"location": "eu-west"}, "location", "must be an object"),
        ({"location": {"region": "mars-1"}}, "location.region", "must be one of"),
        ({"location": {"site": "Dublin"}}, "location.region", "is required"),
        ({"location": {"region": "eu-west", "site": "x" * 101}}, "location.site", "at most 100"),
        ({"location": {"region": "eu-west", "city": "Dublin"}}, "location.city", "not a location field"),
        ({"energy_source": "peat"}, "energy_source", "must be one of"),
        ({"pue": 0.9}, "pue", "between 1 and 5"),
        ({"pue": "1.2"}, "pue", "must be a number"),
        ({"idle_watts": -1}, "idle_watts", "between 0"),
        ({"max_watts": float("inf")}, "max_watts", "finite"),
        ({"cores": 2.5}, "cores", "whole number"),
        ({"cores": 0}, "cores", "between 1"),
        ({"cores": True}, "cores", "whole number"),
        ({"carbon_intensity_g_per_kwh": -5}, "carbon_intensity_g_per_kwh", "between 0"),
        ({"tags": "prod"}, "tags", "list"),
        ({"tags": ["ok", "not ok"]}, "tags", "each tag"),
        ({"tags": [{"$where": "1"}]}, "tags", "each tag"),
        ({"owner": "bob"}, "owner", "is changed by an admin"),
        ({"idle_watts": 250, "max_watts": 200}, "max_watts", "must be >= idle_watts (250)"),
    ],
)
def test_each_invalid_field_is_named(changes, field, reason_part):
    problems = rejected(form(**changes))
    assert field in problems, problems
    assert reason_part in problems[field]


def test_missing_required_fields_are_all_named_at_once():
    problems = rejected({"name": "web-1"})
    assert set(problems) == {"location", "energy_source", "idle_watts", "max_watts", "cores"}


def test_read_only_fields_echoed_back_are_ignored():
    record = new_server(form(id="srv_chosenbyme", created_by="mallory", created_at="2020-01-01T00:00:00Z"), "alice", 5)
    assert record.id != "srv_chosenbyme" and record.created_by == "alice"


def test_tags_are_deduplicated_in_order():
    assert new_server(form(tags=["b", "a", "b"]), "alice", 1).tags == ["b", "a"]


def test_patch_changes_only_what_it_names():
    current = new_server(form(), "alice", 1)
    patched = patched_server(current, {"location": {"site": "Cork"}, "cores": 64}, 2)
    assert (patched.region, patched.site, patched.cores, patched.name) == ("eu-west", "Cork", 64, "web-1")
    assert (patched.created_at_ms, patched.updated_at_ms) == (1, 2)
    assert current.cores == 32  # the original record is untouched


def test_patch_follows_a_new_source_unless_the_intensity_was_set_by_the_user():
    current = new_server(form(), "alice", 1)
    assert patched_server(current, {"energy_source": "coal"}, 2).carbon_intensity_g_per_kwh == 820.0
    pinned = patched_server(current, {"carbon_intensity_g_per_kwh": 99}, 2)
    assert patched_server(pinned, {"energy_source": "coal"}, 3).carbon_intensity_g_per_kwh == 99
    reset = patched_server(pinned, {"carbon_intensity_g_per_kwh": None}, 4)
    assert reset.carbon_intensity_g_per_kwh == 11.0 and reset.carbon_intensity_source != "set by user"


def test_patch_checks_watts_against_the_stored_values():
    current = new_server(form(), "alice", 1)
    with pytest.raises(FormRejected) as caught:
        patched_server(current, {"max_watts": 50}, 2)
    assert fields_of(caught.value) == {"max_watts": "must be >= idle_watts (80)"}


@pytest.mark.parametrize("server_id", ["srv_123", "x' OR '1'='1", "srv_AAAAAAAAAA", "../etc", ""])
def test_ids_that_cannot_be_ours_are_not_found_without_a_lookup(server_id):
    with pytest.raises(NotFound):
        check_server_id(server_id)


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"name": "web-1\n"}, "name"),
        ({"tags": ["prod\n"]}, "tags"),
    ],
)
def test_a_trailing_newline_is_not_a_valid_name_or_tag(changes, field):
    # A pattern checked with `$` let `web-1\n` register beside `web-1` and break the table.
    assert field in rejected(form(**changes))


def test_a_server_id_with_a_trailing_newline_is_not_found():
    with pytest.raises(NotFound):
        check_server_id(new_server_id() + "\n")


@pytest.mark.parametrize("field", ["idle_watts", "max_watts", "cores", "pue", "carbon_intensity_g_per_kwh"])
def test_an_integer_beyond_any_float_is_out_of_range_not_a_crash(field):
    # It raised OverflowError, answered as a 500 with a traceback in the log.
    assert "must be between" in rejected(form(**{field: 10**400}))[field]
