"""GE2E d-vector speaker encoder, with the weights that ship in the resemblyzer wheel.

The network (Wan et al., "Generalized End-to-End Loss for Speaker Verification") is a
3-layer LSTM over 40-bin mel power spectrograms (25 ms / 10 ms at 16 kHz), a linear
layer on the last hidden state, ReLU and L2 normalisation. The checkpoint
``resemblyzer/pretrained.pt`` is read directly; resemblyzer itself is never imported
(its import pulls in librosa and webrtcvad and can break on new numpy versions).

Embeddings equal resemblyzer's ``VoiceEncoder`` on the same waveform: the mel
frontend reproduces ``librosa.feature.melspectrogram`` (centred frames, zero padding,
periodic Hann window, power 2, Slaney mel filterbank with Slaney normalisation) and
:meth:`GE2EEmbedder.embed_utterance` uses resemblyzer's partial-utterance scheme.
"""

from __future__ import annotations

import importlib.util
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from diar.errors import ModelLoadError
from diar.models.base import EMBEDDERS
from diar.models.build import resolve_device, set_torch_threads

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
#: Frames in one partial utterance of resemblyzer's ``embed_utterance`` (1.6 s).
PARTIAL_FRAMES = 160
CHECKPOINT_NAME = "pretrained.pt"


def _hz_to_mel(freqs: np.ndarray) -> np.ndarray:
    """Slaney's mel scale (librosa ``htk=False``): linear below 1 kHz, logarithmic above."""
    freqs = np.asarray(freqs, dtype=np.float64)
    f_sp = 200.0 / 3
    mels = freqs / f_sp
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    above = freqs >= min_log_hz
    mels[above] = min_log_mel + np.log(freqs[above] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, dtype=np.float64)
    f_sp = 200.0 / 3
    freqs = f_sp * mels
    min_log_hz, min_log_mel, logstep = 1000.0, 1000.0 / f_sp, math.log(6.4) / 27.0
    above = mels >= min_log_mel
    freqs[above] = min_log_hz * np.exp(logstep * (mels[above] - min_log_mel))
    return freqs


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """Triangular mel filters as ``librosa.filters.mel`` (Slaney scale and area normalisation).

    Returns:
        shape (n_mels, n_fft // 2 + 1), float32.
    """
    fft_freqs = np.linspace(0.0, sample_rate / 2, 1 + n_fft // 2)
    mel_points = np.linspace(
        _hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sample_rate / 2]))[0], n_mels + 2
    )
    mel_f = _mel_to_hz(mel_points)
    fdiff = np.diff(mel_f)
    ramps = mel_f[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_f[2 : n_mels + 2] - mel_f[:n_mels]))[:, None]
    return weights.astype(np.float32)


def default_checkpoint() -> Path:
    """Path of ``pretrained.pt`` inside the installed resemblyzer package (not imported)."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the GE2E weights come with the resemblyzer package, which is not installed: "
            "run `pip install resemblyzer` or pass a model_dir holding pretrained.pt"
        )
    return Path(next(iter(spec.submodule_search_locations))) / CHECKPOINT_NAME


def _resolve_checkpoint(model_dir: str | None) -> Path:
    if model_dir is None:
        path = default_checkpoint()
    else:
        path = Path(model_dir)
        if path.is_dir():
            path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise ModelLoadError(
            f"GE2E checkpoint {path} not found: give a .pt file or a directory holding {CHECKPOINT_NAME} "
            "(a dict with 'model_state', as resemblyzer ships it)"
        )
    return path


class GE2ENetwork(nn.Module):
    """LSTM speaker encoder: mel frames (B, T, n_mels) -> L2-normalised embeddings (B, D)."""

    def __init__(self, n_mels: int = N_MELS, hidden_size: int = 256, num_layers: int = 3, dim: int = 256):
        super().__init__()
        self.lstm = nn.LSTM(n_mels, hidden_size, num_layers, batch_first=True)
        self.linear = nn.Linear(hidden_size, dim)

    def forward(self, mels: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """mels: shape (B, T, n_mels); lengths: optional (B,) valid frames per row -> (B, D)."""
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(
                mels, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            _, (hidden, _) = self.lstm(packed)
        else:
            _, (hidden, _) = self.lstm(mels)
        # shape: (B, D); the last layer's final hidden state
        embeds = torch.relu(self.linear(hidden[-1]))
        # resemblyzer divides by the plain norm; the clamp only avoids 0/0 on an all-zero ReLU output
        return embeds / embeds.norm(dim=1, keepdim=True).clamp_min(1e-12)


def load_network(path: Path) -> GE2ENetwork:
    """Build a :class:`GE2ENetwork` sized from the checkpoint at ``path`` and load its weights."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for a corrupt or foreign file
        raise ModelLoadError(f"cannot read GE2E checkpoint {path}: {e}") from e
    state = checkpoint.get("model_state") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "lstm.weight_ih_l0" not in state or "linear.weight" not in state:
        raise ModelLoadError(
            f"{path} is not a GE2E checkpoint: expected a dict with 'model_state' holding "
            "'lstm.weight_ih_l0', ..., 'linear.weight'"
        )
    n_mels = int(state["lstm.weight_ih_l0"].shape[1])
    hidden = int(state["lstm.weight_hh_l0"].shape[1])
    num_layers = sum(1 for k in state if k.startswith("lstm.weight_ih_l"))
    dim = int(state["linear.weight"].shape[0])
    net = GE2ENetwork(n_mels, hidden, num_layers, dim)
    wanted = {k: v for k, v in state.items() if k.startswith(("lstm.", "linear."))}
    try:
        net.load_state_dict(wanted, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"GE2E checkpoint {path} does not fit the network: {e}") from e
    return net.eval()


def partial_slices(num_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[tuple[int, int]]:
    """Mel-frame ranges of resemblyzer's partial utterances of a waveform.

    Partials of :data:`PARTIAL_FRAMES` frames start every ``round(16000 / rate / 160)``
    frames; the last one is kept if at least ``min_coverage`` of it holds audio (always
    when it is the only one).

    Returns:
        [(start_frame, end_frame)], end exclusive; multiply by 160 for samples.
    """
    if not 0 < min_coverage <= 1:
        raise ValueError(f"min_coverage must be in (0, 1], got {min_coverage}")
    n_frames = int(np.ceil((num_samples + 1) / HOP))
    frame_step = int(np.round((SAMPLE_RATE / rate) / HOP))
    if not 0 < frame_step <= PARTIAL_FRAMES:
        raise ValueError(f"partial rate {rate} per second is out of range")
    steps = max(1, n_frames - PARTIAL_FRAMES + frame_step + 1)
    slices = [(i, i + PARTIAL_FRAMES) for i in range(0, steps, frame_step)]
    start, stop = slices[-1]
    coverage = (num_samples - start * HOP) / ((stop - start) * HOP)
    if coverage < min_coverage and len(slices) > 1:
        slices = slices[:-1]
    return slices


def preprocess_wav(waveform: np.ndarray, target_dbfs: float = -30.0) -> np.ndarray:
    """resemblyzer's ``preprocess_wav`` for 16 kHz input: raise the volume to ``target_dbfs``
    (never lower it), then shorten long silences found by webrtcvad.

    Silence trimming: 30 ms frames flagged by webrtcvad (mode 3), moving average over 8
    frames, rounded, dilated by 7 frames; frames outside are dropped. Needs the
    ``webrtcvad`` module (the ``webrtcvad-wheels`` package).

    Args:
        waveform: shape (N,) float32 at 16 kHz.

    Returns:
        shape (M,) float32, M <= N.
    """
    from scipy.ndimage import binary_dilation

    try:
        import webrtcvad
    except ImportError as e:
        raise ModelLoadError(
            f"resemblyzer's preprocessing needs webrtcvad (pip install webrtcvad-wheels): {e}"
        ) from e
    int16_max = (2**15) - 1
    wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
    # volume: same float32 arithmetic as resemblyzer.audio.normalize_volume(increase_only=True)
    rms = np.sqrt(np.mean((wav * int16_max) ** 2))
    if rms > 0:
        change = target_dbfs - 20 * np.log10(rms / int16_max)
        if change > 0:
            wav = wav * (10 ** (change / 20))
    # long silences, as resemblyzer.audio.trim_long_silences
    window = 30 * SAMPLE_RATE // 1000
    wav = wav[: len(wav) - (len(wav) % window)]
    pcm = np.round(wav * int16_max).astype(np.int16).tobytes()
    vad = webrtcvad.Vad(3)
    flags = np.array(
        [
            vad.is_speech(pcm[i * 2 : (i + window) * 2], sample_rate=SAMPLE_RATE)
            for i in range(0, len(wav), window)
        ],
        dtype=float,
    )
    width = 8
    padded = np.concatenate((np.zeros((width - 1) // 2), flags, np.zeros(width // 2)))
    acc = np.cumsum(padded, dtype=float)
    acc[width:] = acc[width:] - acc[:-width]
    mask = np.round(acc[width - 1 :] / width).astype(bool)
    mask = binary_dilation(mask, np.ones(6 + 1))
    return wav[np.repeat(mask, window)]


class GE2EEmbedder:
    """Batched GE2E d-vector embedder (the project's :class:`~diar.models.base.Embedder`).

    Args:
        checkpoint: a resemblyzer-format ``.pt`` file (default: the one in the resemblyzer wheel).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        batch_size: windows per forward pass in :meth:`embed_utterance`.
    """

    sample_rate = SAMPLE_RATE
    metric = "cosine"
    #: One analysis window; shorter input has no full frame.
    min_num_samples = N_FFT

    def __init__(
        self, checkpoint: str | Path | None = None, device: str = "cpu", batch_size: int = 64
    ) -> None:
        path = _resolve_checkpoint(None if checkpoint is None else str(checkpoint))
        self.device = resolve_device(device, "embedding.device")
        self.batch_size = batch_size
        self.network = load_network(path).to(self.device)
        self.dimension = int(self.network.linear.out_features)
        n_mels = int(self.network.lstm.input_size)
        self._mel = torch.from_numpy(mel_filterbank(SAMPLE_RATE, N_FFT, n_mels)).to(self.device)
        self._window = torch.hann_window(N_FFT, periodic=True, device=self.device)
        logger.debug("loaded GE2E encoder from %s (dim %d) on %s", path, self.dimension, self.device)

    def mel(self, waveforms: torch.Tensor) -> torch.Tensor:
        """Mel power spectrogram as resemblyzer's. waveforms: (B, N) -> (B, 1 + N // 160, n_mels)."""
        spec = torch.stft(
            waveforms,
            n_fft=N_FFT,
            hop_length=HOP,
            window=self._window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )
        # shape: (B, 201, T)
        power = spec.real.square() + spec.imag.square()
        return torch.matmul(self._mel, power).transpose(1, 2)

    @torch.inference_mode()
    def __call__(self, waveforms: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        """Embed a batch of windows.

        Args:
            waveforms: shape (B, N) float32 at 16 kHz.
            masks: optional shape (B, N); each row's samples after its last nonzero mask
                value are padding and do not reach the LSTM.

        Returns:
            shape (B, dimension) float32, L2-normalised.
        """
        x = np.asarray(waveforms, dtype=np.float32)
        if x.ndim != 2:
            raise ValueError(f"waveforms must have shape (batch, samples), got {x.shape}")
        if x.shape[0] == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if x.shape[1] < self.min_num_samples:
            raise ValueError(f"windows of {x.shape[1]} samples are shorter than {self.min_num_samples}")
        wav = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        lengths = None
        if masks is not None:
            m = np.asarray(masks)
            if m.shape != x.shape:
                raise ValueError(f"masks of shape {m.shape} do not match waveforms {x.shape}")
            nonzero = m != 0
            valid = np.where(nonzero.any(axis=1), x.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 0)
            valid = np.maximum(valid, self.min_num_samples)
            wav = wav * torch.from_numpy(
                (np.arange(x.shape[1])[None, :] < valid[:, None]).astype(np.float32)
            ).to(self.device)
            lengths = torch.from_numpy(1 + valid // HOP)
        # shape: (B, T, n_mels)
        mels = self.mel(wav)
        return self.network(mels, lengths).float().cpu().numpy()

    @torch.inference_mode()
    def embed_mels(self, mels: np.ndarray) -> np.ndarray:
        """Embed precomputed mel frames. mels: shape (B, T, n_mels) -> (B, dimension)."""
        out = []
        for i in range(0, len(mels), self.batch_size):
            chunk = torch.from_numpy(np.ascontiguousarray(mels[i : i + self.batch_size])).to(self.device)
            out.append(self.network(chunk).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dimension), dtype=np.float32)

    @torch.inference_mode()
    def embed_utterance(
        self, waveform: np.ndarray, rate: float = 1.3, min_coverage: float = 0.75
    ) -> np.ndarray:
        """Utterance embedding as resemblyzer's ``embed_utterance``: mean of partials, L2-normalised.

        Args:
            waveform: shape (N,) float32 at 16 kHz (not volume-normalised or trimmed here).

        Returns:
            shape (dimension,) float32.
        """
        wav = np.asarray(waveform, dtype=np.float32).reshape(-1)
        slices = partial_slices(len(wav), rate, min_coverage)
        needed = slices[-1][1] * HOP
        if needed >= len(wav):
            wav = np.pad(wav, (0, needed - len(wav)))
        # shape: (T, n_mels)
        mel = self.mel(torch.from_numpy(wav).to(self.device)[None])[0].cpu().numpy()
        # shape: (P, 160, n_mels)
        partials = np.stack([mel[s:e] for s, e in slices])
        mean = self.embed_mels(partials).mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


@EMBEDDERS.register("ge2e")
def ge2e(
    model_dir: str | None = None,
    device: str = "cpu",
    num_threads: int | None = None,
    batch_size: int = 64,
    **_: Any,
) -> GE2EEmbedder:
    """Registry factory: ``model_dir`` is a resemblyzer-format .pt file or a directory holding
    ``pretrained.pt``; default is the checkpoint inside the resemblyzer wheel."""
    set_torch_threads(num_threads)
    return GE2EEmbedder(model_dir, device=device, batch_size=batch_size)
