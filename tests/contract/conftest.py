"""Fixtures every registry contract test may ask for by name: one registry per adapter."""

from tests.contract.test_registry_contract import make_registry, registry  # noqa: F401
