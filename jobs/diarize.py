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
    OUT/shards/<shard-id>.exclusive.rttm  the exclusive turns (with "exclusive" in job.out_formats)
    OUT/shards/<shard-id>.done.json written last: recordings done and failed, step timings
    OUT/corpus.rttm                 every turn, sorted by recording id then start, channel 1
    OUT/corpus.parquet, corpus.vad  with "parquet" / "vad" in job.out_formats
    OUT/corpus.exclusive.rttm       with "exclusive": at most one speaker at a time, the most likely
    OUT/failures.tsv                reco_id, stage, error_type, message (header only if none)
    OUT/summary.json                counts, audio hours, wall time, real-time factor, step times, config
    OUT/report.html                 with job.report: the page of `diar report OUT` (summary, timelines)

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
import sys
import time
from dataclasses import dataclass
from typing import Any

from diar.config import Config, load_config, with_profiles
from diar.failures import Failure
from diar.formats.failures import failures_tsv
from diar.formats.parquet import model_name
from jobs.actors import Outcome
from jobs.errors import JobError
from jobs.plan import (
    Inputs,
    Recording,
    check_inputs_outside,
    check_out_folder,
    exclusive_use,
    job_input_files,
    load_or_make_plan,
    owned_by_job,
    read_done,
    read_inputs,
)
from jobs.progress import Progress
from jobs.records import CrashJournal, ShardRecord
from jobs.reduce import (
    EXIT_OVER_BUDGET,
    Totals,
    corpus_files,
    failure_budget,
    json_bytes,
    lacks_shard_turns,
    merge_annotations,
    merge_exclusive,
    report_page,
)
from jobs.runner import RunStats, run_shards
from jobs.shards import Shard
from jobs.stages import run_diarize_shards
from jobs.storage import OutDir
from jobs.summary import keep_previous_run, run_summary
from jobs.traces import linked_files, needs_traces, remove_stale_link_files
from jobs.worker import DiarizerFactory, DiarizeWorker

logger = logging.getLogger(__name__)


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
        # + a shard without the traces that speaker linking needs, or the exclusive turns asked for
        if (
            record is None
            or (retry_failed and record.failures)
            or needs_traces(record, config.job)
            or lacks_shard_turns(record, config.job.out_formats)
        ):
            todo.append(shard)
        else:
            records[shard.shard_id] = record
    lost: list[Failure] = []
    reused = len(records)
    total_seconds = sum(r.seconds or 0.0 for r in recordings)
    done_seconds = sum(s.seconds for s in shards if s.shard_id in records)
    done_count = sum(len(s.items) for s in shards if s.shard_id in records)

    stats = RunStats()
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

        worker = functools.partial(DiarizeWorker, config, out.url, diarizer_factory)

        def single() -> RunStats:
            return run_shards(
                worker, todo, config.job, on_outcome, address=address, local=local, on_partial=bar.partial
            )

        with bar:
            stats = run_diarize_shards(
                config, out, todo, on_outcome, single, address, local, diarizer_factory, bar.partial
            )

    finished = [records[s.shard_id] for s in shards if s.shard_id in records]
    totals = Totals(recordings=len(recordings))
    for record in finished:
        totals.add(record)
    totals.add_lost(lost)
    try:
        annotations = merge_annotations(out, finished)
        exclusive = merge_exclusive(out, finished, config.job.out_formats)
    except FileNotFoundError as e:
        raise JobError(
            f"a finished shard's files are missing from {out.display('shards')} ({e}); on a multi-node "
            "cluster OUT must be storage every node reaches (a shared folder or an fsspec URL such as s3://)"
        ) from e
    # written together at the end: a full disk leaves the previous versions of all of them
    files = corpus_files(annotations, config.job.out_formats, model_name(config), exclusive)
    if config.job.link_speakers:  # global speaker labels, speakers.tsv, corpus.local.rttm
        files.update(linked_files(out, finished, annotations, config.job, model_name(config), exclusive))
    files["failures.tsv"] = failures_tsv(totals.failures).encode("utf-8")
    outputs = [*files, *(["report.html"] if config.job.report else [])]

    allowed, reason = failure_budget(
        totals.failed, len(recordings), config.job.max_failures, out.display("failures.tsv")
    )
    over = bool(reason)
    processed_seconds = sum(sum(records[s.shard_id].done.values()) for s in todo if s.shard_id in records)
    wall = time.perf_counter() - t0
    summary = run_summary(
        status="over_budget" if over else "ok",
        totals=totals,
        wall_seconds=wall,
        processed_seconds=processed_seconds,
        stats=stats,
        nodes=len({records[s.shard_id].node_id for s in todo if s.shard_id in records} - {None}),
        shards={
            "total": len(shards),
            "run": len(todo),
            "reused": reused,
            "lost": len(todo) - (len(records) - reused),
        },
        allowed_failures=allowed,
        outputs=[*outputs, "summary.json"],
        config=config,
    )
    new_summary = summary if todo else keep_previous_run(out, summary)
    if new_summary is not None:
        summary = new_summary
        files["summary.json"] = json_bytes(summary)
    else:  # a rerun that changed nothing: summary.json stays byte-identical
        summary = json.loads(out.read_text("summary.json"))
    if config.job.report:  # from the files as written, so a rerun that changed nothing writes the same
        durations = {r.reco_id: r.seconds for s in shards for r in s.items if r.seconds is not None}
        failures = files["failures.tsv"].decode("utf-8")
        files["report.html"] = report_page(out.url, annotations, failures, durations, summary)
    out.write_many(files)
    remove_stale_link_files(out, files)
    return JobReport(summary, EXIT_OVER_BUDGET if over else 0, reason, len(todo), stats.num_actors)


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
        "--profile-scp",
        default=None,
        help="enrolled speakers' profiles '<reco-id> <ark>:<offset>' (diar profiles): frame mode matches "
        "its speakers to them (the others are unknown1, ...); a cluster-mode config becomes mode profile",
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
    config = load_config(args.config, overrides)
    if args.profile_scp:  # as `diar diarize --profile-scp`
        config = with_profiles(config)
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
    from diar.cli import entry_point

    return entry_point(
        "python -m jobs.diarize", __doc__, add_arguments, lambda args: run(args, diarizer_factory), argv
    )


if __name__ == "__main__":
    sys.exit(main())
