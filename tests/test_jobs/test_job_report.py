"""The job's report page (``job.report``): written at the end with the other corpus files, the
page ``diar report OUT`` writes, listed in summary.json; off, none is written."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from job_helpers import DURATIONS, energy_factory

from diar.cli import main
from diar.config import ConfigError, load_config
from jobs.diarize import run_job


def test_job_writes_the_report_page(scp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = load_config(None, ["job.num_shards=2", "job.max_failures=1"])
    assert config.job.report is True  # on by default
    done = run_job(
        config, str(scp), str(out), local=True, diarizer_factory=energy_factory(fail_ids=("rec-c",))
    )
    assert done.exit_code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["outputs"] == [
        "corpus.rttm",
        "corpus.parquet",
        "failures.tsv",
        "report.html",
        "summary.json",
    ]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert sorted(re.findall(r'<tr id="t\d+" data-reco="([^"]+)"', html)) == sorted(DURATIONS)
    assert "rec-ü" in html and "model cannot handle recording" in html  # the failure and its reason
    assert "6 (5 done, 1 failed)" in html
    # the page diar report OUT writes from the files the job wrote
    again = tmp_path / "again.html"
    assert main(["report", str(out), "-o", str(again)]) == 0
    assert again.read_bytes() == (out / "report.html").read_bytes()


def test_report_off(scp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    config = load_config(None, ["job.num_shards=1", "job.report=false"])
    assert run_job(config, str(scp), str(out), local=True, diarizer_factory=energy_factory()).exit_code == 0
    assert not (out / "report.html").exists()
    assert "report.html" not in json.loads((out / "summary.json").read_text())["outputs"]


def test_report_must_be_true_or_false() -> None:
    with pytest.raises(ConfigError, match=r"job\.report"):
        load_config(None, ["job.report=3"])
