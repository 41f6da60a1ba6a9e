"""Run the diarization job on Ray: wav.scp -> shards -> model actors -> OUT/corpus.rttm.

The same as ``python -m jobs.diarize`` (``diar run --help`` lists its options). Connects to
the cluster named by ``--address`` or ``RAY_ADDRESS``, otherwise starts a local Ray on all
cores. Rerunning into the same OUT resumes: finished shards are kept. Exit code 0, or 1
when more recordings failed than ``job.max_failures`` allows (they are listed in
OUT/failures.tsv), 2 for a bad config, manifest or output folder.

The job lives in ``jobs/`` (it needs Ray); the library never imports it: ``diar run`` finds
it through the ``diar.jobs`` entry-point group the distribution declares, and hands it the
command line as it is.
"""

from __future__ import annotations

import argparse

HELP = "run the diarization job on a Ray cluster (shards, actors, resume, failures)"
#: The whole command line goes to the job, ``--help`` included.
FORWARDS_ARGUMENTS = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("job_args", nargs=argparse.REMAINDER, help="the options of python -m jobs.diarize")


def run(args: argparse.Namespace) -> int:
    from importlib.metadata import entry_points

    from diar.errors import DiarError

    found = entry_points(group="diar.jobs", name="diarize")
    if not found:
        raise DiarError(
            "the diarization job is not installed with diar (the 'diar.jobs' entry point); reinstall diar"
        )
    main = next(iter(found)).load()
    return int(main(list(args.job_args)))
