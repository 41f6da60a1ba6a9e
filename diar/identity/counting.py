"""Lower bounds on a recording's speaker count from what the frame model hears.

Both count people that must be different whatever their embeddings say: local speakers of
one window whose voices are far apart (:func:`distinct_voices`), and speakers the frame model
hears talking at the same time (:func:`heard_together`).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from diar.stitching import WindowOutputs


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit norm (float64)."""
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def distinct_voices(
    embeddings: np.ndarray, reliable: np.ndarray, windows: Sequence[Sequence[int]], min_distance: float
) -> int:
    """The most local speakers one window hears that are surely different people: reliable
    pieces of the window whose embeddings are all at least ``min_distance`` (cosine distance)
    apart. The recording has at least this many speakers.

    A frame model sometimes splits one speaker into two local speakers of a window; the two
    halves sound alike, so their distance keeps them from counting twice.

    Args:
        embeddings: shape (P, D) (rows of unreliable pieces are not read).
        reliable: shape (P,) bool.
        windows: the pieces of each window.

    Returns:
        0 when no piece is reliable, else at least 1.
    """
    ok = np.asarray(reliable, dtype=bool)
    found = int(ok.any())
    for members in windows:
        local = [i for i in members if ok[i]]
        if len(local) <= found:
            continue
        x = unit(embeddings[local])  # shape: (n, D)
        apart = 1.0 - x @ x.T >= min_distance  # shape: (n, n)
        np.fill_diagonal(apart, True)
        # the largest set of pairwise distant pieces (a window holds a few local speakers)
        for size in range(len(local), found, -1):
            if any(apart[np.ix_(c, c)].all() for c in itertools.combinations(range(len(local)), size)):
                found = size
                break
    return found


def heard_together(outputs: WindowOutputs, min_fraction: float, min_frames: int) -> int:
    """The most speakers the frame model surely hears at once: the largest n such that its
    speaker count (:meth:`WindowOutputs.speaker_count`) is n or more on at least ``min_frames``
    frames and on at least ``min_fraction`` of the frames where it hears anyone. The recording
    has at least this many speakers, however alike their embeddings sound.

    Returns:
        0 when the model hears nobody, else at least 1.
    """
    count = outputs.speaker_count()  # shape: (T,)
    speech = int((count >= 1).sum())
    for n in range(int(count.max(initial=0)), 1, -1):
        frames = int((count >= n).sum())
        if frames >= min_frames and frames >= min_fraction * speech:
            return n
    return int(speech > 0)
