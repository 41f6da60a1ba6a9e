"""``OUT/summary.json``: what a run did, and what a rerun with nothing left to do keeps of it."""

from __future__ import annotations

import json
from typing import Any

from jobs.storage import OutDir

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
