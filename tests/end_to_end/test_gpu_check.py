"""scripts/gpu-check.sh's rehearsal on CPU, on a tiny input: the tests' tiny models and the
bundled sample recording packed, a fresh Python given only the GPU image's packages (linked from
this environment) and the wheels installed into a fresh target, then the measurement. The wheels
are this environment's own, repacked (what `pip download` fetches for this Python, without the
network); fetching them is what the full rehearsal does (docs/gpu.md)."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import TEST_DATA, sample_clip

from diar.models.weights import sha256_of

REPO = Path(__file__).resolve().parents[2]
FRAME_MODEL = TEST_DATA / "segmentation" / "tiny_pyannet.ckpt"
EMBEDDER = TEST_DATA / "campplus" / "tiny_campplus.pt"

pytestmark = pytest.mark.slow


def wheel_names() -> list[str]:
    """The distributions scripts/gpu-wheels.txt pins."""
    lines = (REPO / "scripts" / "gpu-wheels.txt").read_text(encoding="utf-8").splitlines()
    return [line.split("==")[0].strip() for line in lines if line.strip() and not line.startswith("#")]


def repack(name: str, dest: Path) -> Path:
    """A wheel of the distribution installed here, zipped from the files its RECORD lists, named
    by the tags of its WHEEL file."""
    dist = importlib.metadata.distribution(name)
    root = Path(str(dist.locate_file("")))
    files = [f for f in dist.files or () if f.parts[0] != ".." and "__pycache__" not in f.parts]
    wheel = next(f for f in files if f.name == "WHEEL" and f.parent.name.endswith(".dist-info"))
    tags = [
        line.split(":", 1)[1].strip().split("-")
        for line in (root / wheel).read_text().splitlines()
        if line.startswith("Tag:")
    ]
    parts = [".".join(sorted({t[i] for t in tags})) for i in range(3)]
    stem = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    path = dest / f"{stem}-{dist.version}-{'-'.join(parts)}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            if (root / f).is_file():
                z.write(root / f, f.as_posix())
    return path


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("wheels")
    for name in wheel_names():
        repack(name, dest)
    return dest


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return sample_clip(tmp_path_factory.mktemp("clip"), 20.0)


def rehearse(tmp: Path, wheels: Path, clip: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(DIAR_PYTHON=sys.executable, TMPDIR=str(tmp))
    command = [
        "bash",
        str(REPO / "scripts" / "gpu-check.sh"),
        "--device",
        "cpu",
        "--wheels",
        str(wheels),
        "--pack",
        str(tmp / "pack"),
        "--out",
        str(tmp / "out"),
        "--set",
        f"clip={clip}",
        "--frame-model",
        str(FRAME_MODEL),
        "--embedder",
        str(EMBEDDER),
        *extra,
    ]
    return subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)


def test_rehearsal_installs_the_wheels_into_a_fresh_python_and_measures(
    tmp_path: Path, wheels: Path, clip: Path
) -> None:
    done = rehearse(
        tmp_path, wheels, clip, "--", "--warmup", "5", "--precisions", "fp32", "--batch-sizes", "4"
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert re.search(r"what travels: checkout [\d.]+ MiB, wheels 0\.00 MiB, weights 0\.7\d MiB", done.stdout)
    manifest = json.loads((tmp_path / "pack" / "manifest.json").read_text())
    assert manifest["weights"]["frame_model"]["sha256"] == sha256_of(FRAME_MODEL)
    assert manifest["weights"]["embedder"]["sha256"] == sha256_of(EMBEDDER)
    assert manifest["sets"]["clip"] == {"recordings": 1, "seconds": 20.0, "from": str(clip)}

    figures = json.loads((tmp_path / "out" / "figures.json").read_text())
    modules = figures["environment"]["modules"]
    # the wheels' modules come from the fresh target, the image's packages from their stand-in
    for module in ("soundfile", "soxr", "kaldi_native_fbank", "_cffi_backend"):
        assert "/diar-gpu-check." in modules[module] and "/site/" in modules[module], modules[module]
    assert "/image-site/" in modules["torch"] and "/image-site/" in modules["numpy"]
    assert figures["environment"]["executable"] != sys.executable
    assert figures["sets"] == {"clip": {"recordings": 1, "audio_seconds": 20.0}}
    assert [run["name"] for run in figures["runs"]] == ["fp32", "fp32 together, batch 4"]
    fp32 = figures["runs"][0]["sets"]["clip"]
    assert fp32["der_minus_cpu"] == {"0.0": 0.0, "0.25": 0.0} and fp32["same_rttm_as_cpu"] == [1, 1]
    assert figures["check"]["passed"]
    assert "| fp32 | clip |" in (tmp_path / "out" / "figures.md").read_text()
    assert "6 skipped" in (tmp_path / "out" / "cuda-tests.log").read_text()  # the CUDA tests collect
    assert "figures.md in" in (tmp_path / "out" / "gpu-check.log").read_text()
    assert not list(tmp_path.glob("diar-gpu-check.*"))  # the fresh environment is removed


def test_rehearsal_names_a_module_the_wheels_lack(tmp_path: Path, wheels: Path, clip: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    for wheel in wheels.glob("*.whl"):
        if not wheel.name.startswith("kaldi_native_fbank"):
            (partial / wheel.name).write_bytes(wheel.read_bytes())
    done = rehearse(tmp_path, partial, clip, "--no-tests")
    assert done.returncode == 2
    assert "missing: kaldi_native_fbank (kaldi-native-fbank" in done.stdout
    assert "add its wheel to scripts/gpu-wheels.txt" in done.stdout
    assert not (tmp_path / "out" / "figures.json").exists()
