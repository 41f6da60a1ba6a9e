"""Model interfaces shared by every model of a kind.

Every model is a callable class: expensive setup (weights, device, eval mode)
in ``__init__``, work on a batch in ``__call__``. The same object runs inline,
in a thread, or inside a Ray actor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from diar.registry import Registry


@runtime_checkable
class Embedder(Protocol):
    """Speaker embedding model (pyannote's ``PretrainedSpeakerEmbedding`` contract).

    Attributes:
        sample_rate: rate the waveforms must have, Hz.
        dimension: embedding size.
        metric: distance the embeddings are meant for (``"cosine"``).
        min_num_samples: shortest waveform the model accepts.
    """

    sample_rate: int
    dimension: int
    metric: str
    min_num_samples: int

    def __call__(self, waveforms: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Embed a batch of equal-length windows.

        Args:
            waveforms: shape (batch, num_samples), float32 in [-1, 1].
            masks: optional shape (batch, num_samples), 1 where the sample counts.

        Returns:
            shape (batch, dimension), float32.
        """
        ...

    def embed_utterance(self, waveform: np.ndarray) -> np.ndarray:
        """One embedding for a whole utterance. waveform: shape (num_samples,) -> (dimension,)."""
        ...


@runtime_checkable
class FeatureEmbedder(Embedder, Protocol):
    """An embedder whose features can be made apart from its forward pass (CAM++): the CPU
    features of many utterances first, then one forward per batch of equal-shape features.

    Attributes:
        fbank: waveform shape (num_samples,) -> features shape (frames, bins).
    """

    fbank: Callable[[np.ndarray], np.ndarray]

    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """Shape (batch, frames, bins) features -> (batch, dimension) float32 embeddings."""
        ...


@runtime_checkable
class VoiceActivityDetector(Protocol):
    """Speech activity detector: waveform -> speech regions."""

    sample_rate: int

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """Speech regions of a waveform.

        shape (num_samples,) -> (num_regions, 2): sample indices [start, end).
        """
        ...


@runtime_checkable
class FrameModel(Protocol):
    """Frame-level multi-speaker activity model (pyannote segmentation-3.0, WavLM-SD).

    Attributes:
        sample_rate: input rate, Hz.
        frame_stride: samples between output frames; a window starting at sample ``s`` (a
            multiple of it) has its frame ``i`` on the recording's frame ``s // frame_stride + i``.
        frame_shift: seconds between output frames (``frame_stride / sample_rate``).
        frame_center_offset: sample at the centre of frame 0's receptive field (frame ``i`` is
            centred on ``i * frame_stride + frame_center_offset``).
        num_speakers: local speakers per window.
        batch_size: windows it runs per forward pass (``frame_model.batch_size``, or
            its default for its device).
    """

    sample_rate: int
    frame_stride: int
    frame_shift: float
    frame_center_offset: int
    num_speakers: int
    batch_size: int

    def num_frames(self, num_samples: int) -> int:
        """Output frames for a window of ``num_samples`` samples."""
        ...

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        """Speaker activity. shape (batch, num_samples) -> (batch, num_frames, num_speakers) in [0, 1]."""
        ...


#: Embedders by name. A factory takes keyword arguments ``model_dir`` (str | None),
#: ``device`` (str) and any model-specific options, and returns an :class:`Embedder`.
EMBEDDERS: Registry = Registry("embedder")
#: Voice activity detectors by name.
VADS: Registry = Registry("VAD")
#: Frame-level activity models by name.
FRAME_MODELS: Registry = Registry("frame model")
