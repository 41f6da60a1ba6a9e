"""The stage split of the diarization job (``job.stages``): CPU workers and GPU actors, on Ray Data.

On a cluster with GPUs a recording of mode ``frame`` goes through five stages, each a
Ray Data ``map_batches`` operator; Ray Data streams the recordings through them with
back-pressure, so the model actors are fed while CPU workers prepare the next ones::

    read      CPU tasks     decode and resample the audio            (diar.audio.load_audio)
    segment   model actors  segmentation-3.0 over the windows of     (FrameDiarizer.segment)
                            ``job.model_batch`` recordings at once
    features  CPU actors    each local speaker's speech and fbank    (FrameDiarizer.piece_inputs)
    embed     model actors  CAM++ forward (on a GPU: inputs of       (FrameDiarizer.embed_inputs)
                            ``job.model_batch`` recordings at once)
    finish    CPU actors    clustering, rendering, post-processing   (FrameDiarizer.finish)

The steps are the ones :meth:`~diar.pipelines.frame.FrameDiarizer.diarize` runs in
sequence in the single-actor path, so a recording's turns are the same both ways. Each
stage's workers load only the model their step needs: segment the frame model, features and
embed the embedder (its checkpoint defines the features), finish none.
The driver collects each shard's recordings as they come out and writes the shard's
files and its done record with the single-actor path's code
(:class:`~jobs.worker.ShardFiles`): shard files, corpus files, failure rows and resume
(by shard) stay the same. A recording that fails in a stage becomes a failure row
(``read``, or ``diarize`` for the others, as in the single-actor path) and the others
go on. Ray Data restarts a stage's actor whose process died (``job.max_restarts``) and
retries its batch (``job.max_task_retries``). Each batch keeps a crash journal in OUT, as a
shard does in the single-actor path (:func:`run_journaled`): a recording that kills its
stage's process twice, or runs past ``job.recording_timeout`` in a stage, is a failure row
(stage ``actor``) and the others go on. When restarts or retries run out all the same,
the shards not yet written are lost (stage ``actor``), as when the single path's actor is
gone for good. The progress bar counts recordings as they come out of the last stage.

Rows between stages are one recording each: its state, a Python object (numpy arrays inside)
that Ray Data serializes between stages.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from diar.config import Config, JobConfig
from diar.failures import Failure
from jobs.actors import Outcome, cluster_autoscales, ray_node_id, ray_session, time_limit
from jobs.errors import JobError
from jobs.plan import Recording
from jobs.records import CrashJournal, ShardRecord
from jobs.runner import RunStats
from jobs.shards import Shard
from jobs.storage import OutDir
from jobs.worker import DiarizerFactory, ShardFiles, check_reco_id

if TYPE_CHECKING:  # the pipelines import torch: only the workers need them
    from diar.pipelines.base import Diarization
    from diar.pipelines.frame import EmbedInputs, FrameDiarizer
    from diar.stitching import WindowOutputs

logger = logging.getLogger(__name__)

#: The stages, in order; ``segment`` and ``embed`` run the models.
STAGES = ("read", "segment", "features", "embed", "finish")
MODEL_STAGES = ("segment", "embed")


@dataclass
class RecordingState:
    """One recording on its way through the stages (a row of the dataset).

    Attributes:
        shard_id: the shard it belongs to.
        rec: the recording.
        waveform: shape (N,) float32 at the diarizer's rate, from ``read`` to ``features``.
        num_samples: N.
        outputs: the frame model's windows, from ``segment`` to ``finish``.
        batches: the embedder's inputs of its local speakers (``features`` to ``embed``; their
            ``inputs`` are dropped after ``embed``).
        vectors: the embeddings of each batch (``embed`` to ``finish``), shape (n, D) each.
        diarization: the result of ``finish``.
        failure: the failure row, once a stage failed; later stages pass it on.
        steps: pipeline step -> seconds.
        gpus: stage -> the GPU ids its worker held (``[]`` on a CPU worker).
        nodes: stage -> the Ray node its worker ran on.
    """

    shard_id: str
    rec: Recording
    waveform: np.ndarray | None = None
    num_samples: int = 0
    outputs: WindowOutputs | None = None
    batches: list[EmbedInputs] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    diarization: Diarization | None = None
    failure: Failure | None = None
    steps: dict[str, float] = field(default_factory=dict)
    gpus: dict[str, list[str]] = field(default_factory=dict)
    nodes: dict[str, str | None] = field(default_factory=dict)

    def hook(self, step: str, seconds: float) -> None:
        self.steps[step] = self.steps.get(step, 0.0) + seconds


def _states(batch: dict[str, Any]) -> list[RecordingState]:
    return list(batch["state"])


def _rows(states: Sequence[RecordingState]) -> dict[str, np.ndarray]:
    """A batch of rows: one Python object each (Ray Data serializes them between stages)."""
    column = np.empty(len(states), dtype=object)
    column[:] = list(states)
    return {"state": column}


def _where(states: Sequence[RecordingState], stage: str) -> None:
    """Record the node and GPUs of the worker that ran ``stage``."""
    import ray

    gpus = [str(g) for g in ray.get_runtime_context().get_accelerator_ids().get("GPU", [])]
    node = ray_node_id()
    for s in states:
        s.gpus[stage] = gpus
        s.nodes[stage] = node


#: The journal's item for a batch's recordings run together; after a crash or a time-out
#: during it, the retry runs them one at a time (so that the next crash names the recording).
TOGETHER = "*together*"


def journal_key(stage: str, states: Sequence[RecordingState]) -> str:
    """The crash journal of a stage's batch: the same for every retry of that batch."""
    ids = sorted(f"{s.shard_id}/{s.rec.reco_id}" for s in states)
    digest = hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]
    return f"{min(s.shard_id for s in states)}.{stage}-{digest}"


def run_journaled(
    stage: str,
    out: OutDir,
    states: Sequence[RecordingState],
    run: Callable[[list[RecordingState]], None],
    timeout: float | None,
) -> None:
    """Run ``run`` on a stage's batch of recordings as the single-actor worker runs a shard's.

    The batch keeps a crash journal in OUT (:class:`~jobs.records.CrashJournal`): Ray restarts
    the stage's actor (or task) whose process died and retries the batch. After a crash or a
    time-out during the batch run together, the retry runs its recordings one at a time; a
    recording in flight during two crashes, or past ``job.recording_timeout`` (per recording,
    in each stage; the process ends itself), is a failure row (stage ``actor``) and the others
    go on. A recording whose step raises is a failure row of ``read`` (stage read) or
    ``diarize`` (the others).
    """
    live = [s for s in states if s.failure is None]
    if not live:
        return
    journal = CrashJournal(out, journal_key(stage, live))
    for s in live:
        if journal.is_poison(s.rec.reco_id):
            s.failure = journal.failure(s.rec.reco_id)
    live = [s for s in live if s.failure is None]
    if len(live) > 1 and not journal.charged(TOGETHER):
        journal.start(TOGETHER)
        try:
            with time_limit(None if timeout is None else timeout * len(live), journal.time_out):
                run(live)
            live = []
        except Exception:  # find the recordings that fail: one at a time
            pass
    for s in live:
        journal.start(s.rec.reco_id)
        try:
            with time_limit(timeout, journal.time_out):
                run([s])
        except Exception as e:
            s.failure = Failure.from_exception(
                s.rec.reco_id, "read" if stage == "read" else "diarize", e, s.rec.source
            )
    journal.start(None)
    journal.close()


def read_stage(
    batch: dict[str, Any], sample_rate: int, allow_pipes: bool, out_url: str, timeout: float | None
) -> dict[str, np.ndarray]:
    """CPU stage ``read``: decode each recording (in memory, at ``sample_rate``)."""
    from diar.audio import load_audio
    from diar.pipelines.base import timed

    def read(states: list[RecordingState]) -> None:
        for s in states:
            with timed(s.hook, "read"):
                s.waveform = load_audio(
                    s.rec.source, sample_rate, reco_id=s.rec.reco_id, allow_pipes=allow_pipes
                )
            s.num_samples = len(s.waveform)

    states = _states(batch)
    _where(states, "read")
    run_journaled("read", OutDir(out_url), states, read, timeout)
    return _rows(states)


class _Stage:
    """A stage on a pool of actors: builds the diarizer once, runs its step per batch of rows.

    Args:
        config: the job's config; the CPU stages' models are loaded on the CPU.
        threads: torch threads of the actor.
        out_url: OUT, where the batches' crash journals go (:func:`run_journaled`).
        factory: builds the diarizer (a :class:`~diar.pipelines.frame.FrameDiarizer`, with
            both models); default: a FrameDiarizer with only the models of the stage's step
            (:attr:`models`).
    """

    name = ""
    on_model = False
    #: the diarizer's models the stage's step needs (``FrameDiarizer(load=...)``)
    models: tuple[str, ...] = ()

    def __init__(
        self, config: Config, threads: int, out_url: str, factory: DiarizerFactory | None = None
    ) -> None:
        from diar.pipelines.frame import FrameDiarizer

        self.out = OutDir(out_url)
        self.timeout = config.job.recording_timeout

        config = replace(config, num_threads=threads)
        if not self.on_model:
            config = replace(
                config,
                frame_model=replace(config.frame_model, device="cpu"),
                embedding=replace(config.embedding, device="cpu"),
            )
        diarizer = factory(config) if factory is not None else FrameDiarizer(config, load=self.models)
        if diarizer.sample_rate != config.sample_rate:  # the read stage decodes at config.sample_rate
            raise JobError(
                f"the stage split reads audio at sample_rate {config.sample_rate}, "
                f"but the frame model takes {diarizer.sample_rate} Hz; set sample_rate={diarizer.sample_rate}"
            )
        for step in ("segment", "piece_inputs", "embed_inputs", "finish"):
            if not callable(getattr(diarizer, step, None)):
                raise JobError(
                    f"the stage split needs mode frame's steps; {type(diarizer).__name__} lacks {step}"
                )
        self.diarizer: FrameDiarizer = diarizer  # type: ignore[assignment]

    def __call__(self, batch: dict[str, Any]) -> dict[str, np.ndarray]:
        states = _states(batch)
        _where(states, self.name)
        run_journaled(self.name, self.out, states, self.run, self.timeout)
        return _rows(states)

    def run(self, states: list[RecordingState]) -> None:
        raise NotImplementedError


def _per_recording(run: Callable[[RecordingState], None], states: list[RecordingState]) -> None:
    for s in states:
        try:
            run(s)
        except Exception as e:
            s.failure = Failure.from_exception(s.rec.reco_id, "diarize", e, s.rec.source)


class SegmentStage(_Stage):
    """Model stage ``segment``: the frame model over the windows of all the batch's recordings."""

    name = "segment"
    models = ("frame_model",)
    on_model = True

    def run(self, states: list[RecordingState]) -> None:
        t0 = time.perf_counter()
        outputs = self.diarizer.segment([s.waveform for s in states if s.waveform is not None])
        share = (time.perf_counter() - t0) / len(states)
        for s, o in zip(states, outputs, strict=True):
            s.outputs = o
            s.hook("segmentation", share)


class FeaturesStage(_Stage):
    """CPU stage ``features``: each local speaker's speech, as the embedder's inputs (fbank)."""

    name = "features"
    models = ("embedder",)

    def run(self, states: list[RecordingState]) -> None:
        def one(s: RecordingState) -> None:
            assert s.outputs is not None and s.waveform is not None
            s.batches = list(self.diarizer.piece_inputs(s.outputs, s.waveform, s.hook))
            s.waveform = None  # the rest needs only its length

        _per_recording(one, states)


class EmbedStage(_Stage):
    """Model stage ``embed``: the embedder's forward passes.

    On a GPU, the inputs of all the batch's recordings share forward passes (those of equal
    shape, ``embedding.batch_size`` at a time). On the CPU each recording's inputs are
    embedded as in the single-actor path: CAM++'s output on CPU changes in the last bits
    with the number of rows in a forward pass, and the split gives the single path's bytes.
    """

    name = "embed"
    models = ("embedder",)
    on_model = True

    def run(self, states: list[RecordingState]) -> None:
        if len(states) > 1 and self.diarizer.embed_device != "cpu":
            self.run_together(states)
            return

        def one(s: RecordingState) -> None:
            s.vectors = [self.diarizer.embed_inputs(b.inputs, s.hook) for b in s.batches]
            for b in s.batches:
                b.inputs = []

        _per_recording(one, states)

    def run_together(self, states: list[RecordingState]) -> None:
        """One :meth:`~diar.pipelines.frame.FrameDiarizer.embed_inputs` call for the inputs of
        every recording of the batch; each batch of inputs gets its rows back, in order."""
        inputs = [x for s in states for b in s.batches for x in b.inputs]
        t0 = time.perf_counter()
        vectors = self.diarizer.embed_inputs(inputs)  # shape: (len(inputs), D)
        share = (time.perf_counter() - t0) / len(states)
        at = 0
        for s in states:
            s.vectors = []
            for b in s.batches:
                n = len(b.inputs)
                s.vectors.append(vectors[at : at + n] if n else np.zeros((0, 0), dtype=np.float32))
                at += n
                b.inputs = []
            s.hook("embeddings", share)


class FinishStage(_Stage):
    """CPU stage ``finish``: clustering, rendering and post-processing."""

    name = "finish"

    def run(self, states: list[RecordingState]) -> None:
        from diar.pipelines.base import RecordingInput

        def one(s: RecordingState) -> None:
            assert s.outputs is not None
            rec = s.rec
            # the waveform is not read by finish: only its length
            recording = RecordingInput(
                rec.reco_id,
                np.zeros(0, np.float32),
                rec.num_speakers,
                rec.profiles,
                rec.profile_names,
                rec.enrollment,
            )
            embedded = list(zip(s.batches, s.vectors, strict=True))
            s.diarization = self.diarizer.finish(recording, s.outputs, s.num_samples, embedded, s.hook)
            check_reco_id(s.diarization, rec)
            s.outputs, s.batches, s.vectors = None, [], []

        _per_recording(one, states)


def use_split(config: Config, cluster: dict[str, float]) -> bool:
    """Whether the job runs the stage split on a cluster with ``cluster`` resources."""
    stages = config.job.stages
    # enrollment audio is embedded with both models, which no stage of the split holds
    enrolls = config.mode == "frame" and bool(config.profile.enroll)
    if stages == "split":
        if config.mode != "frame":
            raise JobError(
                f"job.stages=split runs mode frame only, not mode {config.mode}; set job.stages=single"
            )
        if enrolls:
            raise JobError(
                "job.stages=split takes enrolled speakers as profiles: make them first (diar profiles "
                "or python -m jobs.profiles) and give --profile-scp instead of profile.enroll, "
                "or set job.stages=single"
            )
        return True
    if stages == "auto" and enrolls and cluster.get("GPU", 0.0) > 0:
        logger.warning("profile.enroll: enrollment audio is embedded on the single path, not the stage split")
        return False
    return stages == "auto" and config.mode == "frame" and cluster.get("GPU", 0.0) > 0


def split_resources(job: JobConfig, cluster: dict[str, float]) -> tuple[float, float, float]:
    """CPUs per CPU-stage worker, CPUs and GPUs per model actor: the config's, fitted to a
    cluster that cannot grow.

    Every stage needs one worker at a time (the read stage, two CPU actors, two model
    actors): on a cluster that cannot grow and holds fewer CPUs than those ask for, each asks
    for its share instead (else the stages would wait for each other forever). The model
    actors ask for GPUs on a cluster that has them, or that autoscales (``job.stages=split``).
    """
    has_gpus = cluster.get("GPU", 0.0) > 0
    stage_cpus, model_cpus = job.stage_cpus, job.model_cpus
    need = 3 * stage_cpus + 2 * model_cpus
    cpus = cluster.get("CPU", 0.0)
    autoscales: bool | None = None
    if need > cpus + 1e-9 or (not has_gpus and job.model_gpus > 0):
        autoscales = cluster_autoscales()
    if need > cpus + 1e-9 and not autoscales:
        share = cpus / need
        logger.warning(
            "the stage split asks for %g CPUs for one worker per stage, the cluster holds %g: "
            "each asks for %.0f %% of its CPUs",
            need,
            cpus,
            100 * share,
        )
        stage_cpus, model_cpus = stage_cpus * share, model_cpus * share
    model_gpus = job.model_gpus if has_gpus or autoscales else 0.0
    if job.model_gpus > 0 and not model_gpus:
        logger.warning("the cluster has no GPUs: the stage split's model stages run on CPU actors")
    return stage_cpus, model_cpus, model_gpus


def run_split(
    config: Config,
    out: OutDir,
    shards: Sequence[Shard[Recording]],
    on_outcome: Callable[[Outcome[ShardRecord]], None],
    diarizer_factory: DiarizerFactory | None = None,
    on_partial: Callable[[int, float], None] | None = None,
) -> RunStats:
    """Run ``shards`` through the stage split on the connected Ray cluster; report each shard's
    outcome (its done record, written) to ``on_outcome`` as its last recording comes out, and
    ``(recordings, seconds)`` out of the shards not yet complete to ``on_partial``."""
    import ray
    from ray.data import ActorPoolStrategy

    job = config.job
    stats = RunStats(num_actors=2 * job.model_actors + 2 * job.stage_workers)
    t_work = time.perf_counter()
    items = [{"state": RecordingState(s.shard_id, rec)} for s in shards for rec in s.items]
    resources = split_resources(job, {k: float(v) for k, v in ray.cluster_resources().items()})
    stage_cpus, model_cpus, model_gpus = resources
    cpu_threads = max(1, int(job.stage_cpus))
    model_threads = max(1, int(job.model_cpus))
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.preserve_order = False
    ds: ray.data.Dataset = ray.data.from_items(items, override_num_blocks=max(1, len(items)))
    ds = ds.map_batches(
        functools.partial(
            read_stage,
            sample_rate=int(config.sample_rate),
            allow_pipes=config.audio.allow_pipes,
            out_url=out.url,
            timeout=job.recording_timeout,
        ),
        batch_size=1,
        num_cpus=stage_cpus,
        max_retries=job.max_task_retries,
    )
    stages: list[tuple[type[_Stage], bool, int]] = [
        (SegmentStage, True, job.model_batch),
        (FeaturesStage, False, 1),
        (EmbedStage, True, job.model_batch),
        (FinishStage, False, 1),
    ]
    for cls, on_model, batch_size in stages:
        ds = ds.map_batches(
            cls,
            fn_constructor_args=(
                config,
                model_threads if on_model else cpu_threads,
                out.url,
                diarizer_factory,
            ),
            batch_size=batch_size,
            compute=ActorPoolStrategy(
                min_size=1, max_size=job.model_actors if on_model else job.stage_workers
            ),
            num_cpus=model_cpus if on_model else stage_cpus,
            num_gpus=model_gpus if on_model else 0,
            # Ray Data's default restarts and retries forever (passed on to the actors)
            max_restarts=job.max_restarts,
            max_task_retries=job.max_task_retries,
        )
    by_shard = {s.shard_id: s for s in shards}
    pending: dict[str, dict[str, RecordingState]] = {s.shard_id: {} for s in shards}
    # recordings out of the shards not yet complete, and their audio seconds (progress bar)
    partial_count, partial_seconds = 0, 0.0
    try:
        for row in ds.iter_rows():
            state: RecordingState = row["state"]
            got = pending[state.shard_id]
            got[state.rec.reco_id] = state
            shard = by_shard[state.shard_id]
            partial_count += 1
            partial_seconds += state.rec.seconds or 0.0
            if len(got) == len(shard.items):
                del pending[shard.shard_id]
                partial_count -= len(got)
                partial_seconds -= sum(st.rec.seconds or 0.0 for st in got.values())
                # the stages' actors start while the first recordings are read: their start-up is
                # not told apart (first_actor_seconds stays 0; process_seconds is the whole work)
                stats.actors_ready = stats.num_actors
                try:
                    record = _write_shard(config, out, shard, got)
                except JobError as e:  # its files cannot be written: its recordings fail (write)
                    on_outcome(Outcome(shard, error=e, stage="shard"))
                else:
                    on_outcome(Outcome(shard, result=record))
            if on_partial is not None:
                on_partial(partial_count, max(0.0, partial_seconds))
    except Exception as e:  # the dataset failed: its actors are gone for good
        logger.error("the stage split stopped: %s", e)
        for shard_id in list(pending):
            on_outcome(Outcome(by_shard[shard_id], error=e, stage="actor"))
        pending.clear()
    stats.work_seconds = time.perf_counter() - t_work
    return stats


def _write_shard(
    config: Config, out: OutDir, shard: Shard[Recording], got: dict[str, RecordingState]
) -> ShardRecord:
    """The shard's files and done record, from its recordings' states (in the shard's order).

    Its ``compute_seconds`` are the seconds its recordings spent in the stages' steps (they
    run in several processes, with other shards' recordings in between).
    """
    files = ShardFiles(config, out, shard)
    stage_gpus: dict[str, list[str]] = {}
    for rec in shard.items:
        state = got[rec.reco_id]
        for step, spent in state.steps.items():
            files.add_seconds(step, spent)
        for stage, gpus in state.gpus.items():
            stage_gpus.setdefault(stage, [])
            stage_gpus[stage] = sorted(set(stage_gpus[stage]) | set(gpus))
        if state.failure is not None:
            files.fail(state.failure)
        elif state.diarization is not None:
            files.add(rec, state.num_samples / int(config.sample_rate), state.diarization)
        else:  # cannot happen: every stage sets one or the other
            files.fail(Failure(rec.reco_id, "diarize", "RuntimeError", "no result from the stage split"))
    files.record.stage_gpus = stage_gpus
    finish_node = next((got[r.reco_id].nodes.get("finish") for r in shard.items), None)
    seconds = sum(sum(got[r.reco_id].steps.values()) for r in shard.items)
    return files.write(seconds, finish_node)


def run_diarize_shards(
    config: Config,
    out: OutDir,
    shards: Sequence[Shard[Recording]],
    on_outcome: Callable[[Outcome[ShardRecord]], None],
    single: Callable[[], RunStats],
    address: str | None,
    local: bool,
    diarizer_factory: DiarizerFactory | None = None,
    on_partial: Callable[[int, float], None] | None = None,
) -> RunStats:
    """Run the job's shards: the stage split where ``job.stages`` asks for it on this cluster,
    else ``single()`` (the single-actor path, :func:`~jobs.runner.run_shards`)."""
    if local or config.job.stages == "single" or not shards:
        if local and config.job.stages == "split":
            logger.warning("job.stages=split runs on Ray only; --local runs the single path")
        return single()
    import ray

    t_ray = time.perf_counter()
    with ray_session(address):
        ray_seconds = time.perf_counter() - t_ray
        cluster = {k: float(v) for k, v in ray.cluster_resources().items()}
        if not use_split(config, cluster):
            stats = single()
        else:
            logger.info("stage split: %d recordings", sum(len(s.items) for s in shards))
            stats = run_split(config, out, shards, on_outcome, diarizer_factory, on_partial)
        stats.ray_seconds = ray_seconds
    return stats
