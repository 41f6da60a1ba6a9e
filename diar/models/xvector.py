"""FunASR / ModelScope x-vector speaker embedder (ResNet34 + statistics pooling).

Loads a ModelScope model directory as published, e.g.
``damo/speech_xvector_sv-zh-cn-cnceleb-16k-spk3465-pytorch``::

    configuration.json   model.model_config.sv_model_name / sv_model_config
    sv.yaml              FunASR's training config (encoder_conf, decoder_conf, frontend_conf, ...)
    sv.pb                torch.save(state_dict) with FunASR's key names (some recipes: sv.pth)

and computes the same embedding as FunASR's ``Speech2Xvector`` (``embedding_node:
resnet1_dense``):

1. Kaldi fbank of ``waveform * 32768``: 80 log-mel bins, 25 / 10 ms, povey window,
   pre-emphasis 0.97, DC removal, snip_edges, **dither 0** (FunASR's own default is
   1.0, which adds random noise at inference); no CMVN.
2. Pre-activation ResNet34 over the (time, freq) plane with TensorFlow "same" padding
   on the stride-2 convolutions (the published weights come from TensorFlow), then a
   1x1 convolution ``resnet0_dense`` followed by ReLU and BatchNorm.
3. Mean and population standard deviation per channel over time and frequency jointly.
4. ``resnet1_dense`` (512 -> 256): its output, before ReLU and BatchNorm, is the embedding.

All BatchNorm layers use eps 1e-3 as in FunASR. ``*.num_batches_tracked`` entries are
ignored whatever their shape (the published checkpoint, converted from TensorFlow,
stores them as float vectors).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn

from diar.errors import ModelLoadError
from diar.models.base import EMBEDDERS
from diar.models.build import resolve_device, set_torch_threads
from diar.models.weights import looks_like_hub_id, modelscope_cache_dirs

logger = logging.getLogger(__name__)

#: The ModelScope model this module was written for (16 kHz, CN-Celeb, 3465 training speakers).
DEFAULT_MODEL_ID = "damo/speech_xvector_sv-zh-cn-cnceleb-16k-spk3465-pytorch"
CONFIG_JSON = "configuration.json"
DEFAULT_CONFIG_NAME = "sv.yaml"
#: Checkpoint names tried, in order, when configuration.json does not name one.
DEFAULT_WEIGHT_NAMES = ("sv.pb", "sv.pth")
#: FunASR's BatchNorm epsilon (TensorFlow's default).
BN_EPS = 1e-3
#: Variance floor of FunASR's statistics pooling.
POOLING_EPS = 1e-12


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class XVectorParams:
    """Hyperparameters of one x-vector model, read from its ``sv.yaml``.

    Attributes:
        sample_rate: frontend ``fs`` (Hz).
        num_mel_bins: fbank bins (``n_mels``), the encoder's input size.
        frame_length_ms, frame_shift_ms, window, snip_edges: fbank framing.
        upscale_samples: multiply the waveform by 32768 before fbank (FunASR's default).
        layers_in_block, filters_in_block: ResNet layout.
        use_head_conv: a 3x3 convolution + BN + ReLU before the first block.
        pooling_nodes: channels of ``resnet0_dense`` (statistics pooling gives twice that).
        embedding_dim: output size of ``resnet1_dense``.
        pooling_dim: axes pooled by the statistics layer, of (batch, channel, time, freq).
        pooling_eps: variance floor of the pooling layer.
    """

    sample_rate: int = 16000
    num_mel_bins: int = 80
    frame_length_ms: float = 25.0
    frame_shift_ms: float = 10.0
    window: str = "povey"
    snip_edges: bool = True
    upscale_samples: bool = True
    layers_in_block: tuple[int, ...] = (3, 4, 6, 3)
    filters_in_block: tuple[int, ...] = (32, 64, 128, 256)
    use_head_conv: bool = True
    pooling_nodes: int = 256
    embedding_dim: int = 256
    pooling_dim: tuple[int, ...] = (2, 3)
    pooling_eps: float = POOLING_EPS

    @classmethod
    def from_sv_config(cls, config: Mapping[str, Any], path: str = DEFAULT_CONFIG_NAME) -> XVectorParams:
        """Read the fields FunASR's ``build_sv_model`` reads from a parsed ``sv.yaml``.

        Raises:
            ModelLoadError: for a config FunASR would build into a different network
                (another encoder, LFR, CMVN, feature normalisation, head max-pooling).
        """
        if not isinstance(config, Mapping):
            raise ModelLoadError(f"{path}: expected a mapping at the top level, got {type(config).__name__}")

        def choice(key: str, expected: str, default: str) -> None:
            value = config.get(key) or default
            if value != expected:
                raise ModelLoadError(
                    f"{path}: {key}: {value!r} is not supported; diar's x-vector implements {key}: {expected}"
                )

        choice("encoder", "resnet34", "resnet34")
        choice("decoder", "dense", "dense")
        choice("pooling_type", "statistic", "statistic")
        choice("frontend", "wav_frontend", "default")
        for key in ("normalize", "specaug_at_inference", "preencoder", "postencoder"):
            if config.get(key):
                raise ModelLoadError(f"{path}: {key}: {config[key]!r} is not supported (only null)")

        enc = _section(config, "encoder_conf", path)
        dec = _section(config, "decoder_conf", path)
        fe = _section(config, "frontend_conf", path)
        pool = _section(config, "pooling_type_conf", path)
        defaults = cls()

        if enc.get("use_head_maxpool", False):
            raise ModelLoadError(f"{path}: encoder_conf.use_head_maxpool: true is not supported")
        if int(fe.get("lfr_m", 1)) != 1 or int(fe.get("lfr_n", 1)) != 1:
            raise ModelLoadError(f"{path}: frontend_conf.lfr_m / lfr_n other than 1 are not supported")
        if fe.get("cmvn_file"):
            raise ModelLoadError(
                f"{path}: frontend_conf.cmvn_file is not supported (FunASR's x-vector has none)"
            )
        if float(fe.get("dither", 0.0)) != 0.0:
            logger.info(
                "%s: frontend_conf.dither %s ignored; diar computes fbank with dither 0", path, fe["dither"]
            )

        n_mels = int(fe.get("n_mels", defaults.num_mel_bins))
        input_size = config.get("input_size")
        if input_size is not None and int(input_size) != n_mels:
            raise ModelLoadError(
                f"{path}: input_size {input_size} (features from outside the model) is not supported; "
                f"diar computes {n_mels}-bin fbank itself"
            )
        try:
            return cls(
                sample_rate=int(fe.get("fs", defaults.sample_rate)),
                num_mel_bins=n_mels,
                frame_length_ms=float(fe.get("frame_length", defaults.frame_length_ms)),
                frame_shift_ms=float(fe.get("frame_shift", defaults.frame_shift_ms)),
                # WavFrontend's own default window is hamming; sv.yaml sets povey
                window=str(fe.get("window", "hamming")),
                snip_edges=bool(fe.get("snip_edges", True)),
                upscale_samples=bool(fe.get("upsacle_samples", True)),
                layers_in_block=tuple(int(n) for n in enc.get("layers_in_block", defaults.layers_in_block)),
                filters_in_block=tuple(
                    int(n) for n in enc.get("filters_in_block", defaults.filters_in_block)
                ),
                use_head_conv=bool(enc.get("use_head_conv", True)),
                pooling_nodes=int(enc.get("num_nodes_pooling_layer", defaults.pooling_nodes)),
                embedding_dim=int(dec.get("num_nodes_resnet1", defaults.embedding_dim)),
                pooling_dim=_pooling_dim(pool.get("pooling_dim", defaults.pooling_dim), path),
                pooling_eps=float(pool.get("eps", defaults.pooling_eps)),
            )
        except (TypeError, ValueError) as e:
            raise ModelLoadError(f"{path}: bad value in the model config: {e}") from e


def _section(config: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = config.get(key) or {}
    if not isinstance(value, Mapping):
        raise ModelLoadError(f"{path}: {key} must be a mapping, got {value!r}")
    return value


def _pooling_dim(value: Any, path: str) -> tuple[int, ...]:
    dims = (int(value),) if isinstance(value, int) else tuple(int(d) for d in value)
    if tuple(sorted(dims)) != (2, 3):
        # FunASR's dense decoder only fits the joint (time, freq) pooling
        raise ModelLoadError(
            f"{path}: pooling_type_conf.pooling_dim {value!r} is not supported (only [2, 3])"
        )
    return (2, 3)


# --------------------------------------------------------------------------- frontend


class KaldiFbank:
    """Kaldi log-mel filterbank as FunASR's ``WavFrontend`` computes it, with dither 0.

    Args:
        params: model hyperparameters (rate, bins, framing, window, upscaling).
    """

    def __init__(self, params: XVectorParams) -> None:
        import kaldi_native_fbank as knf

        self._knf = knf
        opts = knf.FbankOptions()
        opts.frame_opts.samp_freq = float(params.sample_rate)
        opts.frame_opts.frame_length_ms = float(params.frame_length_ms)
        opts.frame_opts.frame_shift_ms = float(params.frame_shift_ms)
        opts.frame_opts.dither = 0.0
        opts.frame_opts.window_type = params.window
        opts.frame_opts.snip_edges = params.snip_edges
        opts.mel_opts.num_bins = params.num_mel_bins
        # FunASR passes energy_floor=0.0; use_energy is off, so it only matters for parity
        opts.energy_floor = 0.0
        self.opts = opts
        self.sample_rate = params.sample_rate
        self.num_bins = params.num_mel_bins
        self.scale = 32768.0 if params.upscale_samples else 1.0
        self.frame_length = int(params.sample_rate * params.frame_length_ms / 1000)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        """waveform: shape (N,) float in [-1, 1) -> log-mel features, shape (T, num_bins) float32."""
        fbank = self._knf.OnlineFbank(self.opts)
        samples = np.asarray(waveform, dtype=np.float32).reshape(-1) * np.float32(self.scale)
        fbank.accept_waveform(float(self.sample_rate), samples)
        fbank.input_finished()
        n = fbank.num_frames_ready
        if n == 0:
            return np.zeros((0, self.num_bins), dtype=np.float32)
        return np.stack([np.asarray(fbank.get_frame(i), dtype=np.float32) for i in range(n)])


# --------------------------------------------------------------------------- network


def _pad_same(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Zero padding of TensorFlow's ``padding="same"`` for a 3x3 kernel on (B, C, H, W).

    Stride 1 pads one on every side. Stride 2 needs ``1 + (size % 2)`` in total along
    each axis; TensorFlow puts the odd one at the end, so even sizes get (0, 1) and odd
    sizes (1, 1). Output size is ``ceil(size / stride)``.
    """
    if stride == 1:
        return F.pad(x, (1, 1, 1, 1))
    h, w = int(x.shape[-2]), int(x.shape[-1])
    return F.pad(x, (w % 2, 1, h % 2, 1))


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class ResidualLayer(nn.Module):
    """Pre-activation residual layer: BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3, plus a shortcut.

    The shortcut is a 1x1 convolution (with stride) and BN when the shape changes.
    Parameter names (``bn1``, ``conv1``, ``bn2``, ``conv2``, ``conv_sc``, ``bn_sc``) are FunASR's.
    """

    def __init__(self, in_channels: int, channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.bn1 = _bn2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, bias=False)
        self.bn2 = _bn2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, bias=False)
        self.projects = in_channels != channels or stride > 1
        if self.projects:
            self.conv_sc = nn.Conv2d(in_channels, channels, 1, stride, bias=False)
            self.bn_sc = _bn2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: shape (B, C_in, T, F) -> (B, C, ceil(T / stride), ceil(F / stride))."""
        shortcut = self.bn_sc(self.conv_sc(x)) if self.projects else x
        y = self.conv1(_pad_same(F.relu(self.bn1(x)), self.stride))
        y = self.conv2(_pad_same(F.relu(self.bn2(y)), 1))
        return y + shortcut


class ResidualBlock(nn.Module):
    """``num_layers`` residual layers; only the first one changes stride and width."""

    def __init__(self, in_channels: int, channels: int, num_layers: int, stride: int) -> None:
        super().__init__()
        for i in range(num_layers):
            self.add_module(
                f"layer_{i}",
                ResidualLayer(in_channels if i == 0 else channels, channels, stride if i == 0 else 1),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.children():
            x = layer(x)
        return x


class ResNet34Encoder(nn.Module):
    """Fbank (B, T, F) -> feature maps (B, pooling_nodes, ceil(T / 8), ceil(F / 8)).

    Module names match FunASR's ``ResNet34`` encoder (``pre_conv``, ``pre_conv_bn``,
    ``block_0`` ... ``block_3``, ``resnet0_dense``, ``resnet0_bn``).
    """

    def __init__(self, params: XVectorParams) -> None:
        super().__init__()
        filters, layers = params.filters_in_block, params.layers_in_block
        if len(filters) != len(layers) or not filters:
            raise ModelLoadError(
                f"filters_in_block {list(filters)} and layers_in_block {list(layers)} must have equal length"
            )
        self.use_head_conv = params.use_head_conv
        if self.use_head_conv:
            self.pre_conv = nn.Conv2d(1, filters[0], 3, 1, 1, bias=False)
            self.pre_conv_bn = _bn2d(filters[0])
        in_channels = filters[0] if self.use_head_conv else 1
        self.num_blocks = len(filters)
        for i, (channels, n) in enumerate(zip(filters, layers, strict=True)):
            self.add_module(f"block_{i}", ResidualBlock(in_channels, channels, n, 1 if i == 0 else 2))
            in_channels = channels
        self.resnet0_dense = nn.Conv2d(filters[-1], params.pooling_nodes, 1)
        self.resnet0_bn = _bn2d(params.pooling_nodes)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: shape (B, T, F) -> (B, pooling_nodes, T', F')."""
        x = feats.unsqueeze(1)
        if self.use_head_conv:
            x = F.relu(self.pre_conv_bn(self.pre_conv(x)))
        for i in range(self.num_blocks):
            x = getattr(self, f"block_{i}")(x)
        # FunASR's order: 1x1 conv, ReLU, then BN
        return self.resnet0_bn(F.relu(self.resnet0_dense(x)))


def statistics_pooling(
    x: torch.Tensor, dims: tuple[int, ...] = (2, 3), eps: float = POOLING_EPS
) -> torch.Tensor:
    """Mean and population standard deviation per channel over ``dims``.

    Args:
        x: shape (B, C, T, F).
        dims: axes pooled jointly.
        eps: variances at or below it are replaced by it before the square root.

    Returns:
        shape (B, 2 * C) for dims (2, 3); [mean, std] concatenated along axis 1.
    """
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).square().mean(dim=dims, keepdim=True)
    for d in sorted(dims, reverse=True):
        mean, var = mean.squeeze(d), var.squeeze(d)
    var = torch.where(var <= eps, torch.full_like(var, eps), var)
    return torch.cat([mean, var.sqrt()], dim=1)


class EmbeddingHead(nn.Module):
    """The part of FunASR's ``DenseDecoder`` that produces the embedding: ``resnet1_dense``."""

    def __init__(self, in_features: int, embedding_dim: int) -> None:
        super().__init__()
        self.resnet1_dense = nn.Linear(in_features, embedding_dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """pooled: shape (B, in_features) -> (B, embedding_dim)."""
        return self.resnet1_dense(pooled)


class XVectorNetwork(nn.Module):
    """Fbank (B, T, F) -> x-vectors (B, D); parameters named as FunASR's ``encoder.*`` / ``decoder.*``."""

    def __init__(self, params: XVectorParams) -> None:
        super().__init__()
        self.params = params
        self.encoder = ResNet34Encoder(params)
        self.decoder = EmbeddingHead(2 * params.pooling_nodes, params.embedding_dim)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: shape (B, T, F) -> (B, embedding_dim)."""
        # shape: (B, C, T', F')
        maps = self.encoder(feats)
        # shape: (B, 2C)
        pooled = statistics_pooling(maps, self.params.pooling_dim, self.params.pooling_eps)
        return self.decoder(pooled)


# --------------------------------------------------------------------------- files


def resolve_model_dir(model_dir: str | None) -> Path:
    """A local directory holding the model, from a path or a ModelScope model id.

    A path that exists is used as it is. A model id (``owner/name``) is looked up in the
    ModelScope cache; if it is not there and the ``modelscope`` package is installed,
    :func:`modelscope.snapshot_download` fetches it.

    Raises:
        ModelLoadError: with the files to put where when nothing can be found.
    """
    target = model_dir or DEFAULT_MODEL_ID
    path = Path(target).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"x-vector model_dir {target} is a file; give the directory holding it")
    if not looks_like_hub_id(target):
        raise ModelLoadError(f"x-vector model directory {target} does not exist")
    for cached in modelscope_cache_dirs(target):
        if (cached / CONFIG_JSON).is_file() or (cached / DEFAULT_CONFIG_NAME).is_file():
            return cached
    reason = "the optional package modelscope is not installed (pip install 'diar[modelscope]')"
    try:
        from modelscope.hub.snapshot_download import snapshot_download
    except ImportError:
        pass
    else:
        try:
            return Path(snapshot_download(target))
        except Exception as e:  # network, auth and hub errors all mean "not available here"
            reason = f"modelscope could not download it ({type(e).__name__}: {e})"
    raise ModelLoadError(
        f"x-vector model {target!r} is not available offline: {reason}. Download "
        f"{CONFIG_JSON}, {DEFAULT_CONFIG_NAME} and {DEFAULT_WEIGHT_NAMES[0]} from "
        f"https://modelscope.cn/models/{target}/files into a directory DIR and pass "
        f"--model-dir DIR (config: embedding.model_dir: DIR), or put them in "
        f"{modelscope_cache_dirs(target)[0]}"
    )


def model_files(model_dir: Path) -> tuple[Path, Path]:
    """(``sv.yaml``, checkpoint) of a ModelScope directory, as its ``configuration.json`` names them."""
    config_name, weight_names = DEFAULT_CONFIG_NAME, list(DEFAULT_WEIGHT_NAMES)
    config_json = model_dir / CONFIG_JSON
    if config_json.is_file():
        try:
            meta = json.loads(config_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ModelLoadError(f"{config_json}: not valid JSON: {e}") from e
        model = meta.get("model") if isinstance(meta, dict) else None
        if not isinstance(model, dict):
            model = {}
        inner = model.get("model_config")
        if not isinstance(inner, dict):
            inner = {}
        config_name = str(inner.get("sv_model_config") or config_name)
        named = inner.get("sv_model_name") or model.get("sv_model_name") or model.get("model_name")
        if named:
            weight_names.insert(0, str(named))
    config_path = model_dir / config_name
    if not config_path.is_file():
        raise ModelLoadError(
            f"x-vector model directory {model_dir} has no {config_name}: it needs {CONFIG_JSON}, "
            f"{DEFAULT_CONFIG_NAME} and {DEFAULT_WEIGHT_NAMES[0]} as published on ModelScope "
            f"({DEFAULT_MODEL_ID})"
        )
    for name in weight_names:
        if (model_dir / name).is_file():
            return config_path, model_dir / name
    raise ModelLoadError(
        f"x-vector model directory {model_dir} has no checkpoint: expected one of "
        f"{', '.join(dict.fromkeys(weight_names))} (a torch.save'd FunASR state_dict)"
    )


def read_sv_config(path: Path) -> XVectorParams:
    """Parse an ``sv.yaml`` into :class:`XVectorParams`."""
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ModelLoadError(f"cannot read x-vector config {path}: {e}") from e
    return XVectorParams.from_sv_config(config or {}, str(path))


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors (``torch.load(weights_only=True)``) without ``num_batches_tracked``."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean "not a readable checkpoint"
        raise ModelLoadError(f"cannot read x-vector checkpoint {path}: {e}") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelLoadError(f"{path} is not a state_dict (a dict of tensor names to tensors)")
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


#: Checkpoint entries FunASR has but the embedding does not need.
_UNUSED_PREFIXES = ("decoder.resnet1_bn.", "decoder.resnet2_", "decoder.output_dense.")


def build_network(params: XVectorParams, state: Mapping[str, torch.Tensor], source: str) -> XVectorNetwork:
    """An :class:`XVectorNetwork` for ``params`` with the weights of ``state`` (FunASR key names).

    Raises:
        ModelLoadError: naming missing keys, unexpected keys and shape mismatches.
    """
    net = XVectorNetwork(params)
    wanted = net.state_dict()
    wanted = {k: v for k, v in wanted.items() if not k.endswith("num_batches_tracked")}
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted and not k.startswith(_UNUSED_PREFIXES)]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {', '.join(unexpected[:3])})")
        raise ModelLoadError(
            f"{source} does not match the ResNet34 x-vector its sv.yaml describes: {'; '.join(parts)}"
        )
    for key, ref in wanted.items():
        if tuple(state[key].shape) != tuple(ref.shape):
            raise ModelLoadError(
                f"{source}: {key} has shape {tuple(state[key].shape)}, sv.yaml implies {tuple(ref.shape)}"
            )
    net.load_state_dict({k: state[k].float() for k in wanted}, strict=False)
    return net.eval()


# --------------------------------------------------------------------------- embedder


class XVectorEmbedder:
    """FunASR x-vector as a diar :class:`~diar.models.base.Embedder`.

    Args:
        model_dir: a ModelScope model directory, or a model id looked up in the ModelScope
            cache (default: :data:`DEFAULT_MODEL_ID`).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        batch_size: windows per forward pass.
    """

    metric = "cosine"

    def __init__(self, model_dir: str | None = None, device: str = "cpu", batch_size: int = 64) -> None:
        directory = resolve_model_dir(model_dir)
        config_path, weights_path = model_files(directory)
        self.params = read_sv_config(config_path)
        self.device = resolve_device(device, "embedding.device")
        self.batch_size = max(1, int(batch_size))
        self.network = build_network(self.params, load_state_dict(weights_path), str(weights_path)).to(
            self.device
        )
        self.fbank = KaldiFbank(self.params)
        self.sample_rate = self.params.sample_rate
        self.dimension = self.params.embedding_dim
        #: One fbank frame (25 ms); shorter input has no features at all.
        self.min_num_samples = self.fbank.frame_length
        self.model_dir = directory
        logger.debug("loaded x-vector %s (%s) on %s", weights_path, self.params, self.device)

    def features(self, waveform: np.ndarray) -> np.ndarray:
        """waveform: shape (N,) -> fbank, shape (T, num_mel_bins)."""
        return self.fbank(waveform)

    @torch.inference_mode()
    def embed_features(self, feats: np.ndarray) -> np.ndarray:
        """feats: shape (B, T, num_mel_bins) -> x-vectors, shape (B, dimension) float32."""
        out = []
        for i in range(0, len(feats), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(feats[i : i + self.batch_size])).to(self.device)
            out.append(self.network(chunk).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dimension), dtype=np.float32)

    def __call__(self, waveforms: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Embed a batch of windows.

        Args:
            waveforms: shape (B, N) float32 at :attr:`sample_rate`.
            masks: optional shape (B, N); samples after a row's last nonzero value are
                padding and are cut off before the fbank (each row then equals
                :meth:`embed_utterance` of its unpadded part).

        Returns:
            shape (B, dimension) float32 (not normalised, as FunASR's).
        """
        x = np.asarray(waveforms, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"waveforms must have shape (batch, samples), got {x.shape}")
        if x.shape[0] == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        lengths = np.full(x.shape[0], x.shape[1])
        if masks is not None:
            m = np.asarray(masks)
            if m.shape != x.shape:
                raise ValueError(f"masks of shape {m.shape} do not match waveforms {x.shape}")
            nonzero = m != 0
            lengths = np.where(nonzero.any(axis=1), x.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)
        lengths = np.maximum(lengths, self.min_num_samples)
        if x.shape[1] < self.min_num_samples:
            raise ValueError(f"windows of {x.shape[1]} samples are shorter than {self.min_num_samples}")
        out = np.zeros((x.shape[0], self.dimension), dtype=np.float32)
        # rows of equal length share one forward pass
        for length in np.unique(lengths):
            rows = np.flatnonzero(lengths == length)
            # shape: (R, T, num_mel_bins)
            feats = np.stack([self.fbank(x[r, :length]) for r in rows])
            out[rows] = self.embed_features(feats)
        return out

    def embed_utterance(self, waveform: np.ndarray) -> np.ndarray:
        """FunASR's ``Speech2Xvector`` embedding of a whole utterance: shape (N,) -> (dimension,)."""
        wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
        if len(wav) < self.min_num_samples:
            raise ValueError(f"utterance of {len(wav)} samples is shorter than {self.min_num_samples}")
        return self.embed_features(self.fbank(wav)[None])[0]


@EMBEDDERS.register("xvector")
def xvector(
    model_dir: str | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
    batch_size: int = 64,
    **_: Any,
) -> XVectorEmbedder:
    """Registry factory: ``model_dir`` is a ModelScope directory (configuration.json, sv.yaml,
    sv.pb) or a model id in the ModelScope cache; default :data:`DEFAULT_MODEL_ID`."""
    set_torch_threads(num_threads)
    return XVectorEmbedder(model_dir, device=device, batch_size=batch_size)
