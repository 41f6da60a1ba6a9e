"""Reduce: merge the per-shard outputs into corpus files, failures and a summary.

Everything here reads only what finished shards wrote (their done records and
data files), so reducing again after a resume, or after a rerun that had
nothing left to do, gives byte-identical corpus files.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from diar.config import ConfigError
from diar.errors import DiarError, quote
from diar.failures import Failure
from diar.types import Annotation
from jobs.records import ShardRecord
from jobs.storage import OutDir, OutError

if TYPE_CHECKING:
    from diar.formats.writers import OutputFormat

#: Exit code when more recordings failed than ``job.max_failures`` allows.
EXIT_OVER_BUDGET = 1


def allowed_failures(max_failures: float, num_recordings: int) -> int:
    """The failure budget as a count: ``max_failures`` if >= 1, else that fraction of the recordings."""
    if max_failures < 0 or math.isnan(max_failures):
        raise ConfigError(f"job.max_failures must be >= 0, got {max_failures}")
    if max_failures >= 1:
        return int(max_failures)
    return math.floor(max_failures * num_recordings + 1e-9)


def failure_budget(failed: int, total: int, max_failures: float, failures_file: str) -> tuple[int, str]:
    """The failures ``max_failures`` allows among ``total`` recordings, and why ``failed`` is over
    it ("" when within budget; the reason names ``failures_file``)."""
    allowed = allowed_failures(max_failures, total)
    if failed <= allowed:
        return allowed, ""
    return allowed, (
        f"{failed} of {total} recordings failed, more than job.max_failures={max_failures:g} "
        f"allows ({allowed}); see {failures_file}"
    )


@dataclass
class Totals:
    """What the done records of a job add up to."""

    recordings: int = 0
    done: int = 0
    failed: int = 0
    audio_seconds: float = 0.0
    compute_seconds: float = 0.0
    step_seconds: dict[str, float] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    def add(self, record: ShardRecord) -> None:
        self.done += len(record.done)
        self.failed += len(record.failures)
        self.audio_seconds += sum(record.done.values())
        self.compute_seconds += record.compute_seconds
        for step, seconds in record.step_seconds.items():
            self.step_seconds[step] = self.step_seconds.get(step, 0.0) + seconds
        self.failures.extend(record.failures)

    def add_lost(self, failures: Sequence[Failure]) -> None:
        self.failed += len(failures)
        self.failures.extend(failures)


def merge_annotations(out: OutDir, records: Sequence[ShardRecord], suffix: str = "rttm") -> list[Annotation]:
    """Annotations of every done recording, sorted by recording id.

    Reads each shard's RTTM (``shards/<shard-id>.<suffix>``: ``exclusive.rttm`` for the
    exclusive turns); a done recording without any turn (no speech) gets an empty
    annotation, so it still appears in formats that list recordings.
    """
    from diar.formats.rttm import read_rttm

    by_id: dict[str, Annotation] = {}
    for record in records:
        rttm_name = f"shards/{record.shard_id}.{suffix}"
        try:
            found = read_rttm(io.StringIO(out.read_text(rttm_name))) if record.done else {}
        except (DiarError, ValueError) as e:  # changed since its done record was checked
            raise OutError(
                f"{out.display(rttm_name)} is unreadable ({' '.join(str(e).split())[:200]}); "
                "remove it to have its shard redone"
            ) from None
        unexpected = sorted(set(found) - set(record.done))
        if unexpected:
            raise OutError(
                f"{out.display(rttm_name)} holds recording {quote(unexpected[0])} not in its done record"
            )
        for reco_id in record.done:
            by_id[reco_id] = found.get(reco_id, Annotation(reco_id, ()))
    return [by_id[k] for k in sorted(by_id)]


def exclusive_format(formats: Sequence[str]) -> OutputFormat | None:
    """The format of the corpus ``formats`` (``job.out_formats``) that holds the exclusive turns
    (``exclusive``), or None."""
    from diar.formats.writers import corpus_formats

    return next((fmt for fmt in corpus_formats(formats) if fmt.exclusive), None)


def lacks_shard_turns(record: ShardRecord, formats: Sequence[str]) -> bool:
    """Whether a finished shard must run again because the corpus ``formats`` ask for turns that
    only a shard file holds and it has none: the exclusive turns of a shard made without the
    ``exclusive`` format (the other formats are made from its RTTM)."""
    fmt = exclusive_format(formats)
    return fmt is not None and bool(record.done) and fmt.file_name(record.shard_id) not in record.files


def merge_exclusive(
    out: OutDir, records: Sequence[ShardRecord], formats: Sequence[str]
) -> list[Annotation] | None:
    """The exclusive turns of every done recording, sorted by recording id, from the shards'
    files of them, when the corpus ``formats`` hold them; else None."""
    fmt = exclusive_format(formats)
    return None if fmt is None else merge_annotations(out, records, fmt.suffix)


def corpus_files(
    annotations: Sequence[Annotation],
    formats: Sequence[str],
    model: str,
    exclusive: Sequence[Annotation] | None = None,
) -> dict[str, bytes]:
    """``corpus.<suffix>`` -> its bytes for each requested format (rttm always).

    Args:
        exclusive: the exclusive turns of the same recordings, for the formats that hold them
            (``corpus.exclusive.rttm``); needed when ``formats`` asks for one.
    """
    from diar.formats.writers import corpus_formats

    files = {}
    for fmt in corpus_formats(formats):
        if fmt.exclusive and exclusive is None:
            raise ValueError(f"corpus format {fmt.name!r} needs the exclusive turns")
        turns = exclusive if fmt.exclusive and exclusive is not None else annotations
        files[fmt.file_name("corpus")] = fmt.to_bytes(turns, model)
    return files


def json_bytes(data: Any) -> bytes:
    """``data`` as indented JSON (keys in insertion order), UTF-8."""
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_json(out: OutDir, name: str, data: Any) -> None:
    """Write ``data`` as indented JSON (keys in insertion order) atomically."""
    out.write_bytes(name, json_bytes(data))


def report_page(
    url: str, annotations: Sequence[Annotation], failures_text: str, durations: dict[str, float], summary: Any
) -> bytes:
    """``report.html``: the page ``diar report OUT`` writes for the same files (no reference).

    Args:
        url: the output folder as the user gave it (the page's title).
        annotations: every done recording's turns.
        failures_text: ``failures.tsv`` as written (the page shows its rows as they read back).
        durations: recording id -> seconds, as ``job.json`` holds them.
        summary: ``summary.json`` as written.
    """
    from diar.formats.failures import read_failures
    from diar.report.inputs import JobOutputs
    from diar.report.page import render_report

    outputs = JobOutputs(
        url,
        {a.reco_id: a for a in sorted(annotations, key=lambda a: a.reco_id)},
        summary,
        read_failures(io.StringIO(failures_text, newline="")),
        durations,
    )
    return render_report(outputs).encode("utf-8")
