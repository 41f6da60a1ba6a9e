"""Run shards on a pool of long-lived workers: Ray actors, or this process.

A *worker* is any callable ``worker(shard) -> result`` built once by a
picklable ``factory()`` (loading its models there), then called for shard
after shard. :func:`run_ray` gives each actor one shard at a time and hands
the next one to whichever actor finishes first, so slow recordings do not
hold up the others. Actors are restarted by Ray when their process dies
(``max_restarts``) and the interrupted call is retried (``max_task_retries``);
a shard whose actor is gone for good comes back as an :class:`Outcome` with an
error, never silently dropped.

:func:`run_local` runs the same workers in this process without Ray (tests,
debugging, and ``--local``).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from diar.config import JobConfig
from diar.errors import DiarError
from jobs.shards import Shard

logger = logging.getLogger(__name__)

R = TypeVar("R")

Worker = Callable[[Shard[Any]], R]
WorkerFactory = Callable[[], Callable[[Shard[Any]], Any]]


@dataclass(frozen=True)
class Outcome(Generic[R]):
    """What became of one shard: a result, or the error that ended it.

    ``stage`` is ``"actor"`` when the worker process died for good, ``"shard"`` when the
    worker raised (the error is the worker's own exception, unwrapped from Ray's).
    """

    shard: Shard[Any]
    result: R | None = None
    error: BaseException | None = None
    stage: str = ""


@dataclass(frozen=True)
class ActorSpec:
    """Resources and fault tolerance of each actor."""

    num_cpus: float
    num_gpus: float
    max_restarts: int
    max_task_retries: int

    @property
    def num_threads(self) -> int:
        """Torch threads in the actor: its CPUs, at least one."""
        return max(1, math.floor(self.num_cpus))


def actor_spec(job: JobConfig, cluster: dict[str, float]) -> ActorSpec:
    """Per-actor resources: GPU actors when the cluster has GPUs (unless ``num_gpus`` is 0).

    ``job.num_gpus`` None means one GPU per actor on a GPU cluster and none elsewhere; a
    fraction (e.g. 0.5) packs several actors on one GPU.
    """
    if job.num_cpus <= 0:
        raise ValueError(f"job.num_cpus must be > 0, got {job.num_cpus}")
    has_gpus = cluster.get("GPU", 0.0) > 0
    if job.num_gpus is None:
        num_gpus = 1.0 if has_gpus else 0.0
    elif job.num_gpus < 0:
        raise ValueError(f"job.num_gpus must be >= 0, got {job.num_gpus}")
    else:
        num_gpus = job.num_gpus if has_gpus else 0.0
        if job.num_gpus > 0 and not has_gpus:
            logger.warning("job.num_gpus=%s but the cluster has no GPU: running CPU actors", job.num_gpus)
    return ActorSpec(float(job.num_cpus), float(num_gpus), job.max_restarts, job.max_task_retries)


def num_actors_for(job: JobConfig, spec: ActorSpec, cluster: dict[str, float], num_shards: int) -> int:
    """``job.num_actors``, or as many actors as the cluster's CPUs (and GPUs) hold.

    Never more than the cluster holds now, nor more than one per shard.
    """
    fit = max(1, math.floor(cluster.get("CPU", 1.0) / spec.num_cpus + 1e-9))
    if spec.num_gpus > 0:
        fit = min(fit, max(1, math.floor(cluster.get("GPU", 0.0) / spec.num_gpus + 1e-9)))
    wanted = fit
    if job.num_actors is not None:
        if job.num_actors < 1:
            raise ValueError(f"job.num_actors must be >= 1, got {job.num_actors}")
        wanted = job.num_actors
        if wanted > fit:
            # an actor that cannot be placed would hold its shard forever
            logger.warning("job.num_actors=%d but the cluster holds only %d such actors", wanted, fit)
            wanted = fit
    return max(1, min(wanted, num_shards))


class PlacementError(DiarError):
    """No node of a cluster that cannot grow holds one actor of the requested size."""


def _fits(resources: dict[str, float], spec: ActorSpec) -> bool:
    """Whether a node with ``resources`` (its totals) holds one actor of ``spec``."""
    cpus_ok = resources.get("CPU", 0.0) + 1e-9 >= spec.num_cpus
    return cpus_ok and (spec.num_gpus <= 0 or resources.get("GPU", 0.0) + 1e-9 >= spec.num_gpus)


def cluster_autoscales() -> bool:
    """Whether the connected Ray cluster has an autoscaler that can add nodes.

    A cluster started by hand (``ray start``, or a local ``ray.init``) runs Ray's read-only
    autoscaler, which names every node type after the node itself (``node_<id>``); an
    autoscaling cluster names its node types (``ray.worker.gpu``, a KubeRay worker group, ...)
    or has nodes pending. What ``ray status`` shows, read through Ray's autoscaler API.
    """
    import ray

    try:
        from ray.autoscaler.v2.sdk import get_cluster_status

        status = get_cluster_status(ray.get_runtime_context().gcs_address)
        if status.pending_launches or status.pending_nodes:
            return True
        names = [n.ray_node_type_name for n in [*status.active_nodes, *status.idle_nodes]]
        if any(name and not name.startswith("node_") for name in names):
            return True
    except Exception as e:  # another Ray version: fall back to the legacy status record
        logger.debug("autoscaler v2 status unavailable: %s", e)
    try:
        import json

        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get("__autoscaling_status")
        report = json.loads(raw).get("autoscaler_report") or {} if raw else {}
    except Exception as e:
        logger.debug("autoscaler status unavailable: %s", e)
        return False
    if report.get("pending_nodes") or report.get("pending_launches"):
        return True
    return any(not str(t).startswith("node_") for t in (report.get("node_type_mapping") or {}).values())


def wait_until_placeable(
    spec: ActorSpec,
    timeout: float | None,
    poll_seconds: float = 1.0,
    autoscales: Callable[[], bool] = cluster_autoscales,
) -> None:
    """Return once a node of the cluster can hold one actor of ``spec``.

    On a cluster that cannot grow, an actor larger than every node would wait forever:
    after ``timeout`` seconds (``job.placement_timeout``; nodes may still join by hand)
    that is a :class:`PlacementError`. On an autoscaling cluster it is demand: the
    autoscaler adds a node, so this returns at once. ``timeout`` None: never an error.
    """
    import ray

    deadline = None if timeout is None else time.monotonic() + timeout
    warned = False
    while True:
        nodes = [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]
        if any(_fits(r, spec) for r in nodes):
            return
        if timeout is None or autoscales():
            logger.warning(
                "no node holds an actor of %g CPUs, %g GPUs yet: waiting for the cluster to add one",
                spec.num_cpus,
                spec.num_gpus,
            )
            return
        assert deadline is not None
        left = deadline - time.monotonic()
        if left <= 0:
            largest_cpu = max((r.get("CPU", 0.0) for r in nodes), default=0.0)
            largest_gpu = max((r.get("GPU", 0.0) for r in nodes), default=0.0)
            gpus = f" and {spec.num_gpus:g} GPUs" if spec.num_gpus > 0 else ""
            raise PlacementError(
                f"no node of the Ray cluster can hold one actor of {spec.num_cpus:g} CPUs{gpus} "
                f"(job.num_cpus / job.num_gpus; the largest node has {largest_cpu:g} CPUs, "
                f"{largest_gpu:g} GPUs) and the cluster has no autoscaler; waited "
                f"{timeout:g} s (job.placement_timeout): lower job.num_cpus or add a larger node"
            )
        if not warned:
            logger.warning(
                "no node holds an actor of %g CPUs, %g GPUs; waiting up to %g s for one to join",
                spec.num_cpus,
                spec.num_gpus,
                left,
            )
            warned = True
        time.sleep(min(poll_seconds, left))


def set_num_threads(num_threads: int) -> None:
    """Limit torch (and BLAS via the environment of children) to ``num_threads``."""
    os.environ["OMP_NUM_THREADS"] = str(num_threads)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return
    torch.set_num_threads(num_threads)


def run_local(
    factory: WorkerFactory,
    shards: Sequence[Shard[Any]],
    on_outcome: Callable[[Outcome[Any]], None],
) -> None:
    """Process ``shards`` in order in this process with one worker from ``factory``."""
    if not shards:
        return
    worker = build_worker(factory)
    for shard in shards:
        try:
            result = worker(shard)
        except Exception as e:
            on_outcome(Outcome(shard, error=e, stage="shard"))
        else:
            on_outcome(Outcome(shard, result=result))


#: Exit status of an actor that ended itself because an item ran past its time limit.
TIMEOUT_EXIT_CODE = 124


@contextmanager
def time_limit(seconds: float | None, on_expire: Callable[[float], None]) -> Iterator[None]:
    """End this process if the block runs longer than ``seconds`` (None: no limit).

    For Ray actors: a recording stuck in native code cannot be interrupted from
    Python, but a process can end, and Ray restarts the actor and retries its
    shard. ``on_expire(seconds)`` runs first (it records which item was stuck, so the
    retry skips it); a block that finishes in time and an expiring limit exclude each other.
    """
    if seconds is None:
        yield
        return
    lock = threading.Lock()
    finished = False

    def expire() -> None:
        with lock:
            if finished:
                return
            logger.error("an item ran past its %g s time limit; ending this actor process", seconds)
            on_expire(seconds)
            os._exit(TIMEOUT_EXIT_CODE)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        with lock:
            finished = True
        timer.cancel()


def worker_progress(worker: object) -> tuple[int, float]:
    """A worker's ``progress`` attribute, ``(items, seconds)`` done in its current shard, if it has one."""
    value = getattr(worker, "progress", None)
    if isinstance(value, tuple) and len(value) == 2:
        return int(value[0]), float(value[1])
    return 0, 0.0


class WorkerStartError(DiarError):
    """The workers could not be built (e.g. the model does not load): no shard can be processed."""


def build_worker(factory: WorkerFactory) -> Callable[[Shard[Any]], Any]:
    """``factory()``, with any failure turned into a :class:`WorkerStartError` naming the cause."""
    try:
        return factory()
    except Exception as e:
        raise WorkerStartError(f"cannot build the shard worker: {type(e).__name__}: {e}") from e


class ShardActor:
    """The Ray actor: builds its worker once, then processes the shards it is sent.

    A worker that fails to build does not kill the actor (Ray would restart it in a
    loop): :meth:`start_error` reports it so that the driver stops with the cause.
    """

    def __init__(self, factory: WorkerFactory, num_threads: int) -> None:
        set_num_threads(num_threads)
        self._num_threads = num_threads
        self._worker: Callable[[Shard[Any]], Any] | None = None
        self._start_error: str | None = None
        try:
            self._worker = build_worker(factory)
        except WorkerStartError as e:
            self._start_error = str(e)

    def start_error(self) -> str | None:
        """None once the worker is built, else why it could not be."""
        return self._start_error

    def process(self, shard: Shard[Any]) -> Any:
        if self._worker is None:
            raise WorkerStartError(self._start_error or "worker not built")
        set_num_threads(self._num_threads)  # the call may run on another thread than __init__
        return self._worker(shard)

    def progress(self) -> tuple[int, float]:
        """``(items, seconds)`` done so far in the current shard (runs in the monitor group)."""
        return worker_progress(self._worker)

    def pid(self) -> int:
        return os.getpid()


def run_ray(
    factory: WorkerFactory,
    shards: Sequence[Shard[Any]],
    spec: ActorSpec,
    num_actors: int,
    on_outcome: Callable[[Outcome[Any]], None],
    on_partial: Callable[[int, float], None] | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Process ``shards`` on ``num_actors`` Ray actors (Ray must be initialised).

    Each actor holds at most one shard at a time; outcomes are reported as they arrive.
    ``on_partial(items, seconds)`` is called about every ``poll_seconds`` with what the
    busy actors have done of their current shards (workers with a ``progress`` attribute),
    asked through a separate concurrency group so that it does not wait for the shard.
    """
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError

    if not shards:
        return
    remote: Any = ray.remote
    actor_cls: Any = remote(concurrency_groups={"monitor": 1})(ShardActor).options(
        num_cpus=spec.num_cpus,
        num_gpus=spec.num_gpus,
        max_restarts=spec.max_restarts,
        max_task_retries=spec.max_task_retries,
    )
    num_actors = max(1, min(num_actors, len(shards)))
    actors: list[Any] = [actor_cls.remote(factory, spec.num_threads) for _ in range(num_actors)]
    logger.info(
        "started %d actors (%s CPU, %s GPU each) for %d shards",
        num_actors,
        spec.num_cpus,
        spec.num_gpus,
        len(shards),
    )
    pending: deque[Shard[Any]] = deque(shards)
    inflight: dict[Any, tuple[int, Shard[Any]]] = {}
    alive = set(range(num_actors))

    def submit(index: int) -> None:
        if pending and index in alive:
            shard = pending.popleft()
            inflight[actors[index].process.remote(shard)] = (index, shard)

    partial: dict[int, tuple[str, int, float]] = {}  # actor -> (shard id, items, seconds)
    asked: dict[Any, tuple[int, str]] = {}  # progress request -> (actor, shard id)

    def poll() -> None:
        if asked:
            answered, _ = ray.wait(list(asked), num_returns=len(asked), timeout=0)
            for ref in answered:
                index, shard_id = asked.pop(ref)
                try:
                    items, seconds = ray.get(ref)
                except RayError:  # the actor is restarting or gone: no news
                    continue
                partial[index] = (shard_id, items, seconds)
        busy = {index: shard.shard_id for index, shard in inflight.values()}
        waiting = {index for index, _ in asked.values()}
        for index, shard_id in busy.items():
            if index not in waiting:
                ref = actors[index].progress.options(concurrency_group="monitor").remote()
                asked[ref] = (index, shard_id)
        current = [v for i, v in partial.items() if busy.get(i) == v[0]]
        if on_partial is not None:
            on_partial(sum(v[1] for v in current), sum(v[2] for v in current))

    try:
        for index in range(num_actors):
            submit(index)
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=poll_seconds)
            if not ready:
                poll()
                continue
            for ref in ready:
                index, shard = inflight.pop(ref)
                partial.pop(index, None)
                try:
                    result = ray.get(ref)
                except RayActorError as e:
                    logger.error("actor %d died for good while processing %s: %s", index, shard.shard_id, e)
                    alive.discard(index)
                    on_outcome(Outcome(shard, error=e, stage="actor"))
                except RayTaskError as e:
                    cause = e.cause if isinstance(e.cause, BaseException) else e
                    if isinstance(cause, WorkerStartError):
                        raise WorkerStartError(str(cause)) from None
                    on_outcome(Outcome(shard, error=cause, stage="shard"))
                else:
                    on_outcome(Outcome(shard, result=result))
                submit(index)
            if not alive and pending:
                error = RuntimeError("every actor died (see max_restarts); shard not processed")
                while pending:
                    on_outcome(Outcome(pending.popleft(), error=error, stage="actor"))
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Connect to ``address`` / ``RAY_ADDRESS``, else start a local Ray on all cores; stop what we started."""
    import ray

    if ray.is_initialized():
        yield
        return
    target = address or os.environ.get("RAY_ADDRESS")
    if target:
        ray.init(address=target)
    else:
        # "local": a new instance even when /tmp/ray/ray_current_cluster names a cluster
        # started earlier by `ray start` (plain ray.init() would try to join it)
        ray.init(address="local", include_dashboard=False)
    try:
        yield
    finally:
        ray.shutdown()
