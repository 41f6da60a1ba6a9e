"""The job's ``exclusive`` output format (``corpus.exclusive.rttm``) without Ray (``local=True``):
both turn sets from one diarization, shard files, resume and speaker linking."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import pytest
from job_helpers import DURATIONS, EnergyDiarizer, energy_factory, spectrum_traces

from diar.config import load_config
from diar.formats.rttm import read_rttm
from diar.formats.speakers import read_speakers
from diar.pipelines.base import Diarization, RecordingInput, StepHook, no_hook
from diar.types import Annotation, Turn
from jobs.diarize import run_job
from jobs.traces import LinkJobError, link_folders, settings_of


class OverlapDiarizer(EnergyDiarizer):
    """:class:`EnergyDiarizer`'s turns plus a speaker ``over`` talking over the first second of
    each; its exclusive turns are the energy turns alone (the overlap goes to their speaker).
    Counts its calls, so a test sees that each recording is diarized once for both."""

    calls: ClassVar[list[str]] = []

    def diarize(self, recording: RecordingInput, hook: StepHook = no_hook) -> Diarization:
        OverlapDiarizer.calls.append(recording.reco_id)
        exclusive = self.apply(recording, hook)
        over = [Turn(t.reco_id, t.start, min(t.end, t.start + 1.0), "over") for t in exclusive]
        annotation = Annotation.from_turns(recording.reco_id, [*exclusive, *over])
        return Diarization(annotation, spectrum_traces(recording, annotation), exclusive)


def config(*overrides: str):  # type: ignore[no-untyped-def]
    return load_config(None, ["job.out_formats=[rttm,exclusive]", "job.num_shards=2", *overrides])


def run_local(cfg, scp: Path, out: Path, factory=OverlapDiarizer):  # type: ignore[no-untyped-def]
    report = run_job(cfg, str(scp), str(out), local=True, diarizer_factory=factory)
    assert report.exit_code == 0
    return report


def overlaps(annotation: Annotation) -> bool:
    turns = annotation.turns
    return any(b.start < a.end for i, a in enumerate(turns) for b in turns[i + 1 :] if b.speaker != a.speaker)


def test_both_turn_sets_from_one_diarization(scp: Path, tmp_path: Path) -> None:
    OverlapDiarizer.calls = []
    out = tmp_path / "out"
    report = run_local(config(), scp, out)
    assert sorted(OverlapDiarizer.calls) == sorted(DURATIONS)  # once per recording
    overlapping, exclusive = read_rttm(out / "corpus.rttm"), read_rttm(out / "corpus.exclusive.rttm")
    assert sorted(overlapping) == sorted(exclusive) == sorted(DURATIONS)
    for reco_id, annotation in exclusive.items():
        assert not overlaps(annotation)
        assert overlaps(overlapping[reco_id]) and "over" in overlapping[reco_id].speakers
        assert "over" not in annotation.speakers  # the diarizer's own exclusive turns, not recomputed
    assert sorted(p.name for p in (out / "shards").glob("*.exclusive.rttm")) == [
        "shard-00000.exclusive.rttm",
        "shard-00001.exclusive.rttm",
    ]
    assert "corpus.exclusive.rttm" in report.summary["outputs"]


def test_adding_the_format_redoes_the_shards_then_resume_reuses_them(scp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_local(config("job.out_formats=[rttm]"), scp, out)
    assert not (out / "corpus.exclusive.rttm").exists()
    # the exclusive turns are only in shard files: shards made without them run again
    assert run_local(config(), scp, out).shards_run == 2
    first = {n: (out / n).read_bytes() for n in ("corpus.rttm", "corpus.exclusive.rttm", "summary.json")}
    OverlapDiarizer.calls = []
    assert run_local(config(), scp, out).shards_run == 0
    assert OverlapDiarizer.calls == []
    assert {n: (out / n).read_bytes() for n in first} == first  # byte-identical
    # a shard whose exclusive file is gone is redone alone
    (out / "shards" / "shard-00001.exclusive.rttm").unlink()
    assert run_local(config(), scp, out).shards_run == 1
    assert (out / "corpus.exclusive.rttm").read_bytes() == first["corpus.exclusive.rttm"]


def test_a_diarizer_without_exclusive_turns_gets_them_from_its_turns(scp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_local(config(), scp, out, energy_factory())  # EnergyDiarizer: no overlap, no exclusive turns
    assert read_rttm(out / "corpus.exclusive.rttm") == read_rttm(out / "corpus.rttm")


def test_linked_exclusive_turns_carry_the_global_labels(scp: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    cfg = config("job.link_speakers=true", "job.link_min_seconds=2.0")
    run_local(cfg, scp, out)
    links = {(r.reco_id, r.speaker): r.global_speaker for r in read_speakers(out / "speakers.tsv")}
    local = {}
    for shard in sorted((out / "shards").glob("*.exclusive.rttm")):
        local.update(read_rttm(shard))
    linked = read_rttm(out / "corpus.exclusive.rttm")
    assert sorted(linked) == sorted(local)
    for reco_id, annotation in local.items():
        mapping = {s: links[(reco_id, s)] for s in annotation.speakers}
        assert linked[reco_id] == annotation.rename(mapping)
    # diar link writes the same, and refuses folders whose shards have no exclusive turns
    again = tmp_path / "relinked"
    link_folders([str(out)], str(again), settings_of(cfg.job), cfg.job.out_formats)
    assert (again / "corpus.exclusive.rttm").read_bytes() == (out / "corpus.exclusive.rttm").read_bytes()
    # a folder diar link wrote before is its own to write again, corpus.exclusive.rttm included
    link_folders([str(out)], str(again), settings_of(cfg.job), cfg.job.out_formats)
    plain = tmp_path / "plain"
    run_local(config("job.out_formats=[rttm]"), scp, plain)
    with pytest.raises(LinkJobError, match=r"no exclusive turns.*job\.out_formats"):
        link_folders([str(plain)], str(tmp_path / "x"), settings_of(cfg.job), cfg.job.out_formats)
    summary = json.loads((out / "summary.json").read_text())
    assert "corpus.exclusive.rttm" in summary["outputs"]


def test_owned_files() -> None:
    from jobs.plan import owned_by_job

    ids = {"shard-00000"}
    assert owned_by_job("corpus.exclusive.rttm", ids)
    assert owned_by_job("shards/shard-00000.exclusive.rttm", ids)
    assert owned_by_job("shards/shard-00000.exclusive.rttm.tmp-0123456789ab", ids)
    assert not owned_by_job("shards/shard-00009.exclusive.rttm", ids)


def test_the_stage_split_writes_the_exclusive_turns_its_finish_step_made(tmp_path: Path) -> None:
    """The stage split's driver writes a shard from its recordings' states with the single path's
    ShardFiles: the exclusive turns come from the Diarization the finish stage returned."""
    from jobs.plan import Recording
    from jobs.shards import Shard
    from jobs.stages import RecordingState, _write_shard
    from jobs.storage import OutDir

    recs = (Recording("a", "/audio/a.wav", 2.0), Recording("b", "/audio/b.wav", 2.0))
    shard = Shard("shard-00000", recs, 4.0, "fp")
    got = {}
    for rec in recs:
        exclusive = Annotation(rec.reco_id, (Turn(rec.reco_id, 0.0, 2.0, "spk1"),))
        both = Annotation(rec.reco_id, (*exclusive.turns, Turn(rec.reco_id, 1.0, 2.0, "spk2")))
        state = RecordingState(shard.shard_id, rec, num_samples=32000)
        state.diarization = Diarization(both, (), exclusive)
        got[rec.reco_id] = state
    out = OutDir(str(tmp_path))
    record = _write_shard(config(), out, shard, got)
    assert sorted(record.files) == [
        "shard-00000.exclusive.rttm",
        "shard-00000.rttm",
        "shard-00000.traces.ark",
        "shard-00000.traces.parquet",
    ]
    exclusive_turns = read_rttm(tmp_path / "shards" / "shard-00000.exclusive.rttm")
    assert {k: a.speakers for k, a in exclusive_turns.items()} == {"a": ["spk1"], "b": ["spk1"]}
    assert read_rttm(tmp_path / "shards" / "shard-00000.rttm")["a"].speakers == ["spk1", "spk2"]
