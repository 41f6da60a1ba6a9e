"""Clustering methods: registry, speaker counts, bounds, small-cluster folding, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diar.cluster import (
    CLUSTERINGS,
    AgglomerativeClustering,
    SpectralClustering,
    build_clusterer,
    fold_small_clusters,
    merge_unseparated,
    reassign_to_centroids,
    relabel,
    speaker_bounds,
)
from diar.config import ClusteringConfig, ConfigError
from diar.registry import UnknownNameError

METHODS = ("agglomerative", "spectral")


def blobs(
    sizes: list[int], dim: int = 32, spread: float = 0.15, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around len(sizes) random directions; returns (x (W, dim), true labels (W,))."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((len(sizes), dim))
    x, y = [], []
    for k, n in enumerate(sizes):
        x.append(
            centers[k] / np.linalg.norm(centers[k]) + spread * rng.standard_normal((n, dim)) / np.sqrt(dim)
        )
        y += [k] * n
    x = np.concatenate(x)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.array(y)


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    return np.array_equal(relabel(a), relabel(b))


def test_registry_lists_valid_names_for_an_unknown_method() -> None:
    assert set(METHODS) <= set(CLUSTERINGS.names())
    with pytest.raises(UnknownNameError, match="valid names: agglomerative, spectral"):
        CLUSTERINGS.get("kmeans++")
    with pytest.raises(ConfigError, match=r"clustering\.method: .*valid names: agglomerative"):
        build_clusterer(ClusteringConfig(method="nope"))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sizes", [[30, 25], [20, 30, 25], [25, 20, 30, 22]])
def test_estimates_the_number_of_speakers(method: str, sizes: list[int]) -> None:
    x, y = blobs(sizes, seed=len(sizes))
    labels = build_clusterer(ClusteringConfig(method=method))(x)
    assert labels.dtype == np.int64 and labels.shape == (len(x),)
    assert same_partition(labels, y)


@pytest.mark.parametrize("method", METHODS)
def test_known_count_and_bounds_override_the_estimate(method: str) -> None:
    x, _ = blobs([20, 20, 20, 20], seed=4)
    clusterer = build_clusterer(ClusteringConfig(method=method))
    assert clusterer(x, num_speakers=2).max() + 1 == 2
    assert clusterer(x, num_speakers=5).max() + 1 == 5
    assert 1 <= clusterer(x, max_speakers=3).max() + 1 <= 3
    assert clusterer(x, min_speakers=6).max() + 1 >= 6
    assert clusterer(x, min_speakers=2, max_speakers=4).max() + 1 == 4
    one, _ = blobs([40], seed=1)
    assert clusterer(one, min_speakers=2).max() + 1 == 2


@pytest.mark.parametrize("method", METHODS)
def test_tiny_inputs(method: str) -> None:
    clusterer = build_clusterer(ClusteringConfig(method=method))
    assert clusterer(np.zeros((0, 8), dtype=np.float32)).shape == (0,)
    x, _ = blobs([1], dim=8)
    assert clusterer(x).tolist() == [0]
    x, _ = blobs([1, 1], dim=8, spread=0.0)
    assert clusterer(x, num_speakers=2).tolist() == [0, 1]
    assert clusterer(x, num_speakers=3).max() + 1 == 2  # never more clusters than items


def test_speaker_bounds_validation() -> None:
    assert speaker_bounds(10) == (1, 10)
    assert speaker_bounds(10, num_speakers=3) == (3, 3)
    assert speaker_bounds(2, num_speakers=3) == (2, 2)
    assert speaker_bounds(10, min_speakers=2, max_speakers=4) == (2, 4)
    with pytest.raises(ValueError, match="max_speakers"):
        speaker_bounds(10, min_speakers=3, max_speakers=2)
    with pytest.raises(ValueError, match="num_speakers"):
        speaker_bounds(10, num_speakers=0)


def test_agglomerative_threshold_and_small_clusters() -> None:
    x, y = blobs([30, 30, 2], seed=7)
    loose = AgglomerativeClustering(threshold=1.5)(x)
    assert loose.max() == 0  # everything closer than the threshold
    folded = AgglomerativeClustering(threshold=0.4, min_cluster_size=5)(x)
    assert folded.max() + 1 == 2
    assert same_partition(folded[:60], y[:60])
    with pytest.raises(ConfigError, match="linkage"):
        AgglomerativeClustering(linkage="ward")


def test_merge_unseparated_joins_halves_of_one_speaker_only() -> None:
    x, y = blobs([30, 30], spread=0.3, seed=5)
    x = x.astype(np.float64)
    # split speaker 0 in two halves: barely separated, so merged back; speaker 1 stays apart
    split = np.where(y == 0, np.arange(len(y)) % 2, 2)
    merged = merge_unseparated(x, split, 0.12, min_clusters=1)
    assert same_partition(merged, y)
    assert merge_unseparated(x, split, 0.12, min_clusters=3).max() + 1 == 3
    assert merge_unseparated(x, split, 0.0, min_clusters=1).max() + 1 == 3


def test_reassign_moves_windows_to_the_nearest_centroid_and_keeps_the_count() -> None:
    x, y = blobs([20, 20], seed=6)
    x = x.astype(np.float64)
    wrong = y.copy()
    wrong[:3] = 1  # three windows of speaker 0 mislabelled
    assert same_partition(reassign_to_centroids(x, wrong, 3), y)
    assert same_partition(reassign_to_centroids(x, wrong, 0), wrong)
    lonely = np.zeros(40, dtype=np.int64)
    lonely[0] = 1  # a one-window cluster that would empty: kept as it is
    assert reassign_to_centroids(x, lonely, 3).max() == 1


def test_fold_small_clusters_keeps_the_minimum_count() -> None:
    x, _ = blobs([10, 2, 2], seed=3)
    labels = np.array([0] * 10 + [1] * 2 + [2] * 2)
    assert fold_small_clusters(x, labels, min_size=3, min_clusters=1).max() == 0
    assert fold_small_clusters(x, labels, min_size=3, min_clusters=2).max() == 1


def test_spectral_affinity_is_pruned_and_symmetric() -> None:
    x, _ = blobs([20, 20], seed=2)
    a = SpectralClustering(pval=0.1, min_pnum=3).affinity(x.astype(np.float64)).toarray()
    assert np.allclose(a, a.T) and np.all(np.diag(a) == 0)
    assert (np.count_nonzero(a, axis=1) < 20).all()


def test_sparse_eigensolver_gives_the_dense_partition() -> None:
    x, y = blobs([60, 50, 40], seed=9)
    dense = SpectralClustering(pval=0.06)
    sparse_solver = SpectralClustering(pval=0.06)
    sparse_solver.DENSE_LIMIT = 10
    a = dense.affinity(x.astype(np.float64))
    values, _ = dense.spectrum(a, 5)
    sparse_values, vectors = sparse_solver.spectrum(a, 5)
    np.testing.assert_allclose(sparse_values, values, atol=1e-6)
    assert vectors.shape == (150, 5)
    assert same_partition(sparse_solver(x), y) and same_partition(dense(x), y)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=30))
def test_relabel_numbers_by_first_appearance(values: list[int]) -> None:
    out = relabel(np.array(values))
    assert same_partition(out, np.array(values))
    seen: list[int] = []
    for v in out.tolist():
        if v not in seen:
            seen.append(v)
    assert seen == list(range(len(seen)))
