"""Separately tested steps shared by the window-embedding pipelines (cluster and profile modes).

A recording goes through: speech regions (VAD) -> sliding windows over speech ->
batched window embeddings -> per-window speaker scores (cluster labels or profile
similarities) -> frame labels on the 10 ms grid -> :mod:`diar.postprocess`.

Positions are integer sample indices until frames are built; frames are
``FRAME_SHIFT`` (10 ms) long and frame ``t`` covers samples
``[t * hop, (t + 1) * hop)`` with ``hop = sample_rate * FRAME_SHIFT``.
"""

from __future__ import annotations

import numpy as np

from diar.errors import NoSpeechError
from diar.models.base import Embedder, VoiceActivityDetector
from diar.types import FRAME_SHIFT

#: Peak level (linear, -80 dBFS) below which audio is silent: there is no voice to embed.
SILENT_PEAK = 1e-4
#: Norm below which an embedding counts as all zeros.
ZERO_NORM = 1e-6


def frame_samples(sample_rate: int, shift: float = FRAME_SHIFT) -> int:
    """Samples per label frame (160 at 16 kHz and 10 ms)."""
    return round(sample_rate * shift)


def num_label_frames(num_samples: int, sample_rate: int, shift: float = FRAME_SHIFT) -> int:
    """Number of 10 ms label frames of a waveform (the last partial frame counts if at least half full)."""
    step = frame_samples(sample_rate, shift)
    return (num_samples + step // 2) // step


def detect_speech(vad: VoiceActivityDetector, waveform: np.ndarray) -> np.ndarray:
    """Speech regions of a recording. waveform: (N,) -> (R, 2) int64 sample indices [start, end), sorted."""
    regions = np.asarray(vad(waveform), dtype=np.int64).reshape(-1, 2)
    regions = regions[regions[:, 1] > regions[:, 0]]
    return regions[np.argsort(regions[:, 0], kind="stable")]


def windows_over_speech(
    regions: np.ndarray, window: float, hop: float, sample_rate: int, num_samples: int
) -> np.ndarray:
    """Sliding windows over each speech region.

    A region of at least ``window`` seconds gets windows every ``hop`` seconds from its
    start, plus one ending exactly at its end when the last one falls short. A shorter
    region gets one window of ``window`` seconds centred on it (so it sees some context;
    shifted to stay inside the recording, and cut to the recording when that is shorter).

    Args:
        regions: shape (R, 2) sample indices [start, end).
        window, hop: seconds.
        num_samples: length of the recording.

    Returns:
        shape (W, 2) int64 sample indices [start, end), sorted by start.
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window ({window}) and hop ({hop}) must be positive")
    win = round(window * sample_rate)
    step = max(1, round(hop * sample_rate))
    out: list[tuple[int, int]] = []
    for start, end in np.asarray(regions, dtype=np.int64).reshape(-1, 2):
        start, end = max(0, int(start)), min(num_samples, int(end))
        if end <= start:
            continue
        if end - start <= win:
            if num_samples <= win:
                out.append((0, num_samples))
                continue
            s = (start + end) // 2 - win // 2
            s = min(max(s, 0), num_samples - win)
            out.append((s, s + win))
            continue
        starts = list(range(start, end - win + 1, step))
        if starts[-1] + win < end:
            starts.append(end - win)
        out.extend((s, s + win) for s in starts)
    if not out:
        return np.zeros((0, 2), dtype=np.int64)
    windows = np.array(sorted(set(out)), dtype=np.int64)
    return windows


def normalize_level(batch: np.ndarray, target_db: float) -> np.ndarray:
    """Scale each row to an RMS of ``target_db`` dBFS (silent rows are left alone). (B, N) -> (B, N)."""
    rms = np.sqrt(np.mean(np.square(batch, dtype=np.float64), axis=1, keepdims=True))
    gain = np.where(rms > 1e-6, 10.0 ** (target_db / 20.0) / np.maximum(rms, 1e-6), 1.0)
    return (batch * gain).astype(np.float32)


def embed_windows(
    embedder: Embedder,
    waveform: np.ndarray,
    windows: np.ndarray,
    batch_size: int = 64,
    normalize_db: float | None = None,
) -> np.ndarray:
    """Embed every window, many per forward pass.

    Windows of equal length are batched together (all but the short-recording case);
    windows shorter than ``embedder.min_num_samples`` are zero-padded and masked.

    Args:
        waveform: shape (N,) float32 at ``embedder.sample_rate``.
        windows: shape (W, 2) sample indices [start, end).
        normalize_db: scale each window to this RMS level (dBFS) first, so that the
            embedding does not depend on how loud a speaker is (GE2E's input is a mel
            power spectrogram, not its log); None leaves the audio as it is.

    Returns:
        shape (W, embedder.dimension) float32, in the order of ``windows``.
    """
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    out = np.zeros((len(windows), embedder.dimension), dtype=np.float32)
    if len(windows) == 0:
        return out
    lengths = windows[:, 1] - windows[:, 0]
    for length in np.unique(lengths):
        idx = np.flatnonzero(lengths == length)
        padded = max(int(length), embedder.min_num_samples)
        for i in range(0, len(idx), batch_size):
            chunk = idx[i : i + batch_size]
            # shape: (B, padded)
            batch = np.zeros((len(chunk), padded), dtype=np.float32)
            for row, w in enumerate(chunk):
                batch[row, :length] = waveform[windows[w, 0] : windows[w, 1]]
            if normalize_db is not None:
                batch = normalize_level(batch, normalize_db)
            masks = None
            if padded > length:
                masks = np.zeros_like(batch)
                masks[:, :length] = 1.0
            out[chunk] = embedder(batch, masks)
    return out


def speech_frame_mask(regions: np.ndarray, num_frames: int, sample_rate: int) -> np.ndarray:
    """Frames inside speech regions. regions: (R, 2) samples -> (T,) bool."""
    step = frame_samples(sample_rate)
    mask = np.zeros(num_frames, dtype=bool)
    for start, end in np.asarray(regions, dtype=np.int64).reshape(-1, 2):
        mask[(start + step // 2) // step : (end + step // 2) // step] = True
    return mask


def window_scores_to_frame_scores(
    windows: np.ndarray, scores: np.ndarray, num_frames: int, sample_rate: int, method: str = "center"
) -> np.ndarray:
    """Spread per-window scores over the 10 ms frames.

    Args:
        windows: shape (W, 2) sample indices.
        scores: shape (W, S) per-window speaker scores (one-hot cluster labels, similarities, ...).
        method: ``"center"``: each frame takes the scores of the window whose centre is nearest
            to the frame's centre (every frame gets a value when W > 0);
            ``"mean"``: each frame averages the windows that cover it (0 where none does).

    Returns:
        shape (T, S) float32.
    """
    scores = np.asarray(scores, dtype=np.float32)
    windows = np.asarray(windows, dtype=np.int64).reshape(-1, 2)
    if len(windows) != len(scores):
        raise ValueError(f"{len(windows)} windows but {len(scores)} score rows")
    num_speakers = scores.shape[1] if scores.ndim == 2 else 0
    if len(windows) == 0 or num_frames == 0:
        return np.zeros((num_frames, num_speakers), dtype=np.float32)
    step = frame_samples(sample_rate)
    if method == "center":
        centers = windows.mean(axis=1)
        order = np.argsort(centers, kind="stable")
        sorted_centers = centers[order]
        frame_centers = (np.arange(num_frames) + 0.5) * step
        right = np.clip(np.searchsorted(sorted_centers, frame_centers), 0, len(order) - 1)
        left = np.clip(right - 1, 0, len(order) - 1)
        use_left = np.abs(frame_centers - sorted_centers[left]) <= np.abs(
            sorted_centers[right] - frame_centers
        )
        nearest = order[np.where(use_left, left, right)]
        return scores[nearest]
    if method == "mean":
        first = np.clip((windows[:, 0] + step // 2) // step, 0, num_frames)
        last = np.clip((windows[:, 1] + step // 2) // step, 0, num_frames)
        acc = np.zeros((num_frames + 1, num_speakers), dtype=np.float64)
        count = np.zeros(num_frames + 1, dtype=np.float64)
        np.add.at(acc, first, scores)
        np.add.at(acc, last, -scores)
        np.add.at(count, first, 1.0)
        np.add.at(count, last, -1.0)
        total = np.cumsum(acc, axis=0)[:num_frames]
        n = np.cumsum(count)[:num_frames]
        return (total / np.maximum(n, 1.0)[:, None]).astype(np.float32)
    raise ValueError(f"unknown frame scoring method {method!r}; valid: center, mean")


def window_scores_to_frame_labels(
    windows: np.ndarray,
    scores: np.ndarray,
    num_frames: int,
    sample_rate: int,
    threshold: float | None = None,
    speech: np.ndarray | None = None,
    method: str = "center",
) -> np.ndarray:
    """Binary speaker activity per 10 ms frame from per-window scores.

    Args:
        windows: shape (W, 2) sample indices.
        scores: shape (W, S).
        threshold: None: one speaker per frame, the best-scoring one (clustering);
            a number: every speaker whose frame score reaches it (profiles; allows overlap).
        speech: shape (T,) bool; frames outside speech get no speaker. None: all frames.
        method: see :func:`window_scores_to_frame_scores`.

    Returns:
        shape (T, S) int8 0/1.
    """
    # shape: (T, S)
    frame_scores = window_scores_to_frame_scores(windows, scores, num_frames, sample_rate, method)
    labels = np.zeros(frame_scores.shape, dtype=np.int8)
    if frame_scores.shape[1] == 0:
        return labels
    if threshold is None:
        best = np.argmax(frame_scores, axis=1)
        labels[np.arange(num_frames), best] = 1
        labels[frame_scores.max(axis=1) <= 0] = 0
    else:
        labels[frame_scores >= threshold] = 1
    if speech is not None:
        labels[~np.asarray(speech, dtype=bool)] = 0
    return labels


def one_hot(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Cluster labels (W,) in 0..K-1 -> scores (W, K) float32 with a 1 at each label."""
    labels = np.asarray(labels, dtype=np.int64)
    k = int(labels.max()) + 1 if num_classes is None and len(labels) else int(num_classes or 0)
    out = np.zeros((len(labels), k), dtype=np.float32)
    out[np.arange(len(labels)), labels] = 1.0
    return out


def cluster_scores(embeddings: np.ndarray, labels: np.ndarray, overlap_margin: float = 0.0) -> np.ndarray:
    """Per-window speaker scores from cluster labels, with overlapped windows given two speakers.

    Every window scores 1 for its own cluster. With ``overlap_margin`` > 0 a window also
    scores 1 for its second-nearest cluster when it lies between the two centroids:
    ``(sim_own - sim_other) / (1 - sim(centroid_own, centroid_other)) < overlap_margin``,
    sim being cosine similarity. Windows of overlapped speech sit between the centroids
    of the two speakers; taking the gap relative to how far apart the two speakers are
    keeps close-sounding speakers from making every window look overlapped.

    Args:
        embeddings: shape (W, D).
        labels: shape (W,) in 0..K-1.

    Returns:
        shape (W, K) float32 0/1.
    """
    from diar.cluster import centroids, l2_normalize

    own = np.asarray(labels, dtype=np.int64)
    scores = one_hot(own)
    k = scores.shape[1]
    if overlap_margin <= 0 or k < 2:
        return scores
    x = l2_normalize(embeddings)
    centers = centroids(x, own)
    sim = x @ centers.T  # shape: (W, K)
    rows = np.arange(len(x))
    masked = sim.copy()
    masked[rows, own] = -np.inf
    other = np.argmax(masked, axis=1)  # best cluster other than the window's own
    spread = np.maximum(1.0 - (centers @ centers.T)[own, other], 1e-3)
    gap = (sim[rows, own] - sim[rows, other]) / spread
    overlapped = gap < overlap_margin
    scores[rows[overlapped], other[overlapped]] = 1.0
    return scores


def speech_only(waveform: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """The speech samples of a waveform, concatenated. (N,), (R, 2) -> (M,); the whole input if R = 0."""
    regions = np.asarray(regions, dtype=np.int64).reshape(-1, 2)
    if len(regions) == 0:
        return np.asarray(waveform, dtype=np.float32)
    return np.concatenate([waveform[s:e] for s, e in regions]).astype(np.float32, copy=False)


def embed_utterance(
    embedder: Embedder,
    waveform: np.ndarray,
    vad: VoiceActivityDetector | None = None,
    normalize_db: float | None = None,
) -> np.ndarray:
    """One embedding for a whole utterance (profiles, ``diar embed``).

    With a ``vad``, only the detected speech is embedded (all of it when none is found);
    with ``normalize_db``, that audio is first scaled to this RMS level (dBFS), as
    ``embedding.normalize_db`` scales a recording's windows. Inputs shorter than
    ``embedder.min_num_samples`` are zero-padded.

    Args:
        waveform: shape (N,) float32 at ``embedder.sample_rate``.

    Returns:
        shape (embedder.dimension,) float32.
    """
    wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
    if vad is not None:
        wav = speech_only(wav, detect_speech(vad, wav))
    if normalize_db is not None:
        wav = normalize_level(wav[None], normalize_db)[0]
    if len(wav) < embedder.min_num_samples:
        wav = np.pad(wav, (0, embedder.min_num_samples - len(wav)))
    return np.asarray(embedder.embed_utterance(wav), dtype=np.float32)


def check_not_silent(waveform: np.ndarray, reco_id: str | None, source: str, what: str) -> None:
    """Raise NoSpeechError when ``waveform`` (its DC offset removed, as :mod:`diar.audio` loads
    it) peaks below :data:`SILENT_PEAK`: digital silence, a constant offset, a file of a few
    samples. Its embedding would be a vector of no one (``diar embed``, ``diar profiles``).

    Args:
        what: what the audio is, for the message ("enrollment of speaker 'a'", "the audio").
    """
    wav = np.asarray(waveform, dtype=np.float32)
    peak = float(np.max(np.abs(wav))) if len(wav) else 0.0
    if peak < SILENT_PEAK:
        if peak > 0:
            level = f"peak {20 * np.log10(peak):.0f} dBFS"
        else:
            level = "all samples equal once the DC offset is removed" if len(wav) > 1 else "a single sample"
        raise NoSpeechError(reco_id, source, f"{what} is silent ({level}); give speech")


def check_embedding(vector: np.ndarray, reco_id: str | None, source: str, what: str) -> None:
    """Raise NoSpeechError for an embedding that is all zeros or not finite (no voice in it)."""
    vec = np.asarray(vector, dtype=np.float64)
    if not np.isfinite(vec).all() or float(np.linalg.norm(vec)) < ZERO_NORM:
        raise NoSpeechError(reco_id, source, f"{what}: its embedding is all zeros or not finite")
