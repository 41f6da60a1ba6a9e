"""Fixtures of the report tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_helpers import sim_job


@pytest.fixture(scope="session")
def sim_out(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A job's OUT of sim (the energy diarizer, one recording failed); the page the job wrote is
    kept beside it as job-report.html (tests may write OUT/report.html again)."""
    out = sim_job(tmp_path_factory.mktemp("sim") / "OUT", corpus)
    (out.parent / "job-report.html").write_bytes((out / "report.html").read_bytes())
    return out
