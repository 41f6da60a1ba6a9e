"""WavLM-Base-Plus-SD: frame-level speaker activity (``microsoft/wavlm-base-plus-sd``).

A ``WavLMForAudioFrameClassification`` (transformers) fine-tuned on LibriMix:
16 kHz mono in, one logit per local speaker per 20 ms frame out; a speaker is
active where ``sigmoid(logit) > threshold`` (0.5 on the model card). The model
sees a fixed small number of speakers (``config.num_labels``, 2 for the
published checkpoint) in one window; :mod:`diar.stitching` and the frame
pipeline turn window outputs into recording-level speakers.

Feature extraction is exactly the model card's: the checkpoint's own
``Wav2Vec2FeatureExtractor`` called on the raw window with
``return_tensors="pt", sampling_rate=16000``, then ``model(**inputs).logits``.
When the extractor normalises (``do_normalize``), it does so per window; a
batch of equal-length windows is passed as one 2-D array with no padding, which
the extractor normalises row by row, so batching gives the same inputs as
running the windows one by one.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from diar.errors import ModelLoadError
from diar.models.base import FRAME_MODELS
from diar.models.batches import autocast, frame_model_setup, run_in_batches

logger = logging.getLogger(__name__)

#: The published checkpoint on the Hugging Face hub.
DEFAULT_MODEL = "microsoft/wavlm-base-plus-sd"
SAMPLE_RATE = 16000
#: ``frame_model.autocast`` values and the dtypes they select.
#: Windows per forward pass when the config leaves it open. On CPU one 10 s window
#: at a time was the fastest (1.56 s per window against 1.74 s in pairs, 2 threads)
#: and peaks 160 MiB lower; a GPU wants many.
DEFAULT_BATCH_SIZES = {"cpu": 1, "cuda": 16}


def load_wavlm_sd(model: str = DEFAULT_MODEL) -> tuple[Any, Any]:
    """Load the model and its feature extractor from a local directory or a Hugging Face id.

    A directory must hold what ``save_pretrained`` writes: ``config.json``,
    ``model.safetensors`` (or ``pytorch_model.bin``) and ``preprocessor_config.json``.
    An id is resolved through the Hugging Face cache (online, or offline with
    ``HF_HUB_OFFLINE=1`` when the cache holds it). Safetensors weights are
    preferred when both formats are present.

    Returns:
        ``(WavLMForAudioFrameClassification in eval mode, Wav2Vec2FeatureExtractor)``.

    Raises:
        ModelLoadError: the directory lacks a file, or the id is neither cached nor downloadable.
    """
    try:
        from transformers import Wav2Vec2FeatureExtractor, WavLMForAudioFrameClassification
    except ImportError as e:
        raise ModelLoadError(
            f"WavLM-SD needs the transformers package ({e}); install it with: pip install 'diar[hf]'"
        ) from e

    path = Path(model).expanduser()
    is_dir = path.is_dir()
    if is_dir:
        missing = [f for f in ("config.json", "preprocessor_config.json") if not (path / f).is_file()]
        weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
        if not any((path / f).is_file() for f in weights):
            missing.append("model.safetensors (or pytorch_model.bin)")
        if missing:
            raise ModelLoadError(
                f"WavLM-SD model directory {str(path)!r} lacks {', '.join(missing)}; save the model and "
                f"its Wav2Vec2FeatureExtractor there with save_pretrained(), or give a Hugging Face id "
                f"such as {DEFAULT_MODEL!r}"
            )
        source = str(path)
    elif model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelLoadError(f"WavLM-SD model directory {model!r} does not exist")
    else:
        source = model
    try:
        network = WavLMForAudioFrameClassification.from_pretrained(source)
        extractor = Wav2Vec2FeatureExtractor.from_pretrained(source)
    except OSError as e:
        if is_dir:
            raise ModelLoadError(f"cannot load WavLM-SD model from directory {source!r}: {e}") from e
        raise ModelLoadError(
            f"cannot load WavLM-SD model {source!r} from the Hugging Face hub or its cache ({e}). "
            f"Offline (HF_HUB_OFFLINE=1) the model must already be in the cache (HF_HOME): run once "
            f"online, e.g. `hf download {source}`, or set frame_model.model to a local "
            f"directory holding config.json, model.safetensors and preprocessor_config.json"
        ) from e
    network.eval()
    return network, extractor


def conv_output_length(num_samples: int, kernels: list[int], strides: list[int]) -> int:
    """Frames out of the convolutional feature encoder for ``num_samples`` input samples."""
    n = num_samples
    for k, s in zip(kernels, strides, strict=True):
        n = (n - k) // s + 1
        if n <= 0:
            return 0
    return n


class WavLMSpeakerActivity:
    """Per-frame speaker-activity probabilities of WavLM-SD (a :class:`~diar.models.base.FrameModel`).

    Args:
        model: Hugging Face id or local directory (see :func:`load_wavlm_sd`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``).
        batch_size: windows per forward pass; None: :data:`DEFAULT_BATCH_SIZES` for the device.
        autocast: ``"none"``, ``"bf16"`` or ``"fp16"`` mixed precision for the forward pass.
        num_threads: torch CPU threads (left alone when None).

    Attributes:
        sample_rate: 16000.
        frame_shift: seconds between output frames (0.02).
        frame_stride: samples between output frames (320).
        receptive_field: samples seen by one output frame of the conv encoder (400).
        frame_center_offset: sample of frame 0's receptive-field centre (199); frame ``i`` of a
            window starting at sample ``s`` is centred on ``s + i * frame_stride + 199``.
        num_speakers: local speakers per window (``num_labels``).
        batch_size: windows per forward pass.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        device: str = "auto",
        batch_size: int | None = None,
        autocast: str = "none",
        num_threads: int | None = None,
    ) -> None:
        self.device, self.batch_size, self.autocast_dtype = frame_model_setup(
            device, batch_size, autocast, num_threads, DEFAULT_BATCH_SIZES
        )
        if self.autocast_dtype is not None and self.device.type == "cpu":
            # CPU autocast of WavLM moved a tiny random checkpoint's logits by up to 10 (out of 5)
            # on an AMX machine (torch 2.13): mixed precision is for GPUs here
            logger.warning("frame_model.autocast %s is not applied on the CPU; running float32", autocast)
            self.autocast_dtype = None
        self.network, self.extractor = load_wavlm_sd(model)
        self.network.to(self.device)
        rate = int(getattr(self.extractor, "sampling_rate", SAMPLE_RATE))
        if rate != SAMPLE_RATE:
            raise ModelLoadError(
                f"WavLM-SD model {model!r} expects {rate} Hz input, diar feeds it {SAMPLE_RATE}"
            )
        cfg = self.network.config
        self._kernels = [int(k) for k in cfg.conv_kernel]
        self._strides = [int(s) for s in cfg.conv_stride]
        self.frame_stride = math.prod(self._strides)
        self.frame_shift = self.frame_stride / SAMPLE_RATE
        # samples covered by one output frame: r = k_last + s_last * (r_prev - 1), from the top down
        field = 1
        for k, s in zip(reversed(self._kernels), reversed(self._strides), strict=True):
            field = k + s * (field - 1)
        self.receptive_field = field
        self.frame_center_offset = (field - 1) // 2
        self.num_speakers = int(cfg.num_labels)
        self.normalizes = bool(getattr(self.extractor, "do_normalize", False))
        logger.info(
            "WavLM-SD %s on %s (batches of %d): %d local speakers, %d samples/frame, autocast %s, "
            "normalise: %s",
            model,
            self.device,
            self.batch_size,
            self.num_speakers,
            self.frame_stride,
            autocast,
            self.normalizes,
        )

    @property
    def min_num_samples(self) -> int:
        """Shortest input that yields one output frame."""
        return self.receptive_field

    def num_frames(self, num_samples: int) -> int:
        """Output frames for a window of ``num_samples`` samples."""
        return conv_output_length(num_samples, self._kernels, self._strides)

    def logits(self, waveforms: np.ndarray) -> np.ndarray:
        """Raw logits of a batch of equal-length windows, ``batch_size`` windows per forward pass.

        Args:
            waveforms: shape (batch, num_samples), float32 at 16 kHz.

        Returns:
            shape (batch, num_frames, num_speakers) float32.
        """

        def forward(chunk: np.ndarray) -> torch.Tensor:
            # A 2-D array without padding: the extractor normalises each row on its own.
            inputs = self.extractor(chunk, return_tensors="pt", sampling_rate=SAMPLE_RATE)
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with autocast(self.device, self.autocast_dtype), warnings.catch_warnings():
                # transformers' WavLM attention mixes a bool padding mask with a float bias (harmless)
                warnings.filterwarnings("ignore", message="Support for mismatched key_padding_mask")
                return self.network(**inputs).logits

        x = np.asarray(waveforms, dtype=np.float32)
        frames = self.num_frames(x.shape[-1]) if x.ndim == 2 else 0
        return run_in_batches(x, self.batch_size, frames, self.num_speakers, forward)

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        """Speaker-activity probabilities ``sigmoid(logits)``.

        Args:
            waveforms: shape (batch, num_samples), float32 at 16 kHz.

        Returns:
            shape (batch, num_frames, num_speakers) float32 in [0, 1].
        """
        logits = torch.from_numpy(self.logits(waveforms))
        return torch.sigmoid(logits).numpy()


@FRAME_MODELS.register("wavlm-sd")
def wavlm_sd(
    model: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    autocast: str = "none",
    num_threads: int | None = None,
    **_: Any,
) -> WavLMSpeakerActivity:
    """Registry factory for :class:`WavLMSpeakerActivity`."""
    return WavLMSpeakerActivity(model or DEFAULT_MODEL, device, batch_size, autocast, num_threads)
