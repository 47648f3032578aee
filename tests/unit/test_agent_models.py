"""A heartbeat answer parsed once into `tasker.models.AgentWork`: the agent acts on typed tasks."""

from __future__ import annotations

import pytest

from tasker.models import AgentWork, ModelError

ANSWER = {
    "server_id": "srv_x",
    "now_ms": 1764740000000,
    "poll_s": 2.0,
    "lease": {
        "name": "agent:srv_x",
        "holder": "host-7",
        "epoch": 3,
        "expires_at": "2026-12-03T06:00:30Z",
        "expires_at_ms": 1764740030000,
        "ttl_s": 30.0,
    },
    "tasks": [
        {
            "id": "tsk_abc",
            "name": "render",
            "state": "planned",
            "command": ["render", "-f", "1"],
            "cwd": "/srv/render",
            "env": {"FRAMES": "1-100"},
            "cores": 4,
            "interruptible": True,
            "pieces": [[1764740100000, 1764743700000]],
            "paused": False,
            "version": 7,
        }
    ],
    "cancel": [{"task_id": "tsk_def", "reason": "cancelled by alice"}],
}


def test_the_documented_heartbeat_answer_parses():
    work = AgentWork.from_json(ANSWER)
    assert (work.lease.epoch, work.lease.ttl_s, work.poll_s) == (3, 30.0, 2.0)
    task = work.tasks[0]
    assert task.command == ("render", "-f", "1") and task.env == {"FRAMES": "1-100"}
    assert task.pieces == ((1764740100000, 1764743700000),) and task.interruptible and task.cores == 4
    assert work.cancel == {"tsk_def": "cancelled by alice"}
    quiet = AgentWork.from_json({"now_ms": 1, "lease": {"epoch": 1, "ttl_s": 30}})
    assert quiet.tasks == () and quiet.cancel == {} and quiet.poll_s is None


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"lease": None}, "heartbeat.lease"),
        ({"lease": {"epoch": "3", "ttl_s": 30}}, "heartbeat.lease.epoch"),
        ({"lease": {"epoch": 3, "ttl_s": None}}, "heartbeat.lease.ttl_s"),
        ({"tasks": [{"id": "t", "state": "planned", "command": "rm -rf /"}]}, "heartbeat.tasks[0].command"),
        ({"tasks": [{"id": "t", "state": "planned", "env": {"A": 1}}]}, "heartbeat.tasks[0].env"),
        ({"cancel": [{"reason": "x"}]}, "heartbeat.cancel[0].task_id"),
    ],
)
def test_a_garbled_answer_is_refused_naming_the_field(change, named):
    with pytest.raises(ModelError) as refused:
        AgentWork.from_json({**ANSWER, **change})
    assert str(refused.value).startswith(named + ":")
