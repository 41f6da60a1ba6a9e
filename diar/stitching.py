"""From the local speakers of overlapping windows to recording-level speakers.

A frame model (pyannote segmentation-3.0, WavLM-SD) hears a few *local* speakers per
window, in an order that changes from window to window. This module turns its window
outputs into speaker turns, the same way for every frame model:

1. :class:`WindowCollector` keeps, per window, the activity of each local speaker that
   talks (a :class:`Piece`), and per frame how many windows cover it and how many
   speakers they hear. Memory is a few bytes per frame of each active local speaker.
2. Every window *owns* the central ``hop`` of its span, so owned stretches tile the
   recording. A piece is embedded once, from its exclusive speech (no other local speaker
   talking) in its window's owned stretch widened by a little context
   (:func:`embed_regions`): each second of speech is embedded about once, not once per
   window that covers it.
3. :mod:`diar.identity` gives every piece a recording speaker (clustering, matching to
   enrolled profiles, per-window assignment: two local speakers of one window are
   different people).
4. :func:`render` averages each speaker's activity over the windows that cover a frame,
   and :func:`select_by_count` keeps per frame as many speakers as the frame model hears
   there: overlapped speech stays, and frames where the model hears nobody are silence.

Frame indices are global (frame 0 at sample 0) on the model's grid: a window starting at
sample ``s`` (a multiple of the model's stride) starts at frame ``s // stride``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from diar.audio import Waveform


@dataclass(frozen=True)
class WindowPlan:
    """Where the windows of one recording lie, in samples.

    Attributes:
        starts: shape (num_windows,) first sample of each window (multiples of the frame stride).
        length: samples per window (all windows have the same length).
    """

    starts: np.ndarray
    length: int

    def __len__(self) -> int:
        return len(self.starts)


def plan_windows(num_samples: int, window: int, hop: int, stride: int = 1) -> WindowPlan:
    """Cut ``num_samples`` samples into windows of ``window`` samples every ``hop`` samples.

    ``window`` and ``hop`` are rounded down to multiples of ``stride`` (the frame
    model's samples per frame) so that every window's frames fall on the global
    frame grid. The last window is moved back so it ends within ``stride`` samples
    of the end (not padded: padding would change the model's input statistics).
    A recording shorter than one window is a single window of its own length.

    Args:
        num_samples: recording length.
        window: window length in samples.
        hop: distance between window starts in samples (<= window).

    Returns:
        the window plan (empty when ``num_samples`` is 0).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    window = (window // stride) * stride
    hop = (hop // stride) * stride
    if window <= 0 or hop <= 0 or hop > window:
        raise ValueError(f"need 0 < hop <= window (in multiples of {stride} samples), got {window=} {hop=}")
    if num_samples <= 0:
        return WindowPlan(np.zeros(0, dtype=np.int64), 0)
    if num_samples <= window:
        return WindowPlan(np.zeros(1, dtype=np.int64), int(num_samples))
    last = ((num_samples - window) // stride) * stride
    starts = np.arange(0, last, hop, dtype=np.int64)
    starts = np.append(starts, last)
    return WindowPlan(starts, window)


@dataclass
class Piece:
    """One active local speaker of one window.

    Attributes:
        window: window index (order of :meth:`WindowCollector.add` calls).
        local: the model's output index in that window.
        start: global index of the window's first frame.
        probs: shape (num_frames,) float32 activity probabilities over the window.
        exclusive: shape (num_frames,) bool, active while no other local speaker of the window is.
    """

    window: int
    local: int
    start: int
    probs: np.ndarray
    exclusive: np.ndarray

    @property
    def end(self) -> int:
        return self.start + len(self.probs)


@dataclass
class WindowOutputs:
    """Every window's active local speakers and the frame model's speaker count.

    Attributes:
        pieces: every active local speaker of every window, in window order.
        num_frames: frames of the recording.
        coverage: shape (num_frames,) float32, windows covering each frame.
        count: shape (num_frames,) float32, active local speakers at each frame summed over
            the windows covering it.
        windows: for each window, (first frame, frames, indices of its pieces).
        frame_stride: samples between frames (the frame model's).
        frame_center_offset: sample at the centre of frame 0 (the frame model's).
    """

    pieces: list[Piece]
    num_frames: int
    coverage: np.ndarray
    count: np.ndarray
    windows: list[tuple[int, int, list[int]]]
    frame_stride: int = 1
    frame_center_offset: int = 0

    def speaker_count(self) -> np.ndarray:
        """Per frame, the number of speakers the model hears: the mean over the windows that
        cover the frame of their active local speakers, rounded half up (shape (num_frames,) int64)."""
        mean = self.count / np.maximum(self.coverage, 1.0)
        return np.floor(mean + 0.5).astype(np.int64)

    def pieces_by_window(self) -> list[list[int]]:
        """The pieces of each window that has any."""
        return [members for _, _, members in self.windows if members]


@dataclass
class WindowCollector:
    """Collect the outputs of consecutive windows of one recording.

    Args:
        num_frames: frames of the whole recording.
        threshold: a local speaker is active where its probability exceeds this.
        frame_stride, frame_center_offset: the frame model's grid (see :class:`WindowOutputs`).
    """

    num_frames: int
    threshold: float = 0.5
    frame_stride: int = 1
    frame_center_offset: int = 0
    pieces: list[Piece] = field(default_factory=list)
    _windows: list[tuple[int, int, list[int]]] = field(default_factory=list)
    _last_start: int = 0
    _coverage: np.ndarray = field(init=False, repr=False)
    _count: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._coverage = np.zeros(self.num_frames, dtype=np.float32)
        self._count = np.zeros(self.num_frames, dtype=np.float32)

    def add(self, start: int, probs: np.ndarray) -> None:
        """Add the next window (in order of start frame).

        Args:
            start: global index of the window's first frame.
            probs: shape (num_frames, num_local_speakers) activity probabilities.
        """
        p = np.asarray(probs, dtype=np.float32)
        if p.ndim != 2:
            raise ValueError(f"window probabilities must have shape (frames, speakers), got {p.shape}")
        if start < 0 or start + len(p) > self.num_frames:
            raise ValueError(
                f"window of {len(p)} frames at frame {start} lies outside the recording "
                f"({self.num_frames} frames)"
            )
        if start < self._last_start:
            raise ValueError(
                f"windows must be added in order of start frame, got {start} after {self._last_start}"
            )
        self._last_start = start
        window = len(self._windows)
        active = p > self.threshold  # shape: (frames, local)
        talking = active.sum(axis=1)  # shape: (frames,)
        exclusive = active & (talking == 1)[:, None]
        self._coverage[start : start + len(p)] += 1.0
        self._count[start : start + len(p)] += talking
        members = []
        for local in np.flatnonzero(active.any(axis=0)):
            members.append(len(self.pieces))
            self.pieces.append(
                Piece(window, int(local), int(start), p[:, local].copy(), exclusive[:, local].copy())
            )
        self._windows.append((int(start), len(p), members))

    def finish(self) -> WindowOutputs:
        """The collected pieces and counts."""
        return WindowOutputs(
            self.pieces,
            self.num_frames,
            self._coverage,
            self._count,
            self._windows,
            self.frame_stride,
            self.frame_center_offset,
        )


# --------------------------------------------------------------------------- embedding


def embed_regions(outputs: WindowOutputs, every: int = 1) -> np.ndarray:
    """Per piece, the frames [start, end) its window owns: whose speech its embedding is from.

    Every ``every``-th window is embedded (the others' pieces get an empty region and find
    their speaker through the activity they share with embedded windows). An embedded
    window owns the frames nearer to its centre than to the other embedded windows' (the
    first from its start, the last to its end), so owned stretches tile the recording, also
    where the last window was moved back to end at the recording's end.

    Returns:
        shape (num_pieces, 2) int64.
    """
    regions = np.zeros((len(outputs.pieces), 2), dtype=np.int64)
    chosen = list(range(0, len(outputs.windows), max(1, every)))
    if chosen and chosen[-1] != len(outputs.windows) - 1:
        chosen.append(len(outputs.windows) - 1)
    windows = [outputs.windows[k] for k in chosen]
    centres2 = [2 * start + length for start, length, _ in windows]  # twice each window's centre
    for k, (start, length, members) in enumerate(windows):
        lo = start if k == 0 else (centres2[k - 1] + centres2[k]) // 4
        hi = start + length if k == len(windows) - 1 else (centres2[k] + centres2[k + 1]) // 4
        regions[members] = (max(start, lo), min(start + length, hi))
    return regions


def frame_runs(mask: np.ndarray, offset: int = 0) -> list[tuple[int, int]]:
    """[start, end) frame runs of a boolean vector, shifted by ``offset``."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(s) + offset, int(e) + offset) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def gather_samples(
    waveform: Waveform, runs: Sequence[tuple[int, int]], stride: int, max_samples: int
) -> np.ndarray:
    """Concatenate the samples of frame runs (frame i = samples [i*stride, (i+1)*stride)).

    Runs are taken spread over the whole list when their total exceeds
    ``max_samples`` (every k-th run), so a long stretch is represented by all its parts.

    Returns:
        shape (n,) float32 with n <= max_samples.
    """
    if not runs:
        return np.zeros(0, dtype=np.float32)
    lengths = np.array([e - s for s, e in runs]) * stride
    step = max(1, int(np.ceil(lengths.sum() / max(max_samples, 1))))
    parts = []
    total = 0
    for s, e in runs[::step]:
        part = waveform[s * stride : e * stride]
        parts.append(part[: max_samples - total])
        total += len(parts[-1])
        if total >= max_samples:
            break
    return np.concatenate(parts).astype(np.float32, copy=False)


def piece_speech(
    outputs: WindowOutputs,
    regions: np.ndarray,
    waveform: Waveform,
    stride: int,
    max_samples: int,
    context: int = 0,
    pieces: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """Per piece, up to ``max_samples`` of its exclusive speech, nearest its window's stretch first.

    The speech inside the piece's region comes first, then the speech up to ``context``
    frames on either side (within its window), nearest first, until ``max_samples``: a
    speaker who says little in the stretch its window owns still gets an embedding of a
    useful length, and the cost stays bounded per window.

    Args:
        pieces: the pieces to gather, by index (default: all).

    Returns:
        per piece, shape (n,) float32 samples in time order.
    """
    out = []
    chosen = range(len(outputs.pieces)) if pieces is None else pieces
    for i in chosen:
        piece, (lo, hi) = outputs.pieces[i], regions[i]
        a, b = max(piece.start, int(lo) - context), min(piece.end, int(hi) + context)
        mask = piece.exclusive[a - piece.start : b - piece.start].copy() if a < b else np.zeros(0, bool)
        frames = np.flatnonzero(mask) + a
        if len(frames) * stride > max_samples:
            # distance of each speech frame to the region (0 inside), nearest first
            distance = np.maximum(np.maximum(int(lo) - frames, frames - (int(hi) - 1)), 0)
            keep = np.sort(frames[np.argsort(distance, kind="stable")[: max_samples // stride]])
            mask[:] = False
            mask[keep - a] = True
        runs = frame_runs(mask, a)
        out.append(gather_samples(waveform, runs, stride, max_samples))
    return out


# --------------------------------------------------------------------------- rendering


def render(outputs: WindowOutputs, labels: np.ndarray) -> np.ndarray:
    """Recording-level speaker scores: in each window, a speaker's activity is the largest of
    its local speakers' probabilities (two local speakers of one window may share a speaker
    when the count forced it); windows are averaged where they overlap.

    Args:
        labels: shape (P,) speaker of each piece (-1: none, not rendered).

    Returns:
        shape (num_frames, K) float32 in [0, 1], K = ``labels.max() + 1``.
    """
    k = int(labels.max()) + 1 if len(labels) else 0
    total = np.zeros((outputs.num_frames, max(k, 0)), dtype=np.float32)
    for start, length, members in outputs.windows:
        speakers = [(i, int(labels[i])) for i in members if labels[i] >= 0]
        if not speakers:
            continue
        window = np.zeros((length, k), dtype=np.float32)  # shape: (frames, K)
        for i, speaker in speakers:
            np.maximum(window[:, speaker], outputs.pieces[i].probs, out=window[:, speaker])
        total[start : start + length] += window
    total /= np.maximum(outputs.coverage, 1.0)[:, None]
    return total


def select_by_count(scores: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Per frame, the ``count[t]`` speakers with the highest scores (of those above 0).

    Args:
        scores: shape (num_frames, K).
        count: shape (num_frames,) int, speakers heard per frame.

    Returns:
        shape (num_frames, K) bool.
    """
    num_frames, k = scores.shape
    if k == 0 or num_frames == 0:
        return np.zeros((num_frames, k), dtype=bool)
    order = np.argsort(-scores, axis=1, kind="stable")  # shape: (T, K), best first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(k), (num_frames, k)), axis=1)
    return (rank < np.minimum(count, k)[:, None]) & (scores > 0)
