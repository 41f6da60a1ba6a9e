"""GE2E embedder: mel frontend, loader, batching, and equality with resemblyzer's VoiceEncoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import REPO

from diar.errors import ModelLoadError
from diar.models.base import EMBEDDERS, Embedder
from diar.models.ge2e import GE2EEmbedder, GE2ENetwork, mel_filterbank, partial_slices, preprocess_wav

SAMPLE = REPO / "diar" / "data" / "sample"


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Six seconds of real two-speaker speech from the bundled sample (CC BY 4.0, see ATTRIBUTION.md)."""
    wav, sr = sf.read(SAMPLE / "sim01_2spk.flac", dtype="float32", start=16000 * 20, stop=16000 * 26)
    assert sr == 16000
    return wav


@pytest.fixture(scope="module")
def embedder() -> GE2EEmbedder:
    return EMBEDDERS.get("ge2e")()


def save_tiny_checkpoint(path: Path, hidden: int = 8, layers: int = 2, dim: int = 6) -> GE2ENetwork:
    net = GE2ENetwork(40, hidden, layers, dim)
    state = {"similarity_weight": torch.tensor([10.0]), "similarity_bias": torch.tensor([-5.0])}
    state.update(net.state_dict())
    torch.save({"step": 7, "model_state": state, "optimizer_state": {}}, path)
    return net


def test_filterbank_matches_librosa() -> None:
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16000, n_fft=400, n_mels=40)
    np.testing.assert_allclose(mel_filterbank(), ref, atol=1e-7)


def test_partial_slices_cover_the_utterance() -> None:
    # 1.3 partials per second -> a step of round(76.9) = 77 frames; the last candidate partial of
    # 5 s (frames 385..545) holds 0.72 of audio, below min_coverage 0.75, so it is dropped
    assert partial_slices(16000) == [(0, 160)]
    slices = partial_slices(16000 * 5)
    assert [s for s, _ in slices] == [0, 77, 154, 231, 308]
    assert [s for s, _ in partial_slices(16000 * 5, min_coverage=0.7)][-1] == 385
    assert all(e - s == 160 for s, e in slices)


def test_tiny_checkpoint_loads_through_the_real_loader(tmp_path: Path) -> None:
    net = save_tiny_checkpoint(tmp_path / "pretrained.pt")
    emb = EMBEDDERS.get("ge2e")(model_dir=str(tmp_path))
    assert isinstance(emb, Embedder)
    assert emb.dimension == 6
    x = np.random.default_rng(0).standard_normal((3, 8000)).astype(np.float32) * 0.1
    out = emb(x)
    with torch.no_grad():
        ref = net(emb.mel(torch.from_numpy(x))).numpy()
    np.testing.assert_allclose(out, ref, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_bad_checkpoints_raise_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        GE2EEmbedder(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ModelLoadError, match="not a GE2E checkpoint"):
        GE2EEmbedder(tmp_path / "other.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ModelLoadError, match="cannot read"):
        GE2EEmbedder(tmp_path / "junk.pt")


def test_batch_equals_one_by_one_and_masks_cut_padding(embedder: GE2EEmbedder, speech: np.ndarray) -> None:
    windows = np.stack([speech[i : i + 24000] for i in range(0, 72000, 12000)])
    batch = embedder(windows)
    assert batch.shape == (6, 256) and batch.dtype == np.float32
    single = np.concatenate([embedder(w[None]) for w in windows])
    np.testing.assert_allclose(batch, single, atol=1e-5)
    masks = np.ones_like(windows)
    masks[0, 16000:] = 0
    padded = windows.copy()
    padded[0, 16000:] = 0.5  # garbage after the mask must not matter
    masked = embedder(padded, masks)
    np.testing.assert_allclose(masked[0], embedder(windows[:1, :16000])[0], atol=1e-5)
    np.testing.assert_allclose(masked[1:], batch[1:], atol=1e-5)


def test_different_speakers_are_further_apart(embedder: GE2EEmbedder) -> None:
    enroll = sorted((SAMPLE / "enroll").glob("*.flac"))
    a = sf.read(enroll[0], dtype="float32")[0]
    b = sf.read(enroll[1], dtype="float32")[0]
    ea1, ea2, eb = (
        embedder.embed_utterance(a[:48000]),
        embedder.embed_utterance(a[48000:]),
        embedder.embed_utterance(b),
    )
    assert ea1 @ ea2 > ea1 @ eb + 0.1


def test_equals_resemblyzer_voice_encoder(embedder: GE2EEmbedder, speech: np.ndarray) -> None:
    try:
        from resemblyzer import VoiceEncoder, audio
    except Exception as e:  # resemblyzer's import can break on new numpy/scipy
        pytest.skip(f"resemblyzer does not import here: {e}")
    reference = VoiceEncoder(device="cpu", verbose=False)
    # whole utterance, same raw waveform (no preprocess_wav volume normalisation or trimming)
    for x in (speech, speech[:20000]):
        ours, theirs = embedder.embed_utterance(x), reference.embed_utterance(x)
        assert float(ours @ theirs) >= 0.999
    # per window
    windows = np.stack([speech[i : i + 24000] for i in range(0, 72000, 24000)])
    ours = embedder(windows)
    with torch.no_grad():
        theirs = np.stack(
            [reference(torch.from_numpy(audio.wav_to_mel_spectrogram(w))[None]).numpy()[0] for w in windows]
        )
    assert float((ours * theirs).sum(axis=1).min()) >= 0.999


def test_preprocess_wav_equals_resemblyzer(speech: np.ndarray) -> None:
    try:
        from resemblyzer import preprocess_wav as reference
    except Exception as e:
        pytest.skip(f"resemblyzer does not import here: {e}")
    quiet = np.concatenate([speech * 0.1, np.zeros(16000 * 2, dtype=np.float32), speech[:16000] * 0.1])
    for x in (speech, quiet):
        ours, theirs = preprocess_wav(x), reference(x)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-6)
    assert len(preprocess_wav(quiet)) < len(quiet)  # the 2 s pause is shortened
