"""diar.postprocess: ModelScope smoothing and short-turn removal, label resampling, time arithmetic."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from diar.postprocess import (
    label_runs,
    labels_to_annotation,
    labels_to_turns,
    resample_labels,
    smooth_labels,
)
from diar.types import Annotation, Turn, frames_to_seconds, seconds_to_frames

binary_labels = arrays(
    np.int8,
    st.tuples(st.integers(0, 400), st.integers(1, 3)),
    elements=st.integers(0, 1),
)


def naive_median(labels: np.ndarray, size: int) -> np.ndarray:
    """Zero-padded sliding median of 0/1 columns, written out by counting (odd or even sizes)."""
    frames = labels.shape[0]
    out = np.zeros_like(labels)
    before = size // 2  # scipy centres the window at size // 2
    for t in range(frames):
        lo, hi = t - before, t - before + size
        window = labels[max(lo, 0) : min(hi, frames)]
        ones = window.sum(axis=0)
        # sorted window of `size` values (padding zeros included); element at rank size // 2
        out[t] = (size - ones) <= size // 2
    return out


def modelscope_turns(labels: np.ndarray, speakers: list[str], dur_threshold: float) -> set[tuple]:
    """FunASR diar_infer's calc_spk_turns + duration filter, re-written as a plain frame loop."""
    turns = set()
    for k, speaker in enumerate(speakers):
        start = None
        for i in range(labels.shape[0] + 1):
            on = i < labels.shape[0] and labels[i, k] == 1
            if on and start is None:
                start = i
            elif not on and start is not None:
                if i - start > dur_threshold:
                    turns.add((speaker, start, i))
                start = None
    return turns


@settings(max_examples=60, deadline=None)
@given(binary_labels, st.sampled_from([1, 2, 3, 5, 11, 83]))
def test_smoothing_is_a_zero_padded_median(labels: np.ndarray, size: int) -> None:
    got = smooth_labels(labels, size)
    assert got.shape == labels.shape and got.dtype == np.int8
    np.testing.assert_array_equal(got, naive_median(labels, size) if size > 1 else labels)


@settings(max_examples=60, deadline=None)
@given(binary_labels, st.sampled_from([1, 11, 83]), st.sampled_from([0, 3, 10]))
def test_turns_match_modelscope_post_processing(labels: np.ndarray, size: int, threshold: int) -> None:
    speakers = [f"spk{k + 1}" for k in range(labels.shape[1])]
    annotation = labels_to_annotation("r", labels, speakers, smooth_size=size, dur_threshold=threshold)
    expected = modelscope_turns(naive_median(labels, size) if size > 1 else labels, speakers, threshold)
    got = {(t.speaker, seconds_to_frames(t.start), seconds_to_frames(t.end)) for t in annotation}
    assert got == expected


def test_dur_threshold_drops_turns_of_that_many_frames_or_fewer() -> None:
    labels = np.zeros((100, 1), np.int8)
    labels[0:10] = 1  # 10 frames: dropped (100 ms)
    labels[20:31] = 1  # 11 frames: kept
    turns = labels_to_turns("r", labels, ["a"], dur_threshold=10)
    assert turns == [Turn("r", 0.2, 0.31, "a")]


def test_default_smoothing_removes_blips_and_fills_short_gaps() -> None:
    labels = np.zeros((1000, 2), np.int8)
    labels[100:600, 0] = 1
    labels[300:330, 0] = 0  # 300 ms gap inside a 5 s turn
    labels[800:830, 1] = 1  # 300 ms blip
    annotation = labels_to_annotation("r", labels, ["a", "b"])
    assert [(t.speaker, t.start, t.end) for t in annotation] == [("a", 1.0, 6.0)]


def test_offset_and_shift_place_turns_in_time() -> None:
    labels = np.zeros((50, 1), np.int8)
    labels[10:40] = 1
    annotation = labels_to_annotation("r", labels, ["a"], smooth_size=1, shift=0.02, offset=30.0)
    assert [(t.start, t.end) for t in annotation] == [(30.2, 30.8)]


def test_shape_errors() -> None:
    with pytest.raises(ValueError, match="frames, speakers"):
        smooth_labels(np.zeros(10), 3)
    with pytest.raises(ValueError, match="2 speakers"):
        labels_to_turns("r", np.zeros((10, 3)), ["a", "b"])


def test_label_runs() -> None:
    np.testing.assert_array_equal(label_runs(np.array([1, 1, 0, 1, 0, 0, 1])), [[0, 2], [3, 4], [6, 7]])
    assert label_runs(np.zeros(0)).shape == (0, 2)


@settings(max_examples=80, deadline=None)
@given(binary_labels, st.sampled_from([0.02, 0.04, 0.03, 0.025]))
def test_upsampled_labels_give_the_same_turns(labels: np.ndarray, src_shift: float) -> None:
    """20 ms (WavLM) labels moved to the 10 ms grid describe exactly the same turns."""
    speakers = [str(k) for k in range(labels.shape[1])]
    fine = resample_labels(labels, src_shift, 0.01)
    expected = math.floor(len(labels) * Fraction(str(src_shift)) / Fraction(1, 100) + Fraction(1, 2))
    assert fine.shape == (expected, labels.shape[1])
    assert fine.dtype == labels.dtype
    if src_shift in (0.02, 0.04):  # integer ratio: every coarse boundary is on the fine grid
        assert Annotation.from_labels("r", fine, speakers, 0.01) == Annotation.from_labels(
            "r", labels, speakers, src_shift
        )
    else:  # boundaries move to the nearest fine frame: by at most half a fine frame
        coarse = Annotation.from_labels("r", labels, speakers, src_shift)
        moved = Annotation.from_labels("r", fine, speakers, 0.01)
        assert len(coarse) == len(moved)
        for a, b in zip(coarse, moved, strict=True):
            assert a.speaker == b.speaker
            assert abs(a.start - b.start) <= 0.005 + 1e-9 and abs(a.end - b.end) <= 0.005 + 1e-9


def test_downsampling_takes_the_frame_at_each_centre() -> None:
    labels = np.array([[0], [1], [1], [1], [0], [0]], np.int8)
    np.testing.assert_array_equal(resample_labels(labels, 0.01, 0.02)[:, 0], [1, 1, 0])
    np.testing.assert_array_equal(resample_labels(labels[:, 0], 0.02, 0.01), np.repeat(labels[:, 0], 2))
    assert resample_labels(np.zeros((0, 2)), 0.02).shape == (0, 2)
    with pytest.raises(ValueError, match="positive"):
        resample_labels(labels, 0.0)


@settings(deadline=None)
@given(st.integers(0, 10**8))
def test_frame_index_survives_conversion_to_seconds(frames: int) -> None:
    assert seconds_to_frames(frames_to_seconds(frames)) == frames
    assert seconds_to_frames(frames_to_seconds(frames, 0.02), 0.02) == frames


@settings(deadline=None)
@given(st.floats(0, 1e5, allow_nan=False))
def test_seconds_snap_to_the_nearest_frame_boundary(seconds: float) -> None:
    assert abs(frames_to_seconds(seconds_to_frames(seconds)) - seconds) <= 0.005 + 1e-6


turn_lists = st.lists(
    st.tuples(st.integers(0, 2000), st.integers(1, 300), st.sampled_from(["a", "b", "c"])),
    max_size=30,
)


@settings(deadline=None)
@given(turn_lists)
def test_merging_keeps_each_speakers_speech_and_removes_overlaps(items: list[tuple[int, int, str]]) -> None:
    turns = [Turn("r", s / 100, (s + d) / 100, spk) for s, d, spk in items]
    merged = Annotation.from_turns("r", turns, merge=True)
    for speaker in "abc":
        mine = sorted(t for t in merged if t.speaker == speaker)
        for first, second in itertools.pairwise(mine):
            assert first.end < second.start  # neither overlapping nor touching
        grid_in = np.zeros(2400, bool)
        for s, d, spk in items:
            if spk == speaker:
                grid_in[s : s + d] = True
        grid_out = np.zeros(2400, bool)
        for t in mine:
            grid_out[seconds_to_frames(t.start) : seconds_to_frames(t.end)] = True
        np.testing.assert_array_equal(grid_in, grid_out)
