"""`tasker demo` submits its sample tasks to a real backend: every one is accepted (tags and
regions the sample fleet has, cores it can hold), and only once per data dir."""

from __future__ import annotations

from tasker_tui.demo import SAMPLE_TASKS, sample_servers, submit_sample_tasks


async def test_the_sample_tasks_are_accepted_once(backend):
    async with await backend.admin() as api:
        taken = {s["name"] for s in (await api.list_servers())["servers"]}
        for body in sample_servers(12):
            if body["name"] not in taken:
                await api.create_server(body)
        assert await submit_sample_tasks(api) == len(SAMPLE_TASKS)
        tasks = await api.read_tasks()
        assert {t.name for t in tasks} == {t[0] for t in SAMPLE_TASKS}
        assert any(t.interruptible for t in tasks) and any(t.regions for t in tasks) and any(t.tags for t in tasks)
        assert await submit_sample_tasks(api) == 0  # a reused data dir keeps its tasks
