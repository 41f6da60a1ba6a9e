"""Enrolled speakers among the recording's speakers.

The recording's speakers are found as without enrollment (:mod:`diar.identity.clustering`),
then matched one to one with the enrolled profiles (Hungarian on cosine similarity): a
speaker whose match is at least ``identity.unknown_threshold`` similar takes the enrolled
name; one close to no profile is an *unknown* speaker, named so that no one mistakes it for
an enrolled name (:func:`unknown_names`). A profile that no speaker matched is kept as a
speaker of its own (the clustering may have merged it with another voice): local speakers
nearer it than to any found speaker take it. Two local speakers of one window stay different
people throughout, and the frame model's count still gives the overlap.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from diar.identity.counting import unit


def match_profiles(
    centroids: np.ndarray, profiles: np.ndarray, threshold: float
) -> tuple[np.ndarray, list[int | None]]:
    """The speakers' centroids with the unmatched profiles appended, and each one's profile.

    Args:
        centroids: shape (K, D) unit-norm, the speakers the clustering found.
        profiles: shape (S, D), the enrolled speakers.
        threshold: least cosine similarity of a speaker to its profile.

    Returns:
        (shape (K + U, D) unit-norm centroids: the K found speakers, then the U profiles no
        speaker matched; per row the index of its profile, None for an unknown speaker).
    """
    p = unit(profiles)
    matched: list[int | None] = [None] * len(centroids)
    if len(centroids) and len(p):
        similarity = centroids @ p.T  # shape: (K, S)
        for k, s in zip(*linear_sum_assignment(similarity, maximize=True), strict=True):
            if similarity[k, s] >= threshold:
                matched[int(k)] = int(s)
    rest = [s for s in range(len(p)) if s not in matched]
    rows = np.concatenate([centroids.reshape(-1, p.shape[1]), p[rest]]) if rest else centroids
    return rows, [*matched, *rest]


def unknown_names(count: int, enrolled: Sequence[str]) -> list[str]:
    """``count`` names for unknown speakers, ``unknown1``, ``unknown2``, ... (``unknown_1`` ...
    where an enrolled name already has that form)."""
    taken = set(enrolled)
    prefix = "unknown"
    while any(f"{prefix}{k + 1}" in taken for k in range(count)):
        prefix += "_"
    return [f"{prefix}{k + 1}" for k in range(count)]
