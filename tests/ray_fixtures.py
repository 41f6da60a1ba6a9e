"""Ray for the tests: one small local cluster for the whole session (import the fixture into a
test module), and :func:`ray_head` for the tests that need a head of their own.

Ray takes seconds to start and each actor seconds more, so the job tests share
this cluster and keep their actors few. Workers unpickle the test doubles of
:mod:`job_helpers` by value (they cannot import the tests folder).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers import free_port


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


def read_log(path: Path) -> str:
    """A log file's text so far ("" while it does not exist)."""
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def tail(path: Path, chars: int = 3000) -> str:
    """The end of a log file, for a failure message."""
    return read_log(path)[-chars:] if path.exists() else f"({path} unreadable)"


@contextmanager
def ray_head(
    options: Callable[[str, Path], list[str]],
    env: dict[str, str],
    ready: Callable[[Path], bool],
    not_ready: Callable[[str, Path], object],
    timeout: float = 120.0,
) -> Iterator[tuple[str, Path]]:
    """A Ray head that outlives its drivers (``ray start --head --block``, in its own process
    group so that the nodes it starts join it); yield its GCS address and temp folder; stop
    exactly what it started (never ``ray stop``, which would stop every Ray on the machine).

    Args:
        options: ``(address, temp folder) -> more options of ray start``.
        ready: ``temp folder -> whether the head is up`` (its output is ``temp/head.log``).
        not_ready: called with the head's log tail and the temp folder when it died or
            ``timeout`` s passed (``pytest.skip`` or ``pytest.fail``).
    """
    import ray

    ip = ray.util.get_node_ip_address()
    port = free_port()
    address = f"{ip}:{port}"
    temp = Path(tempfile.mkdtemp(prefix="diar-ray-"))  # short: Ray's unix sockets live under it
    log_path = temp / "head.log"
    command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", f"--port={port}"]
    command += [f"--temp-dir={temp}", "--include-dashboard=false", f"--ray-client-server-port={free_port()}"]
    command += options(address, temp)
    with open(log_path, "wb") as log:
        head = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout
        while not ready(temp):
            if head.poll() is not None or time.monotonic() > deadline:
                not_ready(tail(log_path, 1500), temp)
            time.sleep(0.5)
        yield address, temp
    finally:
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops the head's own processes
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pass
        _stop_group(head.pid)  # the nodes it started, and any straggler
        if head.poll() is None:
            head.wait()
        shutil.rmtree(temp, ignore_errors=True)


def _stop_group(pgid: int) -> None:
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.2)
