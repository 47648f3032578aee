"""The composition root's choices: roles, the embedded broker's limit, adapters by URL scheme."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest

from backend.bootstrap import Backend, StartupError, check_roles, sqlite_path
from tasker.config import Settings


def test_no_role_means_every_role():
    assert check_roles([], "memory://") == {"ingest", "packager", "history", "api", "scheduler"}


def test_an_unknown_role_is_named():
    with pytest.raises(StartupError, match="unknown role 'web'"):
        check_roles(["web"], "amqp://guest:guest@localhost/")


@pytest.mark.parametrize("roles", [["packager"], ["ingest", "api"], ["api", "history"]])
def test_the_memory_broker_refuses_to_split_roles_and_says_to_use_rabbitmq(roles):
    with pytest.raises(StartupError) as caught:
        check_roles(roles, "memory://")
    assert "one process" in str(caught.value) and "RabbitMQ" in str(caught.value)


def test_roles_split_freely_over_rabbitmq_and_history_alone_needs_no_broker():
    assert check_roles(["packager"], "amqp://localhost/") == {"packager"}
    assert check_roles(["history"], "memory://") == {"history"}


def test_sqlite_urls_name_relative_and_absolute_files():
    assert sqlite_path("sqlite:///data/ts.db", "X") == Path("data/ts.db")
    assert sqlite_path("sqlite:////var/lib/tasker/ts.db", "X") == Path("/var/lib/tasker/ts.db")
    with pytest.raises(StartupError, match="X="):
        sqlite_path("sqlite:///", "X")


def test_a_packager_process_opens_only_the_broker_and_the_time_series_store(tmp_path):
    settings = Settings(
        broker_url="amqp://guest:guest@127.0.0.1:5672/",
        timeseries_url=f"sqlite:///{tmp_path}/ts.db",
        registry_url=f"sqlite:///{tmp_path}/r.db",
    )
    backend = Backend.create(settings, ["packager"])
    assert backend.broker is not None and backend.timeseries is not None and backend.registry is None
    assert type(backend.broker).__name__ == "RabbitMQBroker"


async def test_closing_stops_consuming_first_then_the_packager_then_the_role_parts_then_the_stores(tmp_path, caplog):
    settings = Settings(
        broker_url="memory://", timeseries_url=f"sqlite:///{tmp_path}/ts.db", registry_url=f"sqlite:///{tmp_path}/r.db"
    )
    backend = Backend.create(settings)
    closed: list[str] = []

    def recording(name: str, close, fails: bool = False):
        async def run() -> None:
            closed.append(name)
            await close()
            if fails:
                raise RuntimeError("disk gone")

        return run

    for name in ("broker", "timeseries", "registry"):
        adapter = getattr(backend, name)
        adapter.close = recording(name, adapter.close, fails=name == "timeseries")
    await backend.start(give_up_after_s=5)
    backend.packager.close = recording("packager", backend.packager.close)
    backend.on_close("chat", recording("chat", _nothing))
    backend.on_close("scheduler", recording("scheduler", _nothing, fails=True))
    with caplog.at_level(logging.WARNING, logger="backend.bootstrap"):
        await backend.close()
    assert closed == ["broker", "packager", "scheduler", "chat", "timeseries", "registry"]
    assert "closing the scheduler failed: disk gone" in caplog.text
    assert "closing the time-series store failed: disk gone" in caplog.text
    await backend.close()
    assert closed.count("broker") == 1 and closed.count("registry") == 1


async def _nothing() -> None:
    return None


def test_the_roles_do_not_import_the_composition_root():
    """bootstrap imports the roles; a role importing bootstrap back (even for its types) would
    tie both into one import circle. Roles see the process as `backend.roles.context`."""
    roles = Path(__file__).resolve().parents[2] / "backend" / "roles"
    for path in roles.glob("*.py"):
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any(m and m.startswith("backend.bootstrap") for m in imported), path.name
