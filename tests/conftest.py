"""Shared fixtures: where the real services started by `compose/local/services up` listen.

The addresses come from the same variables `compose/local/services env` prints, with the
script's defaults. A test that needs a service fails (never skips) when it does not answer.
"""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def amqp_url() -> str:
    return os.environ.get("TASKER_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture(scope="session")
def cassandra_url() -> str:
    return os.environ.get("TASKER_TEST_CASSANDRA_URL", "cassandra://127.0.0.1:9042/tasker_test")


@pytest.fixture(scope="session")
def mongodb_url() -> str:
    return os.environ.get("TASKER_TEST_MONGODB_URL", "mongodb://127.0.0.1:27017/tasker_test")


SERVICE_FIXTURES = {"amqp_url", "cassandra_url", "mongodb_url"}
SERVICE_PARAMS = {"rabbitmq", "cassandra", "mongo", "distributed"}
"""Fixture parameters that pick a real service (the contract suites, the backend rig's modes)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that reaches a real service, through any fixture, is marked `services`, so
    `scripts/test -m "not services"` runs all the others without starting them."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) or SERVICE_PARAMS & {
            value for value in params.values() if isinstance(value, str)
        }:
            item.add_marker(pytest.mark.services)
