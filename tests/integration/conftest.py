"""Fixtures every integration test may ask for by name: the backend modes of `backend_rig`
(embedded, distributed, or both as `mode`) and the embedded backend the sensors run against."""

from tests.integration.backend_rig import (  # noqa: F401
    distributed,
    distributed_names,
    distributed_own_registry,
    embedded,
    mode,
)
from tests.integration.test_sensors_emulate import backend  # noqa: F401
