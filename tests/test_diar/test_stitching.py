"""The frame model's windows and their local speakers (diar.stitching): planning, collecting,
the speech each local speaker is embedded from, rendering, and the frame model's grid to the
10 ms label grid, each step on small hand-made window outputs. The step from local speakers to
speakers is tested in test_identity.py."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stitching_helpers import (
    STRIDE,
    activity,
    collect,
)

from diar.identity.assign import relabel
from diar.postprocess import model_frames_to_labels
from diar.stitching import (
    WindowCollector,
    WindowOutputs,
    embed_regions,
    gather_samples,
    piece_speech,
    plan_windows,
    render,
    select_by_count,
)

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
