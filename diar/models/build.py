"""Building models from a config, in one place: the registries' factories, the device a
model runs on, and torch's thread count.

Pipelines, commands and jobs build their models here; every model resolves its device
with :func:`resolve_device` and sets threads with :func:`set_torch_threads`.
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any

from diar.config import Config, ConfigError
from diar.errors import ModelLoadError
from diar.models.base import EMBEDDERS, FRAME_MODELS, VADS, Embedder, FrameModel, VoiceActivityDetector
from diar.registry import Registry, UnknownNameError

if TYPE_CHECKING:
    import torch

#: Device names every model accepts (and ``cuda:N``).
DEVICES = ("auto", "cpu", "cuda")


def set_torch_threads(num_threads: int | None, children: bool = False) -> None:
    """Set torch's intra-op threads (left alone for None or 0; importing silero_vad sets 1).

    With ``children``, also ``OMP_NUM_THREADS`` for the processes this one starts (a Ray
    actor, whose process belongs to the job, sets it; a command does not change its caller's).
    """
    import torch

    if children and num_threads and num_threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(num_threads)
    if num_threads and num_threads > 0 and torch.get_num_threads() != num_threads:
        torch.set_num_threads(num_threads)


def resolve_device(device: str, setting: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA is an error.

    Args:
        setting: the config key in error messages, e.g. ``"embedding.device"``.

    Raises:
        ModelLoadError: an unknown device name, or CUDA asked for where torch sees none.
    """
    import torch

    if device not in DEVICES and not device.startswith("cuda:"):
        raise ModelLoadError(f"{setting} {device!r} is not one of {', '.join(DEVICES)} (or cuda:N)")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"{setting} is {device!r} but torch sees no CUDA device; use device=auto or cpu")
    return torch.device(device)


def _lookup(registry: Registry, name: str, key: str) -> Any:
    import diar.models  # noqa: F401  (registers the models)

    try:
        return registry.get(name)
    except UnknownNameError as e:
        raise ConfigError(f"{key}: {e}") from None


def build_vad(config: Config) -> VoiceActivityDetector:
    """The VAD ``config.vad.name`` names, with its thresholds from ``config.vad``."""
    vad = config.vad
    built: VoiceActivityDetector = _lookup(VADS, vad.name, "vad.name")(
        threshold=vad.threshold,
        min_speech_duration=vad.min_speech_duration,
        min_silence_duration=vad.min_silence_duration,
        speech_pad=vad.speech_pad,
        num_threads=config.num_threads,
        sample_rate=config.sample_rate,
    )
    return built


def build_embedder(config: Config) -> Embedder:
    """The embedder ``config.embedding.name`` names (model_dir, device, batch_size and autocast
    from ``config.embedding``).

    Raises:
        ConfigError: ``embedding.autocast`` asks for mixed precision of an embedder that has none.
    """
    emb = config.embedding
    factory = _lookup(EMBEDDERS, emb.name, "embedding.name")
    options: dict[str, Any] = {"batch_size": emb.batch_size}
    if emb.autocast != "none":
        if "autocast" not in inspect.signature(factory).parameters:
            raise ConfigError(
                f"embedding.autocast: {emb.autocast!r} is not allowed for embedder {emb.name!r}, which "
                "runs in float32 only; set embedding.autocast=none"
            )
        options["autocast"] = emb.autocast
    built: Embedder = factory(
        model_dir=emb.model_dir, device=emb.device, num_threads=config.num_threads, **options
    )
    return built


def build_frame_model(config: Config) -> FrameModel:
    """The frame model ``config.frame_model.name`` names, built from ``config.frame_model``."""
    fm = config.frame_model
    built: FrameModel = _lookup(FRAME_MODELS, fm.name, "frame_model.name")(
        model=fm.model,
        device=fm.device,
        batch_size=fm.batch_size,
        autocast=fm.autocast,
        num_threads=config.num_threads,
    )
    return built
