"""Link speakers across the recordings of a finished job's output folder, without running any model.

Reads the speaker traces the job's shards wrote (OUT/shards/*.traces.*) and its RTTMs,
clusters the speakers of all recordings into global speakers (two speakers of one
recording are never linked; enrolled names are kept), and writes OUT/speakers.tsv,
the corpus files with the global labels (corpus.rttm, and corpus.parquet / corpus.vad as
the job's job.out_formats say) and corpus.local.rttm with each recording's own labels:
byte for byte what the job writes with job.link_speakers: true and the same settings.

The settings are those OUT was made with (its summary.json), unless --config / --set
give others; --threshold, --min-seconds and --neighbors override either. --also merges
the recordings of other output folders (made with the same embedder) into one corpus;
its files then go to -o. Exit code 0, or 2 with one line saying what is wrong.
"""

from __future__ import annotations

import argparse
import sys

HELP = "link speakers across recordings of a finished job output (speakers.tsv, global labels)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from diar.commands.common import add_config_option

    parser.add_argument(
        "out", metavar="OUT", help="a finished job's output folder (local path or fsspec URL)"
    )
    parser.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="OTHER_OUT",
        help="another job's output folder whose recordings are linked together with OUT's (repeatable)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="DIR",
        help="folder for speakers.tsv and the corpus files; None: OUT itself (give one with --also)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="cosine distance up to which speakers are linked: shortcut for --set job.link_threshold=X "
        "(None: OUT's setting)",
    )
    parser.add_argument(
        "--min-seconds",
        type=float,
        default=None,
        help="shortcut for --set job.link_min_seconds=S (None: OUT's setting)",
    )
    parser.add_argument(
        "--neighbors",
        type=int,
        default=None,
        help="shortcut for --set job.link_neighbors=K (None: OUT's setting)",
    )
    add_config_option(parser)


def run(args: argparse.Namespace) -> int:
    # jobs/ ships in the same distribution; imported here only (as `diar run` does), so that
    # the library itself never depends on it.
    import dataclasses

    from diar.config import JobConfig, from_dict, load_config
    from jobs.storage import OutDir
    from jobs.traces import folder_config, link_folders, settings_of

    if args.config is not None or args.overrides:
        job = load_config(args.config, list(args.overrides)).job
    else:  # the settings OUT was made with
        job = from_dict(JobConfig, folder_config(OutDir(args.out)).get("job") or {}, "job")
    shortcuts = {
        key: value
        for key, value in (
            ("link_threshold", args.threshold),
            ("link_min_seconds", args.min_seconds),
            ("link_neighbors", args.neighbors),
        )
        if value is not None
    }
    job = dataclasses.replace(job, **shortcuts)
    job.validate()
    report = link_folders([args.out, *args.also], args.output, settings_of(job), job.out_formats)
    sys.stdout.write(
        f"{report.speakers} speakers of {report.recordings} recordings -> {report.global_speakers} "
        f"global speakers; wrote {', '.join(report.written)} to {report.dest}\n"
    )
    return 0
