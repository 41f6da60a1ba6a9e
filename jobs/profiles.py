"""The profiles job: enrollment list -> balanced shards -> embedder actors -> profile.ark/scp/names.

Run it as ``python -m jobs.profiles --enroll ENROLL --out OUT [--config configs/profile.yaml]``.
The same as ``diar profiles`` (one process), with the recordings' enrollment files
embedded on Ray actors: each actor loads the embedder once and makes the profiles
of one shard of recordings after another (the sharding and the runner of the
diarization job, :mod:`jobs.shards` and :mod:`jobs.runner`). ``--local`` runs
without Ray.

Output folder (local, since profile.scp names the ark by absolute path)::

    OUT/profile.ark     float32 matrices (speakers x dim) keyed by recording id
    OUT/profile.scp     <reco-id> <ark-path>:<offset>, readable by kaldiio
    OUT/profile.names   <reco-id> <speaker1> <speaker2> ... (the rows' speakers)
    OUT/failures.tsv    reco_id, stage, error_type, message (header only if none)

Each file is written atomically. A recording whose enrollment audio cannot be read
or embedded becomes a failure row and gets no profile; the exit code is 1 when more
recordings fail than ``job.max_failures`` allows, 2 for a bad config or manifest.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np

from diar.audio import audio_duration, is_url
from diar.config import Config
from diar.errors import AudioError, NoSpeechError
from diar.failures import Failure
from diar.formats.failures import failures_tsv
from jobs.actors import ActorSpec, Outcome
from jobs.errors import JobError
from jobs.progress import Progress
from jobs.reduce import EXIT_OVER_BUDGET, failure_budget
from jobs.runner import run_shards
from jobs.shards import Shard, plan_recordings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Enrollment:
    """The enrollment files of one recording.

    Attributes:
        reco_id: recording id (the profile's key).
        files: [(speaker, path or URL)] in list order.
        seconds: total duration of the files from their headers (None if one is unreadable).
    """

    reco_id: str
    files: tuple[tuple[str, str], ...]
    seconds: float | None = None


@dataclass
class ShardProfiles:
    """What a worker returns for one shard: profiles of the recordings done, failure rows of the others."""

    profiles: dict[str, tuple[np.ndarray, tuple[str, ...]]] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)


class ProfileWorker:
    """Makes the profiles of a shard's recordings; built once per actor (loads the embedder).

    ``actor``: the resources of the Ray actor it lives in (its CPUs become torch threads);
    None in the driver's process.
    """

    def __init__(self, config: Config, actor: ActorSpec | None = None) -> None:
        from diar.pipelines.profile import ProfileMaker

        if actor is not None:
            config = replace(config, num_threads=actor.num_threads)
        self.maker = ProfileMaker(config)

    def __call__(self, shard: Shard[Enrollment]) -> ShardProfiles:
        out = ShardProfiles()
        for item in shard.items:
            try:
                # shape: (num_speakers, dim)
                matrix, names = self.maker(item.reco_id, item.files)
            except NoSpeechError as e:  # read, but not usable
                out.failures.append(Failure.from_exception(item.reco_id, "embed", e, e.source))
            except AudioError as e:
                out.failures.append(Failure.from_exception(item.reco_id, "read", e, e.source))
            except Exception as e:
                out.failures.append(Failure.from_exception(item.reco_id, "embed", e))
            else:
                out.profiles[item.reco_id] = (matrix, names)
        return out


def read_enrollments(path: str) -> list[Enrollment]:
    """The enrollment list as :class:`Enrollment` items (durations from the headers, in threads)."""
    from diar.manifests import read_enrollment

    items = [Enrollment(reco, tuple(files)) for reco, files in read_enrollment(path).items()]

    def total(item: Enrollment) -> float | None:
        try:
            return sum(audio_duration(source, item.reco_id) for _, source in item.files)
        except AudioError:
            return None  # the worker reports it as a failure row

    with ThreadPoolExecutor(max_workers=8) as pool:
        seconds = list(pool.map(total, items))
    return [replace(item, seconds=s) for item, s in zip(items, seconds, strict=True)]


@dataclass
class ProfilesReport:
    """The outcome of :func:`run_profiles_job`."""

    done: int
    failures: list[Failure]
    exit_code: int
    reason: str = ""
    scp: str = ""


def run_profiles_job(
    config: Config,
    enroll: str,
    out_dir: str,
    *,
    address: str | None = None,
    local: bool = False,
    progress: bool | None = None,
) -> ProfilesReport:
    """Make the profiles of every recording of ``enroll`` and write them to ``out_dir``.

    Args:
        config: embedder (``embedding``), enrollment VAD (``profile.enroll_vad``) and the
            ``job`` section (num_shards / shard_seconds, actors, failure budget).
        enroll: enrollment list ``<reco-id> <speaker> <path-or-URL>``.
        out_dir: local output folder (created).
        address: Ray cluster address (default ``RAY_ADDRESS``, else a local Ray).
        local: run in this process without Ray.
        progress: show the progress bar (None: only on a terminal).
    """
    from diar.commands.common import input_files
    from diar.commands.profiles import check_profile_outputs
    from diar.formats import atomic_open
    from diar.manifests import write_profiles
    from diar.outputs import writing

    config.validate()
    if is_url(out_dir):
        raise JobError(f"--out {out_dir}: profiles are written to a local folder (profile.scp names the ark)")
    items = read_enrollments(enroll)
    # before any work: the outputs are no input and can be written
    sources = [source for item in items for _, source in item.files]
    check_profile_outputs(out_dir, input_files([enroll, *sources]), extra=("failures.tsv",))
    shards = plan_recordings(items, config.job.num_shards, config.job.shard_seconds)
    profiles: dict[str, tuple[np.ndarray, tuple[str, ...]]] = {}
    failures: list[Failure] = []
    total_seconds = sum(it.seconds or 0.0 for it in items)
    bar = Progress(len(items), total_seconds, show=progress, desc="profiles")

    def on_outcome(outcome: Outcome[ShardProfiles]) -> None:
        shard = outcome.shard
        if outcome.result is not None:
            profiles.update(outcome.result.profiles)
            failures.extend(outcome.result.failures)
            failed = len(outcome.result.failures)
        else:
            error = outcome.error or RuntimeError("unknown error")
            failures.extend(Failure.from_exception(it.reco_id, "actor", error) for it in shard.items)
            failed = len(shard.items)
        bar.advance(len(shard.items), shard.seconds, failed)

    with bar:
        worker = functools.partial(ProfileWorker, config)
        run_shards(
            worker, shards, config.job, on_outcome, address=address, local=local, on_partial=bar.partial
        )

    os.makedirs(out_dir, exist_ok=True)
    # profiles in enrollment-list order; arrays from Ray's object store are read-only, which is fine here
    ordered = {it.reco_id: profiles[it.reco_id] for it in items if it.reco_id in profiles}
    with writing("--out", out_dir):
        scp = write_profiles(os.path.join(out_dir, ""), ordered)
        with atomic_open(os.path.join(out_dir, "failures.tsv")) as f:
            f.write(failures_tsv(failures))
    _, reason = failure_budget(
        len(failures), len(items), config.job.max_failures, os.path.join(out_dir, "failures.tsv")
    )
    return ProfilesReport(len(ordered), failures, EXIT_OVER_BUDGET if reason else 0, reason, str(scp))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``python -m jobs.profiles``: those of ``diar profiles`` plus the job's."""
    from diar.commands.profiles import add_arguments as profile_arguments

    profile_arguments(parser)
    parser.add_argument("--num-shards", type=int, default=None, help="shortcut for --set job.num_shards=N")
    parser.add_argument("--num-actors", type=int, default=None, help="shortcut for --set job.num_actors=N")
    parser.add_argument(
        "--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else local)"
    )
    parser.add_argument("--local", action="store_true", help="run in this process without Ray (debugging)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run the job from parsed arguments; return the exit code."""
    from diar.commands.common import config_from_args

    for flag, key in (("num_shards", "job.num_shards"), ("num_actors", "job.num_actors")):
        value = getattr(args, flag)
        if value is not None:
            args.overrides = [*args.overrides, f"{key}={value}"]
    config = config_from_args(args)
    report = run_profiles_job(
        config,
        args.enroll,
        args.out,
        address=args.address,
        local=args.local,
        progress=False if args.no_progress else None,
    )
    sys.stdout.write(f"{report.done} profiles, {len(report.failures)} failed: {report.scp}\n")
    if report.reason:
        sys.stderr.write(f"jobs.profiles: {report.reason}\n")
    elif report.failures:
        sys.stderr.write(f"jobs.profiles: failures within budget, listed in {args.out}/failures.tsv\n")
    return report.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m jobs.profiles``."""
    from diar.cli import entry_point

    return entry_point("python -m jobs.profiles", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
