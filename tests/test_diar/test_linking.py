"""Speaker linking across recordings (diar.linking): constraints, determinism, small speakers,
threshold, enrolled names, and the k-nearest-neighbour graph against a dense reference."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from diar.config import JobConfig
from diar.linking import (
    LinkError,
    LinkSettings,
    SpeakerLink,
    Trace,
    agglomerate,
    knn_graph,
    link_annotations,
    link_traces,
    relabel,
    top_k,
)
from diar.types import Annotation, Turn

DIM = 16


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def at_distance(base: np.ndarray, distance: float, seed: int) -> np.ndarray:
    """A unit vector at exactly ``distance`` (cosine) from unit vector ``base``."""
    rng = np.random.default_rng(seed)
    other = rng.normal(size=base.shape)
    other -= (other @ base) * base
    other /= np.linalg.norm(other)
    cos = 1.0 - distance
    return (cos * base + np.sqrt(1.0 - cos**2) * other).astype(np.float32)


def corpus(num_people: int, recordings: int, seed: int, noise: float = 0.15) -> list[Trace]:
    """Traces of ``num_people`` voices, 2-4 people per recording, each a noisy copy of its voice;
    the speaker label holds nothing about the person (``spk1..`` in random order)."""
    rng = np.random.default_rng(seed)
    voices = rng.normal(size=(num_people, DIM))
    traces = []
    for r in range(recordings):
        people = rng.choice(num_people, size=int(rng.integers(2, 5)), replace=False)
        for k, p in enumerate(people):
            vec = unit(voices[p] / np.linalg.norm(voices[p]) + noise * rng.normal(size=DIM) / np.sqrt(DIM))
            traces.append(Trace(f"rec{r:02d}", f"spk{k + 1}", vec, 10.0 + float(rng.integers(0, 30))))
    return traces


def person_of(traces: list[Trace], seed: int, num_people: int) -> dict[tuple[str, str], int]:
    """Which voice each trace of :func:`corpus` was made from (replaying its draws)."""
    rng = np.random.default_rng(seed)
    rng.normal(size=(num_people, DIM))
    out = {}
    recordings = sorted({t.reco_id for t in traces})
    for r in range(len(recordings)):
        people = rng.choice(num_people, size=int(rng.integers(2, 5)), replace=False)
        for k, p in enumerate(people):
            rng.normal(size=DIM)
            rng.integers(0, 30)
            out[(f"rec{r:02d}", f"spk{k + 1}")] = int(p)
    return out


def test_settings_defaults_are_the_job_config_defaults() -> None:
    job = JobConfig()
    assert LinkSettings() == LinkSettings(job.link_threshold, job.link_min_seconds, job.link_neighbors)
    assert job.link_speakers is False


def test_recurring_voices_are_found_once_each() -> None:
    traces = corpus(num_people=6, recordings=12, seed=1)
    truth = person_of(traces, seed=1, num_people=6)
    labels = link_traces(traces)
    people_of_label: dict[str, set[int]] = {}
    for key, label in labels.items():
        people_of_label.setdefault(label, set()).add(truth[key])
    assert all(len(p) == 1 for p in people_of_label.values())  # pure
    assert len(people_of_label) == len(set(truth.values()))  # one global speaker per person
    # numbered by first appearance in (recording, speaker) order
    first = [labels[k] for k in sorted(labels)]
    assert first[0] == "S0001"
    assert sorted(set(first), key=first.index) == [f"S{i:04d}" for i in range(1, len(people_of_label) + 1)]


def test_two_speakers_of_one_recording_are_never_linked() -> None:
    voice = unit(np.ones(DIM))
    same = [Trace("a", "spk1", voice, 20.0), Trace("a", "spk2", voice, 20.0), Trace("b", "spk1", voice, 20.0)]
    labels = link_traces(same, LinkSettings(threshold=2.0))
    assert labels[("a", "spk1")] != labels[("a", "spk2")]
    assert labels[("b", "spk1")] in {labels[("a", "spk1")], labels[("a", "spk2")]}
    # clusters joined through a third recording still never hold two speakers of one recording
    traces = corpus(num_people=4, recordings=20, seed=5, noise=1.5)  # voices hard to tell apart
    labels = link_traces(traces, LinkSettings(threshold=1.0, min_seconds=0.0))
    for reco in {t.reco_id for t in traces}:
        mine = [labels[t.key] for t in traces if t.reco_id == reco]
        assert len(mine) == len(set(mine))


def test_result_does_not_depend_on_the_input_order() -> None:
    traces = corpus(num_people=8, recordings=30, seed=2, noise=0.6)
    settings = LinkSettings(threshold=0.5, min_seconds=15.0, neighbors=3)
    expected = link_traces(traces, settings)
    rng = np.random.default_rng(0)
    for _ in range(5):
        shuffled = [traces[i] for i in rng.permutation(len(traces))]
        assert link_traces(shuffled, settings) == expected


def test_threshold_is_the_average_linkage_cosine_distance() -> None:
    a = unit(np.eye(DIM)[0])
    for d in (0.2, 0.35, 0.5):
        traces = [Trace("r1", "x", a, 20.0), Trace("r2", "y", at_distance(a, d, seed=1), 20.0)]
        assert len(set(link_traces(traces, LinkSettings(threshold=d + 1e-6)).values())) == 1
        assert len(set(link_traces(traces, LinkSettings(threshold=d - 1e-6)).values())) == 2
    # average linkage: C joins {A, B} only if its mean distance to A and B is within the threshold
    b = at_distance(a, 0.1, seed=2)
    c = at_distance(a, 0.3, seed=3)
    mean_to_ab = 1.0 - float(c @ (a + b)) / 2
    traces = [Trace("r1", "a", a, 20.0), Trace("r2", "b", b, 20.0), Trace("r3", "c", c, 20.0)]
    assert len(set(link_traces(traces, LinkSettings(threshold=mean_to_ab + 1e-6)).values())) == 1
    assert len(set(link_traces(traces, LinkSettings(threshold=mean_to_ab - 1e-6)).values())) == 2


def dense_average_linkage(x: np.ndarray, groups: np.ndarray, threshold: float) -> np.ndarray:
    """The reference: constrained average linkage over all pairs, closest admissible pair first."""
    clusters = [[i] for i in range(len(x))]
    sim = x.astype(np.float64) @ x.T.astype(np.float64)
    while True:
        best = None
        for i, j in itertools.combinations(range(len(clusters)), 2):
            if set(groups[clusters[i]]) & set(groups[clusters[j]]):
                continue
            d = 1.0 - sim[np.ix_(clusters[i], clusters[j])].mean()
            if d <= threshold and (best is None or d < best[0]):
                best = (d, i, j)
        if best is None:
            break
        _, i, j = best
        clusters[i] = clusters[i] + clusters[j]
        del clusters[j]
    labels = np.empty(len(x), dtype=np.int64)
    for k, members in enumerate(sorted(clusters, key=min)):
        labels[members] = k
    return labels


@pytest.mark.parametrize("seed", range(4))
def test_agglomeration_equals_dense_average_linkage_with_enough_neighbours(seed: int) -> None:
    traces = sorted(corpus(num_people=5, recordings=10, seed=seed, noise=0.8), key=lambda t: t.key)
    x = np.stack([t.embedding for t in traces])
    reco = {r: i for i, r in enumerate(sorted({t.reco_id for t in traces}))}
    groups = np.array([reco[t.reco_id] for t in traces])
    names = np.full(len(traces), -1)
    for threshold in (0.3, 0.6):
        got = agglomerate(x, groups, names, threshold, neighbors=len(traces))
        np.testing.assert_array_equal(got, dense_average_linkage(x, groups, threshold))


@pytest.mark.parametrize("block_rows", [1, 7, 40])
@pytest.mark.parametrize("threshold", [0.5, 2.0])  # 2.0: every pair is a candidate
def test_knn_graph_keeps_the_k_nearest_of_other_recordings_within_the_threshold(
    block_rows: int, threshold: float
) -> None:
    rng = np.random.default_rng(3)
    x = np.stack([unit(v) for v in rng.normal(size=(40, 4))])
    groups = np.repeat(np.arange(14), [3, 3, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 2])
    rows, cols = knn_graph(x, groups, neighbors=3, threshold=threshold, block_bytes=4 * 40 * block_rows)
    sim = x @ x.T
    for i in range(40):
        ok = [j for j in range(40) if groups[j] != groups[i] and 1 - sim[i, j] <= threshold]
        expected = sorted(ok, key=lambda j: (-sim[i, j], j))[:3]
        assert cols[rows == i].tolist() == expected
    assert rows.tolist() == sorted(rows.tolist())


def test_top_k_dense_and_sparse_rows_agree() -> None:
    rng = np.random.default_rng(4)
    sim = rng.normal(size=(6, 50))
    sparse_rows, sparse_cols = top_k(sim, 3, floor=1.5)  # few candidates: all sorted
    dense_rows, dense_cols = top_k(sim, 3)  # every entry a candidate: cut by argpartition first
    for r in range(6):
        best = np.argsort(-sim[r])[:3]
        assert dense_cols[dense_rows == r].tolist() == best.tolist()
        assert sparse_cols[sparse_rows == r].tolist() == [c for c in best if sim[r, c] >= 1.5]


def test_small_speakers_attach_to_the_nearest_global_speaker_one_to_one() -> None:
    a, b, c = (unit(np.eye(DIM)[i] + 0.1) for i in range(3))
    traces = [
        Trace("r1", "spk1", a, 30.0),
        Trace("r1", "spk2", b, 30.0),
        Trace("r2", "spk1", c, 30.0),
        Trace("r2", "spk2", a, 30.0),
        # r3: two short speakers, both closest to a; one-to-one within r3: the other gets b
        Trace("r3", "spk1", at_distance(a, 0.05, seed=1), 2.0),
        Trace("r3", "spk2", unit(a + 0.8 * b), 2.0),
        # r4: a short speaker far from everything still attaches (to its nearest), founding nothing
        Trace("r4", "spk1", unit(-np.ones(DIM) + 3 * np.eye(DIM)[5]), 1.0),
        # r1's own third speaker is short and close to a, but a already holds r1's spk1
        Trace("r1", "spk3", at_distance(a, 0.01, seed=2), 1.0),
    ]
    labels = link_traces(traces, LinkSettings(threshold=0.3, min_seconds=5.0))
    assert labels[("r3", "spk1")] == labels[("r1", "spk1")]  # a
    assert labels[("r3", "spk2")] == labels[("r1", "spk2")]  # b: a is taken within r3
    assert labels[("r4", "spk1")] in set(
        labels[(r, s)] for r, s in [("r1", "spk1"), ("r1", "spk2"), ("r2", "spk1")]
    )
    assert labels[("r1", "spk3")] not in {labels[("r1", "spk1")], labels[("r1", "spk2")]}
    assert len(set(labels.values())) == 3  # a, b, c: no small speaker founded one
    # with min_seconds 0 the far one is a speaker of its own
    assert len(set(link_traces(traces, LinkSettings(threshold=0.3, min_seconds=0.0)).values())) > 3


def test_small_speaker_with_no_free_global_speaker_founds_one() -> None:
    a = unit(np.ones(DIM))
    traces = [Trace("r1", "spk1", a, 30.0), Trace("r1", "spk2", at_distance(a, 0.02, seed=1), 1.0)]
    labels = link_traces(traces)
    assert labels[("r1", "spk1")] != labels[("r1", "spk2")]
    # only small speakers: they are linked among themselves
    only_small = [Trace("r1", "x", a, 1.0), Trace("r2", "y", a, 1.0)]
    assert len(set(link_traces(only_small).values())) == 1


def test_enrolled_names_are_kept_and_never_merged() -> None:
    voice = unit(np.ones(DIM))
    other = unit(-np.ones(DIM) + 2 * np.eye(DIM)[0])
    traces = [
        Trace("r1", "alice", voice, 20.0, enrolled=True),
        Trace("r2", "alice", other, 1.0, enrolled=True),  # a name wins over the voice
        Trace("r2", "bob", voice, 20.0, enrolled=True),  # same voice as alice, another name
        Trace("r3", "spk1", at_distance(voice, 0.05, seed=1), 20.0),  # unnamed, near alice/bob
        Trace("r3", "spk2", unit(np.eye(DIM)[3]), 20.0),
        Trace("r4", "S0001", unit(np.eye(DIM)[3]), 20.0, enrolled=True),  # a name like a generated label
    ]
    labels = link_traces(traces, LinkSettings(threshold=0.4))
    assert labels[("r1", "alice")] == labels[("r2", "alice")] == "alice"
    assert labels[("r2", "bob")] == "bob"
    assert labels[("r3", "spk1")] in {
        "alice",
        "bob",
    }  # an unnamed speaker matched to a profile takes its name
    assert labels[("r3", "spk2")] == "S0001"  # joined the enrolled "S0001"
    # a generated label never takes an enrolled name
    traces.append(Trace("r5", "spk1", unit(np.eye(DIM)[7]), 20.0))
    assert link_traces(traces)[("r5", "spk1")] == "S0002"


def test_bad_traces_are_refused() -> None:
    with pytest.raises(LinkError, match="different dimensions"):
        link_traces([Trace("a", "x", unit(np.ones(3)), 9.0), Trace("b", "x", unit(np.ones(4)), 9.0)])
    with pytest.raises(LinkError, match="sorted and unique"):
        link_traces([Trace("a", "x", unit(np.ones(3)), 9.0), Trace("a", "x", unit(np.ones(3)), 9.0)])
    with pytest.raises(LinkError, match="not finite"):
        link_traces([Trace("a", "x", np.full(3, np.nan, np.float32), 9.0)])
    with pytest.raises(LinkError, match="threshold"):
        LinkSettings(threshold=-0.1)


def test_link_annotations_rows_and_relabel() -> None:
    voice = unit(np.ones(DIM))
    annotations = [
        Annotation(
            "r1", (Turn("r1", 0.0, 2.5, "spk1"), Turn("r1", 3.0, 4.0, "spk2"), Turn("r1", 5.0, 6.0, "spk1"))
        ),
        Annotation("r2", (Turn("r2", 0.0, 1.0, "spk1"),)),
        Annotation("r3", ()),
    ]
    traces = [
        Trace("r1", "spk1", voice, 3.5),
        Trace("r2", "spk1", voice, 1.0),
        Trace("r9", "spk1", voice, 1.0),  # not in the annotations: ignored
    ]
    rows = link_annotations(annotations, traces, LinkSettings(min_seconds=0.0))
    # r1 spk2 has no trace: a global speaker of its own
    assert rows == [
        SpeakerLink("r1", "spk1", "S0001", 3.5),
        SpeakerLink("r1", "spk2", "S0002", 1.0),
        SpeakerLink("r2", "spk1", "S0001", 1.0),
    ]
    linked = relabel(annotations, rows)
    assert [t.speaker for t in linked[0]] == ["S0001", "S0002", "S0001"]
    assert [t.speaker for t in linked[1]] == ["S0001"]
    assert linked[2].turns == ()
