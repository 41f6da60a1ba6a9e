"""From the local speakers of overlapping windows to recording speakers (diar.stitching), and the
frame model's grid to the 10 ms label grid: each step on small hand-made window outputs, then
the steps together on synthetic conversations (speakers are tones; the embedder reads the
spectrum) whose windows hear their speakers in a random order."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stitching_helpers import (
    SR,
    STRIDE,
    TONES,
    FixedClusters,
    collect,
    conversation,
    frame_errors,
    tone_embedding,
    tones,
    turns_to_truth,
    window_outputs,
)

from diar.cluster import build_clusterer
from diar.config import ClusteringConfig
from diar.postprocess import model_frames_to_labels
from diar.stitching import (
    WindowCollector,
    WindowOutputs,
    attach_by_activity,
    cluster_pieces,
    distinct_in_windows,
    distinct_voices,
    embed_regions,
    gather_samples,
    heard_together,
    piece_speech,
    plan_windows,
    reference_labels,
    relabel,
    render,
    select_by_count,
)

AGGLOMERATIVE = build_clusterer(ClusteringConfig(method="agglomerative", threshold=0.3))


# --------------------------------------------------------------------------- windows


@settings(deadline=None)
@given(
    num_samples=st.integers(0, 2_000_000),
    window=st.integers(1, 400),
    hop_fraction=st.floats(0.05, 1.0),
    stride=st.sampled_from([80, 160, 270, 320]),
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


def hand_made() -> WindowOutputs:
    """Three windows over 12 frames, three local outputs each.

    frame      0 1 2 3 4 5 6 7 8 9 10 11
    window 0   [0 ............ 7]                 a: 0-3, b: 2-5 (overlap at 2-3), c: silent
    window 1           [4 ............ 11]        a: silent, b: 4-6, c: 6-9
    window 2           [4 ............ 11]        nobody talks
    """
    w0 = np.full((8, 3), 0.1, dtype=np.float32)
    w0[0:4, 0] = 0.9
    w0[2:6, 1] = 0.8
    w0[:, 2] = 0.5  # at the threshold: not active
    w1 = np.full((8, 3), 0.2, dtype=np.float32)
    w1[0:3, 1] = 0.7
    w1[2:6, 2] = 0.6
    w2 = np.zeros((8, 3), dtype=np.float32)
    return collect(12, [(0, w0), (4, w1), (4, w2)])


def test_only_active_local_speakers_become_pieces():
    outputs = hand_made()
    assert [(p.window, p.local, p.start, p.end) for p in outputs.pieces] == [
        (0, 0, 0, 8),
        (0, 1, 0, 8),
        (1, 1, 4, 12),
        (1, 2, 4, 12),
    ]
    assert [(start, length) for start, length, _ in outputs.windows] == [(0, 8), (4, 8), (4, 8)]
    assert outputs.pieces_by_window() == [[0, 1], [2, 3]]  # the silent window has none
    # exclusive speech: the speaker talks and no other local speaker of its window does
    assert np.flatnonzero(outputs.pieces[0].exclusive).tolist() == [0, 1]
    assert np.flatnonzero(outputs.pieces[1].exclusive).tolist() == [4, 5]
    assert np.flatnonzero(outputs.pieces[2].exclusive).tolist() == [0, 1]
    assert np.flatnonzero(outputs.pieces[3].exclusive).tolist() == [3, 4, 5]
    assert outputs.pieces[3].probs[2] == pytest.approx(0.6)


def test_coverage_count_and_speaker_count():
    outputs = hand_made()
    assert outputs.coverage.tolist() == [1, 1, 1, 1, 3, 3, 3, 3, 2, 2, 2, 2]
    # talking local speakers summed over the windows that cover each frame
    assert outputs.count.tolist() == [1, 1, 2, 2, 2, 2, 2, 1, 1, 1, 0, 0]
    # the mean over the covering windows, rounded half up: 2/3 -> 1, 1/3 -> 0, 1/2 -> 1
    assert outputs.speaker_count().tolist() == [1, 1, 2, 2, 1, 1, 1, 0, 1, 1, 0, 0]
    assert outputs.speaker_count().dtype == np.int64 and outputs.num_frames == 12


def test_window_order_and_bounds_are_checked():
    collector = WindowCollector(100)
    with pytest.raises(ValueError, match="outside"):
        collector.add(90, np.zeros((20, 2)))
    with pytest.raises(ValueError, match="outside"):
        collector.add(-1, np.zeros((20, 2)))
    with pytest.raises(ValueError, match="shape"):
        collector.add(0, np.zeros(20))
    collector.add(50, np.zeros((20, 2)))
    with pytest.raises(ValueError, match="order"):
        collector.add(10, np.zeros((20, 2)))
    collector.add(80, np.ones((20, 2)))  # up to the last frame
    assert len(collector.finish().pieces) == 2


# --------------------------------------------------------------------------- embedding


def one_speaker_windows(num_frames: int, window: int, hop: int) -> WindowOutputs:
    """Windows laid as plan_windows lays them (frames as samples), one local speaker talking in each."""
    plan = plan_windows(num_frames, window, hop)
    return collect(num_frames, [(int(s), np.ones((plan.length, 1))) for s in plan.starts])


@settings(deadline=None, max_examples=300)
@given(num_frames=st.integers(1, 3000), window=st.integers(1, 600), hop_fraction=st.floats(0.01, 1.0))
def test_owned_stretches_tile_the_windows_span(num_frames, window, hop_fraction):
    hop = max(1, int(window * hop_fraction))
    outputs = one_speaker_windows(num_frames, window, hop)
    regions = embed_regions(outputs)
    assert regions.shape == (len(outputs.windows), 2)
    # no gap and no frame embedded twice, from the first window's start to the last one's end
    assert regions[0, 0] == 0 and regions[-1, 1] == num_frames
    assert np.all(regions[1:, 0] == regions[:-1, 1])
    assert np.all(regions[:, 1] > regions[:, 0])
    for (start, length, _), (lo, hi) in zip(outputs.windows, regions, strict=True):
        assert start <= lo < hi <= start + length


@settings(deadline=None, max_examples=200)
@given(
    num_frames=st.integers(1, 3000),
    window=st.integers(1, 600),
    hop_fraction=st.floats(0.01, 1.0),
    every=st.integers(2, 4),
)
def test_embedding_every_kth_window_tiles_the_span_with_those(num_frames, window, hop_fraction, every):
    hop = max(1, int(window * hop_fraction))
    outputs = one_speaker_windows(num_frames, window, hop)
    regions = embed_regions(outputs, every)
    embedded = [k for k in range(len(outputs.windows)) if regions[k, 1] > regions[k, 0]]
    # every k-th window, and the last one so that the end is covered
    expected = sorted({*range(0, len(outputs.windows), every), len(outputs.windows) - 1})
    assert embedded == expected
    owned = regions[embedded]
    assert owned[0, 0] == 0 and owned[-1, 1] == num_frames
    assert np.all(owned[1:, 0] >= owned[:-1, 1])  # no frame embedded twice
    if window >= every * hop:  # the embedded windows overlap or touch: no gaps either
        assert np.all(owned[1:, 0] == owned[:-1, 1])
    for k in embedded:
        start, length, _ = outputs.windows[k]
        assert start <= regions[k, 0] < regions[k, 1] <= start + length
    assert np.all(np.delete(regions, embedded, axis=0) == 0)


def test_regular_windows_own_their_central_hop():
    outputs = one_speaker_windows(1000, 300, 100)  # windows at 0, 100, ..., 700
    regions = embed_regions(outputs)
    assert regions.tolist() == [[0, 200]] + [[s + 100, s + 200] for s in range(100, 700, 100)] + [[800, 1000]]


def test_piece_speech_is_exclusive_speech_inside_the_region():
    outputs = hand_made()
    wave = np.arange(12 * STRIDE, dtype=np.float32)
    regions = np.array([[0, 12], [3, 12], [0, 12], [5, 8]])
    speech = piece_speech(outputs, regions, wave, STRIDE, 100 * STRIDE)
    # piece 0: exclusive frames 0-1; piece 1: 4-5; piece 2: 4-5; piece 3: its region keeps 7
    expected = [[0, 1], [4, 5], [4, 5], [7]]
    for got, frames in zip(speech, expected, strict=True):
        np.testing.assert_array_equal(
            got, np.concatenate([wave[f * STRIDE : (f + 1) * STRIDE] for f in frames])
        )
    capped = piece_speech(outputs, regions, wave, STRIDE, STRIDE + 10)
    assert [len(x) for x in capped] == [STRIDE] * 4  # whole frames, nearest the region first


def test_piece_speech_reaches_into_the_context_nearest_first():
    # one local speaker talking alone in frames 0-19 of a 20-frame window
    outputs = collect(20, [(0, np.ones((20, 1)))])
    wave = np.arange(20 * STRIDE, dtype=np.float32)
    region = np.array([[8, 12]])
    frames = lambda x: sorted({int(v) // STRIDE for v in x})  # noqa: E731
    assert frames(piece_speech(outputs, region, wave, STRIDE, 100 * STRIDE)[0]) == list(range(8, 12))
    # with context: the region's own speech, then the nearest frames on both sides, in time order
    wide = piece_speech(outputs, region, wave, STRIDE, 8 * STRIDE, context=5)[0]
    assert frames(wide) == list(range(6, 14))
    assert np.all(np.diff(wide) > 0)
    # never past the window, never more than the cap
    assert frames(piece_speech(outputs, region, wave, STRIDE, 100 * STRIDE, context=50)[0]) == list(range(20))


def test_gather_samples_spreads_and_caps():
    wave = np.arange(100 * STRIDE, dtype=np.float32)
    runs = [(i, i + 1) for i in range(0, 100, 2)]  # 50 one-frame runs
    out = gather_samples(wave, runs, STRIDE, 10 * STRIDE)
    assert len(out) == 10 * STRIDE
    assert out[0] == 0 and out[-1] > 50 * STRIDE  # from all over the speech, not just its start
    assert len(gather_samples(wave, [], STRIDE, 100)) == 0


# --------------------------------------------------------------------------- clustering

A, B, C = np.eye(3)


def test_local_speakers_of_one_window_get_distinct_speakers():
    # the third window's two local speakers both sound most like A; the one nearer to B is B
    emb = np.stack([A, B, A, B, A + 0.2 * B, A + 0.6 * B])
    windows = [[0, 1], [2, 3], [4, 5]]
    ones = np.ones(6, dtype=bool)
    clusterer = FixedClusters([0, 1, 0, 1, 0, 0])
    labels, centroids = cluster_pieces(emb, ones, np.full(6, 5.0), windows, clusterer)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert centroids.shape == (2, 3) and np.allclose(np.linalg.norm(centroids, axis=1), 1.0)
    # the same through a real clusterer, which puts both near-A pieces in A's cluster
    assert AGGLOMERATIVE(emb / np.linalg.norm(emb, axis=1, keepdims=True)).tolist()[4:] == [0, 0]
    labels, _ = cluster_pieces(emb, ones, np.full(6, 5.0), windows, AGGLOMERATIVE)
    assert labels[4] != labels[5] and labels[5] == labels[1] and labels[4] == labels[0]


def test_more_local_speakers_than_speakers_take_the_nearest():
    emb = np.stack([A, B, A + 0.1 * B])
    labels, _ = cluster_pieces(emb, np.ones(3, bool), np.full(3, 5.0), [[0, 1, 2]], FixedClusters([0, 1, 0]))
    assert labels.tolist() == [0, 1, 0]


def test_a_cluster_with_little_speech_folds_into_the_nearest_speaker():
    # speaker C's cluster has 1.5 s of speech in all: not a speaker of its own at 2 s
    emb = np.stack([A, B, A, B, C + 0.5 * B, C + 0.5 * B])
    seconds = np.array([5.0, 5.0, 5.0, 5.0, 0.5, 1.0])
    windows = [[0, 1], [2, 3], [4], [5]]
    ok = np.ones(6, dtype=bool)
    clusterer = FixedClusters([0, 1, 0, 1, 2, 2])
    labels, centroids = cluster_pieces(emb, ok, seconds, windows, clusterer, min_speaker_seconds=2.0)
    assert labels.tolist() == [0, 1, 0, 1, 1, 1] and len(centroids) == 2
    # ... unless min_speakers needs it
    labels, centroids = cluster_pieces(
        emb, ok, seconds, windows, clusterer, min_speakers=3, min_speaker_seconds=2.0
    )
    assert labels.tolist() == [0, 1, 0, 1, 2, 2] and len(centroids) == 3
    # ... or it has enough speech
    labels, _ = cluster_pieces(emb, ok, seconds, windows, clusterer, min_speaker_seconds=1.5)
    assert labels.tolist() == [0, 1, 0, 1, 2, 2]
    # a known count keeps every cluster, and the clusterer is told the count and the bounds
    labels, _ = cluster_pieces(emb, ok, seconds, windows, clusterer, 3, 1, 4, min_speaker_seconds=2.0)
    assert labels.tolist() == [0, 1, 0, 1, 2, 2]
    assert clusterer.calls[-1] == (3, 1, 4)


def test_known_count_and_bounds_are_honoured():
    rng = np.random.default_rng(0)
    centres = np.eye(4)
    emb = np.stack([centres[k] + rng.normal(0, 0.02, 4) for k in range(4) for _ in range(3)])
    windows = [[i] for i in range(12)]
    ok, seconds = np.ones(12, bool), np.full(12, 3.0)
    labels, _ = cluster_pieces(emb, ok, seconds, windows, AGGLOMERATIVE)
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for count in (2, 3):
        labels, centroids = cluster_pieces(emb, ok, seconds, windows, AGGLOMERATIVE, num_speakers=count)
        assert len(set(labels.tolist())) == count == len(centroids)
    labels, _ = cluster_pieces(emb, ok, seconds, windows, AGGLOMERATIVE, max_speakers=2)
    assert len(set(labels.tolist())) == 2
    labels, _ = cluster_pieces(emb, ok, seconds, windows, AGGLOMERATIVE, min_speakers=5)
    assert len(set(labels.tolist())) == 5


def test_distinct_voices_counts_the_local_speakers_of_one_window_that_sound_apart():
    near_a = A + 0.1 * B  # a speaker split in two local speakers: the halves sound alike
    emb = np.stack([A, B, near_a, C, A, A + 0.05 * C])
    windows = [[0, 1, 2], [3], [4, 5]]
    ok = np.ones(6, dtype=bool)
    assert distinct_voices(emb, ok, windows, 0.5) == 2
    assert distinct_voices(emb, ok, windows, 0.0) == 3  # at distance 0 every local speaker counts
    assert distinct_voices(np.stack([A, B, C]), np.ones(3, bool), [[0, 1, 2]], 0.5) == 3
    ok[1] = False  # unreliable pieces do not count
    assert distinct_voices(emb, ok, windows, 0.5) == 1
    assert distinct_voices(emb, np.zeros(6, bool), windows, 0.5) == 0


def test_heard_together_is_the_most_speakers_the_count_holds_long_enough():
    # window 0 [0, 50): x 0-50, y 10-30 (two at once on 20 frames); window 1 [50, 100): u 50-90
    w0 = np.stack([activity(50, (0, 50)), activity(50, (10, 30))], axis=1)
    w1 = activity(50, (0, 40))[:, None]
    outputs = collect(100, [(0, w0), (50, w1)])  # 90 frames of speech, 20 of them overlapped
    assert heard_together(outputs, 0.05, 10) == 2
    assert heard_together(outputs, 0.05, 21) == 1  # too short
    assert heard_together(outputs, 0.25, 10) == 1  # too small a part of the speech (20 < 22.5)
    # three at once on 10 frames, two or more on 20
    w3 = np.stack([activity(50, (0, 50)), activity(50, (10, 30)), activity(50, (20, 30))], axis=1)
    three = collect(100, [(0, w3), (50, w1)])
    assert heard_together(three, 0.05, 10) == 3
    assert heard_together(three, 0.05, 15) == 2
    assert heard_together(collect(100, [(0, np.zeros((50, 2))), (50, np.zeros((50, 2)))]), 0.05, 1) == 0


def test_two_voices_one_window_hears_at_once_stay_two_speakers():
    # a clustering that merges every voice leaves one speaker where a window hears two
    merge_all = build_clusterer(ClusteringConfig(method="agglomerative", threshold=1.5))
    emb = np.stack([A, B, A, B])
    windows = [[0, 1], [2, 3]]
    ok, seconds = np.ones(4, dtype=bool), np.full(4, 5.0)
    labels, _ = cluster_pieces(emb, ok, seconds, windows, merge_all)
    assert labels.tolist() == [0, 0, 0, 0]
    labels, centroids = cluster_pieces(emb, ok, seconds, windows, merge_all, distinct_distance=0.5)
    assert labels.tolist() == [0, 1, 0, 1] and len(centroids) == 2
    # a known count or max_speakers wins over the bound
    labels, _ = cluster_pieces(emb, ok, seconds, windows, merge_all, num_speakers=1, distinct_distance=0.5)
    assert labels.tolist() == [0, 0, 0, 0]
    labels, _ = cluster_pieces(emb, ok, seconds, windows, merge_all, max_speakers=1, distinct_distance=0.5)
    assert labels.tolist() == [0, 0, 0, 0]
    # two local speakers that sound alike (one speaker split in two) do not make two speakers
    split = np.stack([A, A + 0.1 * B, A, A + 0.1 * B])
    labels, _ = cluster_pieces(split, ok, seconds, windows, merge_all, distinct_distance=0.5)
    assert labels.tolist() == [0, 0, 0, 0]
    # two the frame model hears at once (heard) make two speakers however alike they sound,
    # up to max_speakers
    labels, _ = cluster_pieces(split, ok, seconds, windows, merge_all, distinct_distance=0.5, heard=2)
    assert labels.tolist() == [0, 1, 0, 1]
    labels, _ = cluster_pieces(split, ok, seconds, windows, merge_all, max_speakers=1, heard=2)
    assert labels.tolist() == [0, 0, 0, 0]


def test_unreliable_pieces_stay_unlabelled():
    emb = np.stack([A, B, A, np.full(3, np.nan)])  # rows of unreliable pieces are not read
    reliable = np.array([True, True, True, False])
    labels, centroids = cluster_pieces(
        emb, reliable, np.full(4, 5.0), [[0, 1], [2, 3]], FixedClusters([0, 1, 0])
    )
    assert labels.tolist() == [0, 1, 0, -1] and np.isfinite(centroids).all()
    labels, centroids = cluster_pieces(emb, np.zeros(4, bool), np.zeros(4), [[0, 1], [2, 3]], AGGLOMERATIVE)
    assert labels.tolist() == [-1, -1, -1, -1] and centroids.shape == (0, 3)


# --------------------------------------------------------------------------- attaching


def activity(length: int, *spans: tuple[int, int]) -> np.ndarray:
    """Shape (length,) probabilities: 1 inside the [start, end) spans, else 0."""
    out = np.zeros(length, dtype=np.float32)
    for start, end in spans:
        out[start:end] = 1.0
    return out


def test_a_short_piece_takes_the_speaker_whose_activity_it_shares():
    #          frames 0-9                     10-19                 20-29
    # window 0 [0, 10): x (speaker 0) 0-6, y (speaker 1) 3-10
    # window 1 [5, 15): p (pending) 5-10, q (speaker 1) 5-15
    # window 2 [20, 30): r (pending) 20-25, overlaps nobody
    w0 = np.stack([activity(10, (0, 7)), activity(10, (3, 10))], axis=1)
    w1 = np.stack([activity(10, (0, 5)), activity(10, (0, 10))], axis=1)
    w2 = np.stack([activity(10, (0, 5)), activity(10)], axis=1)
    outputs = collect(30, [(0, w0), (5, w1), (20, w2)])
    assert [(p.window, p.local) for p in outputs.pieces] == [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    labels = attach_by_activity(outputs, np.array([0, 1, -1, 1, -1]))
    # p shares more with speaker 1 (frames 5-10 in both windows) than with speaker 0 (5-7), but
    # speaker 1 is q's, another local speaker of p's window
    assert labels.tolist() == [0, 1, 0, 1, -1]
    # without q in its window, p takes speaker 1
    assert attach_by_activity(outputs, np.array([0, 1, -1, 0, -1])).tolist() == [0, 1, 1, 0, -1]
    # nobody labelled: nothing to attach to
    assert attach_by_activity(outputs, np.full(5, -1)).tolist() == [-1] * 5


def test_local_speakers_labelled_after_clustering_take_a_speaker_their_window_lacks():
    # window (frames)   clustered piece (speaker)   piece labelled later (its label)
    # 0 [0, 20)         x 0-20 (0)                  p 5-10 (0: its window's x has it)
    # 1 [20, 40)        y 20-40 (1)                 q 35-40 (none)
    # 2 [40, 60)        z 40-60 (2)                 r 50-60 (2: z has it)
    # 3 [60, 100)       u 60-100 (0)                v 90-95 (none)
    # 4 [80, 100)       s 85-100 (1)
    w0 = np.stack([activity(20, (0, 20)), activity(20, (5, 10))], axis=1)
    w1 = np.stack([activity(20, (0, 20)), activity(20, (15, 20))], axis=1)
    w2 = np.stack([activity(20, (0, 20)), activity(20, (10, 20))], axis=1)
    w3 = np.stack([activity(40, (0, 40)), activity(40, (30, 35))], axis=1)
    w4 = activity(20, (5, 20))[:, None]
    outputs = collect(100, [(0, w0), (20, w1), (40, w2), (60, w3), (80, w4)])
    labels = np.array([0, 0, 1, -1, 2, 2, 0, -1, 1])
    fixed = np.array([True, False, True, False, True, False, True, False, True])
    got = distinct_in_windows(outputs, labels, fixed, near=15)
    # p and r: nobody they could be talks with them, so the one who talks most within 15
    # frames (p: 1 at 20-25; r: 0 at 60-75 over 1 at 35-40); q: 2 (40-55; 0 is 15 frames
    # away); v: 1, who talks with it (s, in the next window)
    assert got.tolist() == [0, 1, 1, 2, 2, 0, 0, 1, 1]
    for members in outputs.pieces_by_window():
        assert len({int(got[i]) for i in members}) == len(members)
    # nobody within `near`: the speaker who talks most (q: 0, 65 frames, over 2's 30)
    assert distinct_in_windows(outputs, labels, fixed, near=0)[3] == 0
    # a label free in its window stays; one speaker: nothing to give
    free = np.array([0, 2, 1, 0, 2, 1, 0, 2, 1])
    assert distinct_in_windows(outputs, free, fixed, 15).tolist() == free.tolist()
    assert distinct_in_windows(outputs, np.zeros(9, np.int64), fixed, 15).tolist() == [0] * 9


def test_reference_labels_give_each_local_speaker_the_reference_speaker_it_overlaps_most():
    # reference: A talks 0-30, B 20-50; C 60-70 is heard by no window's local speaker
    ref = np.zeros((80, 3), dtype=bool)
    ref[0:30, 0] = ref[20:50, 1] = ref[60:70, 2] = True
    # window 0 [0, 40): x 0-30 (A), y 20-40 (B), z 0-10 (A again: the model split A in two)
    # window 1 [30, 70): u 30-50 (B), v 52-58 (nobody talks there)
    w0 = np.stack([activity(40, (0, 30)), activity(40, (20, 40)), activity(40, (0, 10))], axis=1)
    w1 = np.stack([activity(40, (0, 20)), activity(40, (22, 28))], axis=1)
    outputs = collect(80, [(0, w0), (30, w1)])
    assert [(p.window, p.local) for p in outputs.pieces] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    # x and y take distinct speakers; z shares A with x (it overlaps nobody else), v none
    assert reference_labels(outputs, ref).tolist() == [0, 1, 0, 1, -1]
    # a reference without speakers labels nothing; a reference on another grid is refused
    assert reference_labels(outputs, np.zeros((80, 0), dtype=bool)).tolist() == [-1] * 5
    with pytest.raises(ValueError, match="79 frames"):
        reference_labels(outputs, ref[:79])


# --------------------------------------------------------------------------- rendering


def test_render_and_select_by_count():
    # window 0 [0, 10): a 0-6 (speaker 0), b 4-10 (speaker 1): overlap at 4-6
    # window 1 [6, 16): c 6-9 and d 8-12, both speaker 1 (the count forced it); c stays at
    #   0.3 (below the threshold) at 13-16, where nobody talks
    a, b = activity(10, (0, 6)), activity(10, (4, 10))
    c, d = activity(10, (0, 3)) * 0.8, activity(10, (2, 6)) * 0.9
    c[7:] = 0.3
    outputs = collect(16, [(0, np.stack([a, b], axis=1)), (6, np.stack([c, d], axis=1))])
    scores = render(outputs, np.array([0, 1, 1, 1]))
    assert scores.shape == (16, 2) and scores.dtype == np.float32
    # within a window a speaker is the largest of its local speakers (not their sum); windows
    # are averaged where they overlap
    coverage = np.maximum(outputs.coverage, 1.0)
    np.testing.assert_allclose(scores[:, 0], np.pad(a, (0, 6)) / coverage)
    np.testing.assert_allclose(
        scores[:, 1], (np.pad(b, (0, 6)) + np.pad(np.maximum(c, d), (6, 0))) / coverage
    )
    count = outputs.speaker_count()
    active = select_by_count(scores, count)
    assert active[4:6].all()  # overlap kept where the model hears two
    assert active[0:4, 0].all() and not active[0:4, 1].any()
    assert active[6:12, 1].all() and not active[6:12, 0].any()
    assert count[8] == 2  # ... but speaker 0 scores nothing there
    assert not active[12:].any()  # silence where the model hears nobody
    assert count[13:].tolist() == [0, 0, 0] and scores[13:, 1].min() > 0


def test_select_by_count_keeps_the_best_scored_and_never_a_zero_score():
    scores = np.array([[0.9, 0.2, 0.5], [0.1, 0.2, 0.3], [0.4, 0.0, 0.0], [0.5, 0.5, 0.5]], dtype=np.float32)
    count = np.array([1, 2, 3, 0])
    assert select_by_count(scores, count).tolist() == [
        [True, False, False],
        [False, True, True],
        [True, False, False],
        [False, False, False],
    ]
    assert select_by_count(np.zeros((5, 0)), np.ones(5, int)).shape == (5, 0)


def test_relabel_numbers_by_first_appearance():
    assert relabel(np.array([-1, 3, 1, 3, -1, 0])).tolist() == [-1, 0, 1, 0, -1, 2]


# --------------------------------------------------------------------------- 10 ms labels


def test_model_frames_to_labels_by_receptive_field_centres():
    # segmentation-3.0: frame i is centred at sample 270 i + 495; 10 ms label j at 160 j + 80
    active = np.arange(4)[:, None]  # shape: (4 model frames, 1)
    labels = model_frames_to_labels(active, 270, 495, 2000)
    # label centres 80 .. 1840; the nearest model centres (495, 765, 1035, 1305):
    #  80, 240, 400, 560 -> 0 | 720, 880 -> 1 | 1040 -> 2 | 1200, 1360, 1520, 1680, 1840 -> 3
    assert labels[:, 0].tolist() == [0, 0, 0, 0, 1, 1, 2, 3, 3, 3, 3, 3]
    assert labels.shape == (2000 // 160, 1) and labels.dtype == active.dtype
    # a label centre halfway between two model centres takes the later one
    assert model_frames_to_labels(np.arange(5)[:, None], 8, 0, 40, 8)[:, 0].tolist() == [1, 2, 3, 4, 4]


def test_model_frames_to_labels_length_and_empty_inputs():
    active = np.ones((589, 3), dtype=bool)
    assert model_frames_to_labels(active, 270, 495, 160_000).shape == (1000, 3)
    assert model_frames_to_labels(active, 270, 495, 160_159).shape == (1000, 3)
    assert model_frames_to_labels(np.zeros((0, 3), bool), 270, 495, 16_000).shape == (100, 3)
    assert not model_frames_to_labels(np.zeros((0, 3), bool), 270, 495, 16_000).any()
    assert model_frames_to_labels(active, 270, 495, 159).shape == (0, 3)


@settings(deadline=None)
@given(
    stride=st.integers(1, 400),
    offset=st.integers(0, 1000),
    label_stride=st.integers(1, 400),
    num_frames=st.integers(1, 60),
    num_samples=st.integers(0, 20_000),
)
def test_each_label_takes_the_model_frame_with_the_nearest_centre(
    stride, offset, label_stride, num_frames, num_samples
):
    labels = model_frames_to_labels(np.arange(num_frames)[:, None], stride, offset, num_samples, label_stride)
    assert labels.shape == (num_samples // label_stride, 1)
    centres = np.arange(num_frames) * stride + offset
    for j, i in enumerate(labels[:, 0]):
        distance = np.abs(centres - (j + 0.5) * label_stride)
        assert distance[i] == distance.min()


# --------------------------------------------------------------------------- together


def stitch(truth: np.ndarray, window=500, hop=250, local=2, seed=0, num_speakers=None) -> np.ndarray:
    """The steps FrameDiarizer runs, on simulated window outputs: (frames, speakers) bool."""
    outputs = collect(len(truth), window_outputs(truth, window, hop, local, seed))
    regions = embed_regions(outputs)
    speech = piece_speech(outputs, regions, tones(truth), STRIDE, 30 * SR, context=50)
    seconds = np.array([len(x) / SR for x in speech])
    reliable = seconds >= 1.0
    emb = np.zeros((len(speech), len(TONES)))
    emb[reliable] = [tone_embedding(x) for x, ok in zip(speech, reliable, strict=True) if ok]
    clusterer = build_clusterer(ClusteringConfig())
    labels, _ = cluster_pieces(
        emb, reliable, seconds, outputs.pieces_by_window(), clusterer, num_speakers, min_speaker_seconds=2.0
    )
    labels = attach_by_activity(outputs, labels)
    return select_by_count(render(outputs, relabel(labels)), outputs.speaker_count())


def test_permutation_flips_are_recovered():
    truth = turns_to_truth(conversation((0, 1), 0.0, 60.0), 60.0, 2)
    hyp = stitch(truth, seed=3)
    assert hyp.shape[1] == 2 and frame_errors(truth, hyp) == 0


def test_four_speakers_from_two_local_outputs_with_overlap():
    turns = (
        conversation((0, 1), 0, 40)
        + conversation((2, 3), 50, 90)
        + conversation((0, 3), 100, 140)
        + conversation((1, 2), 150, 190)
    )
    truth = turns_to_truth(turns, 190.0, 4)
    hyp = stitch(truth, seed=1)
    assert hyp.shape[1] == 4
    assert frame_errors(truth, hyp) == 0  # overlap included


def test_three_local_outputs_and_a_known_count():
    turns = conversation((0, 1, 2), 0, 40, turn=3.0) + conversation((2, 3), 50, 80, turn=3.0)
    truth = turns_to_truth(turns, 80.0, 4)
    hyp = stitch(truth, local=3, seed=2)
    assert hyp.shape[1] == 4 and frame_errors(truth, hyp) == 0
    assert stitch(truth, local=3, seed=2, num_speakers=3).shape[1] == 3
