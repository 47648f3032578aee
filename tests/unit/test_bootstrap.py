"""The composition root's choices: roles, the embedded broker's limit, adapters by URL scheme."""

from __future__ import annotations

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
    settings = Settings(broker_url="amqp://guest:guest@127.0.0.1:5672/",
                        timeseries_url=f"sqlite:///{tmp_path}/ts.db", registry_url=f"sqlite:///{tmp_path}/r.db")
    backend = Backend.create(settings, ["packager"])
    assert backend.broker is not None and backend.timeseries is not None and backend.registry is None
    assert type(backend.broker).__name__ == "RabbitMQBroker"
