"""Shared fixtures: the optional corpus beside the checkout, small synthetic audio files, the job
tests' corpus. Helpers (not fixtures) shared by several modules: helpers.py, job_helpers.py."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: ../shared/corpus beside the checkout (see its README.md); tests using it are skipped without it.
CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"

WavWriter = Callable[..., Path]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """Path of the shared real-speech corpus; skips the test when it is absent."""
    if not (CORPUS / "README.md").is_file():
        pytest.skip(f"corpus not found at {CORPUS}")
    return CORPUS


def synth(
    seconds: float, sample_rate: int = 16000, channels: int = 1, kind: str = "sine", seed: int = 0
) -> np.ndarray:
    """Synthetic audio of shape (num_samples, channels), float32 in [-0.5, 0.5].

    ``kind``: "sine" (a 440 Hz tone, each channel a different phase), "noise"
    (Gaussian, fixed seed) or "silence".
    """
    n = round(seconds * sample_rate)
    t = np.arange(n, dtype=np.float64) / sample_rate
    if kind == "sine":
        data = np.stack([0.5 * np.sin(2 * np.pi * 440 * t + c) for c in range(channels)], axis=1)
    elif kind == "noise":
        data = np.clip(np.random.default_rng(seed).normal(0, 0.1, (n, channels)), -0.5, 0.5)
    elif kind == "silence":
        data = np.zeros((n, channels))
    else:
        raise ValueError(f"unknown kind {kind!r}")
    return data.astype(np.float32)


@pytest.fixture
def write_wav(tmp_path: Path) -> WavWriter:
    """``write_wav(name, seconds=1.0, sample_rate=16000, channels=1, kind="sine", subtype="PCM_16",
    data=None)`` writes a file under ``tmp_path`` (format from the name's extension) and returns its path.
    ``data`` (shape (N,) or (N, channels)) overrides the synthetic signal."""

    def write(
        name: str,
        seconds: float = 1.0,
        sample_rate: int = 16000,
        channels: int = 1,
        kind: str = "sine",
        subtype: str | None = "PCM_16",
        data: np.ndarray | None = None,
    ) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        audio = synth(seconds, sample_rate, channels, kind) if data is None else data
        if path.suffix.lower() in (".ogg", ".mp3"):
            subtype = None
        sf.write(path, audio, sample_rate, subtype=subtype)
        return path

    return write


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder without logging; ``/status/<code>/...`` answers that HTTP status instead."""

    def do_GET(self) -> None:
        parts = self.path.split("/")
        if len(parts) > 2 and parts[1] == "status" and parts[2].isdigit():
            self.send_error(int(parts[2]))
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        parts = self.path.split("/")
        if len(parts) > 2 and parts[1] == "status" and parts[2].isdigit():
            self.send_error(int(parts[2]))
            return
        super().do_HEAD()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def serve_folder(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port, no range requests); yield the base URL."""
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``(base_url, folder)``: a local http.server on 127.0.0.1 serving a fresh folder."""
    root = tmp_path / "www"
    root.mkdir()
    with serve_folder(root) as base:
        yield base, root


@pytest.fixture(scope="module")
def scp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The job tests' corpus (``job_helpers.DURATIONS``), made once per test module: its wav.scp."""
    from job_helpers import DURATIONS, make_corpus

    return make_corpus(tmp_path_factory.mktemp("corpus"), DURATIONS)


@pytest.fixture(scope="session")
def sim_out(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A job's OUT of sim for the report tests (the energy diarizer, one recording failed); the
    page the job wrote is kept beside it as job-report.html (tests may write OUT/report.html
    again). Here, not in a conftest of tests/test_diar/report: two conftest modules would shadow
    each other for the tests that import helpers from this one."""
    from report_helpers import sim_job

    out = sim_job(tmp_path_factory.mktemp("sim") / "OUT", corpus)
    (out.parent / "job-report.html").write_bytes((out / "report.html").read_bytes())
    return out
