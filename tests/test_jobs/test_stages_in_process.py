"""The stage split's stages in this process (no Ray): the crash journal
(:func:`jobs.stages.run_journaled`) and the embedding stage's batches.

A process death is played by an exception that is not an ``Exception`` (it leaves the batch
as a killed process would, its journal in OUT); each call after it is Ray's retry of the
batch on the restarted actor. The journal on Ray (a real SIGKILL, a time-out) is tested in
test_job_stages.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import TEST_DATA, TINY_CAMPPLUS

from diar.config import load_config
from diar.pipelines.frame import EmbedInputs, FrameDiarizer
from jobs.plan import Recording, owned_by_job
from jobs.stages import EmbedStage, RecordingState, journal_key, run_journaled
from jobs.storage import OutDir


class Died(BaseException):
    """The process running the batch died."""


def batch() -> list[RecordingState]:
    return [RecordingState("shard-00001", Recording(r, f"/audio/{r}.wav", 1.0)) for r in "abcd"]


def run_until_done(out: OutDir, poison: str, runs: list[list[str]]) -> list[RecordingState]:
    """Retry the batch until it returns (at most 5 times); ``runs`` gets each call's recordings."""
    for _ in range(5):
        states = batch()

        def run(group: list[RecordingState]) -> None:
            runs.append([s.rec.reco_id for s in group])
            if any(s.rec.reco_id == poison for s in group):
                raise Died
            for s in group:
                s.num_samples = 16000

        try:
            run_journaled("segment", out, states, run, timeout=None)
        except Died:
            continue
        return states
    pytest.fail("the batch never finished")


def test_a_recording_that_kills_its_stage_twice_is_named_and_skipped(tmp_path: Path) -> None:
    out = OutDir(str(tmp_path))
    runs: list[list[str]] = []
    states = run_until_done(out, "c", runs)
    # together, then one at a time: c dies twice, then it alone is skipped
    assert runs == [
        ["a", "b", "c", "d"],
        ["a"], ["b"], ["c"],
        ["a"], ["b"], ["c"],
        ["a"], ["b"], ["d"],
    ]  # fmt: skip
    failed = {s.rec.reco_id: s.failure for s in states if s.failure is not None}
    assert list(failed) == ["c"]
    assert (failed["c"].stage, failed["c"].error_type) == ("actor", "WorkerCrash")
    assert "died 2 times" in failed["c"].message
    assert [s.num_samples for s in states] == [16000, 16000, 0, 16000]
    assert not list(tmp_path.rglob("*.inflight.json"))  # the journal is gone with the batch


def test_a_recording_whose_step_raises_fails_alone_without_a_crash(tmp_path: Path) -> None:
    states = batch()

    def run(group: list[RecordingState]) -> None:
        if any(s.rec.reco_id == "b" for s in group):
            raise ValueError("model cannot handle it")
        for s in group:
            s.num_samples = 1

    run_journaled("features", OutDir(str(tmp_path)), states, run, timeout=None)
    rows = [(s.rec.reco_id, s.failure.stage, s.failure.error_type) for s in states if s.failure]
    assert rows == [("b", "diarize", "ValueError")]
    assert [s.num_samples for s in states] == [1, 0, 1, 1]
    # in the read stage the row names stage read
    states = batch()[1:2]
    run_journaled("read", OutDir(str(tmp_path)), states, run, timeout=None)
    assert states[0].failure is not None and states[0].failure.stage == "read"


def test_journal_names_belong_to_their_shard() -> None:
    states = batch()
    key = journal_key("embed", states)
    assert key.startswith("shard-00001.embed-")
    assert key == journal_key("embed", list(reversed(batch())))  # a retry's order does not matter
    assert key != journal_key("embed", states[:2]) != journal_key("segment", states)
    # the driver removes leftover journals of the plan's shards, and only those
    assert owned_by_job(f"shards/{key}.inflight.json", {"shard-00001"})
    assert not owned_by_job(f"shards/{key}.inflight.json", {"shard-00002"})
    assert not owned_by_job("shards/notes.inflight.json", {"shard-00001"})


def test_on_a_gpu_the_embedding_stage_gathers_recordings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inputs of several recordings share forward passes where the embedder is on a GPU (played
    here on the CPU): each recording's batches get their own rows back, as embedded alone."""
    config = load_config(
        None,
        [
            f"frame_model.model={TEST_DATA / 'segmentation' / 'tiny_pyannet.ckpt'}",
            f"embedding.model_dir={TINY_CAMPPLUS}",
            "frame_model.device=cpu",
            "embedding.device=cpu",
        ],
    )
    stage = EmbedStage(config, 1, str(tmp_path))
    rng = np.random.default_rng(0)

    def states() -> list[RecordingState]:
        shapes = {"a": [[50, 80, 50], [31]], "b": [[50, 64]], "c": [[], [80, 80]]}
        out = []
        for reco_id, batches in shapes.items():
            s = RecordingState("shard-00000", Recording(reco_id, f"{reco_id}.wav", 1.0))
            for first, lengths in enumerate(batches):
                feats = [rng.standard_normal((n, 80)).astype(np.float32) for n in lengths]
                s.batches.append(EmbedInputs(np.arange(len(feats)), np.ones(len(feats)), first, feats))
            out.append(s)
        return out

    alone = states()
    rng = np.random.default_rng(0)
    together = states()
    stage.run(alone)  # on the CPU: one recording at a time
    forwards: list[int] = []
    embed_features = stage.diarizer._embedder.embed_features  # type: ignore[union-attr]

    def counted(feats: np.ndarray) -> np.ndarray:
        forwards.append(len(feats))
        return embed_features(feats)

    monkeypatch.setattr(stage.diarizer._embedder, "embed_features", counted)
    monkeypatch.setattr(FrameDiarizer, "embed_device", property(lambda self: "cuda"))
    stage.run(together)
    # one forward per shape over the three recordings: 50 (x3), 80 (x3), 31, 64
    assert sorted(forwards) == [1, 1, 3, 3]
    for a, t in zip(alone, together, strict=True):
        assert [v.shape for v in a.vectors] == [v.shape for v in t.vectors]
        for va, vt in zip(a.vectors, t.vectors, strict=True):
            np.testing.assert_allclose(vt, va, rtol=1e-4, atol=1e-5)
        assert all(b.inputs == [] for b in t.batches) and t.steps["embeddings"] > 0
