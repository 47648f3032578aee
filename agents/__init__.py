"""`tasker agent`: runs the tasks the plan puts on this host, and reports how they ran.

- `supervise.py`: the small watchdog process each task's command runs under;
- `processes.py`: starting, pausing, resuming and stopping a task's process group;
- `task_dir.py`: what the agent keeps on disk per task, so a restarted agent adopts its tasks;
- `agent.py`: the loop: heartbeat (the agent lease), act on the plan, report run events;
- `cli.py`: the command.

The protocol is described in docs/agents.md.
"""
