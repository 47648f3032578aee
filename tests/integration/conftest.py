"""Fixtures every integration test may ask for by name: the backend modes of `backend_rig`
(embedded, distributed, or both as `mode`) and the embedded backend the sensors run against."""

from tests.integration.backend_rig import distributed, distributed_names, embedded, mode  # noqa: F401
from tests.integration.test_sensors_emulate import backend  # noqa: F401
