"""Speech activity detection with silero-vad (weights ship in its wheel, ONNX runtime on CPU).

The silero-vad "sequence" ONNX export is used: it gives the same per-frame speech
probabilities as the streaming model (32 ms frames at 16 kHz) but runs one ONNX
call per ~16 s block instead of one per frame, which makes it about five times
faster. The probabilities are turned into regions by silero's own state machine
(``get_speech_timestamps_from_probs``: hysteresis, minimum speech and silence
durations, padding).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from diar.errors import ModelLoadError
from diar.models.base import VADS
from diar.models.build import set_torch_threads

logger = logging.getLogger(__name__)


@VADS.register("silero")
class SileroVAD:
    """silero-vad speech detector (the project's :class:`~diar.models.base.VoiceActivityDetector`).

    Args:
        threshold: speech probability above which a frame starts speech.
        min_speech_duration: regions shorter than this (seconds) are dropped.
        min_silence_duration: silences shorter than this (seconds) do not end a region.
        speech_pad: seconds added at both ends of each region.
        num_threads: torch threads to set after importing silero_vad (which sets 1).
        sample_rate: must be 16000 (the rate of the bundled sequence model).
    """

    def __init__(
        self,
        threshold: float = 0.5,
        min_speech_duration: float = 0.25,
        min_silence_duration: float = 0.1,
        speech_pad: float = 0.03,
        num_threads: int | None = None,
        sample_rate: int = 16000,
    ) -> None:
        if sample_rate != 16000:
            raise ValueError(f"the silero-vad sequence model runs at 16000 Hz, not {sample_rate}")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"silero-vad threshold must be in (0, 1), got {threshold}")
        try:
            from silero_vad import load_silero_vad
        except ImportError as e:
            raise ModelLoadError(
                f"silero-vad is not installed (pip install 'silero-vad[onnx-cpu]'): {e}"
            ) from e
        # importing silero_vad calls torch.set_num_threads(1); restore what the caller asked for
        set_torch_threads(num_threads)
        try:
            with warnings.catch_warnings():
                # silero's loader uses the deprecated importlib.resources.path
                warnings.simplefilter("ignore", DeprecationWarning)
                self._model = load_silero_vad(sequence=True, sampling_rate=sample_rate)
        except Exception as e:  # onnxruntime missing or the bundled model unreadable
            raise ModelLoadError(f"cannot load the silero-vad ONNX model: {e}") from e
        self.sample_rate = sample_rate
        self.frame_samples = 512
        self.threshold = threshold
        self.min_speech_duration = min_speech_duration
        self.min_silence_duration = min_silence_duration
        self.speech_pad = speech_pad

    def probabilities(self, waveform: np.ndarray) -> np.ndarray:
        """Speech probability per frame of ``frame_samples``. shape (N,) -> (ceil(N / frame_samples),)."""
        audio = np.ascontiguousarray(waveform, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return np.zeros(0, dtype=np.float32)
        return np.asarray(self._model.audio_forward(audio, sampling_rate=self.sample_rate), dtype=np.float32)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """Speech regions. waveform: shape (N,) float32 -> (R, 2) int64 sample indices [start, end)."""
        from silero_vad import get_speech_timestamps_from_probs

        audio = np.asarray(waveform, dtype=np.float32).reshape(-1)
        probs = self.probabilities(audio)
        if probs.size == 0:
            return np.zeros((0, 2), dtype=np.int64)
        stamps = get_speech_timestamps_from_probs(
            probs.tolist(),
            sampling_rate=self.sample_rate,
            threshold=self.threshold,
            min_speech_duration_ms=round(self.min_speech_duration * 1000),
            min_silence_duration_ms=round(self.min_silence_duration * 1000),
            speech_pad_ms=round(self.speech_pad * 1000),
            audio_length_samples=audio.size,
        )
        # shape: (R, 2)
        regions = np.array([[s["start"], s["end"]] for s in stamps], dtype=np.int64).reshape(-1, 2)
        return np.clip(regions, 0, audio.size)
