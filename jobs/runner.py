"""Run a job's shards on Ray actors or in this process: the one launch path of every job.

A job hands :func:`run_shards` its shards, a worker builder and a callback; the
runner connects to Ray (or starts a local one), sizes the actors from
``job.num_cpus`` / ``job.num_gpus``, checks that a node can hold one (on a
cluster that cannot grow), decides how many to ask for (on an autoscaling
cluster: what the corpus needs, ``job.max_actors``), and reports each shard's
:class:`~jobs.actors.Outcome` as it arrives. ``local=True`` runs the same worker
in this process, without Ray.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from diar.config import JobConfig
from jobs.actors import (
    ActorSpec,
    Outcome,
    actor_spec,
    cluster_autoscales,
    num_actors_for,
    ray_session,
    run_local,
    run_ray,
    wait_until_placeable,
)
from jobs.shards import Shard

logger = logging.getLogger(__name__)

#: Builds a job's shard worker: ``worker(actor)`` with the actor's resources in a Ray actor,
#: ``worker(None)`` in this process. Picklable (a class or a ``functools.partial`` of one).
WorkerBuilder = Callable[[ActorSpec | None], Callable[[Shard[Any]], Any]]


@dataclass
class RunStats:
    """How the shards were run.

    Attributes:
        num_actors: actors asked for (1 in this process, 0 when there was nothing to run).
        actors_ready: actors that built their worker and took shards.
        ray_seconds: connecting to Ray, or starting a local one (one-time start-up).
        first_actor_seconds: from asking for the actors to the first one ready: placing it
            (an autoscaler may add a node first), its process, loading the model (one-time
            start-up; in this process: building the worker).
        last_actor_seconds: ... to the last actor that became ready.
        work_seconds: from Ray being up (or from the start, in this process) to the last
            shard's outcome: actors starting and the shards.
    """

    num_actors: int = 0
    actors_ready: int = 0
    ray_seconds: float = 0.0
    first_actor_seconds: float = 0.0
    last_actor_seconds: float = 0.0
    work_seconds: float = 0.0

    @property
    def process_seconds(self) -> float:
        """From the first actor ready to the last outcome: the work after the one-time start-up."""
        return max(0.0, self.work_seconds - self.first_actor_seconds)


def run_shards(
    worker: WorkerBuilder,
    shards: Sequence[Shard[Any]],
    job: JobConfig,
    on_outcome: Callable[[Outcome[Any]], None],
    *,
    address: str | None = None,
    local: bool = False,
    on_partial: Callable[[int, float], None] | None = None,
) -> RunStats:
    """Process ``shards`` with workers built by ``worker``; report each outcome to ``on_outcome``.

    Args:
        worker: builds the worker, once per actor (see :data:`WorkerBuilder`).
        shards: the shards still to do.
        job: actors' resources and count, fault tolerance, placement timeout.
        on_outcome: called with each shard's result or error, as it arrives.
        address: Ray cluster address (default ``RAY_ADDRESS``, else a new local Ray).
        local: run in this process without Ray.
        on_partial: ``(items, seconds)`` done so far of the shards in flight (progress bar).

    Raises:
        PlacementError: on a cluster that cannot grow, no node holds one actor.
        WorkerStartError: the worker cannot be built (e.g. the model does not load).
    """
    stats = RunStats()
    if not shards:
        return stats
    if local:
        t_work = time.perf_counter()
        stats.num_actors = stats.actors_ready = 1

        def built() -> None:
            stats.first_actor_seconds = stats.last_actor_seconds = time.perf_counter() - t_work

        run_local(functools.partial(worker, None), shards, on_outcome, on_built=built)
        stats.work_seconds = time.perf_counter() - t_work
        return stats
    import ray

    t_ray = time.perf_counter()
    with ray_session(address):
        t_work = time.perf_counter()
        stats.ray_seconds = t_work - t_ray
        cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
        spec = actor_spec(job, cluster)
        wait_until_placeable(spec, job.placement_timeout)
        autoscales = cluster_autoscales()
        stats.num_actors = num_actors_for(job, spec, cluster, len(shards), autoscales=autoscales)
        logger.info(
            "the cluster %s: asking for %d actors",
            "autoscales" if autoscales else "cannot grow",
            stats.num_actors,
        )
        pool = run_ray(
            functools.partial(worker, spec), shards, spec, stats.num_actors, on_outcome, on_partial
        )
        stats.actors_ready = pool.ready
        stats.first_actor_seconds = pool.first_ready_seconds
        stats.last_actor_seconds = pool.last_ready_seconds
        stats.work_seconds = time.perf_counter() - t_work
    return stats
