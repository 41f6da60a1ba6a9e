"""Speaker traces of the diarization job, and speaker linking in its reduce step.

Every shard writes its recordings' speaker traces (:class:`diar.linking.Trace`: a mean
embedding and the speech seconds of each speaker) beside its RTTM, as a Kaldi ark and
a Parquet table (:mod:`diar.formats.traces`)::

    OUT/shards/<shard-id>.traces.ark       one float32 vector per (recording, speaker)
    OUT/shards/<shard-id>.traces.parquet   reco_id, speaker, seconds, dim, enrolled, embedder

Both are shard files like the RTTM: written atomically before the done record, which
keeps their size and sha256, so resume checks and redoes them like any shard output.
They are written whatever ``job.link_speakers`` says, so that ``diar link`` can link a
finished output folder later without running any model.

With ``job.link_speakers: true`` the reduce step reads every finished shard's traces,
links the speakers across recordings (:func:`diar.linking.link_annotations`) and
writes, together with the other corpus files::

    OUT/speakers.tsv        reco_id, speaker, global_speaker, seconds (diar.formats.speakers)
    OUT/corpus.rttm, corpus.parquet, corpus.vad   with the global speaker labels
    OUT/corpus.local.rttm   the same turns with each recording's own labels

The linking depends only on the sorted traces, so its files are byte-identical for any
shard or actor count, and ``diar link OUT`` (:func:`link_folders`) writes the same bytes.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diar.errors import DiarError, quote
from diar.linking import LinkSettings, Trace, link_annotations, relabel
from diar.types import Annotation
from jobs.records import ShardRecord
from jobs.reduce import corpus_files, exclusive_format, lacks_shard_turns, merge_annotations, merge_exclusive
from jobs.storage import OutDir

if TYPE_CHECKING:
    from diar.config import JobConfig
    from diar.pipelines.base import SpeakerTrace

logger = logging.getLogger(__name__)

#: A shard's trace files, ``shards/<shard-id><suffix>``: the ark, then the table.
TRACE_SUFFIXES = (".traces.ark", ".traces.parquet")
#: Files the reduce step writes only when it links speakers.
LINK_FILES = ("speakers.tsv", "corpus.local.rttm")


class LinkJobError(DiarError):
    """Speakers of an output folder cannot be linked (no traces, mixed embedders, clashing ids)."""


def settings_of(job: JobConfig) -> LinkSettings:
    """The linking settings of the ``job`` config section."""
    return LinkSettings(job.link_threshold, job.link_min_seconds, job.link_neighbors)


# --------------------------------------------------------------------------- worker side


class TraceCollector:
    """The traces of the shard a worker is diarizing, kept until its files are written."""

    def __init__(self) -> None:
        self._by_reco: dict[str, tuple[SpeakerTrace, ...]] = {}

    def add(self, reco_id: str, traces: Sequence[SpeakerTrace]) -> None:
        self._by_reco[reco_id] = tuple(traces)

    def take(self, reco_ids: Iterable[str]) -> list[Trace]:
        """The traces of ``reco_ids`` (the shard's done recordings); forget everything."""
        out = [
            Trace(reco_id, t.speaker, t.embedding, t.seconds, t.enrolled)
            for reco_id in reco_ids
            for t in self._by_reco.get(reco_id, ())
        ]
        self._by_reco = {}
        return out


def trace_names(shard_id: str) -> tuple[str, str]:
    """The shard's trace files relative to ``OUT/shards``: (ark, table)."""
    return (f"{shard_id}{TRACE_SUFFIXES[0]}", f"{shard_id}{TRACE_SUFFIXES[1]}")


def write_shard_traces(
    out: OutDir, shard_id: str, record: ShardRecord, collector: TraceCollector, embedder: str
) -> None:
    """Write the traces of the shard's done recordings and record both files in ``record``."""
    from diar.formats.traces import write_traces

    ark, table = io.BytesIO(), io.BytesIO()
    write_traces(collector.take(sorted(record.done)), ark, table, embedder)
    for name, data in zip(trace_names(shard_id), (ark.getvalue(), table.getvalue()), strict=True):
        out.write_bytes(f"shards/{name}", data)
        record.add_file(name, data)


def has_traces(record: ShardRecord) -> bool:
    """Whether the shard wrote trace files (shards made before traces existed did not)."""
    return all(name in record.files for name in trace_names(record.shard_id))


def needs_traces(record: ShardRecord, job: JobConfig) -> bool:
    """A finished shard that must run again because linking needs traces it lacks."""
    return job.link_speakers and not has_traces(record)


# --------------------------------------------------------------------------- reduce side


def read_shard_traces(out: OutDir, records: Sequence[ShardRecord]) -> tuple[list[Trace], set[str]]:
    """The traces of the done recordings of the finished shards ``records``, and their embedders.

    Raises:
        LinkJobError: a shard without trace files (made before diar wrote them).
    """
    from diar.formats.traces import read_traces

    lacking = [r.shard_id for r in records if r.done and not has_traces(r)]
    if lacking:
        raise LinkJobError(
            f"{out.display('shards')}: {len(lacking)} finished shards have no speaker traces "
            f"({', '.join(lacking[:3])}{', ...' if len(lacking) > 3 else ''}; made by an earlier diar): "
            "rerun the job into that folder with --set job.link_speakers=true to make them"
        )
    traces: list[Trace] = []
    embedders: set[str] = set()
    for record in records:
        if not record.done:
            continue
        ark, table = (f"shards/{n}" for n in trace_names(record.shard_id))
        for trace, embedder in read_traces(out.read_bytes(ark), out.read_bytes(table), out.display(table)):
            if trace.reco_id in record.done:
                traces.append(trace)
                embedders.add(embedder)
    return traces, embedders


def link_outputs(
    annotations: Sequence[Annotation],
    traces: Sequence[Trace],
    settings: LinkSettings,
    formats: Sequence[str],
    models: Mapping[str, str],
    exclusive: Sequence[Annotation] | None = None,
) -> dict[str, bytes]:
    """The files of a linked corpus: speakers.tsv, corpus.* with global labels, corpus.local.rttm.

    Args:
        annotations: every done recording, sorted by recording id, with its own labels.
        traces: their speakers' traces.
        formats: ``job.out_formats``.
        models: recording id -> the Parquet ``model`` column of its turns.
        exclusive: the same recordings' exclusive turns (the same speakers), relabelled alike,
            for the formats that hold them.
    """
    from diar.formats.speakers import write_speakers
    from diar.formats.writers import OUTPUT_FORMATS

    links = link_annotations(annotations, traces, settings)
    linked = relabel(annotations, links)
    linked_exclusive = None if exclusive is None else relabel(exclusive, links)
    kinds = sorted(set(models.values()))
    files = corpus_files(linked, formats, kinds[0] if len(kinds) == 1 else "", linked_exclusive)
    if "parquet" in formats and len(kinds) > 1:
        files["corpus.parquet"] = _parquet_of_models(linked, models)
    text = io.StringIO()
    write_speakers(links, text)
    files["speakers.tsv"] = text.getvalue().encode("utf-8")
    files["corpus.local.rttm"] = OUTPUT_FORMATS["rttm"].to_bytes(annotations)
    logger.info(
        "linked %d speakers of %d recordings into %d global speakers",
        len(links),
        len(annotations),
        len({r.global_speaker for r in links}),
    )
    return files


def _parquet_of_models(annotations: Sequence[Annotation], models: Mapping[str, str]) -> bytes:
    """The corpus Parquet table when recordings come from folders made by different models."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from diar.formats.parquet import to_table

    tables = [to_table(a, models[a.reco_id]) for a in annotations]
    buf = io.BytesIO()
    pq.write_table(pa.concat_tables(tables) if tables else to_table([], ""), buf)
    return buf.getvalue()


def linked_files(
    out: OutDir,
    records: Sequence[ShardRecord],
    annotations: Sequence[Annotation],
    job: JobConfig,
    model: str,
    exclusive: Sequence[Annotation] | None = None,
) -> dict[str, bytes]:
    """The job's reduce with ``job.link_speakers``: the linked corpus files of ``out``
    (``annotations``: the merged annotations of its finished shards ``records``; ``exclusive``:
    their exclusive turns, where ``job.out_formats`` holds them)."""
    traces, embedders = read_shard_traces(out, records)
    check_embedders(embedders, out.display(""))
    models = {a.reco_id: model for a in annotations}
    return link_outputs(annotations, traces, settings_of(job), job.out_formats, models, exclusive)


def check_embedders(embedders: set[str], where: str) -> None:
    """Refuse traces of different embedders (their vectors cannot be compared)."""
    if len(embedders) > 1:
        raise LinkJobError(
            f"{where}: the traces were made by different embedders ({', '.join(sorted(embedders))}); "
            "speakers can be linked only within one embedder's traces"
        )


def remove_stale_link_files(out: OutDir, written: Mapping[str, bytes]) -> None:
    """Remove the linking files of an earlier run that linked when this one did not."""
    for name in LINK_FILES:
        if name not in written and out.exists(name):
            out.remove(name)


# --------------------------------------------------------------------------- diar link


def finished_records(out: OutDir) -> list[ShardRecord]:
    """The done records of the shards in ``OUT/job.json`` whose files are intact.

    Raises:
        LinkJobError: the folder holds no job (no ``job.json``), a shard of its plan is not
            finished (linking it would leave its recordings out of the corpus files), or a done
            record or one of its files is unreadable or changed since the record was written.
    """
    import json

    from jobs.records import done_name, file_digest

    if not out.exists("job.json"):
        raise LinkJobError(f"{out.display('job.json')} does not exist: give an output folder of the job")
    try:
        plan = json.loads(out.read_text("job.json"))
        shard_ids = [str(s["shard_id"]) for s in plan["shards"]]
    except (ValueError, KeyError, TypeError) as e:
        raise LinkJobError(f"{out.display('job.json')} is unreadable ({e})") from None
    unfinished = [s for s in shard_ids if not out.exists(done_name(s))]
    if unfinished:
        shown = ", ".join(unfinished[:3]) + (", ..." if len(unfinished) > 3 else "")
        raise LinkJobError(
            f"{out.display('')}: {len(unfinished)} of {len(shard_ids)} shards are not finished ({shown}): "
            "their recordings would be missing from the linked corpus; rerun the job into that "
            "folder to finish them, then link"
        )
    records = []
    for shard_id in shard_ids:
        name = done_name(shard_id)
        try:
            record = ShardRecord.from_json(out.read_text(name))
        except (ValueError, KeyError, TypeError) as e:
            raise LinkJobError(f"{out.display(name)} is unreadable ({e}); rerun the job to redo it") from None
        for file in record.files:
            try:
                data = out.read_bytes(f"shards/{file}")
            except FileNotFoundError:
                raise LinkJobError(
                    f"{out.display('shards/' + file)} is missing; rerun the job to redo it"
                ) from None
            if file_digest(data) != record.digests.get(file):
                raise LinkJobError(
                    f"{out.display('shards/' + file)} changed since its shard was done; "
                    "rerun the job to redo it"
                )
        records.append(record)
    return records


def folder_config(out: OutDir) -> dict[str, Any]:
    """The config an output folder was made with: ``summary.json``'s (all of it), else
    ``job.json``'s (without the ``job`` section)."""
    import json

    for name in ("summary.json", "job.json"):
        if out.exists(name):
            try:
                config = json.loads(out.read_text(name)).get("config")
            except (ValueError, AttributeError):
                continue
            if isinstance(config, dict):
                return config
    return {}


@dataclass
class LinkReport:
    """What :func:`link_folders` did."""

    recordings: int
    speakers: int
    global_speakers: int
    written: list[str]
    dest: str


def link_folders(
    folders: Sequence[str], dest: str | None, settings: LinkSettings, formats: Sequence[str]
) -> LinkReport:
    """``diar link``: link the speakers of finished output folders without running any model.

    Args:
        folders: OUT, then the folders merged in (``--also``).
        dest: where the files go; None: OUT itself (only without ``--also``).
        settings: the linking settings.
        formats: corpus formats (``job.out_formats``).

    Raises:
        LinkJobError: a folder without a job or traces, or with unfinished shards, traces of
            different embedders, a recording id in two folders, a destination that is one of
            the merged folders, a file, or a folder holding other files (another job's output),
            or OUT being written by a running job.
    """
    if dest is None:
        if len(folders) > 1:
            raise LinkJobError("with --also, give -o: the merged corpus belongs in a folder of its own")
        dest = folders[0]
    target = OutDir(dest)
    if any(_same_folder(OutDir(other), target) for other in folders[1:]):
        raise LinkJobError(f"-o {dest}: is one of the merged folders (--also); choose another folder")
    if not _same_folder(target, OutDir(folders[0])):
        check_destination(target, formats)
    with _not_running(OutDir(folders[0])):
        return _link_folders(folders, dest, settings, formats)


def link_file_names(formats: Sequence[str]) -> set[str]:
    """The files ``diar link`` writes: speakers.tsv, corpus.local.rttm and the corpus files."""
    from diar.formats.writers import corpus_formats

    return {*LINK_FILES, *(fmt.file_name("corpus") for fmt in corpus_formats(formats))}


def check_destination(target: OutDir, formats: Sequence[str]) -> None:
    """Refuse an ``-o`` that is not a folder, or a folder holding files ``diar link`` does not
    write (another job's output, whose corpus files would be replaced by these recordings).

    The rule of the job's ``--out``: a new or empty folder, or one this command wrote before.
    """
    from diar.outputs import TMP_MARKER

    where = f"-o {target.display('').rstrip('/')}"
    if target.fs.exists(target.root) and not target.fs.isdir(target.root):
        kind = "a file"
        if target.is_local:
            from diar.outputs import describe

            kind = describe(target.root)
        raise LinkJobError(
            f"{where}: is {kind}, not a folder; give a folder for speakers.tsv and the corpus files"
        )
    names = link_file_names(formats)
    found = target.find()
    if "job.json" in found:
        raise LinkJobError(
            f"{where}: is the output folder of a job (it holds job.json); its corpus files would be "
            "replaced by the linked recordings; link it in place (no -o) or choose a new folder"
        )
    foreign = [f for f in found if f not in names and f.split(TMP_MARKER)[0] not in names]
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise LinkJobError(
            f"{where}: holds files diar link does not write ({shown}); choose a new or empty folder"
        )


@contextmanager
def _not_running(out: OutDir) -> Iterator[None]:
    """Hold ``OUT/.lock`` (a local OUT) as the job's driver does, so that no job writes OUT meanwhile."""
    if not out.is_local or not out.exists(""):
        yield
        return
    import fcntl

    with open(out.path(".lock"), "a") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise LinkJobError(f"{out.display('')} is being written by a running job; wait for it") from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _link_folders(
    folders: Sequence[str], dest: str, settings: LinkSettings, formats: Sequence[str]
) -> LinkReport:
    from diar.config import Config, from_dict
    from diar.formats.parquet import model_name

    target = OutDir(dest)
    annotations: list[Annotation] = []
    traces: list[Trace] = []
    embedders: set[str] = set()
    models: dict[str, str] = {}
    seen: dict[str, str] = {}
    exclusive: list[Annotation] | None = [] if exclusive_format(formats) else None
    for url in folders:
        out = OutDir(url)
        made_with = folder_config(out)
        model = model_name(from_dict(Config, {k: v for k, v in made_with.items() if k != "job"}))
        records = finished_records(out)
        found, kinds = read_shard_traces(out, records)
        for a in merge_annotations(out, records):
            if a.reco_id in seen:
                raise LinkJobError(
                    f"recording {quote(a.reco_id)} is in both {seen[a.reco_id]} and {url}; "
                    "merged folders must hold different recordings"
                )
            seen[a.reco_id] = url
            models[a.reco_id] = model
            annotations.append(a)
        if exclusive is not None:
            exclusive += _folder_exclusive(out, records, formats)
        traces += found
        embedders |= kinds
    check_embedders(embedders, ", ".join(folders))
    annotations.sort(key=lambda a: a.reco_id)
    if exclusive is not None:
        exclusive.sort(key=lambda a: a.reco_id)
    files = link_outputs(annotations, traces, settings, formats, models, exclusive)
    try:
        target.makedirs()
    except OSError as e:  # a file where a folder of the path must be, permissions, ...
        raise LinkJobError(f"-o {dest}: cannot create the folder ({e.strerror or e})") from None
    target.write_many(files)
    rows = files["speakers.tsv"].decode("utf-8").splitlines()[1:]
    return LinkReport(
        recordings=len(annotations),
        speakers=len(rows),
        global_speakers=len({r.split("\t")[2] for r in rows}),
        written=sorted(files),
        dest=dest,
    )


def _folder_exclusive(
    out: OutDir, records: Sequence[ShardRecord], formats: Sequence[str]
) -> list[Annotation]:
    """The exclusive turns of a finished folder's done recordings (``diar link`` with the
    ``exclusive`` format); LinkJobError when its shards were made without them."""
    lacking = [r.shard_id for r in records if lacks_shard_turns(r, formats)]
    if lacking:
        raise LinkJobError(
            f"{out.display('shards')}: {len(lacking)} finished shards have no exclusive turns "
            f"({', '.join(lacking[:3])}{', ...' if len(lacking) > 3 else ''}): rerun the job into that "
            "folder with exclusive in job.out_formats to make them, or leave it out of --set job.out_formats"
        )
    return merge_exclusive(out, records, formats) or []


def _same_folder(a: OutDir, b: OutDir) -> bool:
    if a.is_local and b.is_local:
        return os.path.realpath(a.root) == os.path.realpath(b.root)
    return a.url.rstrip("/") == b.url.rstrip("/")
