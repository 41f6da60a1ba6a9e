"""``OUT/summary.json``: what a run did, and what a rerun with nothing left to do keeps of it."""

from __future__ import annotations

import json
from typing import Any

from diar.config import Config, to_dict
from jobs.reduce import Totals
from jobs.runner import RunStats
from jobs.storage import OutDir

#: Summary fields that describe the run which did the work; a rerun with nothing left to do keeps them.
RUN_FIELDS = (
    "wall_seconds",
    "work_seconds",
    "processed_audio_seconds",
    "real_time_factor",
    "num_actors",
    "actors_ready",
    "nodes",
    "startup_seconds",
    "process_seconds",
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


def run_summary(
    *,
    status: str,
    totals: Totals,
    wall_seconds: float,
    processed_seconds: float,
    stats: RunStats,
    nodes: int,
    shards: dict[str, int],
    allowed_failures: int,
    outputs: list[str],
    config: Config,
) -> dict[str, Any]:
    """The summary of a run (``OUT/summary.json``), its keys in the order they are written.

    Args:
        status: ``ok`` or ``over_budget``.
        totals: what the done records of the whole job add up to.
        wall_seconds: the run from start to reduce.
        processed_seconds: audio processed by this run (not by earlier ones).
        stats: the actors and work time of this run.
        nodes: Ray nodes whose actors finished this run's shards (0 in one process).
        shards: total, run, reused and lost shard counts.
        allowed_failures: the failure budget as a count.
        outputs: the files written at the top of OUT.
        config: the config used.
    """
    return {
        "status": status,
        "recordings": {"total": totals.recordings, "done": totals.done, "failed": totals.failed},
        "audio_hours": round(totals.audio_seconds / 3600.0, 6),
        "wall_seconds": round(wall_seconds, 3),
        "work_seconds": round(stats.work_seconds, 3),
        "startup_seconds": {
            "ray": round(stats.ray_seconds, 3),
            "first_actor": round(stats.first_actor_seconds, 3),
            "last_actor": round(stats.last_actor_seconds, 3),
        },
        "process_seconds": round(stats.process_seconds, 3),
        "processed_audio_seconds": round(processed_seconds, 3),
        "real_time_factor": round(wall_seconds / processed_seconds, 6) if processed_seconds > 0 else None,
        "compute_seconds": round(totals.compute_seconds, 3),
        "step_seconds": {k: round(v, 3) for k, v in sorted(totals.step_seconds.items())},
        "num_actors": stats.num_actors,
        "actors_ready": stats.actors_ready,
        "nodes": nodes,
        "shards": shards,
        "failure_budget": {"max_failures": config.job.max_failures, "allowed": allowed_failures},
        "outputs": outputs,
        "config": to_dict(config),
    }
