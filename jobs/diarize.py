"""The diarization job: wav.scp -> balanced shards -> model actors -> per-shard RTTM -> corpus.

Run it as ``python -m jobs.diarize --config configs/default.yaml --wav-scp WAV_SCP --out OUT``
(or ``diar run ...``). It connects to the Ray cluster named by ``--address`` or
``RAY_ADDRESS`` and otherwise starts a local Ray on all cores; ``--local`` runs
everything in this process without Ray.

Output folder (a local path or any fsspec URL)::

    OUT/.lock                       held by the running driver (one driver per OUT at a time)
    OUT/job.json                    the plan: config and input digests, shards and their items
    OUT/shards/<shard-id>.rttm      turns of the shard's recordings (written atomically)
    OUT/shards/<shard-id>.parquet   the same as a table (with "parquet" in job.out_formats)
    OUT/shards/<shard-id>.done.json written last: recordings done and failed, step timings
    OUT/corpus.rttm                 every turn, sorted by recording id then start, channel 1
    OUT/corpus.parquet, corpus.vad  with "parquet" / "vad" in job.out_formats
    OUT/failures.tsv                reco_id, stage, error_type, message (header only if none)
    OUT/summary.json                counts, audio hours, wall time, real-time factor, step times, config

Rerunning into the same OUT reuses every shard whose done record matches the
plan (resume) and reduces again; a rerun after a finished run starts no actors
and leaves the corpus files byte-identical. OUT made with another config or
other inputs is refused unless ``--overwrite`` is given.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from diar.config import Config, JobConfig, load_config, to_dict
from diar.errors import DiarError, shorten
from diar.types import Annotation
from jobs.actors import (
    Outcome,
    actor_spec,
    num_actors_for,
    ray_session,
    run_local,
    run_ray,
    time_limit,
    wait_until_placeable,
)
from jobs.progress import Progress
from jobs.records import CrashJournal, Failure, ShardRecord, done_name, file_digest
from jobs.reduce import (
    Totals,
    corpus_files,
    failure_budget,
    failures_tsv,
    json_bytes,
    merge_annotations,
    parquet_bytes,
    rttm_bytes,
    vad_bytes,
    write_json,
)
from jobs.shards import Shard, digest, plan_recordings
from jobs.storage import TMP_MARKER, OutDir
from jobs.traces import (  # speaker linking (issue 15)
    LINK_FILES,
    TRACE_SUFFIXES,
    TraceCollector,
    linked_files,
    needs_traces,
    remove_stale_link_files,
    write_shard_traces,
)

logger = logging.getLogger(__name__)

#: Version of the layout of OUT; a different version is treated as another job.
LAYOUT_VERSION = 1

#: Exit code when more recordings failed than ``job.max_failures`` allows.
EXIT_OVER_BUDGET = 1

if TYPE_CHECKING:  # the pipelines import torch: only the workers need them
    from diar.audio import Waveform
    from diar.outputs import FileSet
    from diar.pipelines.base import Diarizer, StepHook

DiarizerFactory = Callable[[Config], "Diarizer"]


class JobError(DiarError):
    """The job cannot start or cannot write its outputs (e.g. OUT belongs to another job)."""


@dataclass(frozen=True)
class Recording:
    """One recording of the job: where its audio is and what the driver knows about it.

    Attributes:
        reco_id: recording id.
        source: path or URL, read by the actor (never by the driver, beyond the header).
        seconds: duration from the header, None when the header cannot be read.
        num_speakers: known speaker count (reco2num_spk), or None.
        profiles: shape (num_speakers, dim) enrolled speaker profiles (profile mode), or None.
        profile_names: one name per profile row, or None.
    """

    reco_id: str
    source: str
    seconds: float | None
    num_speakers: int | None = None
    profiles: np.ndarray | None = field(default=None, compare=False)
    profile_names: tuple[str, ...] | None = None

    def fingerprint_data(self) -> dict[str, Any]:
        """What about this recording determines its output (the duration does not)."""
        return {
            "reco_id": self.reco_id,
            "source": self.source,
            "num_speakers": self.num_speakers,
            "profiles": None if self.profiles is None else digest(self.profiles),
            "profile_names": self.profile_names,
        }


def check_job_config(job: JobConfig) -> None:
    """Reject impossible ``job`` values before any work, naming the key (ConfigError)."""
    job.validate()


def model_name(config: Config) -> str:
    """The Parquet ``model`` column: what produced the turns (as ``diar diarize`` writes it)."""
    from diar.commands.diarize import model_name as diarize_model_name

    return diarize_model_name(config)


def config_digest(config: Config) -> str:
    """Digest of the parts of ``config`` that can change the output.

    The ``job`` section (sharding, actors, budget) and ``num_threads`` only change how
    the work is spread, so they are left out: changing them keeps finished shards valid.
    """
    return digest(result_config(config))


def result_config(config: Config) -> dict[str, Any]:
    """The config as a dict without the keys that cannot change the output (see :func:`config_digest`)."""
    data = to_dict(config)
    data.pop("job", None)
    data.pop("num_threads", None)
    return data


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [prefix or "(config)"] if old != new else []
    keys: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        keys += changed_keys(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
    return keys


# --------------------------------------------------------------------------- actor side


class DiarizeWorker:
    """Diarizes the recordings of one shard after another; built once per actor.

    Loads the model in ``__init__`` (``build_diarizer(config)``); each call reads the audio
    of a shard's recordings itself, diarizes them, and writes the shard's files, the done
    record last. A recording that fails (unreadable audio, model error) becomes a
    failure row and the others go on; so does one during which the actor process died
    twice (see :class:`~jobs.records.CrashJournal`), and, in an actor (``in_actor``),
    one that runs past ``job.recording_timeout``: the actor ends itself, and Ray's
    restart skips it.
    """

    def __init__(
        self,
        config: Config,
        out_url: str,
        diarizer_factory: DiarizerFactory | None = None,
        num_threads: int | None = None,
        in_actor: bool = False,
    ) -> None:
        from diar.pipelines import build_diarizer

        if num_threads is not None:
            config = replace(config, num_threads=num_threads)
        self.config = config
        self.out = OutDir(out_url)
        self.diarizer = (diarizer_factory or build_diarizer)(config)
        #: (recordings, audio seconds) done in the current shard, read by the progress bar
        self.progress: tuple[int, float] = (0, 0.0)
        #: seconds per recording before the process ends itself (only a restartable actor may)
        self.time_limit = config.job.recording_timeout if in_actor else None
        self.traces = TraceCollector()  # issue 15: speaker traces of the shard in progress

    def __call__(self, shard: Shard[Recording]) -> ShardRecord:
        t0 = time.perf_counter()
        record = ShardRecord(shard.shard_id, shard.fingerprint)
        steps = record.step_seconds

        def hook(step: str, seconds: float) -> None:
            steps[step] = steps.get(step, 0.0) + seconds

        rate = self.diarizer.sample_rate
        self.progress = (0, 0.0)
        rttm_parts: list[bytes] = []
        annotations: list[Annotation] = []
        seconds_done = 0.0  # header durations, as the progress bar counts them
        journal = CrashJournal(self.out, shard.shard_id)
        for count, rec in enumerate(shard.items):
            self.progress = (count, seconds_done)
            seconds_done += rec.seconds or 0.0
            if journal.is_poison(rec.reco_id):
                record.failures.append(journal.failure(rec.reco_id))
                continue
            journal.start(rec.reco_id)
            with time_limit(self.time_limit, journal.time_out):
                outcome = self._diarize(rec, hook)
            if isinstance(outcome, Failure):
                record.failures.append(outcome)
                continue
            waveform, annotation = outcome
            try:  # a label a format cannot hold fails this recording, not the shard
                rttm = rttm_bytes([annotation])
                if "vad" in self.config.job.out_formats:
                    vad_bytes([annotation])
            except Exception as e:
                record.failures.append(Failure.from_exception(rec.reco_id, "write", e, rec.source))
                continue
            rttm_parts.append(rttm)
            annotations.append(annotation)
            record.done[rec.reco_id] = round(len(waveform) / rate, 6)
        journal.start(None)
        self._write(shard, record, b"".join(rttm_parts), annotations)
        record.compute_seconds = round(time.perf_counter() - t0, 6)
        record.step_seconds = {k: round(v, 6) for k, v in steps.items()}
        self.out.write_text(done_name(shard.shard_id), record.to_json())
        journal.close()
        return record

    def _diarize(self, rec: Recording, hook: StepHook) -> tuple[Waveform, Annotation] | Failure:
        """Read and diarize one recording: its audio and turns, or the failure row."""
        from diar.pipelines.base import RecordingInput

        try:
            allow_pipes = self.config.job.allow_pipes
            waveform = self.diarizer.load(rec.source, rec.reco_id, allow_pipes=allow_pipes)
        except Exception as e:
            return Failure.from_exception(rec.reco_id, "read", e, rec.source)
        try:
            # shape: (num_samples,) float32 at the diarizer's rate
            recording = RecordingInput(
                rec.reco_id, waveform, rec.num_speakers, rec.profiles, rec.profile_names
            )
            diarization = self.diarizer.diarize(recording, hook)  # issue 15: turns + speaker traces
            annotation = diarization.annotation
            self.traces.add(rec.reco_id, diarization.traces)
            if annotation.reco_id != rec.reco_id:
                raise ValueError(f"diarizer returned turns of {annotation.reco_id!r} for {rec.reco_id!r}")
        except Exception as e:
            return Failure.from_exception(rec.reco_id, "diarize", e, rec.source)
        return waveform, annotation

    def _write(
        self, shard: Shard[Recording], record: ShardRecord, rttm: bytes, annotations: list[Annotation]
    ) -> None:
        stem = f"shards/{shard.shard_id}"
        try:
            self.out.write_bytes(f"{stem}.rttm", rttm)
            record.add_file(f"{shard.shard_id}.rttm", rttm)
            if "parquet" in self.config.job.out_formats:
                table = parquet_bytes(annotations, model=model_name(self.config))
                self.out.write_bytes(f"{stem}.parquet", table)
                record.add_file(f"{shard.shard_id}.parquet", table)
            # issue 15: the shard's speaker traces (ark + table), recorded in the done record
            write_shard_traces(self.out, shard.shard_id, record, self.traces, self.config.embedding.name)
        except Exception as e:
            raise JobError(
                f"cannot write the outputs of {shard.shard_id} to {self.out.display('shards')}: {e}"
            ) from e


# --------------------------------------------------------------------------- driver side


@dataclass
class Inputs:
    """The validated manifests of a job."""

    recordings: list[Recording]
    digest: str


def read_inputs(
    config: Config,
    wav_scp: str,
    reco2num_spk: str | None = None,
    profile_scp: str | None = None,
) -> Inputs:
    """Read and cross-check the manifests; any problem stops the job (ManifestError with file and line).

    Durations are left unknown (``seconds=None``): a stored plan has them, and a new
    plan reads them (:func:`with_durations`).
    """
    from diar.manifests import read_profiles, read_reco2num_spk, read_wav_scp, validate_ids

    sources = read_wav_scp(wav_scp, allow_pipes=config.job.allow_pipes)
    num_spk: dict[str, int] = {}
    if reco2num_spk:
        validate_ids(reco2num_spk, sources, known_name=wav_scp)
        num_spk = read_reco2num_spk(reco2num_spk)
    profiles: dict[str, tuple[np.ndarray, tuple[str, ...] | None]] = {}
    if profile_scp:
        validate_ids(profile_scp, sources, known_name=wav_scp)
        profiles = read_profiles(profile_scp)
    recordings = [
        Recording(
            reco_id,
            source,
            None,
            num_spk.get(reco_id),
            profiles[reco_id][0] if reco_id in profiles else None,
            profiles[reco_id][1] if reco_id in profiles else None,
        )
        for reco_id, source in sources.items()
    ]
    inputs_digest = digest(sorted((r.fingerprint_data() for r in recordings), key=lambda d: d["reco_id"]))
    return Inputs(recordings, inputs_digest)


#: Bytes per second assumed when only a remote file's size is known (16-bit mono 16 kHz PCM).
REMOTE_BYTES_PER_SECOND = 32000.0


def source_seconds(source: str, reco_id: str, allow_pipes: bool) -> float | None:
    """Audio duration for balancing shards and for the progress bar, without decoding.

    Local files: from the header. Remote URLs: estimated from the object's size (reading
    headers would download every file into the driver). Pipes: unknown (None), as running
    each command twice would double the work. None also when the header cannot be read;
    the actor then reports the problem as a failure row.
    """
    from diar.audio import audio_duration, is_pipe, is_url

    try:
        if is_pipe(source):
            return None
        if is_url(source) and not source.startswith("file://"):
            import fsspec

            fs, path = fsspec.core.url_to_fs(source)
            return float(fs.size(path)) / REMOTE_BYTES_PER_SECOND
        return audio_duration(source, reco_id, allow_pipes=allow_pipes)
    except Exception as e:
        logger.warning("cannot tell the duration of %s (%s): %s", reco_id, source, e)
        return None


def with_durations(recordings: Sequence[Recording], allow_pipes: bool) -> list[Recording]:
    """The recordings with ``seconds`` filled in by :func:`source_seconds` (in parallel threads)."""

    def one(rec: Recording) -> Recording:
        return replace(rec, seconds=source_seconds(rec.source, rec.reco_id, allow_pipes))

    with ThreadPoolExecutor(max_workers=min(16, max(1, len(recordings)))) as pool:
        return list(pool.map(one, recordings))


def source_stamp(source: str) -> list[int] | None:
    """Size and modification time (ns) of a local audio file; None for URLs, pipes and missing files.

    A shard's fingerprint includes the stamps of its files, so a file replaced
    under the same path makes its shard run again on resume.
    """
    from diar.audio import local_path

    path = local_path(source)
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def shard_fingerprint(cfg_digest: str, items: Sequence[Recording]) -> str:
    """Digest of what a shard's outputs depend on: the config, its recordings and their files' stamps."""
    return digest(
        {
            "config": cfg_digest,
            "items": [r.fingerprint_data() for r in items],
            "stamps": [source_stamp(r.source) for r in items],
        }
    )


def make_plan(config: Config, recordings: Sequence[Recording]) -> list[Shard[Recording]]:
    """Balanced shards, each with its fingerprint (:func:`shard_fingerprint`)."""
    shards = plan_recordings(recordings, config.job.num_shards, config.job.shard_seconds)
    cfg = config_digest(config)
    return [replace(s, fingerprint=shard_fingerprint(cfg, s.items)) for s in shards]


def plan_identity(config: Config, inputs_digest: str) -> dict[str, Any]:
    """What a stored plan must match to be resumed: layout, config, inputs and sharding."""
    return {
        "layout": LAYOUT_VERSION,
        "config_digest": config_digest(config),
        "inputs_digest": inputs_digest,
        "sharding": {"num_shards": config.job.num_shards, "shard_seconds": config.job.shard_seconds},
    }


def plan_json(config: Config, inputs_digest: str, shards: Sequence[Shard[Recording]]) -> dict[str, Any]:
    return {
        **plan_identity(config, inputs_digest),
        "config": result_config(config),
        "shards": [
            {
                "shard_id": s.shard_id,
                "fingerprint": s.fingerprint,
                "seconds": s.seconds,
                "items": [[r.reco_id, r.seconds] for r in s.items],
            }
            for s in shards
        ],
    }


#: Files the job writes at the top of OUT.
TOP_FILES = (
    "job.json",
    "summary.json",
    "failures.tsv",
    "corpus.rttm",
    "corpus.parquet",
    "corpus.vad",
    ".lock",
    *LINK_FILES,  # issue 15: speakers.tsv, corpus.local.rttm
)
#: Files the job writes per shard, ``shards/<shard-id><suffix>``.
SHARD_SUFFIXES = (".rttm", ".parquet", ".done.json", CrashJournal.SUFFIX, *TRACE_SUFFIXES)  # + issue 15


def owned_by_job(rel: str, shard_ids: Set[str] | None) -> bool:
    """Whether ``rel`` (a path inside OUT) is a file this job writes, or a temporary of one.

    ``shard_ids``: the shards of the plan in ``job.json``; None when OUT holds no plan, and
    then only the lock and temporary files of the top-level outputs are the job's.
    """
    base = rel.split(TMP_MARKER, 1)[0]
    if shard_ids is None:
        return rel == ".lock" or (base != rel and base in TOP_FILES)
    if base in TOP_FILES:
        return True
    folder, _, name = base.partition("/")
    if folder != "shards" or "/" in name:
        return False
    return any(name.endswith(sfx) and name[: -len(sfx)] in shard_ids for sfx in SHARD_SUFFIXES)


def read_plan(out: OutDir) -> dict[str, Any] | None:
    """The plan stored in ``OUT/job.json``, or None when there is none.

    Raises:
        JobError: job.json exists but cannot be read (truncated, corrupt); with or without
            ``--overwrite`` nothing in OUT is touched then, since only the plan tells which
            files the job wrote.
    """
    import json

    if not out.exists("job.json"):
        return None
    try:
        stored = json.loads(out.read_text("job.json"))
        if not isinstance(stored, dict) or not isinstance(stored.get("shards"), list):
            raise ValueError("no list of shards")
        for s in stored["shards"]:
            if not isinstance(s["shard_id"], str) or not isinstance(s["items"], list):
                raise ValueError("a shard without an id or items")
            float(s["seconds"])
            for reco_id, seconds in s["items"]:
                if not isinstance(reco_id, str) or not (seconds is None or float(seconds) >= 0):
                    raise ValueError("an item that is not [recording id, seconds]")
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as e:
        detail = " ".join(str(e).split())[:120]
        raise JobError(
            f"{out.display('job.json')} is unreadable (truncated or corrupt: {detail}); it alone says "
            "which files in the folder the job wrote, so nothing was changed: remove the folder "
            "yourself or choose another --out"
        ) from None
    return stored


def check_out_folder(out: OutDir) -> tuple[dict[str, Any] | None, list[str]]:
    """OUT's stored plan (None if it has none) and its files, if the job may use it.

    Raises:
        JobError: job.json is unreadable, or there is no plan and OUT holds files the job did
            not write (the user's own: a new job needs an empty or new folder).
    """
    if out.exists("") and not out.fs.isdir(out.root):
        raise JobError(f"--out {out.url}: is a file, not a folder")
    stored = read_plan(out)
    files = out.find()
    if stored is None:
        foreign = [f for f in files if not owned_by_job(f, None)]
        if foreign:
            raise JobError(
                f"--out {out.display('')} already holds files this job did not write "
                f"({_some(foreign)}) and no job.json; give an empty or new folder"
            )
    return stored, files


def load_or_make_plan(
    out: OutDir, config: Config, inputs: Inputs, overwrite: bool
) -> tuple[list[Shard[Recording]], list[Recording]]:
    """The job's shards: the stored plan when OUT holds this same job, else a new one.

    A new plan needs an OUT without files the job did not write. A plan of another job
    (other config, inputs or sharding) is replaced when ``overwrite`` is given or when that
    job finished no shard (nothing would be lost); only the files it wrote are removed.

    Args:
        inputs: the validated manifests (durations not read yet: a stored plan has them).

    Raises:
        JobError: OUT holds the plan of a different job that finished shards (and not
            ``overwrite``), files the job did not write, or an unreadable job.json.
    """
    stored, files = check_out_folder(out)
    if stored is None:
        return _new_plan(out, config, inputs)
    expected = plan_identity(config, inputs.digest)
    differs = [k for k, v in expected.items() if stored.get(k) != v]
    if not differs:
        try:
            by_id = {r.reco_id: r for r in inputs.recordings}
            cfg = expected["config_digest"]
            shards = []
            for s in stored["shards"]:
                items = tuple(replace(by_id[rid], seconds=sec) for rid, sec in s["items"])
                # recomputed, not read: a shard whose audio files changed since has a new one
                shards.append(Shard(s["shard_id"], items, float(s["seconds"]), shard_fingerprint(cfg, items)))
        except KeyError as e:  # the digests match, so only a hand-edited plan gets here
            raise JobError(f"{out.display('job.json')}: recording {e} is not in the inputs") from None
        logger.info("resuming %s: %d shards in its plan", out.display(""), len(shards))
        return shards, inputs.recordings
    what = {
        "config_digest": "config",
        "inputs_digest": "manifests",
        "sharding": "sharding",
        "layout": "layout",
    }
    reason = ", ".join(what[k] for k in differs)
    if "config_digest" in differs and isinstance(stored.get("config"), dict):
        keys = changed_keys(stored["config"], result_config(config))
        if keys:
            more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
            reason += f": {', '.join(keys[:5])}{more}"
    shard_ids = {str(s["shard_id"]) for s in stored["shards"]}
    owned = [f for f in files if owned_by_job(f, shard_ids)]
    finished = [f for f in owned if f.endswith(".done.json")]
    if finished and not overwrite:
        raise JobError(
            f"{out.display('job.json')}: this output folder was made by another job "
            f"(different {reason}); use another --out, or --overwrite to discard it"
        )
    foreign = [f for f in files if not owned_by_job(f, shard_ids)]
    if foreign:
        raise JobError(
            f"--out {out.display('')} holds files the job did not write ({_some(foreign)}); "
            "--overwrite removes only the job's own files: move those away or choose another --out"
        )
    if finished:
        logger.warning(
            "--overwrite: discarding the previous job in %s (different %s)", out.display(""), reason
        )
    else:
        logger.warning(
            "the previous job in %s finished no shard; starting it over (different %s)",
            out.display(""),
            reason,
        )
    clear_outputs(out, owned)
    return _new_plan(out, config, inputs)


def _some(names: Sequence[str], limit: int = 3) -> str:
    shown = ", ".join(shorten(n, 80) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _new_plan(out: OutDir, config: Config, inputs: Inputs) -> tuple[list[Shard[Recording]], list[Recording]]:
    recordings = with_durations(inputs.recordings, config.job.allow_pipes)
    shards = make_plan(config, recordings)
    write_json(out, "job.json", plan_json(config, inputs.digest, shards))
    return shards, recordings


def clear_outputs(out: OutDir, owned: Sequence[str]) -> None:
    """Remove the files a previous job wrote into OUT (``owned``: as found by :func:`owned_by_job`);
    the plan last, so that an interrupted removal is still recognised as the job's."""
    for name in sorted(owned, key=lambda n: n == "job.json"):
        if name != ".lock":  # held by this run
            out.remove(name)


def read_done(out: OutDir, shard: Shard[Recording]) -> ShardRecord | None:
    """The shard's done record if it exists, matches the plan and its files are there; else None."""
    name = done_name(shard.shard_id)
    if not out.exists(name):
        return None
    try:
        record = ShardRecord.from_json(out.read_text(name))
    except (ValueError, KeyError, TypeError) as e:
        logger.warning("ignoring unreadable done record %s: %s", out.display(name), e)
        return None
    if record.fingerprint != shard.fingerprint or record.item_ids != {r.reco_id for r in shard.items}:
        logger.info(
            "redoing %s: its config, recordings or audio files changed since it was made", shard.shard_id
        )
        return None
    for name in record.files:
        expected = record.digests.get(name)
        try:
            data = out.read_bytes(f"shards/{name}")
        except FileNotFoundError:
            return None
        if expected is None or file_digest(data) != expected:
            logger.warning(
                "redoing %s: %s was changed since its done record was written",
                shard.shard_id,
                out.display(f"shards/{name}"),
            )
            return None
    return record


@dataclass
class JobReport:
    """The outcome of :func:`run_job`: the summary in OUT, the exit code, and what this call ran."""

    summary: dict[str, Any]
    exit_code: int
    reason: str = ""
    shards_run: int = 0
    num_actors: int = 0


def run_job(
    config: Config,
    wav_scp: str,
    out_url: str,
    *,
    reco2num_spk: str | None = None,
    profile_scp: str | None = None,
    address: str | None = None,
    local: bool = False,
    overwrite: bool = False,
    retry_failed: bool = False,
    progress: bool | None = None,
    diarizer_factory: DiarizerFactory | None = None,
    config_file: str | None = None,
) -> JobReport:
    """Run (or resume) the job and reduce its outputs; see the module docstring for the files.

    Args:
        config: the typed config (``job`` section: sharding, actors, budget, formats).
        wav_scp: the recordings; reco2num_spk / profile_scp: optional per-recording inputs.
        out_url: output folder, a local path or fsspec URL.
        address: Ray cluster address (default ``RAY_ADDRESS``, else a local Ray).
        local: process the shards in this process, without Ray.
        overwrite: discard OUT if another job made it.
        retry_failed: also redo finished shards that hold failed recordings (e.g. after
            fixing the files, or for URLs that were unreachable).
        progress: show the progress bar (None: only on a terminal).
        diarizer_factory: builds the diarizer in each worker (default ``build_diarizer``).
        config_file: the YAML file ``config`` was read from, if any (it must not be in OUT).

    Returns:
        The summary and exit code: 0, or :data:`EXIT_OVER_BUDGET` with a one-line reason.

    Raises:
        DiarError (exit code 2 on the command line): a bad config value, manifest or OUT,
        before any work; an output that cannot be written (full disk), leaving the previous
        corpus files as they were.
    """
    t0 = time.perf_counter()
    config.validate()  # also when called from Python with a Config built by hand
    # manifest problems stop the job here, before OUT is touched
    inputs = read_inputs(config, wav_scp, reco2num_spk, profile_scp)
    if not out_url.strip():
        raise JobError("--out is empty; give the output folder")
    out = OutDir(out_url)
    if out.is_local:
        files = job_input_files(config, inputs, wav_scp, reco2num_spk, profile_scp, config_file)
        check_inputs_outside(out, files)
    check_out_folder(out)  # before the lock file is made in it (checked again under the lock)
    try:
        out.makedirs()
    except OSError as e:
        raise JobError(f"cannot create the output folder {out_url}: {e.strerror or e}") from e
    out.check_writable()
    with exclusive_use(out):
        return _run_job(
            t0,
            config,
            inputs,
            out,
            address,
            local,
            overwrite,
            retry_failed,
            progress,
            diarizer_factory,
        )


def job_input_files(
    config: Config,
    inputs: Inputs,
    wav_scp: str,
    reco2num_spk: str | None,
    profile_scp: str | None,
    config_file: str | None,
) -> FileSet:
    """Every local file the job reads: manifests, audio, ark files, the config file."""
    from diar.commands.common import input_files
    from diar.manifests import ark_path, names_path_for, read_profile_scp

    paths = [wav_scp, reco2num_spk, config_file, *(r.source for r in inputs.recordings)]
    if profile_scp:
        arks = {ark_path(v) for v in read_profile_scp(profile_scp).values()}
        paths += [profile_scp, str(names_path_for(profile_scp)), *sorted(arks)]
    return input_files(paths, config)


def check_inputs_outside(out: OutDir, inputs: FileSet) -> None:
    """Refuse (JobError) an input file where the job writes in OUT: a top-level output name or
    anything under ``OUT/shards``."""
    root = os.path.realpath(out.root)
    for real, given in inputs.within(root):
        rel = os.path.relpath(real, root)
        if rel in TOP_FILES or rel.split(os.sep, 1)[0] == "shards":
            raise JobError(
                f"--out {out.display('')}: the input {shorten(given)} is where the job writes "
                f"({rel}); choose another --out"
            )


@contextmanager
def exclusive_use(out: OutDir) -> Iterator[None]:
    """Hold ``OUT/.lock`` (local folders) so that two drivers never write one OUT at once.

    An advisory ``flock``: the kernel drops it when the driver dies, even by SIGKILL, so a
    rerun is never locked out. Remote (fsspec) folders are not locked.
    """
    if not out.is_local:
        yield
        return
    import fcntl

    try:
        lock = open(out.path(".lock"), "a")
    except OSError as e:
        raise JobError(f"cannot write {out.display('.lock')}: {e.strerror or e}") from None
    with lock as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise JobError(
                f"{out.display('')} is being written by another run of the job; wait for it"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _run_job(
    t0: float,
    config: Config,
    inputs: Inputs,
    out: OutDir,
    address: str | None,
    local: bool,
    overwrite: bool,
    retry_failed: bool,
    progress: bool | None,
    diarizer_factory: DiarizerFactory | None,
) -> JobReport:
    shards, recordings = load_or_make_plan(out, config, inputs, overwrite)
    out.makedirs("shards")
    shard_ids = {s.shard_id for s in shards}

    def owned(rel: str) -> bool:
        return owned_by_job(rel, shard_ids)

    stale = out.remove_temporaries("", owned) + out.remove_temporaries("shards", owned)
    for name in out.listdir("shards"):
        # crashes are counted within one run
        if name.endswith(CrashJournal.SUFFIX) and owned(f"shards/{name}"):
            out.remove(f"shards/{name}")
            stale.append(name)
    if stale:
        logger.info("removed %d temporary files of an interrupted run", len(stale))

    records: dict[str, ShardRecord] = {}
    todo: list[Shard[Recording]] = []
    for shard in shards:
        record = read_done(out, shard)
        # issue 15: + a shard without the traces that linking needs
        if record is None or (retry_failed and record.failures) or needs_traces(record, config.job):
            todo.append(shard)
        else:
            records[shard.shard_id] = record
    lost: list[Failure] = []
    reused = len(records)
    num_actors = 0
    total_seconds = sum(r.seconds or 0.0 for r in recordings)
    done_seconds = sum(s.seconds for s in shards if s.shard_id in records)
    done_count = sum(len(s.items) for s in shards if s.shard_id in records)

    t_work = time.perf_counter()  # reset once Ray is up: work = actors starting + shards
    work_seconds = 0.0
    if todo:
        bar = Progress(len(recordings), total_seconds, done_count, done_seconds, show=progress)

        def on_outcome(outcome: Outcome[ShardRecord]) -> None:
            shard = outcome.shard
            if outcome.result is not None:
                records[shard.shard_id] = outcome.result
                failed = len(outcome.result.failures)
            else:
                stage = "actor" if outcome.stage == "actor" else "write"
                error = outcome.error or RuntimeError("unknown error")
                lost.extend(Failure.from_exception(r.reco_id, stage, error) for r in shard.items)
                failed = len(shard.items)
            bar.advance(len(shard.items), shard.seconds, failed)

        factory = functools.partial(DiarizeWorker, config, out.url, diarizer_factory)
        with bar:
            if local:
                num_actors = 1
                if config.job.recording_timeout is not None:
                    logger.warning("job.recording_timeout is enforced on Ray actors only, not with --local")
                run_local(factory, todo, on_outcome)
                work_seconds = time.perf_counter() - t_work
            else:
                import ray

                with ray_session(address):
                    t_work = time.perf_counter()
                    cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
                    spec = actor_spec(config.job, cluster)
                    wait_until_placeable(spec, config.job.placement_timeout)
                    num_actors = num_actors_for(config.job, spec, cluster, len(todo))
                    factory = functools.partial(
                        DiarizeWorker, config, out.url, diarizer_factory, spec.num_threads, in_actor=True
                    )
                    run_ray(factory, todo, spec, num_actors, on_outcome, bar.partial)
                    work_seconds = time.perf_counter() - t_work

    finished = [records[s.shard_id] for s in shards if s.shard_id in records]
    totals = Totals(recordings=len(recordings))
    for record in finished:
        totals.add(record)
    totals.add_lost(lost)
    try:
        annotations = merge_annotations(out, finished)
    except FileNotFoundError as e:
        raise JobError(
            f"a finished shard's files are missing from {out.display('shards')} ({e}); on a multi-node "
            "cluster OUT must be storage every node reaches (a shared folder or an fsspec URL such as s3://)"
        ) from e
    # written together at the end: a full disk leaves the previous versions of all of them
    files = corpus_files(annotations, config.job.out_formats, model=model_name(config))
    if config.job.link_speakers:  # issue 15: global speaker labels, speakers.tsv, corpus.local.rttm
        files.update(linked_files(out, finished, annotations, config.job, model_name(config)))
    files["failures.tsv"] = failures_tsv(totals.failures).encode("utf-8")
    outputs = list(files)

    allowed, reason = failure_budget(
        totals.failed, len(recordings), config.job.max_failures, out.display("failures.tsv")
    )
    over = bool(reason)
    processed_seconds = sum(sum(records[s.shard_id].done.values()) for s in todo if s.shard_id in records)
    wall = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "status": "over_budget" if over else "ok",
        "recordings": {"total": len(recordings), "done": totals.done, "failed": totals.failed},
        "audio_hours": round(totals.audio_seconds / 3600.0, 6),
        "wall_seconds": round(wall, 3),
        "work_seconds": round(work_seconds, 3),
        "processed_audio_seconds": round(processed_seconds, 3),
        "real_time_factor": round(wall / processed_seconds, 6) if processed_seconds > 0 else None,
        "compute_seconds": round(totals.compute_seconds, 3),
        "step_seconds": {k: round(v, 3) for k, v in sorted(totals.step_seconds.items())},
        "num_actors": num_actors,
        "shards": {
            "total": len(shards),
            "run": len(todo),
            "reused": reused,
            "lost": len(todo) - (len(records) - reused),
        },
        "failure_budget": {"max_failures": config.job.max_failures, "allowed": allowed},
        "outputs": [*outputs, "summary.json"],
        "config": to_dict(config),
    }
    new_summary = summary if todo else keep_previous_run(out, summary)
    if new_summary is not None:
        summary = new_summary
        files["summary.json"] = json_bytes(summary)
    else:  # a rerun that changed nothing: summary.json stays byte-identical
        summary = json.loads(out.read_text("summary.json"))
    out.write_many(files)
    remove_stale_link_files(out, files)  # issue 15
    return JobReport(summary, EXIT_OVER_BUDGET if over else 0, reason, len(todo), num_actors)


#: Summary fields that describe the run which did the work; a rerun with nothing left to do keeps them.
RUN_FIELDS = (
    "wall_seconds",
    "work_seconds",
    "processed_audio_seconds",
    "real_time_factor",
    "num_actors",
    "shards",
)


def keep_previous_run(out: OutDir, summary: dict[str, Any]) -> dict[str, Any] | None:
    """The summary of a rerun that processed nothing: the previous run's timing figures are kept.

    Returns None when nothing else changed either: summary.json is then left untouched, so
    that such a rerun leaves every output byte-identical.
    """
    previous: dict[str, Any] | None = None
    if out.exists("summary.json"):
        try:
            previous = json.loads(out.read_text("summary.json"))
        except ValueError:
            previous = None
    if isinstance(previous, dict):
        summary = {k: previous.get(k, v) if k in RUN_FIELDS else v for k, v in summary.items()}
        if summary == previous:
            return None
    return summary


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m jobs.diarize`` and ``diar run``."""
    from diar.commands.common import add_config_option

    add_config_option(parser)
    parser.add_argument("--wav-scp", required=True, help="manifest '<reco-id> <path-or-URL>' per line")
    parser.add_argument("--out", required=True, help="output folder (local path or fsspec URL)")
    parser.add_argument("--num-shards", type=int, default=None, help="shortcut for --set job.num_shards=N")
    parser.add_argument("--num-actors", type=int, default=None, help="shortcut for --set job.num_actors=N")
    parser.add_argument(
        "--address",
        default=None,
        help="Ray cluster address; unset: RAY_ADDRESS, else a new local Ray on all cores",
    )
    parser.add_argument("--reco2num-spk", default=None, help="manifest '<reco-id> <num-speakers>' (optional)")
    parser.add_argument(
        "--profile-scp", default=None, help="speaker profiles '<reco-id> <ark>:<offset>' (sets mode=profile)"
    )
    parser.add_argument("--local", action="store_true", help="run in this process without Ray (debugging)")
    parser.add_argument("--overwrite", action="store_true", help="discard OUT if another job made it")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="resume also redoes finished shards with failed recordings",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, diarizer_factory: DiarizerFactory | None = None) -> int:
    """Run the job from parsed arguments; return the exit code."""
    overrides = list(args.overrides)
    if args.num_shards is not None:
        overrides.append(f"job.num_shards={args.num_shards}")
    if args.num_actors is not None:
        overrides.append(f"job.num_actors={args.num_actors}")
    if args.profile_scp:  # as `diar diarize --profile-scp`: the profiles select profile mode
        overrides.append("mode=profile")
    config = load_config(args.config, overrides)
    report = run_job(
        config,
        args.wav_scp,
        args.out,
        reco2num_spk=args.reco2num_spk,
        profile_scp=args.profile_scp,
        address=args.address,
        local=args.local,
        overwrite=args.overwrite,
        retry_failed=args.retry_failed,
        progress=False if args.no_progress else None,
        diarizer_factory=diarizer_factory,
        config_file=args.config,
    )
    s = report.summary
    out = OutDir(args.out)
    resumed = f" (all {s['shards']['total']} shards were already done)" if report.shards_run == 0 else ""
    sys.stdout.write(
        f"{s['recordings']['done']} recordings diarized, {s['recordings']['failed']} failed{resumed}; "
        f"corpus RTTM: {out.display('corpus.rttm')}\n"
    )
    if report.reason:
        sys.stderr.write(f"diar run: {report.reason}\n")
    elif s["recordings"]["failed"]:
        sys.stderr.write(f"diar run: failures within budget, listed in {out.display('failures.tsv')}\n")
    return report.exit_code


def main(argv: list[str] | None = None, diarizer_factory: DiarizerFactory | None = None) -> int:
    """Entry point of ``python -m jobs.diarize``; ``diarizer_factory`` replaces ``build_diarizer`` (tests)."""
    from diar.commands.common import entry_point

    return entry_point(
        "python -m jobs.diarize", __doc__, add_arguments, lambda args: run(args, diarizer_factory), argv
    )


if __name__ == "__main__":
    sys.exit(main())
