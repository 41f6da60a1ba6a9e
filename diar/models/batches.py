"""What the frame models share: windows run through a network in batches, under autocast (the
embedders use the autocast names too)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np
import torch

from diar.errors import ModelLoadError
from diar.models.build import resolve_device, set_torch_threads

#: ``frame_model.autocast`` / ``embedding.autocast`` names -> torch dtypes.
AUTOCAST_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def frame_model_setup(
    device: str,
    batch_size: int | None,
    autocast: str,
    num_threads: int | None,
    default_batch_sizes: dict[str, int],
) -> tuple[torch.device, int, torch.dtype | None]:
    """A frame model's ``frame_model.*`` build settings, checked: (device, windows per forward
    pass (the device's default for None), autocast dtype); torch threads set.

    Raises:
        ModelLoadError: an unknown autocast name, a batch size below 1, or a bad device.
    """
    if autocast not in AUTOCAST_DTYPES:
        raise ModelLoadError(f"frame_model.autocast {autocast!r} is not one of {', '.join(AUTOCAST_DTYPES)}")
    if batch_size is not None and batch_size < 1:
        raise ModelLoadError(f"frame_model.batch_size must be >= 1, got {batch_size}")
    set_torch_threads(num_threads)
    resolved = resolve_device(device, "frame_model.device")
    return resolved, batch_size or default_batch_sizes[resolved.type], AUTOCAST_DTYPES[autocast]


def autocast(device: torch.device, dtype: torch.dtype | None) -> AbstractContextManager[Any]:
    """``torch.autocast`` to ``dtype`` on ``device``, or nothing for None."""
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.inference_mode()
def run_in_batches(
    waveforms: np.ndarray,
    batch_size: int,
    num_frames: int,
    width: int,
    forward: Callable[[np.ndarray], torch.Tensor],
) -> np.ndarray:
    """Run ``forward`` on ``batch_size`` windows at a time and gather its outputs.

    Args:
        waveforms: shape (batch, num_samples) float32 windows of equal length.
        num_frames: output frames per window; ``width``: values per frame.
        forward: shape (chunk, num_samples) array -> (chunk, num_frames, width) tensor.

    Returns:
        shape (batch, num_frames, width) float32 (zeros of that shape for no window or frame).
    """
    x = np.asarray(waveforms, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"waveforms must have shape (batch, samples), got {x.shape}")
    if x.shape[0] == 0 or num_frames == 0:
        return np.zeros((x.shape[0], num_frames, width), dtype=np.float32)
    out = [forward(x[i : i + batch_size]).float().cpu().numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out)
