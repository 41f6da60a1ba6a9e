"""Frame-level post-processing shared by every model: smoothing, short-turn removal, labels -> turns.

Names and defaults follow ModelScope's speaker-diarization pipeline (FunASR
``diar_infer.py``): a median filter over ``smooth_size`` frames (83 at 10 ms,
zero-padded at both ends), then a speaker's turn is kept only if it lasts more
than ``dur_threshold`` frames (10, i.e. turns of 100 ms or less are dropped).

Exclusive turns (``postprocess.exclusive``, as pyannote 4's ``exclusive_speaker_diarization``
for aligning with a transcript) keep at most one speaker at each instant: per frame, of the
speakers active there, the one the pipeline scores highest (:func:`exclusive_labels`), before
the smoothing (:func:`exclusive_annotation`). :func:`exclusive_turns` does the same for turns
that come without scores.

Work is done on integer frame indices; seconds appear only when turns are built.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from scipy.ndimage import median_filter

from diar.types import FRAME_SHIFT, Annotation, Turn, frames_to_seconds

#: ModelScope defaults (frames at 10 ms).
SMOOTH_SIZE = 83
DUR_THRESHOLD = 10


def _check_labels(labels: np.ndarray) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"labels must have shape (frames, speakers), got {arr.shape}")
    return arr


def smooth_labels(labels: np.ndarray, smooth_size: int = SMOOTH_SIZE) -> np.ndarray:
    """Median-filter each speaker's binary activity over ``smooth_size`` frames.

    Same as ModelScope: ``median_filter(labels, (smooth_size, 1), mode="constant", cval=0)``,
    i.e. frames outside the recording count as silence.

    Args:
        labels: shape (num_frames, num_speakers), 0/1 (any integer or bool dtype).
        smooth_size: window length in frames; 1 or less leaves the labels unchanged.

    Returns:
        shape (num_frames, num_speakers), int8 0/1.
    """
    arr = _check_labels(labels)
    binary = (arr != 0).astype(np.int8)  # shape: (num_frames, num_speakers)
    if smooth_size <= 1 or binary.size == 0:
        return binary
    return median_filter(binary, size=(int(smooth_size), 1), mode="constant", cval=0).astype(np.int8)


def label_runs(column: np.ndarray) -> np.ndarray:
    """Runs of nonzero frames in a 1-D activity vector.

    Args:
        column: shape (num_frames,).

    Returns:
        shape (num_runs, 2) int64: [start_frame, end_frame) of each run, in order.
    """
    active = np.concatenate([[0], (np.asarray(column) != 0).astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(active))
    return edges.reshape(-1, 2).astype(np.int64)


def labels_to_turns(
    reco_id: str,
    labels: np.ndarray,
    speakers: Sequence[str],
    dur_threshold: float = DUR_THRESHOLD,
    shift: float = FRAME_SHIFT,
    offset: float = 0.0,
) -> list[Turn]:
    """Turns of a (not smoothed) binary label matrix, dropping those of <= ``dur_threshold`` frames.

    Args:
        labels: shape (num_frames, num_speakers).
        speakers: one label per column.
        dur_threshold: a run is kept only if it has strictly more frames than this.
        shift: frame shift in seconds.
        offset: time of frame 0 in seconds.
    """
    arr = _check_labels(labels)
    if arr.shape[1] != len(speakers):
        raise ValueError(f"labels have {arr.shape[1]} columns but {len(speakers)} speakers were given")
    turns: list[Turn] = []
    for k, speaker in enumerate(speakers):
        for start, end in label_runs(arr[:, k]):
            if end - start > dur_threshold:
                turns.append(
                    Turn(
                        reco_id,
                        round(offset + frames_to_seconds(int(start), shift), 6),
                        round(offset + frames_to_seconds(int(end), shift), 6),
                        speaker,
                    )
                )
    return turns


def labels_to_annotation(
    reco_id: str,
    labels: np.ndarray,
    speakers: Sequence[str],
    smooth_size: int = SMOOTH_SIZE,
    dur_threshold: float = DUR_THRESHOLD,
    shift: float = FRAME_SHIFT,
    offset: float = 0.0,
) -> Annotation:
    """ModelScope post-processing: median smoothing, then turns longer than ``dur_threshold`` frames.

    Args:
        labels: shape (num_frames, num_speakers) binary activity at ``shift`` seconds
            per frame (10 ms by default; use :func:`resample_labels` first for
            models on another grid so ``smooth_size``/``dur_threshold`` keep their meaning).
        speakers: one label per column.
        smooth_size: median window in frames (83).
        dur_threshold: minimum turn length, exclusive, in frames (10).
        shift: frame shift in seconds.
        offset: time of frame 0 in seconds.
    """
    smoothed = smooth_labels(labels, smooth_size)  # shape: (num_frames, num_speakers)
    return Annotation.from_turns(
        reco_id, labels_to_turns(reco_id, smoothed, speakers, dur_threshold, shift, offset)
    )


def exclusive_labels(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per frame, of the speakers active there, only the one with the highest score.

    pyannote 4's exclusive diarization: a frame where anyone talks keeps exactly one
    speaker, the most likely one; a frame where nobody talks stays silent.

    Args:
        labels: shape (num_frames, num_speakers), nonzero where a speaker is active.
        scores: shape (num_frames, num_speakers), how likely each speaker talks (any scale:
            activity, similarity); ties go to the lower column, NaN counts as the lowest score.

    Returns:
        shape (num_frames, num_speakers) int8 0/1 with at most one 1 per row.
    """
    arr = _check_labels(labels)
    score = np.asarray(scores, dtype=np.float64)
    if score.shape != arr.shape:
        raise ValueError(f"scores of shape {score.shape} do not match labels of shape {arr.shape}")
    active = arr != 0  # shape: (num_frames, num_speakers)
    out = np.zeros(arr.shape, dtype=np.int8)
    if arr.size == 0:
        return out
    masked = np.where(active & ~np.isnan(score), score, -np.inf)
    best = np.argmax(masked, axis=1)  # shape: (num_frames,)
    rows = np.flatnonzero(active.any(axis=1))
    out[rows, best[rows]] = 1
    # a row whose active scores are all NaN: argmax found -inf everywhere, pick its first active
    stray = rows[~active[rows, best[rows]]]
    if len(stray):
        out[stray] = 0
        out[stray, np.argmax(active[stray], axis=1)] = 1
    return out


def exclusive_annotation(
    reco_id: str,
    labels: np.ndarray,
    scores: np.ndarray,
    speakers: Sequence[str],
    smooth_size: int = SMOOTH_SIZE,
    dur_threshold: float = DUR_THRESHOLD,
    shift: float = FRAME_SHIFT,
    offset: float = 0.0,
) -> Annotation:
    """Exclusive turns: :func:`exclusive_labels`, then :func:`labels_to_annotation`'s smoothing
    and short-turn removal.

    The median filter keeps the speakers apart for an odd ``smooth_size`` (a frame is on where
    more than half its window is, and disjoint columns cannot both be); where an even one lets
    two speakers through, the higher score wins again. Every exclusive turn lies within a turn
    of the same speaker in :func:`labels_to_annotation` ``(labels, ...)`` (the filter is monotone).

    Args:
        labels: shape (num_frames, num_speakers) binary activity (overlap allowed).
        scores: shape (num_frames, num_speakers) what decides between speakers active together.
        speakers, smooth_size, dur_threshold, shift, offset: as :func:`labels_to_annotation`.
    """
    one = exclusive_labels(labels, scores)  # shape: (num_frames, num_speakers)
    smoothed = exclusive_labels(smooth_labels(one, smooth_size), scores)
    # smoothed already: smooth_size 1 leaves the labels as they are
    return labels_to_annotation(reco_id, smoothed, speakers, 1, dur_threshold, shift, offset)


def exclusive_turns(annotation: Annotation) -> Annotation:
    """Exclusive turns of an annotation that comes without scores: where turns overlap, the
    speaker whose turn there is the longest keeps the stretch (a short interjection inside
    a long turn goes to the long turn; ties: the speaker label that sorts first). Times are
    kept exactly (no frame grid); a speaker's consecutive pieces are joined.
    """
    reco_id = annotation.reco_id
    cuts = sorted({t.start for t in annotation} | {t.end for t in annotation})
    by_start = sorted(annotation, key=lambda t: t.start)
    out: list[Turn] = []
    live: list[Turn] = []  # turns that started before the current stretch and may cover it
    taken = 0
    for lo, hi in itertools.pairwise(cuts):
        while taken < len(by_start) and by_start[taken].start <= lo:
            live.append(by_start[taken])
            taken += 1
        live = [t for t in live if t.end >= hi]  # cuts include every end: covering = not ended
        if not live:
            continue
        best = min(live, key=lambda t: (-t.duration, t.speaker))
        if out and out[-1].speaker == best.speaker and out[-1].end == lo:
            out[-1] = Turn(reco_id, out[-1].start, hi, best.speaker)
        else:
            out.append(Turn(reco_id, lo, hi, best.speaker))
    return Annotation(reco_id, tuple(out))


def _fraction(seconds: float) -> Fraction:
    if not seconds > 0:
        raise ValueError(f"frame shift must be positive, got {seconds}")
    return Fraction(seconds).limit_denominator(1_000_000)


def resample_labels(labels: np.ndarray, src_shift: float, dst_shift: float = FRAME_SHIFT) -> np.ndarray:
    """Move frame labels from a ``src_shift`` grid to a ``dst_shift`` grid (e.g. WavLM 20 ms -> 10 ms).

    Each destination frame takes the value of the source frame containing its
    centre; the output covers the same duration, ``round(T * src_shift / dst_shift)``
    frames. Index arithmetic is exact (rational shifts), so no frame is lost to
    float rounding.

    Args:
        labels: shape (num_src_frames, num_speakers) (or (num_src_frames,)).

    Returns:
        shape (num_dst_frames, num_speakers), same dtype.
    """
    arr = np.asarray(labels)
    src, dst = _fraction(src_shift), _fraction(dst_shift)
    num_src = arr.shape[0]
    total = num_src * src / dst
    num_dst = int(total + Fraction(1, 2))  # round half up, exactly
    if num_src == 0 or num_dst == 0:
        return arr[:0].copy()
    j = np.arange(num_dst, dtype=np.int64)
    # centre of destination frame j is (2j + 1) * dst / 2; its source frame is floor(centre / src)
    num = dst.numerator * src.denominator
    den = 2 * dst.denominator * src.numerator
    if (2 * num_dst + 1) * num < 2**62:
        idx = ((2 * j + 1) * num) // den
    else:  # unusual shifts with huge numerators: exact Python integers
        idx = np.array([((2 * int(k) + 1) * num) // den for k in j], dtype=np.int64)
    idx = np.minimum(idx, num_src - 1)
    return arr[idx]


def model_frames_to_labels(
    active: np.ndarray,
    stride: int,
    center_offset: int,
    num_samples: int,
    label_stride: int = 160,
) -> np.ndarray:
    """Move a frame model's activity onto the 10 ms label grid, by receptive-field centres.

    Model frame ``i`` is centred at sample ``i * stride + center_offset``; label frame ``j``
    (``label_stride`` samples each, 160 at 16 kHz = 10 ms) takes the model frame whose centre
    is nearest to its own, ``(j + 1/2) * label_stride``. Integer arithmetic throughout.

    Args:
        active: shape (num_model_frames, K).
        num_samples: recording length; the labels cover ``num_samples // label_stride`` frames.

    Returns:
        shape (num_label_frames, K), ``active``'s dtype.
    """
    arr = np.asarray(active)
    num_labels = num_samples // label_stride
    if len(arr) == 0 or num_labels == 0:
        return np.zeros((num_labels, *arr.shape[1:]), dtype=arr.dtype)
    centres = (2 * np.arange(num_labels, dtype=np.int64) + 1) * label_stride  # twice the centre
    idx = (centres - 2 * center_offset + stride) // (2 * stride)  # round half up
    return arr[np.clip(idx, 0, len(arr) - 1)]
