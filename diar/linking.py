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
   time against itself and the later rows (float32 BLAS, at most ~256 MB per block; the
   matrix is symmetric, so each product serves both rows), pairs of one recording
   masked, and for every trace its ``neighbors`` most similar traces within ``threshold``
   kept (ties by position). Memory is O(N·k) besides one block, never N×N; time is
   O(N²·D) multiply-adds. ``diar bench link``: 100 000 traces of 192 dims link in under
   two minutes on two shared CPU cores, with a peak of about 1 GB.
3. **Constrained average-linkage agglomeration on that graph.** Every trace starts as
   its own cluster (the traces of one enrolled name start as one). Clusters joined by a
   graph edge merge, closest pair first, while their distance is at most ``threshold``;
   a pair that would put two speakers of one recording (or two names) together never
   merges. The distance is exact *average linkage*: the mean cosine distance over all
   pairs of traces of the two clusters, ``1 - ΣA·ΣB / (|A| |B|)``, so a cluster needs only
   its embedding sum. A merged cluster's candidates are its parts' candidates: average
   linkage is reducible (``d(A∪B, X)`` lies between ``d(A, X)`` and ``d(B, X)``), and so is
   it with the constraints (a merged cluster is only ever less admissible), so a cluster
   with no edge to A or B within the threshold cannot come within it of A∪B. Being
   reducible, closest-pair-first merging is done by the nearest-neighbour chain
   algorithm (Murtagh 1983: follow nearest candidates until two clusters are each
   other's nearest, merge them), which gives the same clusters in O(merges × candidates)
   and ties broken by cluster id. Only the candidate pairs are approximate: clusters with
   no k-nearest-neighbour edge between any of their traces are not compared (a test
   checks the result against a dense all-pairs reference).
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
        column.
    """
    rows, cols, vals = _candidates(sim, k, floor)
    return best_per_row(rows, cols, vals, k)


def _candidates(sim: np.ndarray, k: int, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The entries of ``sim`` (B, N) that are at least ``floor``: (rows, cols, values), row-major.

    When the rows hold far more than ``k`` such entries each (a loose threshold), every row
    is first cut to its ``k`` largest (``np.argpartition``), so memory stays O(B·k).
    """
    b, n = sim.shape
    if b == 0 or n == 0 or k <= 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0, dtype=sim.dtype)
    mask = sim >= floor
    if k < n and int(np.count_nonzero(mask)) > b * max(4 * k, n // 8):
        part = np.sort(np.argpartition(-sim, k - 1, axis=1)[:, :k], axis=1)
        rows = np.repeat(np.arange(b), k)
        cols = part.reshape(-1)
        keep = mask[rows, cols]
        rows, cols = rows[keep], cols[keep]
    else:
        rows, cols = np.nonzero(mask)
    return rows.astype(np.int64), cols.astype(np.int64), sim[rows, cols]


def best_per_row(
    rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` best (row, col, value) entries, sorted by row, decreasing value, column."""
    index = _best_index(rows, cols, vals, k)
    return rows[index].astype(np.int64), cols[index].astype(np.int64)


def _best_index(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, k: int) -> np.ndarray:
    """Positions of each row's ``k`` best entries, by row, decreasing value, column."""
    order = np.lexsort((cols, -vals, rows))
    if len(order) == 0:
        return order
    sorted_rows = rows[order]
    row_start = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    rank = np.arange(len(order)) - np.repeat(row_start, np.diff(np.r_[row_start, len(order)]))
    return order[rank < k]


def knn_graph(
    x: np.ndarray, groups: np.ndarray, neighbors: int, threshold: float, block_bytes: int = BLOCK_BYTES
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``neighbors`` most similar rows of other groups within cosine distance ``threshold``.

    Exact, by brute force over blocks of rows, each multiplied only with its own and the
    later rows (the similarity matrix is symmetric): a block's rows take their candidates
    among later rows from that product, and those among earlier rows from the products of
    the earlier blocks, kept (above the threshold) until their block comes.

    Args:
        x: shape (N, D) float32 unit rows.
        groups: shape (N,) int, non-decreasing (rows of one group are contiguous): a row's
            own group is never its neighbour.
        neighbors: k.
        threshold: largest cosine distance kept (with a small float32 slack).
        block_bytes: the most one block's similarities may take.

    Returns:
        (rows, cols): shape (E,) int64 each, the edges ``rows[e] -> cols[e]``, sorted by
        row, then by decreasing similarity, then by column.
    """
    n, k = len(x), neighbors
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    if np.any(np.diff(groups) < 0):
        raise ValueError("knn_graph needs the rows sorted by group")
    # shape: (G + 1,) where each group's rows start
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1], True])
    last = np.repeat(starts[1:], np.diff(starts))  # shape: (N,) one past the last row of its group
    floor = 1.0 - threshold - SLACK
    xt = np.ascontiguousarray(x.T)
    step = max(1, min(n, block_bytes // (4 * n)))
    num_blocks = -(-n // step)
    # candidates of later blocks' rows found in earlier products: (rows, cols, values) per block
    pending: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(num_blocks)]
    pending_size = [0] * num_blocks
    out_rows: list[np.ndarray] = []
    out_cols: list[np.ndarray] = []
    for block, lo in enumerate(range(0, n, step)):
        hi = min(n, lo + step)
        sim = x[lo:hi] @ xt[:, lo:]  # shape: (b, N - lo) similarities with this and later rows
        # cannot-link: a row's own recording (its rows are consecutive, near the diagonal)
        c1 = int(last[hi - 1])
        own = groups[lo:hi, None] == groups[None, lo:c1]
        sim[:, : c1 - lo][own] = -np.inf
        rows, cols, vals = _candidates(sim, k, floor)
        parts = [(rows + lo, cols + lo, vals), *pending[block]]
        pending[block] = []
        rows, cols = best_per_row(
            np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]),
            np.concatenate([p[2] for p in parts]),
            k,
        )
        out_rows.append(rows)
        out_cols.append(cols)
        # the same products seen from the later rows: (later row, this row, value)
        later = sim[:, hi - lo :]
        if later.size:
            i, j = np.nonzero(later >= floor)
            if len(i):
                vals = later[i, j]
                dest_rows, dest_cols = j + hi, i + lo
                dest = dest_rows // step
                order = np.argsort(dest, kind="stable")
                bounds = np.searchsorted(dest[order], np.arange(block + 1, num_blocks + 1))
                start = 0
                for target, end in zip(range(block + 1, num_blocks), bounds[1:].tolist(), strict=True):
                    if end > start:
                        sel = order[start:end]
                        pending[target].append((dest_rows[sel], dest_cols[sel], vals[sel]))
                        pending_size[target] += end - start
                        if pending_size[target] > 8 * step * k:  # a loose threshold: keep k per row
                            r = np.concatenate([p[0] for p in pending[target]])
                            c = np.concatenate([p[1] for p in pending[target]])
                            v = np.concatenate([p[2] for p in pending[target]])
                            best = _best_index(r, c, v, k)
                            pending[target] = [(r[best], c[best], v[best])]
                            pending_size[target] = len(best)
                    start = end
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
    # initial clusters: one per trace, or one per enrolled name (numbered by first row)
    init = np.arange(n)
    first_of_name: dict[int, int] = {}
    for row in np.flatnonzero(names >= 0).tolist():
        init[row] = first_of_name.setdefault(int(names[row]), row)
    _, cluster = np.unique(init, return_inverse=True)  # shape: (N,) cluster of each trace
    num = int(cluster.max()) + 1
    sums = np.zeros((num, x.shape[1]), dtype=np.float64)  # shape: (C, D) embedding sums
    np.add.at(sums, cluster, x.astype(np.float64))
    counts = np.bincount(cluster, minlength=num).astype(np.float64)  # shape: (C,)
    cname = np.full(num, -1, dtype=np.int64)  # shape: (C,) enrolled name, -1 for none
    cname[cluster[names >= 0]] = names[names >= 0]

    # cluster id -> its recordings; merged clusters take new ids (num, num + 1, ...)
    recos: list[set[int]] = [set() for _ in range(num)]
    for c, g in zip(cluster.tolist(), groups.tolist(), strict=True):
        recos[c].add(g)
    slot = list(range(num))  # cluster id -> its row in sums, counts, cname
    parent = list(range(num))  # cluster id -> the cluster it was merged into (itself while alive)
    alive = [True] * num

    rows, cols = knn_graph(np.ascontiguousarray(x, dtype=np.float32), groups, neighbors, threshold)
    edges = _unique_pairs(cluster[rows], cluster[cols])  # shape: (E, 2) a < b
    dist = _average_distance(sums, counts, edges)
    # a pair may merge only within the threshold, never two names, never two clusters holding
    # speakers of one recording (only enrolled names start with several traces)
    keep = (dist <= threshold) & ~((cname[edges[:, 0]] >= 0) & (cname[edges[:, 1]] >= 0))
    keep &= ~_share_a_recording(edges, cluster, groups)
    # nbrs[c]: the clusters c may merge with -> their average-linkage distance
    nbrs: list[dict[int, float]] = [{} for _ in range(num)]
    for (a, b), d in zip(edges[keep].tolist(), dist[keep].tolist(), strict=True):
        nbrs[a][b] = d
        nbrs[b][a] = d

    def nearest(c: int, prefer: int) -> int:
        """c's nearest candidate (ties: ``prefer``, then the lower id), -1 if none."""
        if not nbrs[c]:
            return -1
        best = min(nbrs[c].items(), key=lambda item: (item[1], item[0]))
        if prefer >= 0 and nbrs[c].get(prefer) == best[1]:
            return prefer
        return best[0]

    def merge(a: int, b: int) -> int:
        c = len(alive)
        keep_row, drop_row = slot[a], slot[b]
        sums[keep_row] += sums[drop_row]
        counts[keep_row] += counts[drop_row]
        cname[keep_row] = max(cname[keep_row], cname[drop_row])
        slot.append(keep_row)
        parent.append(c)
        parent[a] = parent[b] = c
        alive[a] = alive[b] = False
        alive.append(True)
        recos.append(recos[a] | recos[b])
        recos[a] = recos[b] = set()
        candidates = sorted((nbrs[a].keys() | nbrs[b].keys()) - {a, b})
        nbrs[a] = nbrs[b] = {}
        for o in candidates:
            nbrs[o].pop(a, None)
            nbrs[o].pop(b, None)
        ok = [
            o
            for o in candidates
            if recos[o].isdisjoint(recos[c]) and not (cname[keep_row] >= 0 <= cname[slot[o]])
        ]
        mine: dict[int, float] = {}
        if ok:
            at = np.asarray([slot[o] for o in ok], dtype=np.int64)
            # average linkage: the mean cosine distance over all pairs of traces of the two
            dist_c = 1.0 - (sums[at] @ sums[keep_row]) / (counts[at] * counts[keep_row])
            for o, d in zip(ok, dist_c.tolist(), strict=True):
                if d <= threshold:
                    mine[o] = d
                    nbrs[o][c] = d
        nbrs.append(mine)
        return c

    # nearest-neighbour chain: follow nearest candidates until two clusters are each other's
    # nearest, merge them, go on from the chain's rest (exact for reducible linkages)
    for start in range(num):
        if not alive[start] or not nbrs[start]:
            continue
        chain = [start]
        while chain:
            a = chain[-1]
            previous = chain[-2] if len(chain) > 1 else -1
            b = nearest(a, previous)
            if b < 0:
                chain.pop()  # a is final
            elif b == previous:
                chain.pop()
                chain.pop()
                c = merge(a, b)
                if not chain:
                    chain.append(c)
            else:
                chain.append(b)

    def root(c: int) -> int:
        while parent[c] != c:
            parent[c] = parent[parent[c]]
            c = parent[c]
        return c

    cluster = np.asarray([root(c) for c in cluster.tolist()], dtype=np.int64)
    # renumber by first row
    _, first_row, labels = np.unique(cluster, return_index=True, return_inverse=True)
    order = np.argsort(first_row, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[labels].astype(np.int64)


def _unique_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """shape (E, 2) sorted unique (min, max) pairs of ``a[i], b[i]``, self pairs dropped."""
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1).astype(np.int64)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def _average_distance(
    sums: np.ndarray, counts: np.ndarray, edges: np.ndarray, chunk: int = 65536
) -> np.ndarray:
    """Average-linkage cosine distance of each pair: ``1 - (sum_a . sum_b) / (n_a n_b)``."""
    out = np.empty(len(edges), dtype=np.float64)
    for lo in range(0, len(edges), chunk):
        e = edges[lo : lo + chunk]
        dots = np.einsum("ij,ij->i", sums[e[:, 0]], sums[e[:, 1]])
        out[lo : lo + chunk] = 1.0 - dots / (counts[e[:, 0]] * counts[e[:, 1]])
    return out


def _share_a_recording(edges: np.ndarray, cluster: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """shape (E,) whether the two clusters of each pair hold speakers of one recording.

    ``groups`` is sorted, so the speakers of a recording are consecutive rows: every pair of
    clusters found together in a recording is listed once (a recording has a few speakers).
    """
    starts = np.flatnonzero(np.r_[True, groups[1:] != groups[:-1], True])
    sizes = np.diff(starts)
    together: list[np.ndarray] = []
    for size in np.unique(sizes[sizes > 1]).tolist():
        first = starts[:-1][sizes == size]
        for i, j in itertools.combinations(range(size), 2):
            together.append(np.stack([cluster[first + i], cluster[first + j]], axis=1))
    if not together:
        return np.zeros(len(edges), dtype=bool)
    pairs = np.concatenate(together)
    pairs = np.stack([pairs.min(axis=1), pairs.max(axis=1)], axis=1)
    width = int(max(edges.max(initial=0), pairs.max(initial=0))) + 1
    return np.isin(edges[:, 0] * width + edges[:, 1], pairs[:, 0] * width + pairs[:, 1])


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
        missing = [f"{r}/{s}" for r, s in keys if (r, s) not in by_key]
        logger.warning(
            "%d speakers have no trace (no speech of their own to embed: %s%s); each is a global "
            "speaker of its own",
            len(missing),
            ", ".join(missing[:3]),
            ", ..." if len(missing) > 3 else "",
        )
    labels = global_labels(cluster, rows)
    return [SpeakerLink(r, s, g, seconds[(r, s)]) for (r, s), g in zip(keys, labels, strict=True)]


def relabel(annotations: Iterable[Annotation], links: Iterable[SpeakerLink]) -> list[Annotation]:
    """``annotations`` with every speaker renamed to its global speaker."""
    by_reco: dict[str, dict[str, str]] = {}
    for row in links:
        by_reco.setdefault(row.reco_id, {})[row.speaker] = row.global_speaker
    return [a.rename(by_reco.get(a.reco_id, {})) for a in annotations]
