"""Synthetic conversations for the stitching and frame-mode tests: speakers are tones, the
embedder reads the spectrum, and window outputs are made by hand.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from diar.stitching import WindowCollector, WindowOutputs, plan_windows

SR = 16000
STRIDE = 320  # samples per frame (20 ms)
FPS = SR // STRIDE  # frames per second
TONES = (350.0, 650.0, 1150.0, 1750.0, 2450.0)


def turns_to_truth(turns: list[tuple[int, float, float]], seconds: float, num_speakers: int) -> np.ndarray:
    """(speaker, start s, end s) turns -> shape (frames, speakers) bool."""
    truth = np.zeros((round(seconds * FPS), num_speakers), dtype=bool)
    for k, start, end in turns:
        truth[round(start * FPS) : round(end * FPS), k] = True
    return truth


def conversation(pair: tuple[int, ...], start: float, end: float, turn: float = 2.0) -> list:
    """Speakers taking turns of ``turn`` seconds in the order of ``pair``, each turn overlapping
    the next by 0.5 s."""
    out = []
    t, i = start, 0
    while t < end:
        out.append((pair[i % len(pair)], t, min(t + turn + 0.5, end)))
        t += turn
        i += 1
    return out


def tones(truth: np.ndarray) -> np.ndarray:
    """A waveform where speaker k is a tone at TONES[k] wherever truth says it talks."""
    n = len(truth) * STRIDE
    t = np.arange(n) / SR
    wave = np.zeros(n)
    for k in range(truth.shape[1]):
        wave += 0.3 * np.repeat(truth[:, k], STRIDE) * np.sin(2 * np.pi * TONES[k] * t)
    return wave.astype(np.float32)


def tone_embedding(speech: np.ndarray) -> np.ndarray:
    """Energy around each tone frequency: a perfect 'speaker embedding' for tone speakers."""
    spectrum = np.abs(np.fft.rfft(speech))
    freqs = np.fft.rfftfreq(len(speech), 1 / SR)
    return np.array([spectrum[np.abs(freqs - f) < 40].sum() for f in TONES]) + 1e-3


def window_outputs(
    truth: np.ndarray, window: int, hop: int, local: int = 2, seed: int = 0
) -> list[tuple[int, np.ndarray]]:
    """What a frame model with ``local`` outputs would say: each window's speakers in a random
    order, (first frame, probabilities (frames, local)) per window."""
    rng = np.random.default_rng(seed)
    plan = plan_windows(len(truth) * STRIDE, window * STRIDE, hop * STRIDE, STRIDE)
    out = []
    for start in plan.starts // STRIDE:
        part = truth[start : start + plan.length // STRIDE]
        present = np.flatnonzero(part.any(axis=0))
        if len(present) > local:
            raise ValueError(f"test scenario has {len(present)} speakers in the window at frame {start}")
        probs = rng.uniform(0.0, 0.1, size=(len(part), local)).astype(np.float32)
        slots = rng.permutation(local)[: len(present)]
        for slot, k in zip(slots, present, strict=True):
            probs[:, slot] = np.where(part[:, k], rng.uniform(0.8, 1.0, len(part)), probs[:, slot])
        out.append((int(start), probs))
    return out


def collect(num_frames: int, windows: list[tuple[int, np.ndarray]], threshold: float = 0.5) -> WindowOutputs:
    collector = WindowCollector(num_frames, threshold)
    for start, probs in windows:
        collector.add(start, probs)
    return collector.finish()


def frame_errors(truth: np.ndarray, hyp: np.ndarray) -> int:
    """Frames x speakers that differ under the best speaker mapping (extra speakers count fully)."""
    k = max(truth.shape[1], hyp.shape[1])
    t = np.pad(truth, ((0, 0), (0, k - truth.shape[1])))
    h = np.pad(hyp, ((0, 0), (0, k - hyp.shape[1])))
    agree = (t[:, :, None] == h[:, None, :]).sum(axis=0)
    rows, cols = linear_sum_assignment(agree, maximize=True)
    return int(t.size - agree[rows, cols].sum())


class FixedClusters:
    """A clusterer that answers given labels (and records the count bounds it was asked for)."""

    def __init__(self, labels: list[int]) -> None:
        self.labels = np.array(labels)
        self.calls: list[tuple[int | None, int, int | None]] = []

    def __call__(self, embeddings, num_speakers=None, min_speakers=1, max_speakers=None):
        assert len(embeddings) == len(self.labels)
        self.calls.append((num_speakers, min_speakers, max_speakers))
        return self.labels


def activity(length: int, *spans: tuple[int, int]) -> np.ndarray:
    """Shape (length,) probabilities: 1 inside the [start, end) spans, else 0."""
    out = np.zeros(length, dtype=np.float32)
    for start, end in spans:
        out[start:end] = 1.0
    return out
