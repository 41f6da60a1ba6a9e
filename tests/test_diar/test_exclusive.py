"""Exclusive turns (postprocess.exclusive): at most one speaker at each instant, the most likely one."""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from diar.postprocess import (
    exclusive_annotation,
    exclusive_labels,
    exclusive_turns,
    labels_to_annotation,
)
from diar.types import Annotation, Turn


def overlapping_pairs(annotation: Annotation) -> list[tuple[Turn, Turn]]:
    """Pairs of turns of different speakers that share some time (touching ends do not)."""
    return [
        (a, b)
        for a, b in itertools.combinations(annotation, 2)
        if a.speaker != b.speaker and min(a.end, b.end) > max(a.start, b.start)
    ]


def within(turn: Turn, annotation: Annotation) -> bool:
    return any(t.speaker == turn.speaker and t.start <= turn.start and turn.end <= t.end for t in annotation)


def speech(annotation: Annotation, step: float = 0.01) -> set[int]:
    return {k for t in annotation for k in range(round(t.start / step), round(t.end / step))}


labels_and_scores = st.integers(1, 4).flatmap(
    lambda k: st.tuples(
        arrays(np.int8, st.tuples(st.integers(0, 300), st.just(k)), elements=st.integers(0, 1)),
        st.integers(0, 2**31 - 1),
    )
)


def test_exclusive_labels_keep_the_highest_scoring_active_speaker():
    labels = np.array([[1, 1, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1], [1, 1, 1]])
    scores = np.array(
        [[0.2, 0.9, 1.0], [0.0, 0.4, 0.6], [0.9, 0.9, 0.9], [0.7, 0.0, 0.7], [0.1, np.nan, 0.3]]
    )
    got = exclusive_labels(labels, scores)
    # the inactive speaker 3 of frame 1 does not win however high its score; ties: lower column
    assert got.tolist() == [[0, 1, 0], [0, 0, 1], [0, 0, 0], [1, 0, 0], [0, 0, 1]]


def test_exclusive_labels_with_all_scores_nan_keep_one_active_speaker():
    got = exclusive_labels(np.array([[0, 1, 1]]), np.full((1, 3), np.nan))
    assert got.tolist() == [[0, 1, 0]]


@settings(max_examples=200, deadline=None)
@given(labels_and_scores)
def test_exclusive_labels_properties(case):
    labels, seed = case
    scores = np.random.default_rng(seed).random(labels.shape)
    got = exclusive_labels(labels, scores)
    assert (got.sum(axis=1) <= 1).all()
    assert (got.sum(axis=1) == (labels.sum(axis=1) > 0)).all()  # speech stays speech
    assert not (got & (labels == 0)).any()  # only active speakers
    for t in np.flatnonzero(got.any(axis=1)):
        assert scores[t, got[t].argmax()] == scores[t][labels[t] == 1].max()


@settings(max_examples=150, deadline=None)
@given(labels_and_scores, st.integers(1, 40), st.integers(0, 15))
def test_exclusive_annotation_never_has_two_speakers_at_once(case, smooth_size, dur_threshold):
    """Also for even median sizes, which let two disjoint columns through on their own."""
    labels, seed = case
    scores = np.random.default_rng(seed).random(labels.shape)
    speakers = [f"s{k}" for k in range(labels.shape[1])]
    got = exclusive_annotation("r", labels, scores, speakers, smooth_size, dur_threshold)
    assert overlapping_pairs(got) == []
    overlap_aware = labels_to_annotation("r", labels, speakers, smooth_size, dur_threshold)
    assert all(within(turn, overlap_aware) for turn in got)


def test_exclusive_annotation_gives_an_overlap_to_the_more_likely_speaker():
    labels = np.zeros((300, 2), dtype=np.int8)
    labels[0:200, 0] = 1
    labels[150:300, 1] = 1  # both talk at 1.5-2.0 s
    scores = np.zeros((300, 2))
    scores[:, 0] = np.linspace(1.0, 0.0, 300)
    scores[:, 1] = 0.4  # speaker 2 is the more likely from 1.8 s on
    got = exclusive_annotation("r", labels, scores, ["a", "b"], smooth_size=1, dur_threshold=0)
    assert [(t.speaker, t.start, t.end) for t in got] == [("a", 0.0, 1.8), ("b", 1.8, 3.0)]
    both = labels_to_annotation("r", labels, ["a", "b"], smooth_size=1, dur_threshold=0)
    assert overlapping_pairs(both) and speech(got) == speech(both)


def test_exclusive_turns_give_an_interjection_to_the_long_turn():
    a = Annotation(
        "r",
        (
            Turn("r", 0.0, 10.0, "main"),
            Turn("r", 4.0, 4.5, "mhm"),  # inside main's turn
            Turn("r", 9.0, 12.0, "next"),  # takes over at 10 s
            Turn("r", 14.0, 15.0, "mhm"),
        ),
    )
    got = exclusive_turns(a)
    assert [(t.speaker, t.start, t.end) for t in got] == [
        ("main", 0.0, 10.0),
        ("next", 10.0, 12.0),
        ("mhm", 14.0, 15.0),
    ]


turn_lists = st.lists(
    st.tuples(st.integers(0, 200), st.integers(1, 60), st.sampled_from(["a", "b", "c"])), max_size=25
)


@settings(max_examples=200, deadline=None)
@given(turn_lists)
def test_exclusive_turns_keep_the_speech_and_drop_the_overlap(items):
    turns = [Turn("r", s / 10, (s + d) / 10, spk) for s, d, spk in items]
    source = Annotation.from_turns("r", turns, merge=True)
    got = exclusive_turns(source)
    assert overlapping_pairs(got) == []
    assert speech(got) == speech(source)
    assert all(within(turn, source) for turn in got)
    assert exclusive_turns(got) == got  # already exclusive: unchanged


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**31 - 1),
    st.integers(1, 12),
    st.integers(2, 4),
    st.sampled_from([1, 11, 12, 51]),
    st.booleans(),
)
def test_frame_mode_exclusive_turns_from_random_window_outputs(
    seed: int, num_windows: int, local: int, smooth_size: int, chosen: bool
) -> None:
    """Frame mode (render_labels): whatever the windows' activities and the pieces' speakers,
    the exclusive turns never hold two speakers at once, lie within the overlap-aware turns of
    the same (named alike) speaker, and with postprocess.exclusive are the annotation."""
    from diar.config import load_config
    from diar.pipelines.frame import FrameDiarizer
    from diar.stitching import WindowCollector

    rng = np.random.default_rng(seed)
    config = load_config(None, [f"postprocess.smooth_size={smooth_size}", f"postprocess.exclusive={chosen}"])
    diarizer = FrameDiarizer(config, load=())
    stride, frames = 320, 100  # 20 ms frames, 2 s windows every 1 s
    collector = WindowCollector((num_windows + 1) * 50, 0.5, stride, stride // 2)
    for w in range(num_windows):
        smooth = np.repeat(rng.random((frames // 10, local)), 10, axis=0)  # runs of 0.2 s
        collector.add(w * 50, smooth)
    outputs = collector.finish()
    labels = rng.integers(-1, 4, len(outputs.pieces))
    num_samples = outputs.num_frames * stride
    annotation, names, exclusive = diarizer.render_labels("r", outputs, labels, num_samples)
    assert overlapping_pairs(exclusive) == []
    if chosen:
        assert annotation == exclusive
    else:
        assert all(within(turn, annotation) for turn in exclusive)
        assert set(exclusive.speakers) <= set(annotation.speakers)
    assert set(annotation.speakers) | set(exclusive.speakers) <= set(names.values())
