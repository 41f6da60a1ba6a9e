"""Enrolled speakers with the offline default (mode frame), end to end on the bundled sample's
real speech: ``diar diarize --enroll``, ``diar profiles`` then ``--profile-scp``, and the Ray
job's driver (``--local``) with ``--profile-scp`` give the same turns, with the enrolled names;
a speaker left out of the enrollment is an unknown speaker."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import REPO

from diar.cli import main
from diar.formats.rttm import read_rttm
from diar.scoring import score

SAMPLE = REPO / "diar" / "data" / "sample"

pytestmark = pytest.mark.slow


def enrollment(tmp_path: Path, speakers: set[str] | None = None) -> Path:
    """The sample's enrollment list with absolute paths (only ``speakers``, when given)."""
    out = tmp_path / f"enroll-{len(speakers or ())}.scp"
    lines = []
    for line in (SAMPLE / "enroll.scp").read_text().splitlines():
        reco, speaker, path = line.split()
        if speakers is None or speaker in speakers:
            lines.append(f"{reco} {speaker} {SAMPLE / path}\n")
    out.write_text("".join(lines))
    return out


def test_enrolled_speakers_by_every_path(tmp_path: Path) -> None:
    from jobs.diarize import main as job_main

    scp = SAMPLE / "wav.scp"
    reference = read_rttm(SAMPLE / "ref.rttm")
    enroll = enrollment(tmp_path)
    direct = tmp_path / "direct.rttm"
    assert main(["diarize", str(scp), "-o", str(direct), "--enroll", str(enroll)]) == 0
    turns = read_rttm(direct)["sim01_2spk"]
    assert set(turns.speakers) == {"3005", "3331"}  # the enrolled names, as the reference's
    mapped = score(reference, {"sim01_2spk": turns}, collar=0.25).corpus
    # named right, not only grouped right: scoring by name (identity map) gives the same DER
    by_name = score(reference, {"sim01_2spk": turns}, collar=0.25, corpus_mapping=True)
    assert mapped.der < 0.05 and by_name.speaker_map == {"3005": "3005", "3331": "3331"}
    # diar profiles, then --profile-scp: the same profiles, the same turns
    assert main(["profiles", "--enroll", str(enroll), "--out", str(tmp_path / "profiles")]) == 0
    profile_scp = tmp_path / "profiles" / "profile.scp"
    stored = tmp_path / "stored.rttm"
    assert main(["diarize", str(scp), "-o", str(stored), "--profile-scp", str(profile_scp)]) == 0
    assert read_rttm(stored)["sim01_2spk"].turns == turns.turns
    # the Ray job's driver (one process here) with --profile-scp
    out = tmp_path / "job"
    argv = ["--wav-scp", str(scp), "--out", str(out), "--profile-scp", str(profile_scp), "--local"]
    assert job_main([*argv, "--no-progress"]) == 0
    assert read_rttm(out / "corpus.rttm")["sim01_2spk"].turns == turns.turns


def test_a_speaker_left_out_of_the_enrollment_is_unknown(tmp_path: Path) -> None:
    out = tmp_path / "one.rttm"
    enroll = enrollment(tmp_path, {"3005"})
    assert main(["diarize", str(SAMPLE / "wav.scp"), "-o", str(out), "--enroll", str(enroll)]) == 0
    turns = read_rttm(out)["sim01_2spk"]
    assert set(turns.speakers) == {"3005", "unknown1"}
    result = score(read_rttm(SAMPLE / "ref.rttm"), {"sim01_2spk": turns}, collar=0.25, corpus_mapping=True)
    assert result.speaker_map == {"3005": "3005", "3331": "unknown1"} and result.corpus.der < 0.05
