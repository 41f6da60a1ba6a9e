"""Run shards on a pool of long-lived workers: Ray actors, or this process.

A *worker* is any callable ``worker(shard) -> result`` built once by a
picklable ``factory()`` (loading its models there), then called for shard
after shard. :func:`run_ray` asks for all its actors at once and gives a shard
only to an actor that is ready, one shard at a time, the next to whichever
finishes first: slow recordings do not hold up the others, and actors that the
cluster cannot place yet (the demand an autoscaler adds nodes for) hold none.
Actors are restarted by Ray when their process dies (``max_restarts``) and
the interrupted call is retried (``max_task_retries``); a shard whose actor is
gone for good comes back as an :class:`Outcome` with an error, never silently
dropped.

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

from diar.config import ConfigError, JobConfig
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
        raise ConfigError(f"job.num_cpus must be > 0, got {job.num_cpus}")
    has_gpus = cluster.get("GPU", 0.0) > 0
    if job.num_gpus is None:
        num_gpus = 1.0 if has_gpus else 0.0
    elif job.num_gpus < 0:
        raise ConfigError(f"job.num_gpus must be >= 0, got {job.num_gpus}")
    else:
        num_gpus = job.num_gpus if has_gpus else 0.0
        if job.num_gpus > 0 and not has_gpus:
            logger.warning("job.num_gpus=%s but the cluster has no GPU: running CPU actors", job.num_gpus)
    return ActorSpec(float(job.num_cpus), float(num_gpus), job.max_restarts, job.max_task_retries)


def num_actors_for(
    job: JobConfig, spec: ActorSpec, cluster: dict[str, float], num_shards: int, autoscales: bool = False
) -> int:
    """How many actors to ask for: ``job.num_actors``, else one per shard up to ``job.max_actors``.

    On a cluster that cannot grow, never more than its CPUs (and GPUs) hold now: an actor
    that can never start would only wait. On an autoscaling cluster (``autoscales``), what
    the corpus needs: the actors that do not fit yet are pending demand, for which the
    autoscaler adds nodes; they take shards once they are ready. Never more than one per
    shard.
    """
    if job.num_actors is not None:
        if job.num_actors < 1:
            raise ConfigError(f"job.num_actors must be >= 1, got {job.num_actors}")
        wanted = job.num_actors
    else:
        wanted = min(job.max_actors or num_shards, num_shards)
    if not autoscales:
        fit = max(1, math.floor(cluster.get("CPU", 1.0) / spec.num_cpus + 1e-9))
        if spec.num_gpus > 0:
            fit = min(fit, max(1, math.floor(cluster.get("GPU", 0.0) / spec.num_gpus + 1e-9)))
        if job.num_actors is not None and wanted > fit:
            logger.warning("job.num_actors=%d but the cluster holds only %d such actors", wanted, fit)
        wanted = min(wanted, fit)
    return max(1, min(wanted, num_shards))


class PlacementError(DiarError):
    """No node of a cluster that cannot grow holds one actor of the requested size."""


def _fits(resources: dict[str, float], spec: ActorSpec) -> bool:
    """Whether a node with ``resources`` (its totals) holds one actor of ``spec``."""
    cpus_ok = resources.get("CPU", 0.0) + 1e-9 >= spec.num_cpus
    return cpus_ok and (spec.num_gpus <= 0 or resources.get("GPU", 0.0) + 1e-9 >= spec.num_gpus)


def cluster_autoscales(wait_seconds: float = 20.0, poll_seconds: float = 0.5) -> bool:
    """Whether the connected Ray cluster has an autoscaler that can add nodes.

    A cluster started by hand (``ray start``, or a local ``ray.init``) runs Ray's read-only
    autoscaler, which names every node type after the node itself (``node_<id>``); an
    autoscaling cluster names its node types (``ray.worker.gpu``, a KubeRay worker group, ...)
    or has nodes pending. What ``ray status`` shows, read through Ray's autoscaler API.
    The autoscaler of a cluster that has just started reports only after a few seconds:
    until it has, this waits (at most ``wait_seconds``; then the cluster counts as fixed).
    """
    deadline = time.monotonic() + wait_seconds
    while True:
        autoscales = _autoscaler_report()
        if autoscales is not None:
            return autoscales
        if time.monotonic() >= deadline:
            logger.info(
                "no autoscaler report after %g s: taking the cluster as one that cannot grow", wait_seconds
            )
            return False
        time.sleep(poll_seconds)


def _autoscaler_report() -> bool | None:
    """True: the cluster autoscales; False: it cannot grow; None: its autoscaler has not reported yet."""
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
    types = (report.get("node_type_mapping") or {}).values()
    if not types:
        return None  # (v1) the autoscaler has not reported the node types yet
    return any(not str(t).startswith("node_") for t in types)


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


def run_local(
    factory: WorkerFactory,
    shards: Sequence[Shard[Any]],
    on_outcome: Callable[[Outcome[Any]], None],
    on_built: Callable[[], None] | None = None,
) -> None:
    """Process ``shards`` in order in this process with one worker from ``factory``;
    ``on_built()`` is called once the worker is built."""
    if not shards:
        return
    worker = build_worker(factory)
    if on_built is not None:
        on_built()
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
        from diar.models.build import set_torch_threads

        set_torch_threads(num_threads, children=True)
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
        from diar.models.build import set_torch_threads

        set_torch_threads(self._num_threads)  # the call may run on another thread than __init__
        return self._worker(shard)

    def progress(self) -> tuple[int, float]:
        """``(items, seconds)`` done so far in the current shard (runs in the monitor group)."""
        return worker_progress(self._worker)

    def pid(self) -> int:
        return os.getpid()


@dataclass
class PoolStats:
    """What became of the actors of :func:`run_ray`.

    Attributes:
        requested: actors asked for.
        ready: actors that built their worker (loaded their model) and took shards.
        first_ready_seconds: from asking for the actors to the first one ready (the
            one-time start-up: placing it, maybe a new node, the worker process, the model).
        last_ready_seconds: ... to the last one that became ready.
    """

    requested: int = 0
    ready: int = 0
    first_ready_seconds: float = 0.0
    last_ready_seconds: float = 0.0


def run_ray(
    factory: WorkerFactory,
    shards: Sequence[Shard[Any]],
    spec: ActorSpec,
    num_actors: int,
    on_outcome: Callable[[Outcome[Any]], None],
    on_partial: Callable[[int, float], None] | None = None,
    poll_seconds: float = 1.0,
    note_seconds: float = 60.0,
) -> PoolStats:
    """Process ``shards`` on up to ``num_actors`` Ray actors (Ray must be initialised).

    All the actors are asked for at once, but a shard goes only to an actor that is ready
    (its worker built), one shard at a time, the next to whichever finishes first. Actors
    that the cluster cannot place yet hold no shard: on an autoscaling cluster they are the
    demand for which nodes are added, and the ready actors work meanwhile. Once no shard is
    left to hand out, the actors still starting and those without a shard are ended, so
    that their nodes can be released. Outcomes are reported as they arrive.
    ``on_partial(items, seconds)`` is called about every ``poll_seconds`` with what the
    busy actors have done of their current shards (workers with a ``progress`` attribute),
    asked through a separate concurrency group so that it does not wait for the shard.
    While no actor is ready, a line is logged every ``note_seconds``.

    Raises:
        WorkerStartError: an actor could not build its worker (the job cannot run).
    """
    import ray
    from ray.exceptions import RayActorError, RayError, RayTaskError

    stats = PoolStats()
    if not shards:
        return stats
    remote: Any = ray.remote
    actor_cls: Any = remote(concurrency_groups={"monitor": 1})(ShardActor).options(
        num_cpus=spec.num_cpus,
        num_gpus=spec.num_gpus,
        max_restarts=spec.max_restarts,
        max_task_retries=spec.max_task_retries,
    )
    num_actors = max(1, min(num_actors, len(shards)))
    t_start = time.perf_counter()
    actors: list[Any] = [actor_cls.remote(factory, spec.num_threads) for _ in range(num_actors)]
    stats.requested = num_actors
    logger.info(
        "asked for %d actors (%s CPU, %s GPU each) for %d shards",
        num_actors,
        spec.num_cpus,
        spec.num_gpus,
        len(shards),
    )
    pending: deque[Shard[Any]] = deque(shards)
    inflight: dict[Any, tuple[int, Shard[Any]]] = {}  # shard call -> (actor, shard)
    starting: dict[Any, int] = {actors[i].start_error.remote(): i for i in range(num_actors)}
    ended: set[int] = set()

    def end(index: int) -> None:
        """End actor ``index`` (no restart): it has nothing to do, or is of no more use."""
        if index not in ended:
            ended.add(index)
            ray.kill(actors[index], no_restart=True)

    def submit(index: int) -> None:
        """Give ready actor ``index`` the next shard, or end it when none is left."""
        if pending:
            shard = pending.popleft()
            inflight[actors[index].process.remote(shard)] = (index, shard)
        else:
            end(index)

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

    def started(ref: Any) -> None:
        """Actor ``starting[ref]`` answered whether its worker was built: it takes a shard."""
        index = starting.pop(ref)
        try:
            error = ray.get(ref)
        except RayActorError as e:
            logger.error("actor %d died for good while starting: %s", index, e)
            end(index)
            return
        if error is not None:
            raise WorkerStartError(error)
        stats.last_ready_seconds = time.perf_counter() - t_start
        if stats.ready == 0:
            stats.first_ready_seconds = stats.last_ready_seconds
        stats.ready += 1
        logger.info("actor %d is ready (%d of %d)", index, stats.ready, num_actors)
        submit(index)

    def finished(ref: Any) -> None:
        """Actor ``inflight[ref]`` ended its shard (or died): report it, then its next shard."""
        index, shard = inflight.pop(ref)
        partial.pop(index, None)
        try:
            result = ray.get(ref)
        except RayActorError as e:
            logger.error("actor %d died for good while processing %s: %s", index, shard.shard_id, e)
            end(index)
            on_outcome(Outcome(shard, error=e, stage="actor"))
            return
        except RayTaskError as e:
            cause = e.cause if isinstance(e.cause, BaseException) else e
            if isinstance(cause, WorkerStartError):
                raise WorkerStartError(str(cause)) from None
            on_outcome(Outcome(shard, error=cause, stage="shard"))
        else:
            on_outcome(Outcome(shard, result=result))
        submit(index)

    noted = time.perf_counter()
    try:
        while inflight or (pending and starting):
            ready, _ = ray.wait([*inflight, *starting], num_returns=1, timeout=poll_seconds)
            if not ready:
                poll()
                if not inflight and time.perf_counter() - noted >= note_seconds:
                    noted = time.perf_counter()
                    logger.warning(
                        "no actor ready after %.0f s: %d waiting for the cluster to place them "
                        "(`ray status` shows the pending demand)",
                        noted - t_start,
                        len(starting),
                    )
                continue
            for ref in ready:
                if ref in starting:
                    started(ref)
                else:
                    finished(ref)
            if not pending:  # nothing left for the actors still starting: withdraw the demand
                for index in starting.values():
                    end(index)
                starting.clear()
        if pending:
            error = RuntimeError("every actor died (see max_restarts); shard not processed")
            while pending:
                on_outcome(Outcome(pending.popleft(), error=error, stage="actor"))
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
    return stats


def ray_node_id() -> str | None:
    """The id of the Ray node this process runs on (hex), None outside Ray."""
    import ray

    if not ray.is_initialized():
        return None
    return str(ray.get_runtime_context().get_node_id())


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
