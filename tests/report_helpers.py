"""Helpers of the report tests: a job's OUT of sim made cheaply, and headless Chromium."""

from __future__ import annotations

from pathlib import Path

import pytest
from job_helpers import energy_factory

from diar.config import load_config
from diar.report.browser import find_chromium

#: The sim recording that fails in :func:`sim_job`.
FAILING = "sim03_2spk"


def sim_job(out: Path, corpus: Path) -> Path:
    """Run the job on ``corpus/sim`` into ``out`` in this process with the energy diarizer of
    the job tests (no model weights; a few seconds), one recording failing; return ``out``."""
    from jobs.diarize import run_job

    config = load_config(None, ["job.num_shards=3", "job.max_failures=1"])
    report = run_job(
        config,
        str(corpus / "sim" / "wav.scp"),
        str(out),
        local=True,
        diarizer_factory=energy_factory(fail_ids=(FAILING,)),
    )
    assert report.exit_code == 0 and report.summary["recordings"]["failed"] == 1
    return out


def chromium() -> str:
    """The Chromium binary; skips the test, saying why, when there is none."""
    found = find_chromium()
    if found is None:
        pytest.skip(
            "headless Chromium is not installed (apt-get install chromium; .ci/run installs it): "
            "the page is not checked in a browser"
        )
    return found
