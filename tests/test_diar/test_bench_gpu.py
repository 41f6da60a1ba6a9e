"""diar.benchmarks.gpu (the GPU check's library side): the pack, the wheels' needs, the stand-in
for the GPU image, and the measurement on CPU with the tiny models (the whole script, in a fresh
Python: tests/end_to_end/test_gpu_check.py)."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from helpers import TEST_DATA, sample_clip

from diar.benchmarks import gpu
from diar.cli import main
from diar.models.weights import sha256_of

FRAME_MODEL = TEST_DATA / "segmentation" / "tiny_pyannet.ckpt"
EMBEDDER = TEST_DATA / "campplus" / "tiny_campplus.pt"


def tiny(repo: Path) -> list[str]:
    """``pack`` options: the tiny models, and a checkout (not a git one) to count."""
    return ["--frame-model", str(FRAME_MODEL), "--embedder", str(EMBEDDER), "--repo", str(repo)]


def fake_wheel(folder: Path, name: str, version: str, *requires: str) -> Path:
    path = folder / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    meta = "".join(f"Requires-Dist: {r}\n" for r in requires)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            f"{name.replace('-', '_')}-{version}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{meta}\nA description: not a field\n",
        )
    return path


def test_wheels_must_meet_their_needs_on_the_gpu_machine(tmp_path: Path) -> None:
    wheels = [
        fake_wheel(tmp_path, "soundfile", "0.14.0", "cffi>=1.0", "numpy", "typing-extensions"),
        fake_wheel(tmp_path, "cffi", "2.1.1", 'pycparser; implementation_name != "PyPy"'),
        fake_wheel(tmp_path, "pycparser", "3.12"),
        fake_wheel(
            tmp_path, "soxr", "1.1.0", "numpy", 'sphinx; extra == "docs"', 'backports; python_version < "3.9"'
        ),
    ]
    entries = gpu.check_wheels(wheels, "3.12")
    assert [(e["name"], e["version"]) for e in entries] == [
        ("cffi", "2.1.1"),
        ("pycparser", "3.12"),
        ("soundfile", "0.14.0"),
        ("soxr", "1.1.0"),
    ]
    with pytest.raises(
        gpu.GpuCheckError, match=r"cffi-2\.1\.1-py3-none-any\.whl needs pycparser.*gpu-wheels\.txt"
    ):
        gpu.check_wheels([w for w in wheels if "pycparser" not in w.name], "3.12")
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(gpu.GpuCheckError, match="two wheels of soxr"):
        gpu.check_wheels([*wheels, fake_wheel(other, "soxr", "1.0.0")], "3.12")


def test_pack_copies_weights_and_corpus_losslessly_and_counts_what_travels(tmp_path: Path) -> None:
    clip = sample_clip(tmp_path / "clip", 6.0)
    deep = tmp_path / "deep"  # 24-bit PCM goes to FLAC too; float samples are copied as they are
    deep.mkdir()
    rng = np.random.default_rng(0)
    sf.write(
        deep / "a.wav",
        rng.integers(-(2**23), 2**23, (16000, 2), dtype=np.int32) << 8,
        16000,
        subtype="PCM_24",
    )
    sf.write(deep / "b.wav", rng.uniform(-0.5, 0.5, 8000).astype(np.float32), 8000, subtype="FLOAT")
    (deep / "wav.scp").write_text("a a.wav\nb b.wav\n")
    (deep / "ref.rttm").write_text(
        "SPEAKER a 1 0.000 0.500 <NA> <NA> x <NA> <NA>\nSPEAKER b 1 0.000 0.500 <NA> <NA> y <NA> <NA>\n"
    )
    dest = tmp_path / "pack"
    args = gpu.parse_args(
        ["pack", "--dest", str(dest), "--set", f"clip={clip}", "--set", f"deep={deep}", *tiny(tmp_path)]
    )
    assert gpu.pack(args) == 0
    manifest = json.loads((dest / "manifest.json").read_text())
    assert manifest["weights"]["frame_model"] == {
        "file": "weights/frame_model/tiny_pyannet.ckpt",
        "sha256": sha256_of(FRAME_MODEL),
        "bytes": FRAME_MODEL.stat().st_size,
        "from": str(FRAME_MODEL),
        "published": False,
    }
    assert manifest["sets"]["clip"]["seconds"] == 6.0 and manifest["sets"]["deep"]["recordings"] == 2
    assert manifest["wheels"] == [] and manifest["sizes_mib"]["checkout"] is None  # tmp_path: no git
    assert (dest / "corpus" / "deep" / "wav.scp").read_text() == "a audio/a.flac\nb audio/b.wav\n"
    for name, packed in (("a.wav", "a.flac"), ("b.wav", "b.wav")):
        original, _ = sf.read(deep / name, dtype="float32")
        again, _ = sf.read(dest / "corpus" / "deep" / "audio" / packed, dtype="float32")
        np.testing.assert_array_equal(original, again)
    assert (dest / "corpus" / "clip" / "uem").read_text() == (clip / "uem").read_text()
    assert not (dest / "corpus" / "deep" / "uem").exists()

    args.limit_mib = 0.5
    with pytest.raises(gpu.GpuCheckError, match=r"more than the 0\.5 MiB the GPU machine takes"):
        gpu.pack(args)


def test_pack_refuses_a_set_whose_reference_lacks_a_recording(tmp_path: Path) -> None:
    clip = sample_clip(tmp_path / "clip", 2.0)
    (clip / "ref.rttm").write_text("SPEAKER other 1 0.000 1.000 <NA> <NA> x <NA> <NA>\n")
    args = gpu.parse_args(["pack", "--dest", str(tmp_path / "pack"), "--set", f"clip={clip}"])
    with pytest.raises(gpu.GpuCheckError, match=r"ref\.rttm has no turns of sim01_2spk"):
        gpu.pack(args)


def test_what_travels_is_what_git_would_send(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "pack" / "weights").mkdir(parents=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text("/ignored\n")
    (repo / "tracked").write_bytes(b"x" * 2**20)
    (repo / "untracked").write_bytes(b"x" * 2**19)
    (repo / "ignored").write_bytes(b"x" * 2**22)
    (repo / "pack" / "weights" / "w").write_bytes(b"x" * 2**21)  # counted once, as the pack
    subprocess.run(["git", "-C", str(repo), "add", "tracked", ".gitignore"], check=True)
    sizes = gpu.travelling_sizes(repo, repo / "pack")
    assert sizes["checkout"] == pytest.approx(1.5, abs=0.01)
    assert sizes["weights"] == 2.0 and sizes["total"] == pytest.approx(3.5, abs=0.01)


def test_image_site_links_only_the_image_packages_installed_here(tmp_path: Path) -> None:
    linked, absent = gpu.image_site(tmp_path / "site", frozenset({"numpy", "pyyaml", "no-such-package"}))
    assert [entry.split()[0] for entry in linked] == ["numpy", "pyyaml"]
    assert absent == ["no-such-package"]
    site = tmp_path / "site"
    assert (site / "numpy").is_symlink() and (site / "yaml").is_symlink()
    assert list(site.glob("numpy-*.dist-info")) and not (site / "torch").exists()


@pytest.fixture(scope="module")
def tiny_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("gpu")
    clip = sample_clip(root / "clip", 12.0)
    args = gpu.parse_args(["pack", "--dest", str(root / "pack"), "--set", f"clip={clip}", *tiny(root)])
    gpu.pack(args)
    return root / "pack"


def measure(pack: Path, out: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    argv = ["measure", "--pack", str(pack), "--out", str(out), "--device", "cpu", "--warmup", "2"]
    code = gpu.measure(gpu.parse_args([*argv, *extra]))
    return code, json.loads((out / "figures.json").read_text())


def test_measure_records_a_failing_run_and_goes_on(
    tiny_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    execute = gpu.execute

    def bf16_fails(run: gpu.Run, *args: Any) -> Any:
        if run.precision == "bf16":
            raise RuntimeError("no kernel\nfor bf16")
        return execute(run, *args)

    monkeypatch.setattr(gpu, "execute", bf16_fails)
    code, figures = measure(tiny_pack, tmp_path, "--batch-sizes", "3")
    assert code == 0
    assert [run["name"] for run in figures["runs"]] == ["fp32", "bf16", "fp32 together, batch 3"]
    assert figures["runs"][1]["error"] == "RuntimeError: no kernel for bf16"
    assert set(figures["skipped"]) == {"fp32-strict", "fp16"}
    fp32 = figures["runs"][0]
    assert fp32["sets"]["clip"]["der_minus_cpu"] == {"0.0": 0.0, "0.25": 0.0}
    assert fp32["total"]["audio_seconds"] == 12.0 and fp32["total"]["peak_gpu_mib"] is None
    assert figures["check"]["passed"]
    table = (tmp_path / "figures.md").read_text()
    assert "| bf16 | all | failed: RuntimeError: no kernel for bf16 |" in table
    assert "fp16 left out: fp16 autocast is for CUDA" in table


def test_measure_takes_the_cpu_reference_from_earlier_figures_and_fails_the_check(
    tiny_pack: Path, tmp_path: Path
) -> None:
    code, _ = measure(tiny_pack, tmp_path / "cpu", "--precisions", "fp32", "--batch-sizes", "")
    assert code == 0
    reference = json.loads((tmp_path / "cpu" / "figures.json").read_text())
    reference["reference"]["sets"]["clip"]["der"]["0.25"] += 0.01  # a CPU that scored otherwise
    (tmp_path / "cpu" / "figures.json").write_text(json.dumps(reference))
    code, figures = measure(
        tiny_pack, tmp_path / "again", "--precisions", "fp32", "--batch-sizes", "",
        "--cpu-figures", str(tmp_path / "cpu" / "figures.json"),
    )  # fmt: skip
    assert code == 1
    assert figures["reference"]["source"].startswith(str(tmp_path / "cpu" / "figures.json"))
    assert figures["check"]["passed"] is False and figures["check"]["largest_difference"] == -0.01
    assert "FAILED" in (tmp_path / "again" / "figures.md").read_text()
    assert figures["runs"][0]["sets"]["clip"]["same_rttm_as_cpu"] == [1, 1]


def test_measure_refuses_a_reference_of_other_recordings(tiny_pack: Path, tmp_path: Path) -> None:
    earlier = {"reference": {"sets": {"clip": {"rttm": {"another": []}}}}}
    (tmp_path / "cpu.json").write_text(json.dumps(earlier))
    with pytest.raises(gpu.GpuCheckError, match="not of the same recordings"):
        measure(tiny_pack, tmp_path, "--cpu-figures", str(tmp_path / "cpu.json"))


def test_missing_modules_and_pack_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(gpu.MODULES, "no_such_module_here", "no-such-wheel")
    with pytest.raises(gpu.GpuCheckError, match=r"missing: no_such_module_here \(no-such-wheel"):
        gpu.check_modules()
    monkeypatch.delitem(gpu.MODULES, "no_such_module_here")
    argv = [
        "bench",
        "gpu",
        "measure",
        "--pack",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
        "--device",
        "cpu",
    ]
    assert main(argv) == 2
    assert "manifest.json does not exist: run `scripts/gpu-check.sh prepare` first" in capsys.readouterr().err
