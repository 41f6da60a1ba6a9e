"""WavLM-SD frame model: a tiny random checkpoint saved with save_pretrained, loaded offline
through the real loader, compared with transformers' own forward (the model card's recipe)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")

from helpers import save_tiny_wavlm  # noqa: E402

from diar.errors import ModelLoadError  # noqa: E402
from diar.models.base import FRAME_MODELS, FrameModel  # noqa: E402
from diar.models.wavlm_sd import WavLMSpeakerActivity, load_wavlm_sd  # noqa: E402


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published extractor does not normalise; this one does (the harder case for batching)."""
    return save_tiny_wavlm(tmp_path_factory.mktemp("wavlm"), do_normalize=True)


@pytest.fixture(scope="module", params=[True, False], ids=["normalize", "raw"])
def any_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_wavlm(tmp_path_factory.mktemp("wavlm"), do_normalize=request.param, seed=7)


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts with varying loudness and a DC offset (so per-window normalisation matters)."""
    rng = np.random.default_rng(seed)
    n = round(seconds * 16000)
    envelope = np.repeat(rng.uniform(0.0, 0.5, size=n // 1600 + 1), 1600)[:n]
    return (rng.normal(0, 1, n) * envelope + rng.uniform(-0.1, 0.1)).astype(np.float32)


def reference(directory: Path, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The model card's recipe, straight from transformers: (probabilities, labels)."""
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(directory)
    model = transformers.WavLMForAudioFrameClassification.from_pretrained(directory).eval()
    inputs = extractor(audio, return_tensors="pt", sampling_rate=16000)
    with torch.no_grad():
        logits = model(**inputs).logits
    probabilities = torch.sigmoid(logits[0])
    labels = (probabilities > 0.5).long()
    return probabilities.numpy(), labels.numpy()


def test_saved_in_safetensors_and_loaded_offline(tiny_dir: Path) -> None:
    assert (tiny_dir / "model.safetensors").is_file()
    network, extractor = load_wavlm_sd(str(tiny_dir))
    assert isinstance(network, transformers.WavLMForAudioFrameClassification)
    assert not network.training
    assert isinstance(extractor, transformers.Wav2Vec2FeatureExtractor)


def test_single_window_equals_transformers_forward(any_dir: Path) -> None:
    model = WavLMSpeakerActivity(str(any_dir), device="cpu")
    audio = speechlike(3.0, seed=1)
    ref_probs, ref_labels = reference(any_dir, audio)
    probs = model(audio[None])[0]
    assert probs.shape == ref_probs.shape == (model.num_frames(len(audio)), 2)
    np.testing.assert_array_equal(probs, ref_probs)
    np.testing.assert_array_equal((probs > 0.5).astype(np.int64), ref_labels)
    # the test means something only if both decisions occur
    assert 0 < ref_labels.sum() < ref_labels.size


def test_batched_windows_equal_one_by_one(any_dir: Path) -> None:
    windows = np.stack([speechlike(2.0, seed=s) * (1 + 3 * s) for s in range(5)])
    single = WavLMSpeakerActivity(str(any_dir), "cpu", batch_size=1)
    one_by_one = np.stack([single(w[None])[0] for w in windows])
    batched = WavLMSpeakerActivity(str(any_dir), "cpu", batch_size=3)(windows)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    np.testing.assert_array_equal(batched > 0.5, one_by_one > 0.5)
    for i, w in enumerate(windows[:2]):
        np.testing.assert_array_equal(one_by_one[i], reference(any_dir, w)[0])


def test_geometry_matches_model_output(tiny_dir: Path) -> None:
    model = WavLMSpeakerActivity(str(tiny_dir), device="cpu")
    assert isinstance(model, FrameModel)
    assert model.frame_stride == 320 and model.frame_shift == pytest.approx(0.02)
    assert model.sample_rate == 16000 and model.num_speakers == 2
    # kernels 10, 4, 4 and strides 5, 8, 8: 10 + 5 * (4 + 8 * 3 - 1) samples
    assert (model.receptive_field, model.frame_center_offset) == (145, 72)
    for n in (model.receptive_field, model.receptive_field + 319, 16000, 16321):
        assert model(np.zeros((1, n), np.float32) + 0.01).shape == (1, model.num_frames(n), 2)
    assert model.num_frames(model.receptive_field - 1) == 0
    assert model(np.zeros((2, 100), np.float32)).shape == (2, 0, 2)


def test_batch_size_defaults_to_the_devices(tiny_dir: Path) -> None:
    assert WavLMSpeakerActivity(str(tiny_dir), device="cpu").batch_size == 1
    assert WavLMSpeakerActivity(str(tiny_dir), device="cpu", batch_size=4).batch_size == 4
    with pytest.raises(ModelLoadError, match="batch_size must be >= 1"):
        WavLMSpeakerActivity(str(tiny_dir), device="cpu", batch_size=0)


def test_registry_builds_model(tiny_dir: Path) -> None:
    model = FRAME_MODELS.get("wavlm-sd")(model=str(tiny_dir), device="auto", batch_size=2, num_threads=1)
    assert isinstance(model, WavLMSpeakerActivity)
    assert torch.get_num_threads() == 1


def test_more_local_speakers(tmp_path: Path) -> None:
    directory = save_tiny_wavlm(tmp_path, do_normalize=True, num_labels=3)
    model = WavLMSpeakerActivity(str(directory), device="cpu")
    assert model.num_speakers == 3
    assert model(speechlike(1.0, 0)[None]).shape[-1] == 3


def test_uncached_id_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"(?s)no-such-org/no-such-wavlm-sd.*HF_HUB_OFFLINE"):
        load_wavlm_sd("no-such-org/no-such-wavlm-sd")


def test_missing_directory_and_files(tmp_path: Path, tiny_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_wavlm_sd(str(tmp_path / "nowhere"))
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_bytes((tiny_dir / "config.json").read_bytes())
    with pytest.raises(ModelLoadError, match=r"preprocessor_config\.json.*model\.safetensors"):
        load_wavlm_sd(str(partial))


def test_bad_options(tiny_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="autocast"):
        WavLMSpeakerActivity(str(tiny_dir), device="cpu", autocast="fp8")
    with pytest.raises(ModelLoadError, match="device"):
        WavLMSpeakerActivity(str(tiny_dir), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="CUDA"):
            WavLMSpeakerActivity(str(tiny_dir), device="cuda")


def test_cpu_ignores_autocast_and_says_so(tiny_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    audio = speechlike(2.0, seed=3)[None]
    exact = WavLMSpeakerActivity(str(tiny_dir), device="cpu")(audio)
    with caplog.at_level("WARNING", logger="diar.models.wavlm_sd"):
        model = WavLMSpeakerActivity(str(tiny_dir), device="cpu", autocast="bf16")
    assert "not applied on the CPU" in caplog.text
    np.testing.assert_array_equal(model(audio), exact)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("autocast", ["none", "bf16", "fp16"])
def test_cuda_matches_cpu(tiny_dir: Path, autocast: str) -> None:
    audio = np.stack([speechlike(4.0, seed=s) for s in range(3)])
    cpu = WavLMSpeakerActivity(str(tiny_dir), device="cpu")(audio)
    gpu = WavLMSpeakerActivity(str(tiny_dir), device="cuda", autocast=autocast, batch_size=2)(audio)
    assert np.abs(gpu - cpu).max() < (1e-3 if autocast == "none" else 0.05)


def test_hub_id_from_a_filled_cache_offline(tiny_dir: Path, tmp_path: Path) -> None:
    """An id resolves through the Hugging Face cache layout with HF_HUB_OFFLINE=1 (fresh process,
    since huggingface_hub reads its cache location at import)."""
    import os
    import shutil
    import subprocess
    import sys

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--test-org--tiny-wavlm-sd"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(tiny_dir / name, snapshot / name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    code = (
        "import numpy as np; from diar.models.wavlm_sd import WavLMSpeakerActivity;"
        "m = WavLMSpeakerActivity('test-org/tiny-wavlm-sd', device='cpu');"
        "print(m.num_speakers, m(np.ones((1, 8000), np.float32)).shape)"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), HF_HOME=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "2 (1, 25, 2)"
