"""Run the diarization job on Ray: wav.scp -> shards -> model actors -> OUT/corpus.rttm.

The same as ``python -m jobs.diarize``. Connects to the cluster named by
``--address`` or ``RAY_ADDRESS``, otherwise starts a local Ray on all cores.
Rerunning into the same OUT resumes: finished shards are kept. Exit code 0, or
1 when more recordings failed than ``job.max_failures`` allows (they are listed
in OUT/failures.tsv), 2 for a bad config, manifest or output folder.
"""

from __future__ import annotations

import argparse

HELP = "run the diarization job on a Ray cluster (shards, actors, resume, failures)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from jobs.diarize import add_arguments as job_arguments

    job_arguments(parser)


def run(args: argparse.Namespace) -> int:
    # jobs/ ships in the same distribution; it is imported here only, so that the
    # library itself never depends on it (or on Ray).
    from jobs.diarize import run as run_job_command

    return run_job_command(args)
