"""Clustering of speaker embeddings into speakers, chosen by name from :data:`CLUSTERINGS`.

Every method is a callable class built from its tuned parameters and called as
``method(embeddings (W, D), num_speakers=None, min_speakers=1, max_speakers=None)
-> labels (W,)``, labels 0..K-1 numbered by first appearance. A known speaker count
(per run or per recording, e.g. from reco2num_spk) overrides the estimate; the
estimate is otherwise kept inside [min_speakers, max_speakers].

- ``agglomerative``: hierarchical clustering on cosine distance (scipy linkage),
  cut at a distance threshold.
- ``spectral``: the spectral clustering of ModelScope/3D-Speaker and pyannote's
  older pipelines: cosine affinity, p-pruning (keep each row's nearest
  neighbours), unnormalised Laplacian, speaker count from the largest eigengap,
  k-means on the leading eigenvectors.

Both then fold clusters smaller than ``min_cluster_size`` into the nearest larger
one (short noisy or overlapped stretches otherwise become extra "speakers"), and
merge clusters that are not separated by at least ``merge_separation`` (one
speaker split in two).
"""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np
from scipy import sparse
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.linalg import eigh
from scipy.sparse.linalg import eigsh

from diar.config import LINKAGES, ClusteringConfig, ConfigError
from diar.errors import quote
from diar.registry import Registry, UnknownNameError

logger = logging.getLogger(__name__)


class Clusterer(Protocol):
    """A clustering method: embeddings (W, D) -> labels (W,) in 0..K-1."""

    def __call__(
        self,
        embeddings: np.ndarray,
        num_speakers: int | None = None,
        min_speakers: int = 1,
        max_speakers: int | None = None,
    ) -> np.ndarray: ...


#: Clustering methods by name; a factory takes the method's keyword parameters.
CLUSTERINGS: Registry = Registry("clustering method")


def speaker_bounds(
    num_items: int, num_speakers: int | None = None, min_speakers: int = 1, max_speakers: int | None = None
) -> tuple[int, int]:
    """The allowed range [lo, hi] of the speaker count for ``num_items`` embeddings.

    A known ``num_speakers`` fixes both ends; everything is capped at ``num_items``.
    """
    if num_speakers is not None:
        if num_speakers < 1:
            raise ValueError(f"num_speakers must be >= 1, got {num_speakers}")
        lo = hi = num_speakers
    else:
        if min_speakers < 1:
            raise ValueError(f"min_speakers must be >= 1, got {min_speakers}")
        if max_speakers is not None and max_speakers < min_speakers:
            raise ValueError(f"max_speakers ({max_speakers}) is smaller than min_speakers ({min_speakers})")
        lo, hi = min_speakers, max_speakers if max_speakers is not None else num_items
    return min(lo, num_items), min(hi, num_items)


def prepare(
    embeddings: np.ndarray, num_speakers: int | None, min_speakers: int, max_speakers: int | None
) -> tuple[np.ndarray, int, int]:
    """What every clusterer starts from: L2-normalised rows and the speaker-count range.

    Returns:
        ``(x, lo, hi)``: x of shape (W, D) with unit rows; lo, hi from :func:`speaker_bounds`.
    """
    x = l2_normalize(embeddings)
    return (x, *speaker_bounds(len(x), num_speakers, min_speakers, max_speakers))


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm. shape (W, D) -> (W, D) float64."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..K-1 in order of first appearance. shape (W,) -> (W,) int64."""
    labels = np.asarray(labels)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


def centroids(embeddings: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit-norm mean embedding of each label 0..K-1. (W, D), (W,) -> (K, D)."""
    k = int(labels.max()) + 1 if len(labels) else 0
    return l2_normalize(np.stack([embeddings[labels == i].mean(axis=0) for i in range(k)]))


def fold_small_clusters(
    embeddings: np.ndarray, labels: np.ndarray, min_size: int, min_clusters: int
) -> np.ndarray:
    """Reassign members of clusters smaller than ``min_size`` to the nearest large cluster.

    Keeps at least ``min_clusters`` clusters (the largest ones) even when they are small.

    Args:
        embeddings: shape (W, D) unit-norm.
        labels: shape (W,) in 0..K-1.

    Returns:
        shape (W,) relabelled 0..K'-1.
    """
    sizes = np.bincount(labels)
    order = np.argsort(-sizes, kind="stable")
    keep = [int(c) for c in order if sizes[c] >= min_size]
    for c in order:
        if len(keep) >= min_clusters:
            break
        if int(c) not in keep:
            keep.append(int(c))
    if not keep or len(keep) == len(sizes):
        return relabel(labels)
    centers = l2_normalize(np.stack([embeddings[labels == c].mean(axis=0) for c in keep]))
    out = labels.copy()
    small = ~np.isin(labels, keep)
    out[small] = np.asarray(keep)[np.argmax(embeddings[small] @ centers.T, axis=1)]
    return relabel(out)


def kmeans(x: np.ndarray, k: int, n_init: int = 10, max_iter: int = 100, seed: int = 0) -> np.ndarray:
    """k-means++ with ``n_init`` restarts (lowest inertia wins). x: (W, F) -> labels (W,)."""
    rng = np.random.default_rng(seed)
    best, best_inertia = np.zeros(len(x), dtype=np.int64), np.inf
    for _ in range(n_init):
        centers = [x[rng.integers(len(x))]]
        for _ in range(1, k):
            d2 = np.min(((x[:, None, :] - np.asarray(centers)[None]) ** 2).sum(-1), axis=1)
            total = d2.sum()
            p = d2 / total if total > 0 else None
            centers.append(x[rng.choice(len(x), p=p)])
        c = np.asarray(centers)
        labels = np.zeros(len(x), dtype=np.int64)
        for it in range(max_iter):
            d = ((x[:, None, :] - c[None]) ** 2).sum(-1)
            new = np.argmin(d, axis=1)
            if it > 0 and np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                if np.any(labels == j):
                    c[j] = x[labels == j].mean(axis=0)
        inertia = float(((x - c[labels]) ** 2).sum())
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    return best


@CLUSTERINGS.register("agglomerative")
class AgglomerativeClustering:
    """Hierarchical clustering on cosine distance, cut at ``threshold``.

    Args:
        threshold: cosine distance (1 - cosine similarity) above which clusters stay apart.
        linkage: scipy linkage method on cosine distance: average, complete, single or weighted.
        min_cluster_size: clusters with fewer members are folded into the nearest larger one.
        merge_separation: then clusters less separated than this are merged (see
            :func:`merge_unseparated`); 0 disables.
        refine_iterations: finally, nearest-centroid reassignment steps
            (:func:`reassign_to_centroids`); 0 disables.
    """

    LINKAGES = LINKAGES

    def __init__(
        self,
        threshold: float = 0.5,
        linkage: str = "average",
        min_cluster_size: int = 1,
        merge_separation: float = 0.0,
        refine_iterations: int = 0,
    ) -> None:
        if linkage not in self.LINKAGES:
            raise ConfigError(
                f"clustering.linkage {quote(linkage)} is not supported; valid: {', '.join(self.LINKAGES)}"
            )
        self.threshold = threshold
        self.linkage = linkage
        self.min_cluster_size = min_cluster_size
        self.merge_separation = merge_separation
        self.refine_iterations = refine_iterations

    def __call__(
        self,
        embeddings: np.ndarray,
        num_speakers: int | None = None,
        min_speakers: int = 1,
        max_speakers: int | None = None,
    ) -> np.ndarray:
        """embeddings: shape (W, D) -> labels (W,) int64 in 0..K-1."""
        x, lo, hi = prepare(embeddings, num_speakers, min_speakers, max_speakers)
        if len(x) <= 1:
            return np.zeros(len(x), dtype=np.int64)
        tree = linkage(x, method=self.linkage, metric="cosine")
        labels = relabel(fcluster(tree, t=self.threshold, criterion="distance"))
        if self.min_cluster_size > 1:
            labels = fold_small_clusters(x, labels, self.min_cluster_size, lo)
        if self.merge_separation > 0:
            labels = merge_unseparated(x, labels, self.merge_separation, lo)
        k = int(labels.max()) + 1
        if not lo <= k <= hi:
            target = min(max(k, lo), hi)
            labels = relabel(fcluster(tree, t=target, criterion="maxclust"))
            if int(labels.max()) + 1 > target and self.min_cluster_size > 1:
                labels = fold_small_clusters(x, labels, self.min_cluster_size, target)
        return reassign_to_centroids(x, labels, self.refine_iterations)


@CLUSTERINGS.register("spectral")
class SpectralClustering:
    """Spectral clustering with the speaker count from the eigengap of the graph Laplacian.

    Args:
        pval: fraction of each row's largest affinities kept by p-pruning.
        min_pnum: keep at least this many neighbours per row.
        max_auto_speakers: largest count the eigengap may choose when no max_speakers is given.
        min_cluster_size: clusters with fewer members are folded into the nearest larger one.
        merge_separation: then clusters less separated than this are merged (see
            :func:`merge_unseparated`; it undoes the splits of one speaker into several
            clusters that a fragmented neighbour graph causes); 0 disables.
        refine_iterations: finally, nearest-centroid reassignment steps
            (:func:`reassign_to_centroids`); 0 disables.
    """

    #: Above this many windows the Laplacian's eigenvectors are found with a sparse solver.
    DENSE_LIMIT = 1000

    def __init__(
        self,
        pval: float = 0.022,
        min_pnum: int = 6,
        max_auto_speakers: int = 10,
        min_cluster_size: int = 1,
        merge_separation: float = 0.0,
        refine_iterations: int = 0,
    ) -> None:
        if not 0.0 < pval <= 1.0:
            raise ConfigError(f"clustering.pval must be in (0, 1], got {pval}")
        self.pval = pval
        self.min_pnum = min_pnum
        self.max_auto_speakers = max_auto_speakers
        self.min_cluster_size = min_cluster_size
        self.merge_separation = merge_separation
        self.refine_iterations = refine_iterations

    def affinity(self, x: np.ndarray) -> sparse.csr_matrix:
        """Pruned symmetric cosine affinity: each row keeps its ``keep`` largest similarities
        (itself included), then ``(A + A.T) / 2`` with a zero diagonal.

        Built in row chunks, so memory stays O(W * keep) for long recordings.

        Args:
            x: shape (W, D) unit-norm.

        Returns:
            sparse (W, W).
        """
        n = len(x)
        keep = min(max(round(self.pval * n), min(self.min_pnum, n - 1), 1), n)
        rows, cols, vals = [], [], []
        for start in range(0, n, 1024):
            sim = np.clip(x[start : start + 1024] @ x.T, 0.0, None)  # shape: (chunk, W)
            top = np.argpartition(-sim, keep - 1, axis=1)[:, :keep]
            rows.append(np.repeat(np.arange(start, start + len(sim)), keep))
            cols.append(top.reshape(-1))
            vals.append(np.take_along_axis(sim, top, axis=1).reshape(-1))
        a = sparse.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
        )
        a = ((a + a.T) * 0.5).tolil()
        a.setdiag(0.0)
        a = a.tocsr()
        a.eliminate_zeros()
        return a

    def spectrum(self, a: sparse.csr_matrix, count: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``count`` smallest eigenvalues (ascending) and eigenvectors (W, count) of the
        unnormalised Laplacian ``D - A``; dense below :attr:`DENSE_LIMIT` windows, else sparse
        shift-invert Lanczos (a dense eigensolver takes minutes at 10 000 windows)."""
        n = a.shape[0]
        laplacian = sparse.diags(np.asarray(a.sum(axis=1)).reshape(-1)) - a
        if n <= self.DENSE_LIMIT or count >= n - 1:
            values, vectors = eigh(laplacian.toarray(), subset_by_index=[0, min(count, n) - 1])
            return values, vectors
        # the Laplacian is positive semi-definite: the eigenvalues nearest a small negative shift
        # are the smallest ones, and the shifted matrix is safely invertible
        values, vectors = eigsh(laplacian.tocsc(), k=count, sigma=-1e-3, which="LM")
        order = np.argsort(values)
        return values[order], vectors[:, order]

    def __call__(
        self,
        embeddings: np.ndarray,
        num_speakers: int | None = None,
        min_speakers: int = 1,
        max_speakers: int | None = None,
    ) -> np.ndarray:
        """embeddings: shape (W, D) -> labels (W,) int64 in 0..K-1."""
        x, lo, hi = prepare(embeddings, num_speakers, min_speakers, max_speakers)
        n = len(x)
        if max_speakers is None and num_speakers is None:
            hi = max(lo, min(hi, self.max_auto_speakers))
        if n <= 2 or hi <= 1:
            if hi <= 1 or n == 1:
                return np.zeros(n, dtype=np.int64)
            return AgglomerativeClustering(threshold=0.5)(x, num_speakers, lo, hi)
        eigvals, eigvecs = self.spectrum(self.affinity(x), min(hi + 1, n))
        if lo == hi:
            k = lo
        else:
            gaps = np.diff(eigvals[: hi + 1])
            # gaps[i] is the gap after the (i+1)-th eigenvalue: choosing i+1 clusters
            k = int(np.argmax(gaps[lo - 1 : hi])) + lo
        labels = relabel(kmeans(eigvecs[:, :k], k))
        if self.min_cluster_size > 1:
            labels = fold_small_clusters(x, labels, self.min_cluster_size, lo)
        if self.merge_separation > 0:
            labels = merge_unseparated(x, labels, self.merge_separation, lo)
        return reassign_to_centroids(x, labels, self.refine_iterations)


def separation(sim: np.ndarray, labels: np.ndarray, a: int, b: int) -> float:
    """How well clusters ``a`` and ``b`` are apart: the mean margin by which their members are
    more similar to their own centroid than to the other one, averaged over both clusters.

    Args:
        sim: shape (W, K) cosine similarity of each embedding to each cluster centroid.
        labels: shape (W,) in 0..K-1.
    """
    in_a, in_b = labels == a, labels == b
    margin_a = float(np.mean(sim[in_a, a] - sim[in_a, b]))
    margin_b = float(np.mean(sim[in_b, b] - sim[in_b, a]))
    return 0.5 * (margin_a + margin_b)


def merge_unseparated(
    x: np.ndarray, labels: np.ndarray, min_separation: float, min_clusters: int
) -> np.ndarray:
    """Merge the least separated pair of clusters while its :func:`separation` is below ``min_separation``.

    Two halves of one speaker are barely separated (their members are about as close to
    either centroid), while two speakers are well apart; the measure is relative to the
    spread inside the clusters, so it adapts to recordings where all voices sound alike.
    Never goes below ``min_clusters`` clusters.

    Args:
        x: shape (W, D) unit-norm embeddings.
        labels: shape (W,) in 0..K-1.

    Returns:
        shape (W,) relabelled 0..K'-1.
    """
    labels = relabel(labels)
    while int(labels.max()) + 1 > max(min_clusters, 1):
        k = int(labels.max()) + 1
        sim = x @ centroids(x, labels).T  # shape: (W, K)
        pairs = [(separation(sim, labels, a, b), a, b) for a in range(k) for b in range(a + 1, k)]
        value, a, b = min(pairs)
        if value >= min_separation:
            break
        logger.debug("merging clusters %d and %d (separation %.3f)", a, b, value)
        labels = relabel(np.where(labels == b, a, labels))
    return labels


def reassign_to_centroids(x: np.ndarray, labels: np.ndarray, iterations: int) -> np.ndarray:
    """Move every embedding to its nearest cluster centroid (cosine), ``iterations`` times.

    k-means steps in the embedding space itself: spectral clustering assigns windows in the
    eigenvector space, which can leave a window closer to another speaker's centroid.
    Stops early when nothing moves or a cluster would empty (the count is kept).

    Args:
        x: shape (W, D) unit-norm.
        labels: shape (W,) in 0..K-1.

    Returns:
        shape (W,) in 0..K-1.
    """
    labels = relabel(labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    for _ in range(iterations):
        if k < 2:
            break
        new = np.argmax(x @ centroids(x, labels).T, axis=1)
        if np.array_equal(new, labels) or len(np.unique(new)) < k:
            break
        labels = relabel(new)
    return labels


def speaker_shortfall(
    requested: int | None,
    found: int,
    num_windows: int,
    num_clusters: int,
    items: str = "embedding windows of speech",
) -> str | None:
    """Why a recording has fewer speakers than were asked for (None when it has enough).

    Args:
        requested: the known count (``num_speakers``, reco2num_spk) or ``min_speakers``; None:
            nothing was asked.
        found: speakers with turns in the result.
        num_windows: embeddings that were clustered (windows of speech, or local speakers).
        num_clusters: clusters the clustering returned.
        items: what those embeddings are, in the message.
    """
    if requested is None or found >= requested:
        return None
    if num_windows < requested:
        why = f"the recording has only {num_windows} {items}, one speaker each at most"
    elif num_clusters < requested:
        why = f"the clustering kept only {num_clusters} distinct voices"
    else:
        why = (
            f"{num_clusters - found} of the {num_clusters} clusters kept no turn after post-processing "
            "(median smoothing, short turns dropped)"
        )
    return f"{requested} speakers requested but {found} found: {why}"


def build_clusterer(config: ClusteringConfig) -> Clusterer:
    """The clustering method ``config.method`` names, with its parameters from ``config``.

    Raises:
        ConfigError: an unknown method (the message lists the valid names) or a bad parameter.
    """
    try:
        factory = CLUSTERINGS.get(config.method)
    except UnknownNameError as e:
        raise ConfigError(f"clustering.method: {e}") from None
    if config.method == "agglomerative":
        return factory(
            threshold=config.threshold,
            linkage=config.linkage,
            min_cluster_size=config.min_cluster_size,
            merge_separation=config.merge_separation,
            refine_iterations=config.refine_iterations,
        )
    if config.method == "spectral":
        return factory(
            pval=config.pval,
            min_pnum=config.min_pnum,
            max_auto_speakers=config.max_auto_speakers,
            min_cluster_size=config.min_cluster_size,
            merge_separation=config.merge_separation,
            refine_iterations=config.refine_iterations,
        )
    return factory()
