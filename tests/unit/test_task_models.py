"""Task, plan and savings JSON parsed once into `tasker.models`: tolerant of what is optional,
refusing garbage with the field named."""

from __future__ import annotations

import math

import pytest

from tasker.models import ModelError, PlanTimeline, Savings, Task

HOUR = 3_600_000
T0 = 1_795_000_000_000 - 1_795_000_000_000 % HOUR


def iso(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def task(**extra) -> dict:
    body = {
        "id": "tsk_1",
        "name": "render",
        "owner": "alice",
        "cores": 4,
        "duration_s": 7200,
        "state": "running",
        "plan": {
            "server_id": "srv_1",
            "pieces": [[iso(T0), iso(T0 + 2 * HOUR)]],
            "co2_g": 12.5,
            "run_now_co2_g": 20.0,
            "saving_g": 7.5,
        },
    }
    body.update(extra)
    return body


def test_a_minimal_task_parses_with_defaults_for_what_is_missing():
    parsed = Task.from_json(task())
    assert parsed.plan is not None and parsed.plan.start_ms == T0 and parsed.plan.end_ms == T0 + 2 * HOUR
    assert parsed.plan.measured_co2_g is None and parsed.plan.explanation == ""
    assert parsed.run.runs == () and parsed.command is None and parsed.tags == ()


def test_progress_follows_the_pieces_while_running_and_the_runs_once_reported():
    parsed = Task.from_json(task())
    assert parsed.progress(T0 + HOUR) == pytest.approx(0.5)
    reported = Task.from_json(task(run={"activity": "paused", "runs": [[iso(T0), iso(T0 + HOUR // 2)]]}))
    assert reported.progress(T0 + HOUR) == pytest.approx(0.25)  # paused after half an hour
    assert Task.from_json(task(state="done")).progress(T0) == 1.0
    assert Task.from_json(task(state="planned")).progress(T0 + HOUR) == 0.0


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"cores": "four"}, "task.cores"),
        ({"plan": {"server_id": "s", "pieces": [], "co2_g": 1}}, "task.plan.pieces"),
        ({"plan": {"server_id": "s", "pieces": [[iso(T0), iso(T0)]], "co2_g": "lots"}}, "task.plan.co2_g"),
        ({"command": "rm -rf /"}, "task.command"),
        ({"created_at": "yesterday"}, "task.created_at"),
    ],
)
def test_garbage_is_refused_naming_the_field(change, named):
    with pytest.raises(ModelError, match=named.replace(".", r"\.")):
        Task.from_json(task(**change))


def test_huge_figures_become_infinite_not_an_error():
    parsed = Task.from_json(task(plan={"server_id": "s", "pieces": [[iso(T0), iso(T0 + HOUR)]], "co2_g": 10**400}))
    assert parsed.plan is not None and math.isinf(parsed.plan.co2_g or 0)


def test_plan_and_savings_parse_and_an_empty_plan_is_fine():
    plan = PlanTimeline.from_json(
        {
            "start": iso(T0),
            "end": iso(T0 + 48 * HOUR),
            "slot_s": 1800,
            "servers": [
                {
                    "id": "srv_1",
                    "name": "web-1",
                    "cores": 8,
                    "curve": "k",
                    "placements": [
                        {"cores": 2, "state": "planned", "task_id": None, "pieces": [[iso(T0), iso(T0 + HOUR)]]}
                    ],
                }
            ],
            "curves": {"k": [100.0, None, 80.5]},
        }
    )
    assert plan.curve_of(plan.servers[0]) == (100.0, None, 80.5)
    assert plan.servers[0].placements[0].name is None  # another owner's task
    empty = PlanTimeline.from_json({"start": iso(T0), "end": iso(T0 + HOUR), "slot_s": 1800})
    assert empty.servers == ()
    with pytest.raises(ModelError, match="plan.slot_s"):
        PlanTimeline.from_json({"start": iso(T0), "end": iso(T0 + HOUR), "slot_s": 0})
    savings = Savings.from_json(
        {"totals": {"tasks": 3, "compared": 2, "saving_g": 5.0}, "today": {"done": 1, "measured": 1, "saved_g": 1250.0}}
    )
    assert savings.today is not None and savings.today.saved_g == 1250.0
    assert Savings.from_json({}).today is None
