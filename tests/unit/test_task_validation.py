"""A submitted task: every bad field named at once, with the fleet-wide rules; and the
durations and times people type on the command line."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from backend.ports import ServerRecord
from backend.services.task_form import TaskRejected, new_task
from tasker.when import format_duration, parse_duration, parse_local_time, to_rfc3339

NOW = 1_780_000_000_000  # 2026-05-28T20:26:40Z
HOUR = 3_600_000


def fleet() -> list[ServerRecord]:
    def server(id_: str, cores: int, tags: list[str]) -> ServerRecord:
        return ServerRecord(
            id=id_,
            name=id_,
            region="eu-north",
            site="",
            energy_source="hydro",
            carbon_intensity_g_per_kwh=24.0,
            carbon_intensity_source="",
            pue=1.2,
            idle_watts=100.0,
            max_watts=400.0,
            cores=cores,
            tags=tags,
            created_at_ms=NOW,
            created_by="alice",
            updated_at_ms=NOW,
        )

    return [server("s1", 16, ["gpu"]), server("s2", 64, ["ssd"])]


def submit(**fields):
    body = {"name": "render", "cores": 4, "duration": "2h"}
    body.update(fields)
    return new_task(body, "tsk_x", "alice", NOW, fleet())


def rejected(**fields) -> dict[str, str]:
    with pytest.raises(TaskRejected) as raised:
        submit(**fields)
    return {d["field"]: d["reason"] for d in raised.value.details}


def test_a_minimal_task_is_queued_with_defaults() -> None:
    task = submit()
    assert (task.state, task.owner, task.duration_s, task.interruptible) == ("queued", "alice", 7200, False)
    assert task.earliest_start_ms == NOW and task.deadline_ms == NOW + 24 * HOUR
    assert (task.regions, task.tags, task.command, task.version) == ([], [], None, 1)


def test_every_field_is_read() -> None:
    task = submit(
        duration=5400,
        earliest_start="2026-05-29T00:00:00Z",
        deadline=NOW + 30 * HOUR,
        interruptible=True,
        regions=["eu-north"],
        tags=["gpu"],
        command=["make", "-j4"],
    )
    assert task.duration_s == 5400 and task.interruptible
    assert task.earliest_start_ms == 1_780_012_800_000 and task.deadline_ms == NOW + 30 * HOUR
    assert (task.regions, task.tags, task.command) == (["eu-north"], ["gpu"], ["make", "-j4"])


def test_every_bad_field_is_named_at_once() -> None:
    errors = rejected(
        name="no spaces", cores=0, duration="soon", regions=["mars"], tags=[3], command="make all", colour="red"
    )
    assert set(errors) == {"name", "cores", "duration", "regions", "tags", "command", "colour"}
    assert "mars" in errors["regions"] and "not a task field" in errors["colour"]


def test_required_fields() -> None:
    with pytest.raises(TaskRejected) as raised:
        new_task({}, "tsk_x", "alice", NOW, fleet())
    assert {d["field"] for d in raised.value.details} == {"name", "cores", "duration"}
    with pytest.raises(TaskRejected, match="body"):
        new_task(["not", "an", "object"], "tsk_x", "alice", NOW, fleet())


def test_cores_above_every_server_are_refused() -> None:
    assert "largest has 64" in rejected(cores=65)["cores"]
    assert submit(cores=64).cores == 64
    assert "whole number" in rejected(cores=2.5)["cores"]
    assert "whole number" in rejected(cores=True)["cores"]


def test_a_tag_no_server_has_is_refused() -> None:
    assert "'tpu'" in rejected(tags=["gpu", "tpu"])["tags"]


def test_deadline_before_earliest_start() -> None:
    reason = rejected(earliest_start=NOW + 5 * HOUR, deadline=NOW + 4 * HOUR)["deadline"]
    assert "must be after earliest_start" in reason


def test_a_window_shorter_than_the_duration() -> None:
    reason = rejected(duration="3h", deadline=NOW + 2 * HOUR)["deadline"]
    assert "2h" in reason and "3h" in reason
    # The window counts from now when the earliest start has passed.
    assert "deadline" in rejected(earliest_start=NOW - 10 * HOUR, deadline=NOW + HOUR)


def test_a_deadline_in_the_past() -> None:
    assert rejected(earliest_start=NOW - 10 * HOUR, deadline=NOW - HOUR)["deadline"] == "is in the past"


@pytest.mark.parametrize("value", ["tomorrow", "2026-05-29 10:00", 1.5, -1, True, {"$gt": 0}])
def test_instants_must_be_epoch_ms_or_rfc3339(value) -> None:
    assert "deadline" in rejected(deadline=value)


@pytest.mark.parametrize("command", [[], [""], ["ok", 3], "ls", ["a\x00b"]])
def test_command_must_be_an_argv_list(command) -> None:
    assert "command" in rejected(command=command)


def test_null_command_is_no_command() -> None:
    assert submit(command=None).command is None


# --- durations and times as typed ---------------------------------------------------------


@pytest.mark.parametrize(
    "text,seconds",
    [
        ("2h", 7200),
        ("90m", 5400),
        ("1h30m", 5400),
        ("45s", 45),
        ("1d", 86_400),
        ("7200", 7200),
        (" 1h 30m ", 5400),
        ("2H", 7200),
    ],
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "0m", "2x", "h", "1h1h", "-5m", "31d", "1.5h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (5400, 7200, 45, 90_061)] == ["1h30m", "2h", "45s", "1d1h1m1s"]


UTC = timezone.utc
MORNING = datetime(2026, 5, 28, 9, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("18:00", "2026-05-28T18:00:00Z"),
        ("08:00", "2026-05-29T08:00:00Z"),  # passed today: tomorrow
        ("tomorrow 06:00", "2026-05-29T06:00:00Z"),
        ("today 23:30", "2026-05-28T23:30:00Z"),
        ("+2h", "2026-05-28T11:15:00Z"),
        ("in 90m", "2026-05-28T10:45:00Z"),
        ("2026-06-01 18:00", "2026-06-01T18:00:00Z"),
        ("2026-06-01T18:00:00+02:00", "2026-06-01T16:00:00Z"),
    ],
)
def test_local_times(text: str, expected: str) -> None:
    assert to_rfc3339(parse_local_time(text, MORNING, UTC)) == expected


def test_local_times_follow_the_zone() -> None:
    zone = timezone(timedelta(hours=2))
    assert to_rfc3339(parse_local_time("18:00", MORNING, zone)) == "2026-05-28T16:00:00Z"


@pytest.mark.parametrize("text", ["", "25:00", "tomorrow", "tomorrow 6pm", "next week", "12:60"])
def test_bad_local_times(text: str) -> None:
    with pytest.raises(ValueError):
        parse_local_time(text, MORNING, UTC)


@pytest.mark.parametrize(
    "field, value",
    [
        ("duration", 10**400),
        ("cores", 10**400),
        ("earliest_start", 10**400),
        ("deadline", -(10**400)),
        ("duration", 1e308),
        ("duration", 1.5),
    ],
)
def test_numbers_beyond_any_float_or_fractional_are_refused_not_a_crash(field, value) -> None:
    # math.isfinite(10**400) raises OverflowError: a 500 with a traceback before.
    assert field in rejected(**{field: value})
