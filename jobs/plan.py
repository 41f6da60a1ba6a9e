"""The job's plan and resume: its recordings, its shards, and what of OUT is already done.

``OUT/job.json`` holds the plan: the digests of the config and of the manifests, and the
shards with their recordings and durations. A rerun with the same config and inputs finds
it again and reuses every shard whose done record still matches (:func:`read_done`). The
plan also says which files of OUT the job wrote (:func:`owned_by_job`), so that
``--overwrite`` removes only those; ``OUT/.lock`` keeps a second driver out
(:func:`exclusive_use`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence, Set
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from diar.config import Config, to_dict
from diar.errors import shorten
from diar.formats.writers import OUTPUT_FORMATS
from diar.outputs import TMP_MARKER, FileSet
from jobs.errors import JobError
from jobs.records import CrashJournal, ShardRecord, done_name, file_digest
from jobs.reduce import write_json
from jobs.shards import Shard, digest, plan_recordings
from jobs.storage import OutDir
from jobs.traces import LINK_FILES, TRACE_SUFFIXES

logger = logging.getLogger(__name__)

#: Version of the layout of OUT; a different version is treated as another job.
LAYOUT_VERSION = 1


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
        enrollment: ((speaker, path or URL), ...) to make the profiles from on the actor when
            ``profiles`` is None (profile mode, ``profile.enroll``), or None.
    """

    reco_id: str
    source: str
    seconds: float | None
    num_speakers: int | None = None
    profiles: np.ndarray | None = field(default=None, compare=False)
    profile_names: tuple[str, ...] | None = None
    enrollment: tuple[tuple[str, str], ...] | None = None

    def fingerprint_data(self) -> dict[str, Any]:
        """What about this recording determines its output (the duration does not)."""
        data: dict[str, Any] = {
            "reco_id": self.reco_id,
            "source": self.source,
            "num_speakers": self.num_speakers,
            "profiles": None if self.profiles is None else digest(self.profiles),
            "profile_names": self.profile_names,
        }
        if self.enrollment is not None:  # absent otherwise: plans made before keep their digests
            data["enrollment"] = [list(item) for item in self.enrollment]
        return data


def config_digest(config: Config) -> str:
    """Digest of the parts of ``config`` that can change the output.

    The ``job`` section (sharding, actors, budget) and ``num_threads`` only change how
    the work is spread, and ``audio`` (whether pipes may run) only which recordings can be
    read, so they are left out: changing them keeps finished shards valid.
    """
    return digest(result_config(config))


def result_config(config: Config) -> dict[str, Any]:
    """The config as a dict without the keys that cannot change the output (see :func:`config_digest`)."""
    data = to_dict(config)
    data.pop("job", None)
    data.pop("num_threads", None)
    data.pop("audio", None)  # which sources may be read, not what is made of them
    return data


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [prefix or "(config)"] if old != new else []
    keys: list[str] = []
    for key in sorted(set(old) | set(new), key=str):
        keys += changed_keys(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
    return keys


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
    from diar.config import uses_profiles
    from diar.manifests import ProfileSources, read_profiles, read_reco2num_spk, read_wav_scp, validate_ids

    sources = read_wav_scp(wav_scp, allow_pipes=config.audio.allow_pipes)
    num_spk: dict[str, int] = {}
    if reco2num_spk:
        validate_ids(reco2num_spk, sources, known_name=wav_scp)
        num_spk = read_reco2num_spk(reco2num_spk)
    profiles: dict[str, tuple[np.ndarray, tuple[str, ...] | None]] = {}
    if profile_scp:
        validate_ids(profile_scp, sources, known_name=wav_scp)
        profiles = read_profiles(profile_scp)
    # profiles of the recordings --profile-scp gives none: profile.profile_scp, profile.enroll
    configured = ProfileSources()
    if uses_profiles(config):
        configured = ProfileSources.read(config.profile.profile_scp, config.profile.enroll)
    recordings = [
        Recording(
            reco_id,
            source,
            None,
            num_spk.get(reco_id),
            *(profiles[reco_id] + (None,) if reco_id in profiles else configured.of(reco_id)),
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
    *(fmt.file_name("corpus") for fmt in OUTPUT_FORMATS.values()),  # corpus.rttm, corpus.parquet, ...
    "report.html",
    *LINK_FILES,  # speakers.tsv, corpus.local.rttm (speaker linking)
    ".lock",
)
#: Files the job writes per shard, ``shards/<shard-id><suffix>``.
SHARD_SUFFIXES = (
    ".rttm",
    ".parquet",
    ".exclusive.rttm",
    ".done.json",
    CrashJournal.SUFFIX,
    *TRACE_SUFFIXES,
)


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
    if name.endswith(CrashJournal.SUFFIX):  # a shard's journal, or one of its batches' in the stage split
        return name[: -len(CrashJournal.SUFFIX)].split(".", 1)[0] in shard_ids
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
    recordings = with_durations(inputs.recordings, config.audio.allow_pipes)
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
