"""One small local Ray cluster for the whole test session (import the fixture into a test module).

Ray takes seconds to start and each actor seconds more, so the job tests share
this cluster and keep their actors few. Workers unpickle the test doubles of
:mod:`job_helpers` by value (they cannot import the tests folder).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def ray_address() -> Iterator[str]:
    """Start ``ray.init(num_cpus=2)`` once; yield its GCS address (for subprocess drivers)."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray")
    import job_helpers
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(job_helpers)
    started = not ray.is_initialized()
    if started:
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        if started:
            ray.shutdown()
