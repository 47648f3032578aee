"""Fixtures unit tests of several modules ask for by name: `fake`, an HTTP backend the client
talks to (tests/unit/test_client.py)."""

from tests.unit.test_client import fake  # noqa: F401
