"""Stitching of window-local speakers into recording speakers, on synthetic window outputs with
known permutations and speaker counts (speakers are tones; the embedder reads the spectrum)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from diar.stitching import (
    WindowStitcher,
    embed_chains,
    embed_pieces,
    gather_samples,
    link_chains,
    plan_windows,
    render,
    render_speaker,
    split_chains,
)

SR = 16000
STRIDE = 320  # samples per frame (20 ms)
FPS = SR // STRIDE  # frames per second
TONES = (350.0, 650.0, 1150.0, 1750.0, 2450.0)


def turns_to_truth(turns: list[tuple[int, float, float]], seconds: float, num_speakers: int) -> np.ndarray:
    """(speaker, start s, end s) turns -> shape (frames, speakers) bool."""
    truth = np.zeros((round(seconds * FPS), num_speakers), dtype=bool)
    for k, start, end in turns:
        truth[round(start * FPS) : round(end * FPS), k] = True
    return truth


def conversation(pair: tuple[int, int], start: float, end: float, turn: float = 2.0) -> list:
    """Two speakers taking turns of ``turn`` seconds, each turn overlapping the next by 0.5 s."""
    out = []
    t, i = start, 0
    while t < end:
        out.append((pair[i % 2], t, min(t + turn + 0.5, end)))
        t += turn
        i += 1
    return out


def tones(truth: np.ndarray) -> np.ndarray:
    """A waveform where speaker k is a tone at TONES[k] wherever truth says it talks."""
    n = len(truth) * STRIDE
    t = np.arange(n) / SR
    wave = np.zeros(n)
    for k in range(truth.shape[1]):
        wave += 0.3 * np.repeat(truth[:, k], STRIDE) * np.sin(2 * np.pi * TONES[k] * t)
    return wave.astype(np.float32)


def tone_embedding(speech: np.ndarray) -> np.ndarray:
    """Energy around each tone frequency: a perfect 'speaker embedding' for tone speakers."""
    spectrum = np.abs(np.fft.rfft(speech))
    freqs = np.fft.rfftfreq(len(speech), 1 / SR)
    return np.array([spectrum[np.abs(freqs - f) < 40].sum() for f in TONES]) + 1e-3


def window_outputs(
    truth: np.ndarray,
    window: int,
    hop: int,
    local: int = 2,
    seed: int = 0,
    merge: dict[int, int] | None = None,
) -> list[tuple[int, np.ndarray]]:
    """What a frame model with ``local`` outputs would say: each window's speakers in a random order.

    ``merge`` {a: b}: in a window with too many speakers, speaker a's activity goes to b's output.
    """
    rng = np.random.default_rng(seed)
    plan = plan_windows(len(truth) * STRIDE, window * STRIDE, hop * STRIDE, STRIDE)
    out = []
    for start in plan.starts // STRIDE:
        part = truth[start : start + plan.length // STRIDE].copy()
        if part.any(axis=0).sum() > local:
            for a, b in (merge or {}).items():
                part[:, b] |= part[:, a]
                part[:, a] = False
        present = np.flatnonzero(part.any(axis=0))
        if len(present) > local:
            raise ValueError(f"test scenario has {len(present)} speakers in the window at frame {start}")
        probs = rng.uniform(0.0, 0.1, size=(len(part), local)).astype(np.float32)
        slots = rng.permutation(local)[: len(present)]
        for slot, k in zip(slots, present, strict=True):
            probs[:, slot] = np.where(part[:, k], rng.uniform(0.8, 1.0, len(part)), probs[:, slot])
        out.append((int(start), probs))
    return out


def stitch(truth, window=500, hop=250, local=2, seed=0, merge=None):
    stitcher = WindowStitcher(len(truth))
    for start, probs in window_outputs(truth, window, hop, local, seed, merge):
        stitcher.add(start, probs)
    return stitcher.finish()


def diarize(truth, window=500, hop=250, seed=0, num_speakers=None, threshold=0.3, merge=None, split=False):
    result = stitch(truth, window, hop, seed=seed, merge=merge)
    pieces = embed_pieces(result, tones(truth), tone_embedding, STRIDE, SR // 2) if split else None
    if split:
        result = split_chains(result, pieces, threshold, adapt=0.9)
    emb, reliable = embed_chains(
        result, tones(truth), tone_embedding, STRIDE, SR // 2, 30 * SR, pieces=pieces
    )
    labels = link_chains(emb, result.cannot_link, threshold, num_speakers, reliable=reliable)
    return result, labels, render(result, labels) > 0.5


def frame_errors(truth: np.ndarray, hyp: np.ndarray) -> int:
    """Frames x speakers that differ under the best speaker mapping (extra speakers count fully)."""
    k = max(truth.shape[1], hyp.shape[1])
    t = np.pad(truth, ((0, 0), (0, k - truth.shape[1])))
    h = np.pad(hyp, ((0, 0), (0, k - hyp.shape[1])))
    agree = (t[:, :, None] == h[:, None, :]).sum(axis=0)
    rows, cols = linear_sum_assignment(agree, maximize=True)
    return int(t.size - agree[rows, cols].sum())


@settings(deadline=None)
@given(
    num_samples=st.integers(0, 2_000_000),
    window=st.integers(1, 400),
    hop_fraction=st.floats(0.05, 1.0),
    stride=st.sampled_from([80, 160, 320]),
)
def test_plan_windows_cover_the_recording(num_samples, window, hop_fraction, stride):
    window *= stride
    hop = max(stride, int(window * hop_fraction))
    plan = plan_windows(num_samples, window, hop, stride)
    if num_samples == 0:
        assert len(plan) == 0
        return
    starts = plan.starts
    assert starts[0] == 0 and np.all(starts % stride == 0) and np.all(np.diff(starts) > 0)
    assert np.all(np.diff(starts) <= (hop // stride) * stride)
    assert starts[-1] + plan.length <= num_samples  # never padded
    assert starts[-1] + plan.length > num_samples - stride  # the end is covered
    assert plan.length == min(num_samples, (window // stride) * stride)


def test_plan_windows_rejects_bad_hop():
    with pytest.raises(ValueError, match="hop"):
        plan_windows(100_000, 3200, 6400, 320)


def test_permutation_flips_recovered_through_overlaps():
    truth = turns_to_truth(conversation((0, 1), 0.0, 60.0), 60.0, 2)
    result = stitch(truth, seed=3)
    assert result.num_chains == 2  # every overlap has both speakers: never a break
    labels = np.arange(2)
    hyp = render(result, labels) > 0.5
    assert frame_errors(truth, hyp) == 0


def test_four_speakers_from_two_local_outputs():
    turns = (
        conversation((0, 1), 0, 40)
        + conversation((2, 3), 50, 90)
        + conversation((0, 3), 100, 140)
        + conversation((1, 2), 150, 190)
    )
    truth = turns_to_truth(turns, 190.0, 4)
    result, _labels, hyp = diarize(truth, seed=1)
    assert result.num_chains >= 8  # each gap breaks the chains
    assert hyp.shape[1] == 4
    assert frame_errors(truth, hyp) == 0


def test_overlap_is_kept():
    truth = turns_to_truth([(0, 0, 12), (1, 8, 20), (0, 18, 30), (1, 29, 40)], 40.0, 2)
    _, _, hyp = diarize(truth, seed=2)
    overlapped = truth.sum(axis=1) == 2
    assert overlapped.sum() > 100
    assert np.all(hyp[overlapped].sum(axis=1) == 2)
    assert frame_errors(truth, hyp) == 0


def test_speaker_back_after_a_silent_overlap_is_linked_by_embedding():
    # speaker 0 is silent through whole windows in the middle; speaker 1 talks alone there
    turns = [*conversation((0, 1), 0, 20), (1, 20, 45), *conversation((1, 0), 45, 70)]
    truth = turns_to_truth(turns, 70.0, 2)
    result, _labels, hyp = diarize(truth, seed=4)
    assert result.num_chains > 2
    assert hyp.shape[1] == 2
    assert frame_errors(truth, hyp) == 0


def test_known_speaker_count_and_three_speakers():
    turns = conversation((0, 1), 0, 30) + conversation((1, 2), 40, 70) + conversation((2, 0), 80, 110)
    truth = turns_to_truth(turns, 110.0, 3)
    _, _, hyp = diarize(truth, seed=5)
    assert hyp.shape[1] == 3 and frame_errors(truth, hyp) == 0
    # a huge threshold would merge everything, but cannot-links keep co-talking speakers apart
    _, _, hyp = diarize(truth, seed=5, threshold=10.0)
    assert hyp.shape[1] >= 2
    _, _, hyp = diarize(truth, seed=5, num_speakers=3, threshold=0.0)
    assert hyp.shape[1] == 3 and frame_errors(truth, hyp) == 0


def test_render_speaker_is_a_column_of_render():
    truth = turns_to_truth(conversation((0, 1), 0, 20) + conversation((2, 1), 30, 50), 50.0, 3)
    result, labels, _ = diarize(truth, seed=6)
    full = render(result, labels)
    for k in range(full.shape[1]):
        np.testing.assert_array_equal(render_speaker(result, labels, k), full[:, k])


def test_silent_windows_and_outputs_keep_no_pieces():
    truth = turns_to_truth([(0, 0, 3), (0, 30, 33)], 40.0, 2)
    result = stitch(truth)
    assert {p.local for p in result.pieces} <= {0, 1}
    # only windows with speech hold pieces, one piece each (one speaker talks)
    assert len(result.pieces) == len({p.window for p in result.pieces})
    assert all(p.probs.max() > 0.5 for p in result.pieces)


def test_link_chains_respects_cannot_link_and_bounds():
    emb = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.01, 1.0]])
    none = np.zeros((4, 4), dtype=bool)
    assert link_chains(emb, none, 0.2).tolist() == [0, 0, 1, 1]
    cannot = none.copy()
    cannot[0, 1] = cannot[1, 0] = True
    assert link_chains(emb, cannot, 0.2).tolist() == [0, 1, 2, 2]
    assert link_chains(emb, none, 0.2, num_speakers=1).tolist() == [0, 0, 0, 0]
    assert link_chains(emb, none, 0.2, max_speakers=1).tolist() == [0, 0, 0, 0]
    assert len(set(link_chains(emb, none, 0.2, min_speakers=3).tolist())) == 3
    assert link_chains(emb, cannot, 0.2, num_speakers=1).tolist() == [0, 1, 1, 1]
    assert link_chains(np.zeros((0, 2)), np.zeros((0, 0), bool), 0.2).tolist() == []


def test_unreliable_chain_joins_nearest_compatible_cluster():
    emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.8, 0.2]])
    cannot = np.zeros((4, 4), dtype=bool)
    reliable = np.array([True, True, False, False])
    assert link_chains(emb, cannot, 0.2, reliable=reliable).tolist() == [0, 1, 0, 0]
    cannot[3, 0] = cannot[0, 3] = True
    # a short chain that talks with speaker 0 and sounds like nobody else is a speaker of its own ...
    assert link_chains(emb, cannot, 0.2, reliable=reliable).tolist() == [0, 1, 0, 2]
    # ... unless the count is already at its bound
    assert link_chains(emb, cannot, 0.2, max_speakers=2, reliable=reliable).tolist() == [0, 1, 0, 1]
    assert link_chains(emb, cannot, 0.2, num_speakers=2, reliable=reliable).tolist() == [0, 1, 0, 1]
    close = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    assert link_chains(close, cannot, 0.2, reliable=reliable).tolist() == [0, 1, 0, 1]


def test_gather_samples_spreads_and_caps():
    wave = np.arange(100 * STRIDE, dtype=np.float32)
    runs = [(i, i + 1) for i in range(0, 100, 2)]  # 50 one-frame runs
    out = gather_samples(wave, runs, STRIDE, 10 * STRIDE)
    assert len(out) == 10 * STRIDE
    assert out[0] == 0 and out[-1] > 50 * STRIDE  # from all over the chain, not just its start
    assert len(gather_samples(wave, [], STRIDE, 100)) == 0


def test_window_order_and_bounds_are_checked():
    stitcher = WindowStitcher(100)
    with pytest.raises(ValueError, match="outside"):
        stitcher.add(90, np.zeros((20, 2)))
    stitcher.add(50, np.zeros((20, 2)))
    with pytest.raises(ValueError, match="order"):
        stitcher.add(10, np.zeros((20, 2)))


def test_threshold_adapts_to_the_distances_of_known_different_speakers():
    # four speakers whose embeddings all lie close together (cosine distance 0.33 between speakers)
    rng = np.random.default_rng(0)
    speakers = [np.eye(5)[0] + 0.7 * np.eye(5)[k] for k in range(1, 5)]
    chains = [0, 1, 2, 3, 0, 1, 2, 3]
    emb = np.stack([speakers[k] + rng.normal(0, 0.01, 5) for k in chains])
    cannot = np.zeros((8, 8), dtype=bool)
    for a, b in [(0, 1), (2, 3), (4, 5), (6, 7)]:
        cannot[a, b] = cannot[b, a] = True
    assert len(set(link_chains(emb, cannot, 0.4).tolist())) < 4  # the fixed threshold merges speakers
    assert link_chains(emb, cannot, 0.4, adapt=0.9).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    # distances of known different speakers above the threshold leave it as it is
    assert link_chains(emb, cannot, 0.2, adapt=0.9).tolist() == [0, 1, 2, 3, 0, 1, 2, 3]
    assert len(set(link_chains(emb, cannot, 0.4, adapt=1.5).tolist())) < 4


def test_chain_handed_from_one_speaker_to_another_is_cut():
    # a window at the change from (0, 1) to (2, 1) holds three speakers: the model's output that
    # carried speaker 0 carries speaker 2 after the change, so overlap linking joins 0 and 2
    turns = conversation((0, 1), 0, 30) + conversation((2, 1), 30, 60)
    truth = turns_to_truth(turns, 60.0, 3)
    merged = stitch(truth, hop=400, merge={2: 0})
    assert len(merged.chains) < 3  # the wrong link happened
    _, _, wrong = diarize(truth, hop=400, merge={2: 0})
    _, _, fixed = diarize(truth, hop=400, merge={2: 0}, split=True)
    assert wrong.shape[1] == 2 and fixed.shape[1] == 3
    mixed_window = 500  # frames of the window that saw three speakers
    assert frame_errors(truth, fixed) <= mixed_window < frame_errors(truth, wrong)
    # correct chains are left whole
    clean = stitch(truth[:1500, :2], hop=400)
    pieces = embed_pieces(clean, tones(truth[:1500, :2]), tone_embedding, STRIDE, SR // 2)
    assert split_chains(clean, pieces, 0.3).chains == clean.chains
