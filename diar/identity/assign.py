"""Local speakers take recording speakers, window by window.

Two local speakers of one window are different people, so every window's local speakers
take distinct speakers: those with an embedding by their similarity to the speakers'
centroids (:func:`assign_embedded`, a Hungarian assignment per window), the others by the
activity they share with labelled local speakers of the overlapping windows
(:func:`attach_by_activity`), then :func:`fill_windows` gives each window's remaining local
speakers a speaker the window does not have yet: also a speaker that is heard only where
others talk too, so the overlap the frame model hears is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from diar.stitching import WindowOutputs


def distinct_assignment(scores: np.ndarray) -> np.ndarray:
    """Per row of ``scores`` (shape (n, K): the local speakers of one window against K
    speakers), a distinct column maximising the total score (Hungarian); rows beyond K take
    their best column. Shape (n,) int64."""
    best = np.argmax(scores, axis=1).astype(np.int64)
    rows, cols = linear_sum_assignment(scores, maximize=True)
    best[rows] = cols
    return best


def assign_embedded(
    x: np.ndarray, embedded: np.ndarray, windows: Sequence[Sequence[int]], centroids: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """In every window, its embedded local speakers take distinct speakers: the assignment that
    maximises their total cosine similarity to the speakers' centroids (Hungarian); those
    beyond the number of speakers take their nearest one.

    Args:
        x: shape (P, D) unit-norm embeddings (rows of pieces not embedded are not read).
        embedded: shape (P,) bool, the pieces to assign.
        windows: the pieces of each window.
        centroids: shape (K, D) unit-norm.

    Returns:
        (shape (P,) int64 labels, -1 for the pieces not embedded; shape (P,) bool, the pieces
        whose speaker no other local speaker of their window has: those beyond the number of
        speakers share one, and :func:`fill_windows` may give them another).
    """
    labels = np.full(len(embedded), -1, dtype=np.int64)
    distinct = np.zeros(len(embedded), dtype=bool)
    if len(centroids) == 0:
        return labels, distinct
    for members in windows:
        local = [i for i in members if embedded[i]]
        if local:
            scores = x[local] @ centroids.T  # shape: (local, K)
            labels[local] = distinct_assignment(scores)
            rows, _ = linear_sum_assignment(scores, maximize=True)
            distinct[np.asarray(local)[rows]] = True
    return labels, distinct


def summed_activity(outputs: WindowOutputs, labels: np.ndarray, num_speakers: int = 0) -> np.ndarray:
    """Per frame, each speaker's activity summed over the pieces labelled with it.

    Args:
        labels: shape (P,) speaker of each piece (-1: none, not counted).
        num_speakers: columns at least (speakers without a piece have zero activity).

    Returns:
        shape (num_frames, K) float32, K = ``max(labels.max() + 1, num_speakers)``.
    """
    k = max(int(np.max(labels, initial=-1)) + 1, num_speakers)
    scores = np.zeros((outputs.num_frames, k), dtype=np.float32)
    for piece, label in zip(outputs.pieces, labels, strict=True):
        if label >= 0:
            scores[piece.start : piece.end, label] += piece.probs
    return scores


def attach_by_activity(outputs: WindowOutputs, labels: np.ndarray) -> np.ndarray:
    """Give pieces without a speaker (-1) the speaker whose activity agrees most with theirs.

    A piece with too little speech of its own for an embedding still talks in the rest of
    its window, where the overlapping windows hear the same speech: its speaker is the one
    whose activity, rendered from the pieces that have one, overlaps its own the most;
    never a speaker of another local speaker of its window. Pieces that overlap nobody
    keep -1.

    Returns:
        shape (P,) int64 labels.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    pending = np.flatnonzero(labels < 0)
    if len(pending) == 0 or labels.max(initial=-1) < 0:
        return labels
    scores = summed_activity(outputs, labels)  # shape: (T, K)
    taken: dict[int, set[int]] = {}  # window -> speakers of its settled local speakers
    for piece, label in zip(outputs.pieces, labels, strict=True):
        if label >= 0:
            taken.setdefault(piece.window, set()).add(int(label))
    for i in pending:
        piece = outputs.pieces[i]
        agreement = piece.probs @ scores[piece.start : piece.end]  # shape: (K,)
        agreement[list(taken.get(piece.window, ()))] = 0.0
        if agreement.max() > 0:
            labels[i] = int(np.argmax(agreement))
    return labels


def fill_windows(
    outputs: WindowOutputs, labels: np.ndarray, fixed: np.ndarray, near: int, num_speakers: int = 0
) -> np.ndarray:
    """Give the local speakers of every window distinct speakers wherever there are enough.

    :func:`assign_embedded` keeps the embedded local speakers of a window apart; those
    labelled after it (:func:`attach_by_activity`) may take a speaker their window already
    has, or none. Then the frames where the model hears both render as one speaker, and the
    overlap is lost. Here each of them whose speaker its window already has, or that has none
    (most active first), takes a speaker the window does not have yet: the one whose activity
    in the other windows agrees most with its own, else the one who talks most within
    ``near`` frames of its speech (probability above 0.5; people answer those who just
    spoke), else the one who talks most, else one that has not talked yet: with
    ``num_speakers`` above the speakers found by their embeddings, the extra ones are people
    heard only while someone else talks (:func:`~diar.identity.counting.heard_together`).
    With every speaker taken, it keeps its label.

    Args:
        labels: shape (P,) speaker of each piece (-1: none).
        fixed: shape (P,) bool, pieces whose speaker stays (those :func:`assign_embedded` gave).
        near: frames on each side of a piece where its speakers' neighbours are looked for.
        num_speakers: speakers there may be (at least ``labels.max() + 1``).

    Returns:
        shape (P,) int64 labels.
    """
    labels = np.asarray(labels, dtype=np.int64).copy()
    k = max(int(labels.max(initial=-1)) + 1, num_speakers)
    if k < 2:
        return labels
    scores = summed_activity(outputs, labels, k)  # shape: (T, K)
    talk = scores.sum(axis=0)  # shape: (K,)
    for _, _, members in outputs.windows:
        taken = {int(labels[i]) for i in members if fixed[i] and labels[i] >= 0}
        rest = [i for i in members if not fixed[i]]
        rest.sort(key=lambda i: -float(outputs.pieces[i].probs.sum()))  # most active first
        for i in rest:
            if labels[i] >= 0 and int(labels[i]) not in taken:
                taken.add(int(labels[i]))
                continue
            free = np.array([s for s in range(k) if s not in taken], dtype=np.int64)
            if len(free) == 0:
                continue
            piece = outputs.pieces[i]
            agreement = piece.probs @ scores[piece.start : piece.end][:, free]  # shape: (F,)
            talking = np.flatnonzero(piece.probs > 0.5)  # its frames (or its window's)
            first, last = (talking[0], talking[-1] + 1) if len(talking) else (0, len(piece.probs))
            span = slice(max(0, piece.start + first - near), piece.start + last + near)
            around = scores[span][:, free].sum(axis=0)
            for score in (agreement, around, talk[free], np.ones(len(free))):
                if score.max() > 0:
                    labels[i] = int(free[int(np.argmax(score))])
                    taken.add(int(labels[i]))
                    break
    return labels


def reference_labels(outputs: WindowOutputs, reference: np.ndarray) -> np.ndarray:
    """Label every piece with the reference speaker it overlaps most: an oracle identity step,
    to measure what the frame model's local speakers and count allow whatever the clustering
    (``diar bench default --bound``). The local speakers of a window take distinct reference
    speakers (the assignment of most overlap, Hungarian) where they overlap them, the others
    their most overlapped one; a piece that overlaps no reference speech takes none (-1).

    Args:
        reference: shape (num_frames, S) bool, each reference speaker's activity on the frame
            model's grid.

    Returns:
        shape (P,) int64 labels.
    """
    ref = np.asarray(reference, dtype=np.float32)
    if ref.shape[0] != outputs.num_frames:
        raise ValueError(f"reference has {ref.shape[0]} frames, the recording {outputs.num_frames}")
    labels = np.full(len(outputs.pieces), -1, dtype=np.int64)
    if ref.shape[1] == 0:
        return labels
    for _, _, members in outputs.windows:
        if not members:
            continue
        overlap = np.stack(  # shape: (local, S) frames each piece shares with each reference speaker
            [
                (outputs.pieces[i].probs > 0.5) @ ref[outputs.pieces[i].start : outputs.pieces[i].end]
                for i in members
            ]
        )
        best = distinct_assignment(overlap)  # shape: (local,)
        unshared = overlap[np.arange(len(members)), best] == 0  # assigned a speaker it never overlaps
        best[unshared] = np.argmax(overlap[unshared], axis=1)
        for r, i in enumerate(members):
            if overlap[r, best[r]] > 0:
                labels[i] = best[r]
    return labels


def relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0..K-1 by first appearance (-1 stays)."""
    order: dict[int, int] = {}
    out = np.asarray(labels, dtype=np.int64).copy()
    for i, x in enumerate(out):
        if x >= 0:
            out[i] = order.setdefault(int(x), len(order))
    return out
