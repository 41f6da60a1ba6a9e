"""Recording speakers from the embedded local speakers, without enrollment.

The local speakers with enough speech of their own are clustered (``clustering.method``:
agglomerative by default) into at least as many speakers as one window holds distinct voices
(:func:`~diar.identity.counting.distinct_voices`); clusters with too little embedded speech
are not speakers of their own. The speakers heard only while someone else talks are added
later, when the local speakers are assigned (:func:`~diar.identity.assign.fill_windows`):
raising the clustering's count for them would split a voice instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diar.cluster import Clusterer
from diar.identity.counting import distinct_voices, unit


def cluster_speakers(
    x: np.ndarray,
    seconds: np.ndarray,
    reliable: np.ndarray,
    windows: Sequence[Sequence[int]],
    clusterer: Clusterer,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int | None = None,
    min_speaker_seconds: float = 0.0,
    distinct_distance: float | None = None,
) -> np.ndarray:
    """Centroids of the recording's speakers found by clustering.

    1. ``clusterer`` clusters the reliable pieces within the count bounds. Two local speakers
       of one window are not kept apart here (a frame model sometimes splits one speaker into
       two local speakers of a window); but without a known count, the recording has at least
       as many speakers as one window holds local speakers whose embeddings are
       ``distinct_distance`` apart (up to ``max_speakers``).
    2. Clusters with less than ``min_speaker_seconds`` of embedded speech are not speakers of
       their own (a few words that sound unlike their speaker, a cough, noise), unless fewer
       than the least count would be left; with a known count every cluster stays.

    Args:
        x: shape (P, D) unit-norm embeddings (rows of unreliable pieces are not read).
        seconds: shape (P,) speech each embedding was computed from.
        reliable: shape (P,) bool, the pieces to cluster.
        windows: the pieces of each window.

    Returns:
        shape (K, D) float64 unit-norm centroids (speech-weighted), largest speaker first;
        (0, D) when no piece is reliable.
    """
    ok = np.asarray(reliable, dtype=bool)
    core = np.flatnonzero(ok)
    if len(core) == 0:
        return np.zeros((0, x.shape[1] if x.ndim == 2 else 0))
    if num_speakers is None and distinct_distance is not None:
        distinct = distinct_voices(x, ok, windows, distinct_distance)
        min_speakers = max(min_speakers, min(distinct, max_speakers or distinct))
    found = np.asarray(clusterer(x[core], num_speakers, min_speakers, max_speakers))
    weight = np.asarray(seconds, dtype=np.float64)
    clusters = [core[found == k] for k in range(int(found.max()) + 1)]
    speech = np.array([weight[m].sum() for m in clusters])
    order = [int(k) for k in np.argsort(-speech, kind="stable")]
    keep = order if num_speakers is not None else [k for k in order if speech[k] >= min_speaker_seconds]
    for k in order:  # the largest small clusters, when too few are large
        if len(keep) >= min(max(1, min_speakers), len(clusters)):
            break
        if k not in keep:
            keep.append(k)
    return np.stack([unit((x[clusters[k]] * weight[clusters[k], None]).sum(axis=0)) for k in keep])
