"""What ``diar plot`` and ``diar report`` read: turns from a file, or a job's output folder.

A job's output folder (``python -m jobs.diarize --out OUT``, a local path or any fsspec URL)
holds, as its README's Outputs table says, ``corpus.rttm`` (every turn), ``summary.json`` (what
the run did), ``failures.tsv`` (the recordings that failed, and why) and ``job.json`` (the plan:
every recording with its duration). Only ``corpus.rttm`` is required; the report leaves out
what the others would have told.
"""

from __future__ import annotations

import io
import json
import os
import posixpath
from dataclasses import dataclass, field
from typing import Any

from diar.audio import is_url
from diar.errors import DiarError, InputError, ManifestError, quote, shorten
from diar.failures import Failure
from diar.types import Annotation


@dataclass(frozen=True)
class JobOutputs:
    """A job's outputs, as the report shows them.

    Attributes:
        source: the folder (or file) they were read from, as the user gave it.
        annotations: recording id -> its turns, for every recording done (one with no speech
            has no turns), sorted by id.
        summary: ``summary.json`` (None when absent).
        failures: the rows of ``failures.tsv``.
        durations: recording id -> audio seconds, where the plan knows them.
    """

    source: str
    annotations: dict[str, Annotation]
    summary: dict[str, Any] | None = None
    failures: list[Failure] = field(default_factory=list)
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def recordings(self) -> list[str]:
        """Every recording of the job (done or failed), sorted."""
        return sorted({*self.annotations, *self.durations, *(f.reco_id for f in self.failures)})


def read_turns(source: str) -> dict[str, Annotation]:
    """Turns from an RTTM file, a Parquet table (``.parquet``) or a job's output folder (its
    ``corpus.rttm``); a local path or an fsspec URL.

    Raises:
        ManifestError / InputError naming the file and the problem.
    """
    if _is_folder(source):
        return read_job_outputs(source).annotations
    return _read_turn_file(source)


def read_job_outputs(source: str) -> JobOutputs:
    """The outputs of the job in folder ``source`` (a local path or fsspec URL); a single RTTM or
    Parquet file is taken as the ``corpus.rttm`` of a job without the other files.

    Raises:
        InputError: the folder does not exist or holds no ``corpus.rttm``.
        ManifestError: a file is malformed (its name, line and text in the message).
    """
    if not _is_folder(source):
        return JobOutputs(source, _read_turn_file(source))
    names = _listing(source)
    if "corpus.rttm" not in names:
        raise InputError(
            f"{shorten(source)} holds no corpus.rttm: not the output folder of a finished diar job "
            "(python -m jobs.diarize --out OUT); give that folder, or an RTTM file"
        )
    from diar.formats.failures import read_failures

    annotations = _read_turn_file(_join(source, "corpus.rttm"))
    summary = _read_json(source, "summary.json") if "summary.json" in names else None
    failures: list[Failure] = []
    if "failures.tsv" in names:
        path = _join(source, "failures.tsv")
        failures = read_failures(_Named(_read_text(path), path))
    plan = _read_json(source, "job.json") if "job.json" in names else None
    durations = plan_durations(plan, _join(source, "job.json")) if plan is not None else {}
    failed = {f.reco_id for f in failures}
    done = {reco: Annotation(reco, ()) for reco in durations if reco not in failed}
    done.update(annotations)
    return JobOutputs(source, dict(sorted(done.items())), summary, failures, durations)


def plan_durations(plan: dict[str, Any], name: str = "job.json") -> dict[str, float]:
    """Recording id -> seconds from a job's plan (``shards[].items: [[reco_id, seconds], ...]``;
    recordings whose duration the plan does not know are left out)."""
    durations: dict[str, float] = {}
    try:
        for shard in plan.get("shards", []):
            for reco_id, seconds in shard["items"]:
                if seconds is not None:
                    durations[str(reco_id)] = float(seconds)
    except (TypeError, ValueError, KeyError, AttributeError):
        raise ManifestError(
            name, None, "not a diar job plan (shards[].items of [reco_id, seconds])"
        ) from None
    return durations


def _read_turn_file(source: str) -> dict[str, Annotation]:
    from diar.formats.parquet import read_parquet
    from diar.formats.rttm import read_rttm

    if source.lower().endswith(".parquet"):
        try:
            with _open(source, "rb") as f:
                return read_parquet(f)
        except DiarError:
            raise
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise ManifestError(
                source, None, f"cannot read it as a Parquet table ({' '.join(str(e).split())})"
            ) from e
    if not is_url(source):
        return read_rttm(source)
    text = _read_text(source)
    return read_rttm(_Named(text, source))


class _Named(io.StringIO):
    """Text with the name of the file it came from (for error messages)."""

    def __init__(self, text: str, name: str) -> None:
        super().__init__(text, newline="")
        self.name = name


def _is_folder(source: str) -> bool:
    if not is_url(source):
        return os.path.isdir(source)
    fs, path = _fs(source)
    try:
        return bool(fs.isdir(path))
    except OSError:
        return False


def _listing(source: str) -> set[str]:
    if not is_url(source):
        return set(os.listdir(source))
    fs, path = _fs(source)
    return {posixpath.basename(str(p).rstrip("/")) for p in fs.ls(path, detail=False)}


def _join(folder: str, name: str) -> str:
    return folder.rstrip("/") + "/" + name if is_url(folder) else os.path.join(folder, name)


def _fs(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as e:
        raise InputError(f"{shorten(url)}: cannot open it ({' '.join(str(e).split())})") from None
    return fs, path


def _open(source: str, mode: str) -> Any:
    if not is_url(source):
        try:
            return open(source, mode)
        except FileNotFoundError:
            raise ManifestError(source, None, "file does not exist") from None
    fs, path = _fs(source)
    try:
        return fs.open(path, mode)
    except FileNotFoundError:
        raise ManifestError(source, None, "file does not exist") from None


def _read_text(source: str) -> str:
    try:
        with _open(source, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ManifestError(source, None, f"cannot read it: {e.strerror or e}") from e
    try:
        return bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise ManifestError(source, None, f"not valid UTF-8 ({e})") from None


def _read_json(folder: str, name: str) -> Any:
    path = _join(folder, name)
    try:
        data = json.loads(_read_text(path))
    except ValueError as e:
        raise ManifestError(path, None, f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise ManifestError(path, None, f"expected a JSON object, found {quote(type(data).__name__)}")
    return data
