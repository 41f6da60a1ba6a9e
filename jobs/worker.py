"""The diarization job's shard worker: built once per actor (it loads the model), called per shard."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from diar.config import Config
from diar.failures import Failure
from diar.formats.parquet import model_name
from diar.formats.writers import OutputFormat, corpus_formats
from diar.types import Annotation
from jobs.actors import ActorSpec, ray_node_id, time_limit
from jobs.errors import JobError
from jobs.plan import Recording
from jobs.records import CrashJournal, ShardRecord, done_name
from jobs.shards import Shard
from jobs.storage import OutDir

if TYPE_CHECKING:  # the pipelines import torch: only the workers need them
    from diar.audio import Waveform
    from diar.pipelines.base import Diarization, Diarizer, StepHook


from jobs.traces import TraceCollector, write_shard_traces

logger = logging.getLogger(__name__)

DiarizerFactory = Callable[[Config], "Diarizer"]

#: Formats each shard is written in as well (when ``job.out_formats`` asks for them): RTTM and the
#: exclusive turns' RTTM, which the reduce step merges, and the table; the others are made for
#: the corpus only.
SHARD_FORMATS = ("rttm", "parquet", "exclusive")


def peak_rss_mib() -> float | None:
    """Peak resident memory of this process since it started (MiB); None where unknown."""
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(peak / (1024.0 * 1024.0 if sys.platform == "darwin" else 1024.0), 1)


class DiarizeWorker:
    """Diarizes the recordings of one shard after another; built once per actor.

    Loads the model in ``__init__`` (``build_diarizer(config)``); each call reads the audio
    of a shard's recordings itself, diarizes them, and writes the shard's files, the done
    record last. A recording that fails (unreadable audio, model error) becomes a
    failure row and the others go on; so does one during which the actor process died
    twice (see :class:`~jobs.records.CrashJournal`), and, in a Ray actor (``actor`` given),
    one that runs past ``job.recording_timeout``: the actor ends itself, and Ray's
    restart skips it.

    Args:
        config: the job's config; in an actor, ``num_threads`` becomes the actor's CPUs.
        out_url: OUT, where the shard files go.
        diarizer_factory: builds the diarizer (default ``build_diarizer``).
        actor: the resources of the Ray actor this worker lives in; None in the driver's
            process (``--local``).
    """

    def __init__(
        self,
        config: Config,
        out_url: str,
        diarizer_factory: DiarizerFactory | None = None,
        actor: ActorSpec | None = None,
    ) -> None:
        from diar.pipelines import build_diarizer

        if actor is not None:
            config = replace(config, num_threads=actor.num_threads)
        elif config.job.recording_timeout is not None:
            logger.warning("job.recording_timeout is enforced on Ray actors only, not with --local")
        self.config = config
        self.out = OutDir(out_url)
        self.diarizer = (diarizer_factory or build_diarizer)(config)
        #: (recordings, audio seconds) done in the current shard, read by the progress bar
        self.progress: tuple[int, float] = (0, 0.0)
        #: seconds per recording before the process ends itself (only a restartable actor may)
        self.time_limit = config.job.recording_timeout if actor is not None else None
        self.in_actor = actor is not None

    def __call__(self, shard: Shard[Recording]) -> ShardRecord:
        t0 = time.perf_counter()
        files = ShardFiles(self.config, self.out, shard)

        def hook(step: str, seconds: float) -> None:
            files.add_seconds(step, seconds)

        rate = self.diarizer.sample_rate
        self.progress = (0, 0.0)
        seconds_done = 0.0  # header durations, as the progress bar counts them
        journal = CrashJournal(self.out, shard.shard_id)
        for count, rec in enumerate(shard.items):
            self.progress = (count, seconds_done)
            seconds_done += rec.seconds or 0.0
            if journal.is_poison(rec.reco_id):
                files.fail(journal.failure(rec.reco_id))
                continue
            journal.start(rec.reco_id)
            with time_limit(self.time_limit, journal.time_out):
                outcome = self._diarize(rec, hook)
            if isinstance(outcome, Failure):
                files.fail(outcome)
                continue
            waveform, diarization = outcome
            files.add(rec, len(waveform) / rate, diarization)
        journal.start(None)
        node_id = ray_node_id() if self.in_actor else None
        record = files.write(time.perf_counter() - t0, node_id)
        journal.close()
        return record

    def _diarize(self, rec: Recording, hook: StepHook) -> tuple[Waveform, Diarization] | Failure:
        """Read and diarize one recording: its audio and turns, or the failure row."""
        from diar.pipelines.base import RecordingInput

        try:
            allow_pipes = self.config.audio.allow_pipes
            waveform = self.diarizer.load(rec.source, rec.reco_id, allow_pipes=allow_pipes)
        except Exception as e:
            return Failure.from_exception(rec.reco_id, "read", e, rec.source)
        try:
            # shape: (num_samples,) float32 at the diarizer's rate
            recording = RecordingInput(
                rec.reco_id, waveform, rec.num_speakers, rec.profiles, rec.profile_names, rec.enrollment
            )
            diarization = self.diarizer.diarize(recording, hook)  # turns + speaker traces
            check_reco_id(diarization, rec)
        except Exception as e:
            return Failure.from_exception(rec.reco_id, "diarize", e, rec.source)
        return waveform, diarization


def check_reco_id(diarization: Diarization, rec: Recording) -> None:
    """Raise ValueError when a diarizer returned the turns of another recording."""
    reco_id = diarization.annotation.reco_id
    if reco_id != rec.reco_id:
        raise ValueError(f"diarizer returned turns of {reco_id!r} for {rec.reco_id!r}")


class ShardFiles:
    """The outputs of one shard as its recordings come in, written together at the end:
    the shard's RTTM (and Parquet, and the exclusive turns' RTTM), its speaker traces, and
    last its done record.

    Both ways of running the job fill one: the single-actor worker (:class:`DiarizeWorker`)
    and the stage split (:mod:`jobs.stages`), so their files are the same.
    """

    def __init__(self, config: Config, out: OutDir, shard: Shard[Recording]) -> None:
        self.config = config
        self.out = out
        self.shard = shard
        self.record = ShardRecord(shard.shard_id, shard.fingerprint)
        self.formats: list[OutputFormat] = corpus_formats(config.job.out_formats)
        self.model = model_name(config)
        self.annotations: list[Annotation] = []
        #: the exclusive turns of the done recordings, where a format holds them
        self.exclusive: list[Annotation] = []
        self.wants_exclusive = any(fmt.exclusive for fmt in self.formats)
        #: speaker traces of the shard, written with its files (speaker linking)
        self.traces = TraceCollector()

    def add_seconds(self, step: str, seconds: float) -> None:
        """Add ``seconds`` to the shard's time in pipeline step ``step``."""
        steps = self.record.step_seconds
        steps[step] = steps.get(step, 0.0) + seconds

    def fail(self, failure: Failure) -> None:
        """A recording of the shard failed."""
        self.record.failures.append(failure)

    def add(self, rec: Recording, seconds: float, diarization: Diarization) -> None:
        """A recording of the shard is diarized (``seconds`` of audio); a label that a format
        cannot hold fails it (stage ``write``), not the shard."""
        annotation = diarization.annotation
        exclusive = diarization.exclusive_turns() if self.wants_exclusive else annotation
        self.traces.add(rec.reco_id, diarization.traces)
        try:
            for fmt in self.formats:
                fmt.to_bytes([exclusive if fmt.exclusive else annotation], self.model)
        except Exception as e:
            self.fail(Failure.from_exception(rec.reco_id, "write", e, rec.source))
            return
        self.annotations.append(annotation)
        if self.wants_exclusive:
            self.exclusive.append(exclusive)
        self.record.done[rec.reco_id] = round(seconds, 6)

    def write(self, compute_seconds: float, node_id: str | None) -> ShardRecord:
        """Write the shard's files, then its done record; return the record."""
        shard_id = self.shard.shard_id
        record = self.record
        try:
            for fmt in self.formats:
                if fmt.name in SHARD_FORMATS:
                    name = fmt.file_name(shard_id)
                    data = fmt.to_bytes(self.exclusive if fmt.exclusive else self.annotations, self.model)
                    self.out.write_bytes(f"shards/{name}", data)
                    record.add_file(name, data)
            # the shard's speaker traces (ark + table), recorded in the done record like the rest
            write_shard_traces(self.out, shard_id, record, self.traces, self.config.embedding.name)
        except Exception as e:
            raise JobError(
                f"cannot write the outputs of {shard_id} to {self.out.display('shards')}: {e}"
            ) from e
        record.compute_seconds = round(compute_seconds, 6)
        record.step_seconds = {k: round(v, 6) for k, v in record.step_seconds.items()}
        record.node_id = node_id
        record.max_rss_mib = peak_rss_mib()
        self.out.write_text(done_name(shard_id), record.to_json())
        return record
