"""Bad input mixed into a real job (issue 7): each broken recording is one clear failure row,
every good one is diarized. Runs the real default pipeline in this process (``local=True``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
from helpers import REPO
from job_helpers import read_failures_tsv

from diar.config import load_config
from diar.formats.rttm import read_rttm
from jobs.diarize import run_job

SAMPLE = REPO / "diar" / "data" / "sample" / "sim01_2spk.flac"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    if not SAMPLE.is_file():
        pytest.skip("bundled sample missing")
    audio, rate = sf.read(SAMPLE, dtype="float32")
    assert rate == 16000
    return audio


def test_every_bad_recording_is_one_row_and_every_good_one_is_diarized(
    speech: np.ndarray, tmp_path: Path, http_root: tuple[str, Path]
) -> None:
    base_url, www = http_root
    d = tmp_path / "audio"
    d.mkdir()
    piece = speech[16000 * 5 : 16000 * 17]  # 12 s with both speakers
    sf.write(d / "good.wav", piece, 16000, subtype="PCM_16")
    sf.write(d / "8k.wav", soxr.resample(piece, 16000, 8000), 8000, subtype="PCM_16")
    sf.write(d / "44k.flac", soxr.resample(piece, 16000, 44100), 44100)
    sf.write(d / "stereo.wav", np.stack([piece, 0.5 * piece], axis=1), 16000, subtype="PCM_16")
    sf.write(d / "silent.wav", np.zeros(16000 * 5, np.float32), 16000, subtype="PCM_16")
    sf.write(d / "short.wav", piece[: 16000 // 2], 16000, subtype="PCM_16")
    sf.write(d / "empty.wav", np.zeros(0, np.float32), 16000, subtype="PCM_16")
    nan = piece.copy()
    nan[1000:1010] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    full = (d / "good.wav").read_bytes()
    (d / "truncated.wav").write_bytes(full[: len(full) // 3])
    (d / "zero.wav").write_bytes(b"")
    (d / "text.wav").write_text("RIFF? no, just text\n")
    sf.write(www / "remote.wav", piece, 16000, subtype="PCM_16")
    rows = {
        "good": d / "good.wav",
        "rate-8k": d / "8k.wav",
        "rate-44k": d / "44k.flac",
        "stereo": d / "stereo.wav",
        "silent": d / "silent.wav",
        "short": d / "short.wav",
        "réunion-ü": d / "good.wav",
        "remote": f"{base_url}/remote.wav",
        "missing": d / "missing.wav",
        "zero-bytes": d / "zero.wav",
        "text-as-wav": d / "text.wav",
        "empty": d / "empty.wav",
        "nan": d / "nan.wav",
        "truncated": d / "truncated.wav",
        "url-404": f"{base_url}/status/404/gone.wav",
    }
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{k} {v}\n" for k, v in rows.items()), encoding="utf-8")
    out = tmp_path / "out"
    report = run_job(load_config(None, ["job.num_shards=3"]), str(scp), str(out), local=True)

    failures = {f.reco_id: f for f in read_failures_tsv((out / "failures.tsv").read_text(encoding="utf-8"))}
    bad = {"missing", "zero-bytes", "text-as-wav", "empty", "nan", "truncated", "url-404"}
    assert set(failures) == bad
    assert report.exit_code == 1  # default budget: no failure allowed
    for reco_id, row in failures.items():
        assert row.stage == "read", row
        assert str(rows[reco_id]).split("/")[-1] in row.message, row  # names the file
    assert failures["missing"].error_type == "AudioNotFoundError"
    assert failures["url-404"].error_type == "AudioNotFoundError"
    assert failures["empty"].error_type == "EmptyAudioError"
    assert failures["nan"].error_type == "InvalidSamplesError"
    assert failures["truncated"].error_type == "AudioDecodeError"

    diarized = read_rttm(out / "corpus.rttm")
    for reco_id in ("good", "rate-8k", "rate-44k", "stereo", "réunion-ü", "remote"):
        assert len(diarized[reco_id].speakers) >= 1, reco_id
    assert "silent" not in diarized  # no speech: an empty result, not a failure
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recordings"] == {"total": len(rows), "done": len(rows) - len(bad), "failed": len(bad)}
    assert summary["status"] == "over_budget"
    # the same recording under a non-ASCII id gives the same turns
    assert [(t.start, t.end) for t in diarized["réunion-ü"]] == [(t.start, t.end) for t in diarized["good"]]


@pytest.mark.slow
@pytest.mark.corpus
def test_job_on_the_sim_corpus_equals_diar_diarize_in_one_process(corpus: Path, tmp_path: Path) -> None:
    from diar.cli import main as diar_main

    scp = corpus / "sim" / "wav.scp"
    out = tmp_path / "out"
    report = run_job(load_config(None, ["job.num_shards=7"]), str(scp), str(out), local=True)
    assert report.exit_code == 0 and report.summary["recordings"]["done"] == 10
    assert diar_main(["diarize", str(scp), "-o", str(tmp_path / "one.rttm")]) == 0
    job, one = read_rttm(out / "corpus.rttm"), read_rttm(tmp_path / "one.rttm")
    assert {k: v.turns for k, v in job.items()} == {k: v.turns for k, v in one.items()}
