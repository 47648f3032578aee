"""A task that cannot be placed says which constraint binds."""

from backend.allocation import BuiltinIntensity, plan_tasks

from .builders import problem, server, task

FLEET = [server("a", region="eu-north", cores=16), server("b", region="us-west", cores=32, tags=frozenset({"gpu"}))]


def reason(t, fleet=FLEET, **kwargs):
    plan = plan_tasks(problem([t], fleet, **kwargs), BuiltinIntensity())
    assert t.id not in plan.placements
    return plan.unschedulable[t.id]


def test_no_server_with_the_tag_in_the_allowed_regions():
    assert (
        reason(task("t", regions=frozenset({"eu-north"}), tags=frozenset({"gpu"})))
        == "no server in regions eu-north has tag gpu"
    )


def test_no_server_in_the_allowed_regions():
    assert reason(task("t", regions=frozenset({"af-south"}))) == "no server in regions af-south"


def test_more_cores_than_the_largest_allowed_server():
    assert reason(task("t", cores=64)) == "needs 64 cores; the largest allowed server has 32"
    assert (
        reason(task("t", cores=20, regions=frozenset({"eu-north"})))
        == "needs 20 cores; the largest allowed server has 16"
    )


def test_a_window_shorter_than_the_duration():
    assert reason(task("t", hours=2.0, start_h=1.0, deadline_h=1.5)) == "window 30m is shorter than duration 2h"


def test_a_pin_to_a_server_that_is_gone():
    assert reason(task("t", server_id="zz")) == "pinned server zz is not available"


def test_no_capacity_before_the_deadline():
    full = [task(f"f{i}", cores=16, hours=4.0, deadline_h=4.0) for i in range(3)]
    late = task("late", cores=16, hours=1.0, deadline_h=4.0)
    plan = plan_tasks(problem([*full, late], FLEET), BuiltinIntensity())
    assert len(plan.placements) == 3
    assert list(plan.unschedulable.values()) == ["no capacity before the deadline 04:00 on the 2 servers that match"]


def test_no_live_server_says_why():
    plan = plan_tasks(problem([task("t")], []), BuiltinIntensity())
    assert plan.unschedulable["t"] == (
        "no server can take tasks: none is registered, or none has reported a reading in the last 2 minutes"
    )


def test_a_task_whose_run_only_fits_past_the_horizon_waits_for_a_later_round():
    later = task("later", start_h=60.0, deadline_h=80.0)  # declared three days ahead
    edge = task("edge", hours=2.0, start_h=47.0, deadline_h=70.0)  # would end past the horizon
    plan = plan_tasks(problem([later, edge], FLEET), BuiltinIntensity())
    assert not plan.placements and not plan.unschedulable
    assert plan.waiting == {t: "waits until the 48h planning horizon covers its run" for t in ("later", "edge")}


def test_a_run_longer_than_the_horizon_never_fits():
    assert reason(task("t", hours=50.0, deadline_h=100.0)) == "runs longer than the 48h planning horizon"
