"""Stitch the local speakers of overlapping windows into recording-level speakers.

A frame model such as WavLM-SD sees a few "local" speakers per window, in an
arbitrary order that changes from window to window. Stitching runs in three
steps, each usable on its own:

1. :class:`WindowStitcher` takes the windows' per-frame probabilities one at a
   time and links each window's active local speakers to those of the previous
   window where they agree on the shared frames (Hungarian assignment on
   intersection over union of activity). Linked pieces form *chains*; a
   speaker who is silent in a whole overlap starts a new chain. Only 1-D
   probabilities of active local speakers are kept, so memory is a few bytes
   per frame, whatever the length of the recording.
2. Every piece is embedded with a speaker embedder on its exclusive speech
   (:func:`embed_pieces`). :func:`split_chains` cuts a chain where a piece no
   longer sounds like the chain so far (a window with more speakers than
   outputs can hand one output from a speaker to another). Chains are then
   embedded (:func:`embed_chains`: their pieces' mean, or their speech) and
   clustered by :func:`link_chains`: average-linkage agglomerative clustering
   on cosine distance with cannot-link constraints, since two chains active in
   the same window are different speakers. This links a speaker across gaps.
3. :func:`render` averages the probabilities of every speaker's pieces where
   windows overlap, giving one (frames, speakers) matrix; a frame may be active
   for several speakers (overlapped speech stays).

Frame indices are global (frame 0 at sample 0) on the model's grid.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import linear_sum_assignment

from diar.audio import Waveform

logger = logging.getLogger(__name__)


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
        window: window index (order of :meth:`WindowStitcher.add` calls).
        local: the model's output index in that window.
        start: global index of the window's first frame.
        probs: shape (num_frames,) activity probabilities.
        exclusive: shape (num_frames,) bool, active while no other local speaker of the window is.
        chain: index of the chain the piece belongs to.
    """

    window: int
    local: int
    start: int
    probs: np.ndarray
    exclusive: np.ndarray
    chain: int

    @property
    def end(self) -> int:
        return self.start + len(self.probs)


@dataclass
class StitchResult:
    """Pieces and the chains they form.

    Attributes:
        pieces: every active local speaker of every window.
        chains: for each chain, the indices of its pieces in window order.
        cannot_link: shape (num_chains, num_chains) bool, True where two chains are
            active in a common window (hence different speakers).
        num_frames: frames of the recording.
    """

    pieces: list[Piece]
    chains: list[list[int]]
    cannot_link: np.ndarray
    num_frames: int

    @property
    def num_chains(self) -> int:
        return len(self.chains)


@dataclass
class WindowStitcher:
    """Incrementally link the local speakers of consecutive overlapping windows.

    Args:
        num_frames: frames of the whole recording.
        threshold: a frame is active where the probability exceeds this.
        min_link_frames: frames of joint activity in an overlap needed to link two pieces.
        min_link_iou: intersection over union of activity needed to link two pieces.
    """

    num_frames: int
    threshold: float = 0.5
    min_link_frames: int = 10
    min_link_iou: float = 0.5
    pieces: list[Piece] = field(default_factory=list)
    _chains: list[list[int]] = field(default_factory=list)
    _previous: list[int] = field(default_factory=list)
    _window_pieces: list[list[int]] = field(default_factory=list)
    _last_start: int = 0

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
        window = len(self._window_pieces)
        active = p > self.threshold  # shape: (frames, local)
        others = active.sum(axis=1, keepdims=True) - active  # shape: (frames, local)
        exclusive = active & (others == 0)
        current: list[int] = []
        for local in np.flatnonzero(active.any(axis=0)):
            self.pieces.append(
                Piece(window, int(local), int(start), p[:, local].copy(), exclusive[:, local].copy(), -1)
            )
            current.append(len(self.pieces) - 1)
        links = self._align(current)
        for idx in current:
            chain = links.get(idx)
            if chain is None:
                chain = len(self._chains)
                self._chains.append([])
            self._chains[chain].append(idx)
            self.pieces[idx].chain = chain
        self._window_pieces.append(current)
        self._previous = current

    def _align(self, current: list[int]) -> dict[int, int]:
        """Chains of the previous window that the current pieces continue: {piece index: chain}."""
        if not current or not self._previous:
            return {}
        cur0 = self.pieces[current[0]]
        prev0 = self.pieces[self._previous[0]]
        lo, hi = cur0.start, min(prev0.end, cur0.end)
        if hi <= lo:
            return {}
        cur = np.stack([self.pieces[i].probs[lo - cur0.start : hi - cur0.start] for i in current])
        prev = np.stack([self.pieces[j].probs[lo - prev0.start : hi - prev0.start] for j in self._previous])
        a, b = cur > self.threshold, prev > self.threshold  # shape: (pieces, overlap_frames)
        both = (a[:, None, :] & b[None, :, :]).sum(axis=2)  # shape: (cur, prev)
        either = (a[:, None, :] | b[None, :, :]).sum(axis=2)
        iou = both / np.maximum(either, 1)
        rows, cols = linear_sum_assignment(iou, maximize=True)
        links = {}
        for r, c in zip(rows, cols, strict=True):
            if both[r, c] >= self.min_link_frames and iou[r, c] >= self.min_link_iou:
                links[current[r]] = self.pieces[self._previous[c]].chain
        return links

    def finish(self) -> StitchResult:
        """The pieces, their chains and the chains' cannot-link constraints."""
        by_window = [[self.pieces[i].chain for i in members] for members in self._window_pieces]
        cannot = chain_cannot_links(by_window, len(self._chains))
        return StitchResult(self.pieces, [list(c) for c in self._chains], cannot, self.num_frames)


def chain_cannot_links(window_chains: Iterable[list[int]], num_chains: int) -> np.ndarray:
    """Chains that talk in one window are different speakers.

    Args:
        window_chains: per window, the chains of its pieces.

    Returns:
        shape (num_chains, num_chains) bool, symmetric, False on the diagonal.
    """
    cannot = np.zeros((num_chains, num_chains), dtype=bool)
    for chains in window_chains:
        for x in chains:
            for y in chains:
                if x != y:
                    cannot[x, y] = True
    return cannot


def adapted_threshold(known: np.ndarray, threshold: float, adapt: float | None) -> float:
    """``threshold``, lowered to ``adapt`` x the median of ``known`` distances between different
    speakers when that is lower (with at least two of them; ``adapt`` None: unchanged)."""
    if adapt is None or len(known) < 2:
        return threshold
    median = float(np.median(known))
    if adapt * median < threshold:
        logger.debug("threshold %.3f lowered to %.3f (%.3f x %.3f)", threshold, adapt * median, adapt, median)
        return adapt * median
    return threshold


def chain_frame_mean(result: StitchResult, chain: int, values: str = "probs") -> tuple[int, np.ndarray]:
    """Mean over a chain's overlapping pieces of their ``probs`` or ``exclusive`` values.

    Returns:
        (first frame, shape (span_frames,) float32 mean values over the chain's span).
    """
    members = [result.pieces[i] for i in result.chains[chain]]
    lo = min(p.start for p in members)
    hi = max(p.end for p in members)
    total = np.zeros(hi - lo, dtype=np.float32)
    count = np.zeros(hi - lo, dtype=np.float32)
    for p in members:
        total[p.start - lo : p.end - lo] += getattr(p, values)
        count[p.start - lo : p.end - lo] += 1
    return lo, total / np.maximum(count, 1)


def _runs(mask: np.ndarray, offset: int) -> list[tuple[int, int]]:
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return [(int(s) + offset, int(e) + offset) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def chain_speech_runs(
    result: StitchResult, chain: int, threshold: float = 0.5
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Frame runs [start, end) of a chain's speech: (exclusive runs, all active runs).

    A frame is exclusive where more than half of the chain's pieces covering it
    say the speaker talks alone; active where the mean probability exceeds ``threshold``.
    """
    lo, excl = chain_frame_mean(result, chain, "exclusive")
    _, probs = chain_frame_mean(result, chain, "probs")
    return _runs(excl > 0.5, lo), _runs(probs > threshold, lo)


def gather_samples(
    waveform: Waveform, runs: Sequence[tuple[int, int]], stride: int, max_samples: int
) -> np.ndarray:
    """Concatenate the samples of frame runs (frame i = samples [i*stride, (i+1)*stride)).

    Runs are taken spread over the whole list when their total exceeds
    ``max_samples`` (every k-th run), so a long chain is represented by all its parts.

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


def embed_chains(
    result: StitchResult,
    waveform: Waveform,
    embed: Callable[[np.ndarray], np.ndarray],
    stride: int,
    min_samples: int,
    max_samples: int,
    threshold: float = 0.5,
    pieces: dict[int, PieceEmbedding] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One embedding per chain from its exclusive speech (all its speech when that is too short).

    With ``pieces`` (:func:`embed_pieces`), a chain with embedded pieces gets the
    mean of their embeddings weighted by speech, instead of a new embedding.

    Args:
        waveform: shape (num_samples,) the recording.
        embed: utterance embedder, shape (n,) -> (dim,).
        stride: samples per frame.
        min_samples: speech needed for a reliable embedding; shorter speech is tiled to this length
            and the chain marked unreliable.
        max_samples: at most this much speech is embedded per chain.

    Returns:
        (shape (num_chains, dim) float32 embeddings, shape (num_chains,) bool: reliable).
    """
    embeddings = []
    reliable = np.zeros(result.num_chains, dtype=bool)
    for c in range(result.num_chains):
        known = [pieces[i] for i in result.chains[c] if i in pieces] if pieces else []
        if known:
            mean = np.sum([p.samples * p.vector for p in known], axis=0)
            embeddings.append((mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32))
            reliable[c] = True
            continue
        exclusive, active = chain_speech_runs(result, c, threshold)
        speech = gather_samples(waveform, exclusive, stride, max_samples)
        if len(speech) < min_samples:
            speech = gather_samples(waveform, active, stride, max_samples)
        reliable[c] = len(speech) >= min_samples
        if len(speech) == 0:  # frames past the end of the samples (cannot happen with a real plan)
            speech = np.zeros(min_samples, dtype=np.float32)
        if len(speech) < min_samples:
            speech = np.tile(speech, int(np.ceil(min_samples / len(speech))))[:min_samples]
        embeddings.append(np.asarray(embed(speech), dtype=np.float32).reshape(-1))
    if not embeddings:
        return np.zeros((0, 0), dtype=np.float32), reliable
    return np.stack(embeddings), reliable


def with_chains(result: StitchResult, chains: list[list[int]]) -> StitchResult:
    """The same pieces grouped into other chains (cannot-links recomputed from the windows)."""
    pieces = [replace(p) for p in result.pieces]
    for c, members in enumerate(chains):
        for i in members:
            pieces[i].chain = c
    by_window: dict[int, list[int]] = {}
    for p in pieces:
        by_window.setdefault(p.window, []).append(p.chain)
    cannot = chain_cannot_links(by_window.values(), len(chains))
    return StitchResult(pieces, [list(m) for m in chains], cannot, result.num_frames)


@dataclass(frozen=True)
class PieceEmbedding:
    """Embedding of one piece's exclusive speech.

    Attributes:
        vector: shape (dim,) float64, L2-normalised.
        samples: exclusive speech samples it was computed from.
    """

    vector: np.ndarray
    samples: int


def embed_pieces(
    result: StitchResult,
    waveform: Waveform,
    embed: Callable[[np.ndarray], np.ndarray],
    stride: int,
    min_samples: int,
) -> dict[int, PieceEmbedding]:
    """Embed every piece with at least ``min_samples`` of exclusive speech: {piece index: embedding}."""
    out: dict[int, PieceEmbedding] = {}
    for i, piece in enumerate(result.pieces):
        runs = _runs(piece.exclusive, piece.start)
        speech = gather_samples(waveform, runs, stride, len(piece.probs) * stride)
        if len(speech) >= min_samples:
            e = np.asarray(embed(speech), dtype=np.float64).reshape(-1)
            out[i] = PieceEmbedding(e / max(float(np.linalg.norm(e)), 1e-12), len(speech))
    return out


def split_chains(
    result: StitchResult,
    pieces: dict[int, PieceEmbedding],
    threshold: float,
    adapt: float | None = None,
) -> StitchResult:
    """Correct chains: cut a chain where a piece no longer sounds like the chain so far.

    A window with more speakers than model outputs may hand one output from one
    speaker to another; the overlap then links two speakers into one chain. Walking
    a chain in order, a piece whose embedding (``pieces``, see :func:`embed_pieces`;
    pieces without one are never cut at) lies farther than ``threshold``
    (cosine distance) from the mean of the current segment's starts a new chain.
    With ``adapt``, the threshold is lowered as in :func:`link_chains`, from the
    distances between pieces of one window (different speakers). Cuts of one
    speaker's chain are harmless: :func:`link_chains` joins them again.

    Returns:
        the pieces grouped into the corrected chains.
    """
    embeddings = {i: e.vector for i, e in pieces.items()}
    if adapt is not None:
        by_window: dict[int, list[int]] = {}
        for i in embeddings:
            by_window.setdefault(result.pieces[i].window, []).append(i)
        known = [
            1.0 - float(embeddings[a] @ embeddings[b])
            for members in by_window.values()
            for k, a in enumerate(members)
            for b in members[k + 1 :]
        ]
        threshold = adapted_threshold(np.asarray(known), threshold, adapt)
    chains: list[list[int]] = []
    for members in result.chains:
        segment: list[int] = []
        total: np.ndarray | None = None
        for i in members:
            vec = embeddings.get(i)
            if vec is not None and total is not None and segment:
                mean = total / max(float(np.linalg.norm(total)), 1e-12)
                if 1.0 - float(mean @ vec) > threshold:
                    chains.append(segment)
                    segment, total = [], None
            segment.append(i)
            if vec is not None:
                total = vec.copy() if total is None else total + vec
        chains.append(segment)
    if len(chains) != result.num_chains:
        logger.debug("chain correction: %d chains -> %d", result.num_chains, len(chains))
    return with_chains(result, chains)


def _cosine_distances(x: np.ndarray) -> np.ndarray:
    """Shape (n, dim) -> (n, n) float64 cosine distances in [0, 2], computed in ``x``'s precision."""
    norm = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    dist = norm @ norm.T  # shape: (n, n); in place from here: one (n, n) temporary, not three
    np.subtract(1.0, dist, out=dist)
    np.clip(dist, 0.0, 2.0, out=dist)
    return dist.astype(np.float64, copy=False)


def link_chains(
    embeddings: np.ndarray,
    cannot_link: np.ndarray,
    threshold: float,
    num_speakers: int | None = None,
    min_speakers: int = 1,
    max_speakers: int | None = None,
    reliable: np.ndarray | None = None,
    adapt: float | None = None,
) -> np.ndarray:
    """Cluster chains into speakers: average-linkage AHC on cosine distance with cannot-link.

    Clusters merge while their average distance is below ``threshold`` (and the
    count is above the lower bound); merging goes on past the threshold while the
    count is above the upper bound (``num_speakers`` fixes both). Clusters with
    a cannot-link pair are never merged, so the count may stay above the bound
    when the constraints require it. Unreliable chains (too little speech for an
    embedding) do not take part; each then joins the nearest cluster it does
    not conflict with if that one is closer than ``threshold`` (or whatever its
    distance, once the count has reached its upper bound), else it starts a
    speaker of its own, which later unreliable chains may join: a speaker who
    only ever says a few words is kept apart from those they talk with.

    Args:
        embeddings: shape (num_chains, dim).
        cannot_link: shape (num_chains, num_chains) bool.
        threshold: cosine distance (1 - cosine similarity) above which clusters stay apart.
        reliable: shape (num_chains,) bool, default all True.
        adapt: when set, the threshold is lowered to ``adapt`` times the median distance
            between reliable chains known to be different speakers (cannot-link pairs)
            if that is lower: embeddings of one recording's speakers may all lie closer
            together than a corpus-wide threshold assumes (far-field meetings).

    Returns:
        shape (num_chains,) int64 speaker labels 0..K-1, numbered by first chain.
    """
    n = len(embeddings)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    ok = np.ones(n, dtype=bool) if reliable is None else np.asarray(reliable, dtype=bool).copy()
    if not ok.any():
        ok[:] = True  # nothing better to go on: cluster them all
    core = np.flatnonzero(ok)
    lo = num_speakers if num_speakers is not None else max(1, min_speakers)
    hi = num_speakers if num_speakers is not None else (max_speakers or n)
    dist = _cosine_distances(embeddings)
    cannot = np.asarray(cannot_link, dtype=bool)
    attach = threshold  # for unreliable chains, whose noisy embeddings lie farther from their speaker
    all_core = len(core) == n
    # Agglomerative clustering of the reliable chains; D holds cluster distances, inf = forbidden.
    # With every chain reliable, ``dist`` is not read again and becomes D itself (no second (n, n)).
    d = dist if all_core else dist[np.ix_(core, core)]  # fancy indexing copies
    forbidden = cannot if all_core else cannot[np.ix_(core, core)]
    if adapt is not None:
        threshold = adapted_threshold(d[np.triu(forbidden, k=1)], threshold, adapt)
    d[forbidden] = np.inf
    np.fill_diagonal(d, np.inf)
    sizes = np.ones(len(core))
    alive = np.ones(len(core), dtype=bool)
    members: list[list[int]] = [[int(i)] for i in core]
    count = len(core)
    while count > 1:
        flat = int(np.argmin(d))  # merged-away rows and columns are inf
        i, j = divmod(flat, len(core))
        best = d[i, j]
        if not np.isfinite(best):
            break
        if count <= lo or (best >= threshold and count <= hi):
            break
        # merge j into i (Lance-Williams average linkage; inf stays inf)
        merged = (sizes[i] * d[i] + sizes[j] * d[j]) / (sizes[i] + sizes[j])
        merged[np.isinf(d[i]) | np.isinf(d[j])] = np.inf
        d[i, :] = merged
        d[:, i] = merged
        d[i, i] = np.inf
        d[j, :] = np.inf
        d[:, j] = np.inf
        sizes[i] += sizes[j]
        alive[j] = False
        members[i].extend(members[j])
        members[j] = []
        count -= 1

    labels = np.full(n, -1, dtype=np.int64)
    clusters = [m for m, a in zip(members, alive, strict=True) if a]
    for k, m in enumerate(clusters):
        labels[m] = k
    # unreliable chains: nearest compatible cluster by average distance
    for c in np.flatnonzero(labels < 0):
        best_k, best_d = -1, np.inf
        for k in range(len(clusters)):
            ids = np.flatnonzero(labels == k)
            if cannot[c, ids].any():
                continue
            mean = float(dist[c, ids].mean())
            if mean < best_d:
                best_k, best_d = k, mean
        if best_k < 0 or (best_d >= attach and len(clusters) < hi):
            best_k = len(clusters)
            clusters.append([])
        labels[c] = best_k
        clusters[best_k].append(int(c))
    return _relabel(labels)


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Renumber labels 0..K-1 by first appearance."""
    order: dict[int, int] = {}
    out = np.empty_like(labels)
    for i, x in enumerate(labels):
        out[i] = order.setdefault(int(x), len(order))
    return out


def render(result: StitchResult, speaker_of_chain: np.ndarray) -> np.ndarray:
    """Recording-level activity probabilities: each speaker's pieces averaged where they overlap.

    Args:
        speaker_of_chain: shape (num_chains,) labels 0..K-1.

    Returns:
        shape (num_frames, K) float32; frames no piece of a speaker covers are 0.
    """
    k = int(speaker_of_chain.max()) + 1 if len(speaker_of_chain) else 0
    columns = [render_speaker(result, speaker_of_chain, s) for s in range(k)]
    return np.stack(columns, axis=1) if columns else np.zeros((result.num_frames, 0), dtype=np.float32)


def render_speaker(result: StitchResult, speaker_of_chain: np.ndarray, speaker: int) -> np.ndarray:
    """One column of :func:`render`: memory for one speaker at a time, whatever the speaker count.

    Returns:
        shape (num_frames,) float32.
    """
    total = np.zeros(result.num_frames, dtype=np.float32)
    count = np.zeros(result.num_frames, dtype=np.float32)
    for piece in result.pieces:
        if int(speaker_of_chain[piece.chain]) == speaker:
            total[piece.start : piece.end] += piece.probs
            count[piece.start : piece.end] += 1
    return total / np.maximum(count, 1)
