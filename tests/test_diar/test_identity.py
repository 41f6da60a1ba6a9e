"""Who is who (diar.identity): from the frame model's local speakers to the recording's speakers.
Each step on small hand-made window outputs and embeddings (speakers are unit vectors), then
the whole step on synthetic conversations (speakers are tones; the embedder reads the spectrum)
whose windows hear their speakers in a random order, with and without enrolled profiles."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stitching_helpers import (
    SR,
    STRIDE,
    TONES,
    FixedClusters,
    activity,
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
from diar.identity import IdentityParams, identify
from diar.identity.assign import (
    assign_embedded,
    attach_by_activity,
    fill_windows,
    reference_labels,
    relabel,
)
from diar.identity.clustering import cluster_speakers
from diar.identity.counting import distinct_voices, heard_together, unit
from diar.identity.profiles import match_profiles, unknown_names
from diar.identity.splitting import relabel_parts, split_at_pauses, split_parts
from diar.stitching import embed_regions, piece_speech, render, select_by_count

AGGLOMERATIVE = build_clusterer(ClusteringConfig(method="agglomerative", threshold=0.3))
A, B, C = np.eye(3)


def speakers_of(emb, reliable, seconds, windows, clusterer, *args, **kwargs):
    """Clustering, then every window's reliable pieces take distinct speakers: (labels, centroids)."""
    x = unit(emb)
    centroids = cluster_speakers(x, seconds, reliable, windows, clusterer, *args, **kwargs)
    return assign_embedded(x, reliable, windows, centroids)[0], centroids


# --------------------------------------------------------------------------- clustering


def test_local_speakers_of_one_window_get_distinct_speakers():
    # the third window's two local speakers both sound most like A; the one nearer to B is B
    emb = np.stack([A, B, A, B, A + 0.2 * B, A + 0.6 * B])
    windows = [[0, 1], [2, 3], [4, 5]]
    ones = np.ones(6, dtype=bool)
    clusterer = FixedClusters([0, 1, 0, 1, 0, 0])
    labels, centroids = speakers_of(emb, ones, np.full(6, 5.0), windows, clusterer)
    assert labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert centroids.shape == (2, 3) and np.allclose(np.linalg.norm(centroids, axis=1), 1.0)
    # the same through a real clusterer, which puts both near-A pieces in A's cluster
    assert AGGLOMERATIVE(unit(emb)).tolist()[4:] == [0, 0]
    labels, _ = speakers_of(emb, ones, np.full(6, 5.0), windows, AGGLOMERATIVE)
    assert labels[4] != labels[5] and labels[5] == labels[1] and labels[4] == labels[0]


def test_more_local_speakers_than_speakers_take_the_nearest():
    emb = np.stack([A, B, A + 0.1 * B])
    labels, _ = speakers_of(emb, np.ones(3, bool), np.full(3, 5.0), [[0, 1, 2]], FixedClusters([0, 1, 0]))
    assert labels.tolist() == [0, 1, 0]
    # ... and are not held to it: another speaker may be found for them later
    _, distinct = assign_embedded(unit(emb), np.ones(3, bool), [[0, 1, 2]], unit(np.stack([A, B])))
    assert distinct.tolist() == [True, True, False]


def test_a_cluster_with_little_speech_folds_into_the_nearest_speaker():
    # speaker C's cluster has 1.5 s of speech in all: not a speaker of its own at 2 s
    emb = np.stack([A, B, A, B, C + 0.5 * B, C + 0.5 * B])
    seconds = np.array([5.0, 5.0, 5.0, 5.0, 0.5, 1.0])
    windows = [[0, 1], [2, 3], [4], [5]]
    ok = np.ones(6, dtype=bool)
    clusterer = FixedClusters([0, 1, 0, 1, 2, 2])
    labels, centroids = speakers_of(emb, ok, seconds, windows, clusterer, min_speaker_seconds=2.0)
    assert labels.tolist() == [0, 1, 0, 1, 1, 1] and len(centroids) == 2
    # ... unless min_speakers needs it
    labels, centroids = speakers_of(
        emb, ok, seconds, windows, clusterer, min_speakers=3, min_speaker_seconds=2.0
    )
    assert labels.tolist() == [0, 1, 0, 1, 2, 2] and len(centroids) == 3
    # ... or it has enough speech
    labels, _ = speakers_of(emb, ok, seconds, windows, clusterer, min_speaker_seconds=1.5)
    assert labels.tolist() == [0, 1, 0, 1, 2, 2]
    # a known count keeps every cluster, and the clusterer is told the count and the bounds
    labels, _ = speakers_of(emb, ok, seconds, windows, clusterer, 3, 1, 4, min_speaker_seconds=2.0)
    assert labels.tolist() == [0, 1, 0, 1, 2, 2]
    assert clusterer.calls[-1] == (3, 1, 4)


def test_known_count_and_bounds_are_honoured():
    rng = np.random.default_rng(0)
    centres = np.eye(4)
    emb = np.stack([centres[k] + rng.normal(0, 0.02, 4) for k in range(4) for _ in range(3)])
    windows = [[i] for i in range(12)]
    ok, seconds = np.ones(12, bool), np.full(12, 3.0)
    labels, _ = speakers_of(emb, ok, seconds, windows, AGGLOMERATIVE)
    assert relabel(labels).tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    for count in (2, 3):
        labels, centroids = speakers_of(emb, ok, seconds, windows, AGGLOMERATIVE, num_speakers=count)
        assert len(set(labels.tolist())) == count == len(centroids)
    labels, _ = speakers_of(emb, ok, seconds, windows, AGGLOMERATIVE, max_speakers=2)
    assert len(set(labels.tolist())) == 2
    labels, _ = speakers_of(emb, ok, seconds, windows, AGGLOMERATIVE, min_speakers=5)
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


def test_two_voices_one_window_holds_stay_two_speakers():
    # a clustering that merges every voice leaves one speaker where a window holds two
    merge_all = build_clusterer(ClusteringConfig(method="agglomerative", threshold=1.5))
    emb = np.stack([A, B, A, B])
    windows = [[0, 1], [2, 3]]
    ok, seconds = np.ones(4, dtype=bool), np.full(4, 5.0)
    labels, _ = speakers_of(emb, ok, seconds, windows, merge_all)
    assert labels.tolist() == [0, 0, 0, 0]
    labels, centroids = speakers_of(emb, ok, seconds, windows, merge_all, distinct_distance=0.5)
    assert labels.tolist() == [0, 1, 0, 1] and len(centroids) == 2
    # a known count or max_speakers wins over the bound
    labels, _ = speakers_of(emb, ok, seconds, windows, merge_all, num_speakers=1, distinct_distance=0.5)
    assert labels.tolist() == [0, 0, 0, 0]
    labels, _ = speakers_of(emb, ok, seconds, windows, merge_all, max_speakers=1, distinct_distance=0.5)
    assert labels.tolist() == [0, 0, 0, 0]
    # two local speakers that sound alike (one speaker split in two) do not make two speakers
    split = np.stack([A, A + 0.1 * B, A, A + 0.1 * B])
    labels, _ = speakers_of(split, ok, seconds, windows, merge_all, distinct_distance=0.5)
    assert labels.tolist() == [0, 0, 0, 0]


def test_unreliable_pieces_stay_unlabelled():
    emb = np.stack([A, B, A, np.full(3, np.nan)])  # rows of unreliable pieces are not read
    reliable = np.array([True, True, True, False])
    labels, centroids = speakers_of(
        emb, reliable, np.full(4, 5.0), [[0, 1], [2, 3]], FixedClusters([0, 1, 0])
    )
    assert labels.tolist() == [0, 1, 0, -1] and np.isfinite(centroids).all()
    labels, centroids = speakers_of(emb, np.zeros(4, bool), np.zeros(4), [[0, 1], [2, 3]], AGGLOMERATIVE)
    assert labels.tolist() == [-1, -1, -1, -1] and centroids.shape == (0, 3)


# --------------------------------------------------------------------------- counting


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


# --------------------------------------------------------------------------- assigning


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
    got = fill_windows(outputs, labels, fixed, near=15)
    # p and r: nobody they could be talks with them, so the one who talks most within 15
    # frames (p: 1 at 20-25; r: 0 at 60-75 over 1 at 35-40); q: 2 (40-55; 0 is 15 frames
    # away); v: 1, who talks with it (s, in the next window)
    assert got.tolist() == [0, 1, 1, 2, 2, 0, 0, 1, 1]
    for members in outputs.pieces_by_window():
        assert len({int(got[i]) for i in members}) == len(members)
    # nobody within `near`: the speaker who talks most (q: 0, 65 frames, over 2's 30)
    assert fill_windows(outputs, labels, fixed, near=0)[3] == 0
    # a label free in its window stays; one speaker: nothing to give
    free = np.array([0, 2, 1, 0, 2, 1, 0, 2, 1])
    assert fill_windows(outputs, free, fixed, 15).tolist() == free.tolist()
    assert fill_windows(outputs, np.zeros(9, np.int64), fixed, 15).tolist() == [0] * 9


def test_a_speaker_heard_only_in_overlap_takes_a_speaker_of_its_own():
    # every window: x talks throughout (speaker 0, embedded); y talks with x (no speech alone)
    windows = [(0, np.stack([activity(20, (0, 20)), activity(20, (5, 15))], axis=1)) for _ in range(1)]
    windows += [(20, np.stack([activity(20, (0, 20)), activity(20, (2, 12))], axis=1))]
    outputs = collect(40, windows)
    labels = np.array([0, -1, 0, -1])
    fixed = np.array([True, False, True, False])
    # one speaker found: y has no speaker to take, and the overlap would be lost
    assert fill_windows(outputs, labels, fixed, near=10).tolist() == [0, -1, 0, -1]
    # the frame model hears two at once: y is a second speaker, the same in both windows
    assert fill_windows(outputs, labels, fixed, near=10, num_speakers=2).tolist() == [0, 1, 0, 1]


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


def test_relabel_numbers_by_first_appearance():
    assert relabel(np.array([-1, 3, 1, 3, -1, 0])).tolist() == [-1, 0, 1, 0, -1, 2]


# --------------------------------------------------------------------------- splitting


@settings(deadline=None, max_examples=60)
@given(
    spans=st.lists(st.tuples(st.integers(0, 59), st.integers(1, 20)), min_size=0, max_size=6),
    pause=st.integers(1, 12),
)
def test_parts_tile_their_local_speaker(spans, pause):
    probs = np.zeros((60, 2), dtype=np.float32)
    for start, length in spans:
        probs[start : start + length, 0] = 0.9
    probs[20:30, 1] = 0.9
    outputs = collect(60, [(0, probs)])
    split, parents = split_at_pauses(outputs, pause)
    assert len(split.pieces) == len(parents) and set(parents.tolist()) == set(range(len(outputs.pieces)))
    for i, piece in enumerate(outputs.pieces):
        parts = [split.pieces[c] for c in np.flatnonzero(parents == i)]
        total = np.sum([p.probs for p in parts], axis=0)
        assert np.array_equal(total, piece.probs)  # the parts' activity adds up to the piece's
        assert np.array_equal(np.sum([p.exclusive for p in parts], axis=0), piece.exclusive)
        talking = [np.flatnonzero(p.probs > 0.5) for p in parts]
        for a, b in itertools.pairwise(talking):  # parts are cut at pauses >= pause
            assert b[0] - a[-1] - 1 >= pause
        if len(parts) == 1:
            assert parts[0] is piece
    assert split.windows[0][2] == list(range(len(parents)))
    assert split_parts(parents).tolist() == [bool(np.sum(parents == p) > 1) for p in parents]


def test_a_part_that_sounds_like_another_speaker_takes_it():
    centroids = unit(np.stack([A, B]))
    labels = np.array([0, 1])  # piece 0 (speaker 0) was cut into parts 0-2, piece 1 is part 3
    parents = np.array([0, 0, 0, 1])
    x = unit(np.stack([A, B + 0.1 * A, C, A]))
    embedded = np.array([True, True, False, True])
    # part 1 sounds like B; part 2 has no embedding of its own; part 3 is a whole piece, but
    # an embedded part of one follows its voice too
    assert relabel_parts(labels, parents, x, embedded, centroids).tolist() == [0, 1, 0, 0]
    # speakers without a centroid (heard only in overlap) keep their parts, and no speaker
    # loses its last local speaker to a part that leaves it (speaker 1 keeps part 3)
    assert relabel_parts(np.array([2, 1]), parents, x, embedded, centroids).tolist() == [2, 2, 2, 1]


# --------------------------------------------------------------------------- profiles


def test_found_speakers_take_the_enrolled_profile_they_match():
    centroids = unit(np.stack([B + 0.1 * C, A, C]))
    profiles = np.stack([A, B, 2 * (A + B + C)])  # C's cluster is far from every profile but the 3rd
    rows, matched = match_profiles(centroids, profiles, threshold=0.7)
    assert matched == [1, 0, None, 2]  # the 3rd profile matched nobody well enough: kept apart
    assert np.allclose(rows[:3], centroids) and np.allclose(rows[3], unit(profiles[2]))
    # every profile matched: nothing appended; none given: every speaker unknown
    rows, matched = match_profiles(centroids[:2], profiles[:2], threshold=0.7)
    assert matched == [1, 0] and len(rows) == 2
    rows, matched = match_profiles(centroids, np.zeros((0, 3)), threshold=0.7)
    assert matched == [None, None, None] and len(rows) == 3


def test_unknown_names_never_look_like_an_enrolled_name():
    assert unknown_names(2, ["alice", "bob"]) == ["unknown1", "unknown2"]
    assert unknown_names(2, ["alice", "unknown2"]) == ["unknown_1", "unknown_2"]
    assert unknown_names(0, []) == []


# --------------------------------------------------------------------------- together


TONE_CLUSTERER = build_clusterer(ClusteringConfig())


def tone_recording(truth: np.ndarray, window=500, hop=250, local=2, seed=0):
    """Simulated window outputs of a tone conversation, and its pieces' tone embeddings."""
    outputs = collect(len(truth), window_outputs(truth, window, hop, local, seed))
    speech = piece_speech(outputs, embed_regions(outputs), tones(truth), STRIDE, 30 * SR, context=50)
    seconds = np.array([len(x) / SR for x in speech])
    emb = np.zeros((len(speech), len(TONES)))
    for i, x in enumerate(speech):
        if seconds[i] >= 1.0:
            emb[i] = tone_embedding(x)
    return outputs, emb, np.where(seconds >= 1.0, seconds, 0.0)


def stitch(truth, window=500, hop=250, local=2, seed=0, num_speakers=None, profiles=None, **params):
    """The identity step as FrameDiarizer runs it, on simulated window outputs: the rendered
    (frames, speakers) bool and the identity."""
    outputs, emb, seconds = tone_recording(truth, window, hop, local, seed)
    settings = IdentityParams(min_speaker_seconds=2.0, overlap_frames=10, near=50, **params)
    identity = identify(outputs, emb, seconds, TONE_CLUSTERER, settings, num_speakers, profiles)
    rendered = select_by_count(render(outputs, identity.labels), outputs.speaker_count())
    return rendered[:, rendered.any(axis=0)], identity


def test_permutation_flips_are_recovered():
    truth = turns_to_truth(conversation((0, 1), 0.0, 60.0), 60.0, 2)
    hyp, _ = stitch(truth, seed=3)
    assert hyp.shape[1] == 2 and frame_errors(truth, hyp) == 0


def test_four_speakers_from_two_local_outputs_with_overlap():
    turns = (
        conversation((0, 1), 0, 40)
        + conversation((2, 3), 50, 90)
        + conversation((0, 3), 100, 140)
        + conversation((1, 2), 150, 190)
    )
    truth = turns_to_truth(turns, 190.0, 4)
    hyp, _ = stitch(truth, seed=1)
    assert hyp.shape[1] == 4
    assert frame_errors(truth, hyp) == 0  # overlap included


def test_three_local_outputs_and_a_known_count():
    turns = conversation((0, 1, 2), 0, 40, turn=3.0) + conversation((2, 3), 50, 80, turn=3.0)
    truth = turns_to_truth(turns, 80.0, 4)
    hyp, _ = stitch(truth, local=3, seed=2)
    assert hyp.shape[1] == 4 and frame_errors(truth, hyp) == 0
    assert stitch(truth, local=3, seed=2, num_speakers=3)[0].shape[1] == 3


def test_enrolled_speakers_are_found_and_the_others_are_unknown():
    turns = conversation((0, 1, 2), 0, 60, turn=3.0)
    truth = turns_to_truth(turns, 60.0, 3)
    profile = np.stack([tone_embedding(np.sin(2 * np.pi * f * np.arange(SR) / SR)) for f in TONES])
    # every speaker enrolled (in another order, with an extra one who is not there)
    hyp, identity = stitch(truth, local=3, seed=4, profiles=profile[[2, 0, 3, 1]])
    assert frame_errors(truth, hyp) == 0
    speaking = sorted({identity.profiles[k] for k in set(identity.labels.tolist()) if k >= 0})
    assert speaking == [0, 1, 3]  # rows of tones 2, 0 and 1
    # speaker 2 left out: the others keep their names, speaker 2 is an unknown speaker
    hyp, identity = stitch(truth, local=3, seed=4, profiles=profile[[1, 0]])
    assert frame_errors(truth, hyp) == 0
    by_tone = {}
    for piece, label in zip(identity.outputs.pieces, identity.labels, strict=True):
        tone = int(np.argmax(truth[piece.start : piece.end][piece.probs > 0.5].sum(axis=0)))
        by_tone.setdefault(tone, set()).add(identity.profiles[label])
    assert by_tone == {0: {1}, 1: {0}, 2: {None}}
