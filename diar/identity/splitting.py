"""Local speakers split at their pauses, so that one that changes voice mid-window can.

segmentation-3.0 sometimes gives two people who take turns in a window one local speaker
(on simulated LibriSpeech conversations a few percent of the local speakers, on far-field
meetings more). Cutting every local speaker at its pauses of at least ``pause`` frames gives
its *parts*; a part with enough speech of its own is embedded on its own, and one whose voice
is nearer another speaker than its local speaker's takes that speaker
(:func:`relabel_parts`). The parts of a local speaker that never pauses are the local speaker
itself, and need no second embedding.
"""

from __future__ import annotations

import itertools

import numpy as np

from diar.stitching import Piece, WindowOutputs, frame_runs


def _groups(active: np.ndarray, pause: int) -> list[tuple[int, int]]:
    """[start, end) frame spans of the runs of ``active``, runs closer than ``pause`` joined."""
    spans: list[list[int]] = []
    for s, e in frame_runs(active):
        if spans and s - spans[-1][1] < pause:
            spans[-1][1] = e
        else:
            spans.append([s, e])
    return [(s, e) for s, e in spans]


def split_at_pauses(
    outputs: WindowOutputs, pause: int, threshold: float = 0.5
) -> tuple[WindowOutputs, np.ndarray]:
    """Cut every piece at the pauses of at least ``pause`` frames in its activity (probability
    above ``threshold``); each cut lies in the middle of its pause.

    Returns:
        (the outputs with each piece replaced by its parts, in window and piece order; shape
        (P',) int64 the piece each part comes from). A piece that does not pause is its own
        single part (the same object).
    """
    pieces: list[Piece] = []
    parents: list[int] = []
    windows: list[tuple[int, int, list[int]]] = []
    for start, length, members in outputs.windows:
        parts: list[int] = []
        for i in members:
            piece = outputs.pieces[i]
            spans = _groups(piece.probs > threshold, max(1, pause))
            if len(spans) <= 1:
                parts.append(len(pieces))
                pieces.append(piece)
                parents.append(i)
                continue
            middles = [(a[1] + b[0]) // 2 for a, b in itertools.pairwise(spans)]
            for lo, hi in itertools.pairwise([0, *middles, len(piece.probs)]):
                inside = np.zeros(len(piece.probs), dtype=bool)
                inside[lo:hi] = True
                parts.append(len(pieces))
                pieces.append(
                    Piece(
                        piece.window,
                        piece.local,
                        piece.start,
                        np.where(inside, piece.probs, 0.0).astype(np.float32),
                        piece.exclusive & inside,
                    )
                )
                parents.append(i)
        windows.append((start, length, parts))
    split = WindowOutputs(
        pieces,
        outputs.num_frames,
        outputs.coverage,
        outputs.count,
        windows,
        outputs.frame_stride,
        outputs.frame_center_offset,
    )
    return split, np.asarray(parents, dtype=np.int64)


def split_parts(parents: np.ndarray) -> np.ndarray:
    """Shape (P',) bool: the parts that are not their whole piece (their piece has several)."""
    parents = np.asarray(parents, dtype=np.int64)
    if len(parents) == 0:
        return np.zeros(0, dtype=bool)
    return np.bincount(parents)[parents] > 1


def relabel_parts(
    labels: np.ndarray,
    parents: np.ndarray,
    x: np.ndarray,
    embedded: np.ndarray,
    centroids: np.ndarray,
) -> np.ndarray:
    """The labels of the parts: each its piece's, except a part embedded on its own whose
    embedding is more similar to another speaker's centroid than to its piece's speaker's.
    A speaker never loses all its local speakers to the parts that leave it (a count known or
    bounded from below made it a speaker: it stays one).

    Args:
        labels: shape (P,) the pieces' speakers (-1: none).
        parents: shape (P',) the piece of each part.
        x: shape (P', D) unit-norm embeddings of the parts (rows not embedded are not read).
        embedded: shape (P',) bool, parts with an embedding of their own.
        centroids: shape (K, D) unit-norm, of the speakers 0..K-1 (speakers beyond K have none).

    Returns:
        shape (P',) int64.
    """
    out = np.asarray(labels, dtype=np.int64)[parents].copy()
    k = len(centroids)
    for c in np.flatnonzero(embedded):
        own = int(out[c])
        if k == 0 or not 0 <= own < k:
            continue
        similarity = x[c] @ centroids.T  # shape: (K,)
        best = int(np.argmax(similarity))
        if similarity[best] > similarity[own]:
            out[c] = best
    before = np.asarray(labels, dtype=np.int64)[parents]
    for speaker in set(before[before >= 0].tolist()) - set(out.tolist()):
        out[before == speaker] = speaker
    return out
