"""Test doubles and audio for the job tests (imported by tests/test_jobs/ and tests/end_to_end/).

:class:`EnergyDiarizer` is a real, deterministic diarizer of the audio it is given
(energy-based speech detection; the speaker changes every 2 s), fast enough to
exercise the job machinery without model weights. It can sleep per recording and
write its process id to a folder, so that tests can kill an actor or the driver in
the middle of a shard.
"""

from __future__ import annotations

import functools
import io
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from diar.config import Config
from diar.failures import Failure
from diar.formats.failures import read_failures
from diar.pipelines.base import Diarization, Diarizer, RecordingInput, SpeakerTrace, StepHook, no_hook, timed
from diar.types import Annotation


class EnergyDiarizer(Diarizer):
    """Speech where the 10 ms frame energy exceeds -35 dBFS; speaker ``spkN`` by 2-second block."""

    sample_rate = 16000

    def __init__(
        self,
        config: Config,
        delay: float = 0.0,
        pid_dir: str | None = None,
        fail_ids: tuple[str, ...] = (),
        crash_ids: tuple[str, ...] = (),
        hang_ids: tuple[str, ...] = (),
    ) -> None:
        super().__init__(config)
        self.hang_ids = hang_ids
        self.delay = delay
        self.pid_dir = pid_dir
        self.fail_ids = fail_ids
        self.crash_ids = crash_ids

    def apply(self, recording: RecordingInput, hook: StepHook = no_hook) -> Annotation:
        if self.pid_dir is not None:
            Path(self.pid_dir, f"{os.getpid()}.{recording.reco_id.encode().hex()}").write_text(
                recording.reco_id
            )
        if self.delay:
            time.sleep(self.delay)
        if recording.reco_id in self.fail_ids:
            raise ValueError(f"model cannot handle recording {recording.reco_id!r}")
        if recording.reco_id in self.crash_ids:  # like an out-of-memory kill or a segfault
            os.kill(os.getpid(), signal.SIGKILL)
        if recording.reco_id in self.hang_ids:  # like a decoder stuck in native code
            time.sleep(3600)
        with timed(hook, "vad"):
            hop = self.sample_rate // 100
            n = len(recording.waveform) // hop
            # shape: (frames, hop)
            frames = recording.waveform[: n * hop].reshape(n, hop)
            speech = 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12) > -35
        with timed(hook, "cluster"):
            if recording.profiles is not None:  # profile mode: one speaker per profile row
                num = recording.profiles.shape[0]
                names = list(recording.profile_names or [f"spk{k + 1}" for k in range(num)])
            else:
                num = recording.num_speakers or 2
                names = [f"spk{k + 1}" for k in range(num)]
            # shape: (frames, num)
            labels = np.zeros((n, num), dtype=np.int8)
            labels[np.arange(n), (np.arange(n) // 200) % num] = speech
        return Annotation.from_labels(recording.reco_id, labels, names)

    def diarize(self, recording: RecordingInput, hook: StepHook = no_hook) -> Diarization:
        """The turns of :meth:`apply` and a trace per speaker: the spectrum of its turns' audio."""
        annotation = self.apply(recording, hook)
        return Diarization(annotation, spectrum_traces(recording, annotation))


def spectrum_traces(recording: RecordingInput, annotation: Annotation) -> tuple[SpeakerTrace, ...]:
    """A deterministic 16-dim "embedding" per speaker: the unit-norm mean magnitude spectrum
    (0-640 Hz, 40 Hz bins) of 25 ms frames of its turns (the tones of its speech)."""
    wav = np.asarray(recording.waveform, dtype=np.float64)
    traces = []
    for speaker in annotation.speakers:
        turns = [t for t in annotation if t.speaker == speaker]
        frames = [
            wav[start : start + 400]
            for t in turns
            for start in range(round(t.start * 16000), round(t.end * 16000) - 400, 400)
        ]
        if not frames:
            continue
        spectrum = np.abs(np.fft.rfft(np.stack(frames), axis=1))[:, :16].mean(axis=0)
        vector = (spectrum / max(float(np.linalg.norm(spectrum)), 1e-12)).astype(np.float32)
        seconds = round(sum(t.end - t.start for t in turns), 3)
        traces.append(SpeakerTrace(speaker, vector, seconds, enrolled=recording.profile_names is not None))
    return tuple(traces)


def energy_factory(  # type: ignore[no-untyped-def]
    delay: float = 0.0,
    pid_dir: str | None = None,
    fail_ids: tuple[str, ...] = (),
    crash_ids: tuple[str, ...] = (),
    hang_ids: tuple[str, ...] = (),
):
    """A ``diarizer_factory`` for the job: ``factory(config) -> EnergyDiarizer``."""
    return functools.partial(
        EnergyDiarizer,
        delay=delay,
        pid_dir=pid_dir,
        fail_ids=fail_ids,
        crash_ids=crash_ids,
        hang_ids=hang_ids,
    )


def speechlike(seconds: float, seed: int, sample_rate: int = 16000) -> np.ndarray:
    """Bursts of tones (1-3 s) separated by pauses: shape (num_samples,), float32."""
    rng = np.random.default_rng(seed)
    out = np.zeros(round(seconds * sample_rate), dtype=np.float32)
    pos = int(rng.uniform(0.1, 0.5) * sample_rate)
    while pos < len(out):
        length = int(rng.uniform(1.0, 3.0) * sample_rate)
        t = np.arange(min(length, len(out) - pos)) / sample_rate
        out[pos : pos + len(t)] = 0.3 * np.sin(2 * np.pi * rng.uniform(150, 400) * t)
        pos += length + int(rng.uniform(0.2, 1.0) * sample_rate)
    return out


def make_corpus(folder: Path, durations: dict[str, float], extra_lines: tuple[str, ...] = ()) -> Path:
    """Write one speech-like wav per recording id and a wav.scp (plus ``extra_lines``); return the scp."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (reco_id, seconds) in enumerate(durations.items()):
        path = folder / f"{i:03d}.wav"
        sf.write(path, speechlike(seconds, seed=i), 16000, subtype="PCM_16")
        lines.append(f"{reco_id} {path}")
    scp = folder / "wav.scp"
    scp.write_text("\n".join([*lines, *extra_lines]) + "\n", encoding="utf-8")
    return scp


#: Recording ids and durations (s) of the small job corpus.
DURATIONS = {"rec-a": 9.0, "rec-b": 4.0, "rec-c": 7.5, "rec-d": 3.0, "rec-e": 6.0, "rec-ü": 5.0}


class SlowCounter:
    """A shard worker that takes ``delay`` seconds per item and counts them in ``progress``."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.progress: tuple[int, float] = (0, 0.0)

    def __call__(self, shard):  # type: ignore[no-untyped-def]
        for i in range(len(shard.items)):
            self.progress = (i, float(i))
            time.sleep(self.delay)
        return [str(item) for item in shard.items]


def read_failures_tsv(text: str) -> list[Failure]:
    """The rows of a ``failures.tsv`` text (header first, then reco_id, stage, error_type, message)."""
    return read_failures(io.StringIO(text, newline=""))


class DiesOnce:
    """Builds the real diarizer, whose ``step`` (a method name) kills its process the first time
    it runs in any process (a marker file says it did): a stage's actor dying mid-run."""

    def __init__(self, marker: str, step: str) -> None:
        self.marker = marker
        self.step = step

    def __call__(self, config: Config) -> Diarizer:
        from diar.pipelines import build_diarizer

        diarizer = build_diarizer(config)
        real = getattr(diarizer, self.step)
        marker = Path(self.marker)

        def step(*args: object, **kwargs: object) -> object:
            if not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return real(*args, **kwargs)

        setattr(diarizer, self.step, step)
        return diarizer


class FailsOn:
    """Builds the real frame-mode diarizer, whose segmentation step fails for any recording of
    ``num_samples`` samples (alone or batched with others): it raises (``how="raise"``, a model
    that cannot handle one), kills its process (``"kill"``, a crash in native code) or never
    returns (``"hang"``)."""

    def __init__(self, num_samples: int, how: str = "raise") -> None:
        if how not in ("raise", "kill", "hang"):
            raise ValueError(f"how must be raise, kill or hang, got {how!r}")
        self.num_samples = num_samples
        self.how = how

    def __call__(self, config: Config) -> Diarizer:
        from diar.pipelines import build_diarizer

        diarizer = build_diarizer(config)
        real = diarizer.segment  # type: ignore[attr-defined]
        num_samples, how = self.num_samples, self.how

        def segment(waveforms: list[np.ndarray]) -> object:
            if any(len(w) == num_samples for w in waveforms):
                if how == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if how == "hang":
                    time.sleep(3600)
                raise ValueError(f"model cannot handle {num_samples} samples")
            return real(waveforms)

        diarizer.segment = segment  # type: ignore[attr-defined]
        return diarizer


class SlowFinish:
    """Builds the real frame-mode diarizer, whose last step (``finish``) first sleeps ``delay``
    seconds: a job slow enough to be interrupted between shards."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def __call__(self, config: Config) -> Diarizer:
        from diar.pipelines import build_diarizer

        diarizer = build_diarizer(config)
        real = diarizer.finish  # type: ignore[attr-defined]
        delay = self.delay

        def finish(*args: object, **kwargs: object) -> object:
            time.sleep(delay)
            return real(*args, **kwargs)

        diarizer.finish = finish  # type: ignore[attr-defined]
        return diarizer


def kill_after_first_shard(driver: subprocess.Popen[bytes], out: Path, timeout: float) -> int:
    """SIGKILL the job's ``driver`` process once a shard of OUT ``out`` is done; return how many
    shards were done then. Fails the test if none is done within ``timeout`` seconds."""
    import pytest

    done = out / "shards"
    deadline = time.monotonic() + timeout
    while not (done.exists() and list(done.glob("*.done.json"))):
        if time.monotonic() > deadline or driver.poll() is not None:
            driver.kill()
            _, err = driver.communicate()
            pytest.fail(f"the driver did not finish a shard: {(err or b'').decode()[-3000:]}")
        time.sleep(0.05)
    os.kill(driver.pid, signal.SIGKILL)
    driver.communicate()
    return len(list(done.glob("*.done.json")))


#: The corpus outputs that resume, kills and the stage split must leave byte-identical.
CORPUS_FILES = ("corpus.rttm", "corpus.parquet", "failures.tsv")


def assert_same_files(out: Path, reference: Path, names: Sequence[str] = CORPUS_FILES) -> None:
    """The files ``names`` of job output ``out`` are byte-identical to ``reference``'s."""
    for name in names:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), (out, name)
