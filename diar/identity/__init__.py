"""Who is who: from the frame model's local speakers to the recording's speakers.

One step with three sources of identity: none (the local speakers' embeddings are clustered),
enrolled profiles (each found speaker takes the enrolled speaker it matches; those close to
no profile are unknown speakers, clustered with each other), or both at once, which is what
profiles give here: enrolled and unknown speakers side by side. In every case:

1. :func:`~diar.identity.clustering.cluster_speakers`: the local speakers with
   ``embed_min_seconds`` of speech of their own are clustered into speakers (at least as many
   as one window holds distinct voices; clusters with little speech fold).
2. :func:`~diar.identity.profiles.match_profiles` (with profiles): enrolled names, unknown
   speakers, and the enrolled speakers the clustering did not find.
3. :func:`~diar.identity.assign.assign_embedded`: every window's embedded local speakers take
   distinct speakers (Hungarian on cosine similarity to the centroids); the others follow
   their activity (:func:`~diar.identity.assign.attach_by_activity`) and take a speaker their
   window does not have yet, up to as many speakers as the frame model hears at once
   (:func:`~diar.identity.assign.fill_windows`, :func:`~diar.identity.counting.heard_together`).
4. :func:`~diar.identity.splitting.relabel_parts`: a local speaker cut at its pauses whose
   part, embedded on its own, sounds like another speaker gives that part to it.

Package layout: :mod:`~diar.identity.counting` (lower bounds on the count),
:mod:`~diar.identity.clustering`, :mod:`~diar.identity.profiles` (matching to enrolled
speakers), :mod:`~diar.identity.assign` (per-window assignment), :mod:`~diar.identity.splitting`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diar.cluster import Clusterer
from diar.identity.assign import assign_embedded, attach_by_activity, fill_windows
from diar.identity.clustering import cluster_speakers
from diar.identity.counting import heard_together, unit
from diar.identity.profiles import match_profiles
from diar.identity.splitting import relabel_parts
from diar.stitching import WindowOutputs


@dataclass(frozen=True)
class IdentityParams:
    """The identity step's settings (``identity.*``, with the count bounds of ``clustering.*``).

    Attributes:
        embed_min_seconds: local speakers (and parts) with this much speech of their own are
            clustered and assigned by their embedding; the others follow their activity.
        min_speaker_seconds: clusters with less embedded speech are not speakers of their own.
        distinct_distance: cosine distance at which two local speakers of one window are
            surely different people (a lower bound on the count); None: no such bound.
        overlap_fraction: least share of the heard speech the frame model must hear n people
            at once in (and ``overlap_frames`` frames) before n speakers are kept; None: off.
        overlap_frames: see ``overlap_fraction``.
        near: frames around a local speaker where its neighbours are looked for.
        unknown_threshold: least cosine similarity of a speaker to its enrolled profile.
        min_speakers, max_speakers: bounds of the estimated count.
    """

    embed_min_seconds: float = 1.0
    min_speaker_seconds: float = 1.0
    distinct_distance: float | None = 0.55
    overlap_fraction: float | None = 0.05
    overlap_frames: int = 0
    near: int = 0
    unknown_threshold: float = 0.3
    min_speakers: int = 1
    max_speakers: int | None = None


@dataclass(frozen=True)
class Identity:
    """The recording's speakers and who talks in each local speaker.

    Attributes:
        outputs: the window outputs the labels are for (the local speakers, or their parts).
        labels: shape (P,) int64, the speaker of each piece of ``outputs`` (0..K-1; -1: none).
        profiles: per speaker 0..K-1 the row of its enrolled profile, None when it has none
            (no enrollment, or an unknown speaker); a speaker no piece took is kept here too.
        centroids: shape (K', D) unit-norm centroids of the speakers that have one (K' <= K:
            the speakers heard only in overlap have none).
        piece_labels: shape (P0,) the speaker of each local speaker before its parts relabel.
    """

    outputs: WindowOutputs
    labels: np.ndarray
    profiles: list[int | None]
    centroids: np.ndarray
    piece_labels: np.ndarray


def identify(
    outputs: WindowOutputs,
    embeddings: np.ndarray,
    seconds: np.ndarray,
    clusterer: Clusterer,
    params: IdentityParams,
    num_speakers: int | None = None,
    profiles: np.ndarray | None = None,
    parts: tuple[WindowOutputs, np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> Identity:
    """Label every local speaker (or part) of a recording with a recording speaker.

    Args:
        outputs: the frame model's window outputs.
        embeddings: shape (P, D) one per local speaker (rows with 0 seconds are not read).
        seconds: shape (P,) speech behind each embedding.
        num_speakers: known count, or None to estimate within the params' bounds.
        profiles: shape (S, D) enrolled speakers' embeddings, or None.
        parts: ``(split outputs, parents (P',), embeddings (P', D), seconds (P',))`` of the
            local speakers cut at their pauses (:func:`~diar.identity.splitting.split_at_pauses`),
            with embeddings for the parts of pieces that were cut; None: no parts.

    Returns:
        the speakers and labels (of the parts when given).
    """
    x = unit(embeddings) if len(embeddings) else np.zeros((0, 0))
    reliable = np.asarray(seconds) >= params.embed_min_seconds  # shape: (P,)
    windows = outputs.pieces_by_window()
    centroids = cluster_speakers(  # shape: (K, D)
        x,
        seconds,
        reliable,
        windows,
        clusterer,
        num_speakers,
        params.min_speakers,
        params.max_speakers,
        params.min_speaker_seconds,
        params.distinct_distance,
    )
    matched: list[int | None] = [None] * len(centroids)
    if profiles is not None and len(profiles) and x.size:
        centroids, matched = match_profiles(centroids, profiles, params.unknown_threshold)
    # speakers the frame model hears at once are different people, however alike they sound
    heard = 0
    if params.overlap_fraction is not None and num_speakers is None:
        heard = heard_together(outputs, params.overlap_fraction, params.overlap_frames)
    most = num_speakers or params.max_speakers
    total = max(len(centroids), min(heard, most) if most else heard)
    labels, embedded = assign_embedded(x, reliable, windows, centroids)  # shape: (P,), (P,)
    labels = attach_by_activity(outputs, labels)
    if len(labels) and labels.max() < 0:
        labels[:] = 0  # nothing to compare with: one speaker
    labels = fill_windows(outputs, labels, embedded, params.near, total)
    piece_labels = labels
    result_outputs = outputs
    if parts is not None:
        result_outputs, parents, part_embeddings, part_seconds = parts
        part_x = unit(part_embeddings) if len(part_embeddings) else np.zeros((0, 0))
        own = np.asarray(part_seconds) >= params.embed_min_seconds
        labels = relabel_parts(labels, parents, part_x, own, centroids)
    speakers = max(int(labels.max(initial=-1)) + 1, len(centroids))
    return Identity(
        result_outputs,
        labels,
        [*matched, *([None] * (speakers - len(matched)))],
        centroids,
        piece_labels,
    )
