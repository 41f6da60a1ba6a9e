"""Speaker linking: the same person gets the same label in every recording of a corpus.

Diarization names speakers per recording (``spk1`` of one meeting and ``spk1`` of the
next are unrelated). Each recording's speakers leave a *trace*
(:class:`~diar.pipelines.base.SpeakerTrace`: a unit-norm mean embedding and the
speaker's speech seconds); linking clusters the traces of a whole corpus into *global
speakers*, with two constraints:

* **cannot-link**: two speakers of one recording are different people, so a global
  speaker holds at most one speaker of each recording;
* **names**: enrolled speakers (profile mode) are identified by their name: every trace
  of one name is one global speaker, which takes that name, and two names never merge.

How (:func:`link_traces`):

1. **Order.** Traces are sorted by (recording id, speaker label); everything below
   depends only on that order, never on how the corpus was sharded, so the result is
   byte-identical for any shard or actor count.
2. **Candidate pairs.** An exact k-nearest-neighbour graph over the traces with enough
   speech (``min_seconds``): cosine similarities by brute force, one block of rows at a
   time (``x[block] @ x.T``, float32, at most ~256 MB per block), pairs of one
   recording masked, and for every trace its ``neighbors`` most similar traces within
   ``threshold`` kept (ties by position). Memory is O(N·k), never N×N; time is
   O(N²·D) multiply-adds, which BLAS does at 100 000 traces in about a minute.
3. **Constrained average-linkage agglomeration on that graph.** Every trace starts as
   its own cluster (the traces of one enrolled name start as one). The closest pair of
   clusters joined by a graph edge is merged, then the next, while their distance is
   at most ``threshold``; a pair that would put two speakers of one recording (or two
   names) together is never merged. The distance is exact *average linkage*: the mean
   cosine distance over all pairs of traces of the two clusters, ``1 - μA·μB`` with
   ``μ`` the clusters' (unnormalised) mean embeddings, so it needs only each cluster's
   embedding sum. A merged cluster's candidates are its parts' candidates (average
   linkage is reducible: ``d(A∪B, X)`` lies between ``d(A, X)`` and ``d(B, X)``, so a
   cluster with no edge to A or B within the threshold cannot come within it of A∪B).
   Only the candidate pairs are approximate: clusters with no k-nearest-neighbour edge
   between any of their traces are not compared. Merges are taken from a heap ordered
   by (distance, cluster ids), so ties are broken the same way every time.
4. **Speakers with little speech** (below ``min_seconds``; their embeddings are noisy)
   found no global speaker of their own: once the others are clustered, the small
   speakers of each recording are assigned together to the most similar global
   speakers (highest mean cosine similarity to the cluster's traces) that hold no
   other speaker of that recording, by an optimal one-to-one assignment (Hungarian).
   Only when no such global speaker is left (or there are none at all) does a small
   speaker become a global speaker of its own. Small enrolled speakers keep their name.
5. **Labels.** Global speakers take their enrolled name, else ``S0001``, ``S0002``, ...
   numbered in order of their first trace (labels equal to an enrolled name are
   skipped).

The threshold is a cosine distance like ``clustering.threshold``, but between whole
speakers' mean embeddings, which are far less noisy than window embeddings: on the
simulated LibriSpeech conversations of the shared corpus (CAM++), traces of one reader
in two recordings are at most 0.15 apart and traces of two readers at least 0.57.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diar.errors import DiarError, quote
from diar.types import Annotation

logger = logging.getLogger(__name__)

#: Bytes one block of the similarity computation may take (rows x traces float32).
BLOCK_BYTES = 256 * 2**20
#: Float32 slack when picking candidate pairs; the merge itself uses float64 distances.
SLACK = 1e-4


class LinkError(DiarError):
    """Traces that cannot be linked together (different embedders or dimensions, bad values)."""


@dataclass(frozen=True)
class Trace:
    """One speaker of one recording, as linking sees it.

    Attributes:
        reco_id: the recording.
        speaker: the speaker's label in that recording.
        embedding: shape (dim,) float32, unit norm (the speaker's mean embedding).
        seconds: the speaker's speech in the recording.
        enrolled: the label is an enrolled speaker's name (profile mode), the same person
            in every recording where it appears.
    """

    reco_id: str
    speaker: str
    embedding: np.ndarray
    seconds: float
    enrolled: bool = False

    @property
    def key(self) -> tuple[str, str]:
        return (self.reco_id, self.speaker)


@dataclass(frozen=True)
class LinkSettings:
    """How traces are linked (``job.link_threshold``, ``job.link_min_seconds``, ``job.link_neighbors``)."""

    threshold: float = 0.4
    min_seconds: float = 4.0
    neighbors: int = 20

    def __post_init__(self) -> None:
        if not (np.isfinite(self.threshold) and 0.0 <= self.threshold <= 2.0):
            raise LinkError(
                f"link threshold must be a cosine distance in [0, 2], got {quote(self.threshold)}"
            )
        if not (np.isfinite(self.min_seconds) and self.min_seconds >= 0.0):
            raise LinkError(f"link min_seconds must be >= 0, got {quote(self.min_seconds)}")
        if self.neighbors < 1:
            raise LinkError(f"link neighbors must be >= 1, got {quote(self.neighbors)}")


@dataclass(frozen=True, order=True)
class SpeakerLink:
    """One row of ``speakers.tsv``: a recording's speaker, its global speaker, its speech."""

    reco_id: str
    speaker: str
    global_speaker: str
    seconds: float


# --------------------------------------------------------------------------- the clustering


def top_k(sim: np.ndarray, k: int, floor: float = -np.inf) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` largest entries of each row of ``sim`` that are at least ``floor``.

    Args:
        sim: shape (B, N) similarities (``-inf`` for excluded entries).

    Returns:
        (rows, cols): shape (E,) int64 each, sorted by row, then by decreasing value, then by
        column (ties are broken by column index whenever a row's candidates are all looked at;
        rows with far more than ``k`` candidates are first cut to ``k`` by ``np.argpartition``).
    """
    b, n = sim.shape
    if b == 0 or n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    mask = sim >= floor
    if int(np.count_nonzero(mask)) > 4 * b * k and k < n:  # dense rows: cut each to k first
        part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        rows = np.repeat(np.arange(b), k)
        cols = part.reshape(-1)
        keep = mask[rows, cols]
        rows, cols = rows[keep], cols[keep]
    else:
        rows, cols = np.nonzero(mask)
    vals = sim[rows, cols]
    order = np.lexsort((cols, -vals, rows))  # by row, best first, ties by column
    rows, cols = rows[order], cols[order]
    if len(rows) == 0:
        return rows.astype(np.int64), cols.astype(np.int64)
    row_start = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]])
    rank = np.arange(len(rows)) - np.repeat(row_start, np.diff(np.r_[row_start, len(rows)]))
    keep = rank < k
    return rows[keep].astype(np.int64), cols[keep].astype(np.int64)


def knn_graph(
    x: np.ndarray, groups: np.ndarray, neighbors: int, threshold: float, block_bytes: int = BLOCK_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``neighbors`` most similar rows of other groups within cosine distance ``threshold``.

    Args:
        x: shape (N, D) float32 unit rows.
        groups: shape (N,) int, non-decreasing (rows of one group are contiguous): a row's
            own group is never its neighbour.
        neighbors: k.
        threshold: largest cosine distance kept (with a small float32 slack).

    Returns:
        (rows, cols): shape (E,) int64 each, the edges ``rows[e] -> cols[e]``, sorted by
        row, then by decreasing similarity, then by column.
    """
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if np.any(np.diff(groups) < 0):
        raise ValueError("knn_graph needs the rows sorted by group")
    # shape: (G + 1,) where each group's rows start
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1], True])
    first = np.repeat(starts[:-1], np.diff(starts))  # shape: (N,) first row of each row's group
    last = np.repeat(starts[1:], np.diff(starts))  # shape: (N,) one past its last row
    floor = 1.0 - threshold - SLACK
    xt = np.ascontiguousarray(x.T)
    step = max(1, min(n, block_bytes // (4 * n)))
    out_rows: list[np.ndarray] = []
    out_cols: list[np.ndarray] = []
    for lo in range(0, n, step):
        hi = min(n, lo + step)
        sim = x[lo:hi] @ xt  # shape: (b, N) cosine similarities
        for r in range(lo, hi):
            sim[r - lo, first[r] : last[r]] = -np.inf  # cannot-link: the row's own recording
        rows, cols = top_k(sim, neighbors, floor)
        out_rows.append(rows + lo)
        out_cols.append(cols)
    if not out_rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(out_rows), np.concatenate(out_cols)


def agglomerate(
    x: np.ndarray,
    groups: np.ndarray,
    names: np.ndarray,
    threshold: float,
    neighbors: int,
) -> np.ndarray:
    """Constrained average-linkage clustering on the k-nearest-neighbour graph (module docstring, 2-3).

    Args:
        x: shape (N, D) unit rows (any float dtype).
        groups: shape (N,) int recording index, non-decreasing.
        names: shape (N,) int enrolled-name index, -1 for none.
        threshold: cosine distance (average linkage) up to which clusters merge.
        neighbors: neighbours per row in the candidate graph.

    Returns:
        shape (N,) int64 cluster labels 0..K-1, numbered by first row.
    """
    n = len(x)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    # initial clusters: one per trace, or one per enrolled name
    init = np.arange(n)
    first_of_name: dict[int, int] = {}
    for row in np.flatnonzero(names >= 0).tolist():
        init[row] = first_of_name.setdefault(int(names[row]), row)
    _, start_of, member_of = np.unique(init, return_index=True, return_inverse=True)
    num = len(start_of)
    # slot arrays hold the live clusters; cluster id -> slot; merged clusters take a new id
    sums = np.zeros((num, x.shape[1]), dtype=np.float64)
    np.add.at(sums, member_of, x.astype(np.float64))
    counts = np.bincount(member_of, minlength=num).astype(np.float64)
    recos: list[set[int]] = [set() for _ in range(num)]
    for member, group in zip(member_of.tolist(), groups.tolist(), strict=True):
        recos[member].add(group)
    cname = np.full(num, -1, dtype=np.int64)
    named = names >= 0
    cname[member_of[named]] = names[named]
    slot = list(range(num))  # cluster id -> row of sums
    alive = [True] * num
    parent = list(range(num))  # cluster id -> the cluster it was merged into (itself while alive)
    nbrs: list[set[int]] = [set() for _ in range(num)]

    def admissible(a: int, b: int) -> bool:
        if cname[slot[a]] >= 0 and cname[slot[b]] >= 0:
            return False  # two names (one name is one cluster from the start)
        small, large = (recos[a], recos[b]) if len(recos[a]) <= len(recos[b]) else (recos[b], recos[a])
        return not any(g in large for g in small)

    def distances(a: int, others: np.ndarray) -> np.ndarray:
        mean_a = sums[slot[a]] / counts[slot[a]]
        rows = np.asarray([slot[o] for o in others], dtype=np.int64)
        return 1.0 - (sums[rows] @ mean_a) / counts[rows]

    rows, cols = knn_graph(x32, groups, neighbors, threshold)
    a_ids, b_ids = member_of[rows], member_of[cols]
    pairs = np.unique(np.stack([np.minimum(a_ids, b_ids), np.maximum(a_ids, b_ids)], axis=1), axis=0)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    heap: list[tuple[float, int, int]] = []
    if len(pairs):
        means = sums / counts[:, None]
        dist = 1.0 - np.einsum("ij,ij->i", means[pairs[:, 0]], means[pairs[:, 1]])
        for (a, b), d in zip(pairs.tolist(), dist.tolist(), strict=True):
            if d <= threshold and admissible(a, b):
                heap.append((d, a, b))
                nbrs[a].add(b)
                nbrs[b].add(a)
    heapq.heapify(heap)
    while heap:
        _, a, b = heapq.heappop(heap)
        if not (alive[a] and alive[b]):
            continue
        c = len(alive)  # the merged cluster: a new id, the slot of the older part
        keep, drop = slot[a], slot[b]
        sums[keep] += sums[drop]
        counts[keep] += counts[drop]
        cname[keep] = max(cname[keep], cname[drop])
        slot.append(keep)
        alive[a] = alive[b] = False
        alive.append(True)
        parent[a] = parent[b] = c
        parent.append(c)
        recos.append(recos[a] | recos[b])
        recos[a] = recos[b] = set()
        candidates = sorted(o for o in nbrs[a] | nbrs[b] if alive[o])
        nbrs[a] = nbrs[b] = set()
        nbrs.append(set())
        for o in candidates:
            nbrs[o].discard(a)
            nbrs[o].discard(b)
        ok = np.asarray([o for o in candidates if admissible(c, o)], dtype=np.int64)
        if len(ok):
            for o, d in zip(ok.tolist(), distances(c, ok).tolist(), strict=True):
                if d <= threshold:
                    heapq.heappush(heap, (d, o, c))
                    nbrs[c].add(o)
                    nbrs[o].add(c)

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    roots = np.asarray([root(int(c)) for c in member_of], dtype=np.int64)
    _, first_row, labels = np.unique(roots, return_index=True, return_inverse=True)
    # renumber by first row
    order = np.argsort(first_row, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels].astype(np.int64)


def attach(
    small: np.ndarray,
    small_groups: np.ndarray,
    centroids: np.ndarray,
    taken: Mapping[int, set[int]],
    block_bytes: int = BLOCK_BYTES,
) -> np.ndarray:
    """Assign small speakers to clusters, one-to-one within each recording (module docstring, 4).

    Args:
        small: shape (M, D) unit rows of the small speakers, sorted by group.
        small_groups: shape (M,) their recording index.
        centroids: shape (K, D) mean embedding (unnormalised) of each cluster.
        taken: recording index -> clusters that already hold one of its speakers.

    Returns:
        shape (M,) int64: the cluster of each small speaker, -1 where none is admissible.
    """
    from scipy.optimize import linear_sum_assignment

    m, k = len(small), len(centroids)
    out = np.full(m, -1, dtype=np.int64)
    if m == 0 or k == 0:
        return out
    starts = np.flatnonzero(np.r_[True, small_groups[1:] != small_groups[:-1], True])
    per_group = int(np.diff(starts).max())
    top = min(k, per_group)  # enough for a one-to-one assignment within any recording
    ct = np.ascontiguousarray(centroids.T, dtype=np.float64)
    step = max(1, min(m, block_bytes // (8 * k)))
    cand_rows: list[np.ndarray] = []
    cand_cols: list[np.ndarray] = []
    cand_sims: list[np.ndarray] = []
    for lo in range(0, m, step):
        hi = min(m, lo + step)
        sim = small[lo:hi].astype(np.float64) @ ct  # shape: (b, K) mean cosine similarity to each cluster
        for r in range(lo, hi):
            for c in taken.get(int(small_groups[r]), ()):
                sim[r - lo, c] = -np.inf  # cannot-link: the cluster holds a speaker of this recording
        rows, cols = top_k(sim, top, -1e300)
        cand_rows.append(rows + lo)
        cand_cols.append(cols)
        cand_sims.append(sim[rows, cols])
    all_rows = np.concatenate(cand_rows)
    all_cols = np.concatenate(cand_cols)
    all_sims = np.concatenate(cand_sims)
    bounds = np.searchsorted(all_rows, starts)
    for g, (g0, g1) in enumerate(itertools.pairwise(starts)):
        e0, e1 = bounds[g], bounds[g + 1]
        if e0 == e1:
            continue
        cand, col_of = np.unique(all_cols[e0:e1], return_inverse=True)
        cost = np.full((g1 - g0, len(cand)), np.inf)
        cost[all_rows[e0:e1] - g0, col_of] = -all_sims[e0:e1]
        finite = np.isfinite(cost)
        cost[~finite] = 1e9  # not a candidate: only when nothing else is left
        rows, cols = linear_sum_assignment(cost)
        for r, j in zip(rows.tolist(), cols.tolist(), strict=True):
            if finite[r, j]:
                out[g0 + r] = int(cand[j])
    return out


# --------------------------------------------------------------------------- traces -> labels


def cluster_traces(ordered: Sequence[Trace], settings: LinkSettings = LinkSettings()) -> np.ndarray:
    """Cluster traces sorted by (reco_id, speaker) into global speakers (module docstring, 2-4).

    Returns:
        shape (N,) int64 global speaker of each trace, 0..K-1.

    Raises:
        LinkError: two traces for one (recording, speaker), embeddings of different dimensions,
            or a non-finite embedding.
    """
    for a, b in itertools.pairwise(ordered):
        if a.key >= b.key:
            raise LinkError(
                f"traces must be sorted and unique by (recording, speaker): {quote(a.reco_id)} "
                f"{quote(a.speaker)} comes before {quote(b.reco_id)} {quote(b.speaker)}"
            )
    n = len(ordered)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    dims = {int(np.asarray(t.embedding).size) for t in ordered}
    if len(dims) != 1:
        raise LinkError(
            f"traces of different dimensions ({', '.join(map(str, sorted(dims)))}) cannot be linked"
        )
    x = np.stack([np.asarray(t.embedding, dtype=np.float32).reshape(-1) for t in ordered])  # shape: (N, D)
    if not np.isfinite(x).all():
        bad = ordered[int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])]
        raise LinkError(f"the trace of {quote(bad.speaker)} in {quote(bad.reco_id)} is not finite")
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    reco_index = {r: i for i, r in enumerate(sorted({t.reco_id for t in ordered}))}
    groups = np.asarray([reco_index[t.reco_id] for t in ordered], dtype=np.int64)
    name_index = {s: i for i, s in enumerate(sorted({t.speaker for t in ordered if t.enrolled}))}
    names = np.asarray([name_index[t.speaker] if t.enrolled else -1 for t in ordered], dtype=np.int64)
    seconds = np.asarray([t.seconds for t in ordered], dtype=np.float64)

    main = (seconds >= settings.min_seconds) | (names >= 0)
    if not main.any():
        main[:] = True  # nothing to attach to: the small speakers link among themselves
    cluster = np.full(n, -1, dtype=np.int64)
    main_rows = np.flatnonzero(main)
    cluster[main_rows] = agglomerate(
        x[main_rows], groups[main_rows], names[main_rows], settings.threshold, settings.neighbors
    )
    num = int(cluster.max()) + 1
    small_rows = np.flatnonzero(~main)
    if len(small_rows):
        sums = np.zeros((num, x.shape[1]), dtype=np.float64)
        np.add.at(sums, cluster[main_rows], x[main_rows].astype(np.float64))
        counts = np.bincount(cluster[main_rows], minlength=num).astype(np.float64)
        taken: dict[int, set[int]] = {}
        for r in main_rows:
            taken.setdefault(int(groups[r]), set()).add(int(cluster[r]))
        found = attach(x[small_rows], groups[small_rows], sums / counts[:, None], taken)
        for r, c in zip(small_rows, found.tolist(), strict=True):
            if c < 0:  # every global speaker holds a speaker of this recording: a new one
                c = num
                num += 1
            cluster[r] = c
    return cluster


def link_traces(
    traces: Iterable[Trace], settings: LinkSettings = LinkSettings()
) -> dict[tuple[str, str], str]:
    """The global speaker of every trace: ``(reco_id, speaker) -> global label`` (module docstring)."""
    ordered = sorted(traces, key=lambda t: t.key)
    cluster = cluster_traces(ordered, settings)
    return dict(zip((t.key for t in ordered), global_labels(cluster, ordered), strict=True))


def global_labels(cluster: np.ndarray, ordered: Sequence[Trace | None]) -> list[str]:
    """The label of each row's cluster: the enrolled name of an enrolled trace in it, else
    ``S0001``, ``S0002``, ... in order of the cluster's first row (skipping enrolled names).

    Args:
        cluster: shape (N,) cluster of each row.
        ordered: the trace of each row (None for a speaker without one).
    """
    label: dict[int, str] = {}
    for c, t in zip(cluster.tolist(), ordered, strict=True):
        if t is not None and t.enrolled:
            label[c] = t.speaker
    names = set(label.values())
    width = max(4, len(str(len(set(cluster.tolist())) + len(names))))
    counter = 0
    out = []
    for c in cluster.tolist():
        if c not in label:
            while True:
                counter += 1
                candidate = f"S{counter:0{width}d}"
                if candidate not in names:
                    break
            label[c] = candidate
        out.append(label[c])
    return out


def speaker_seconds(annotation: Annotation) -> dict[str, float]:
    """Speech seconds of each speaker of ``annotation`` (its turns summed), rounded to ms."""
    seconds: dict[str, float] = {}
    for turn in annotation:
        seconds[turn.speaker] = seconds.get(turn.speaker, 0.0) + (turn.end - turn.start)
    return {s: round(v, 3) for s, v in seconds.items()}


def link_annotations(
    annotations: Iterable[Annotation], traces: Iterable[Trace], settings: LinkSettings = LinkSettings()
) -> list[SpeakerLink]:
    """Link the speakers of ``annotations`` across recordings: the rows of ``speakers.tsv``.

    Every speaker of every annotation gets a row, with its speech seconds in the annotation.
    Speakers with a trace are linked (:func:`cluster_traces`); a speaker without one (too
    little clean speech to embed) cannot be compared and is a global speaker of its own.
    Traces of speakers that are not in ``annotations`` are ignored.

    Returns:
        rows sorted by (reco_id, speaker).
    """
    seconds = {(a.reco_id, s): v for a in annotations for s, v in speaker_seconds(a).items()}
    by_key = {t.key: t for t in traces if t.key in seconds}
    keys = sorted(seconds)
    ordered = [by_key[k] for k in keys if k in by_key]
    linked = cluster_traces(ordered, settings)
    cluster = np.empty(len(keys), dtype=np.int64)
    rows: list[Trace | None] = []
    num = int(linked.max()) + 1 if len(linked) else 0
    j = 0
    for i, key in enumerate(keys):
        if key in by_key:
            cluster[i] = linked[j]
            rows.append(ordered[j])
            j += 1
        else:
            cluster[i] = num
            rows.append(None)
            num += 1
    if len(keys) > len(ordered):
        logger.info(
            "%d speakers have no trace: each is a global speaker of its own", len(keys) - len(ordered)
        )
    labels = global_labels(cluster, rows)
    return [SpeakerLink(r, s, g, seconds[(r, s)]) for (r, s), g in zip(keys, labels, strict=True)]


def relabel(annotations: Iterable[Annotation], links: Iterable[SpeakerLink]) -> list[Annotation]:
    """``annotations`` with every speaker renamed to its global speaker."""
    by_reco: dict[str, dict[str, str]] = {}
    for row in links:
        by_reco.setdefault(row.reco_id, {})[row.speaker] = row.global_speaker
    return [a.rename(by_reco.get(a.reco_id, {})) for a in annotations]
