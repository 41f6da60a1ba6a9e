"""The diarizer interface every pipeline implements, and the registry of modes.

A diarizer is built once from a :class:`~diar.config.Config` (loading its
models), then applied to many recordings. ``apply`` is a short list of named
steps; each step's wall time is reported through an injected hook.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from diar.audio import Waveform
from diar.config import Config
from diar.registry import Registry
from diar.types import Annotation

#: Called as ``hook(step_name, seconds)`` after each step of a pipeline.
StepHook = Callable[[str, float], None]


def no_hook(step: str, seconds: float) -> None:
    """The default :data:`StepHook`: ignore timings."""


@contextmanager
def timed(hook: StepHook, step: str) -> Iterator[None]:
    """Report the wall time of the enclosed block to ``hook`` as ``step``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        hook(step, time.perf_counter() - t0)


@dataclass(frozen=True)
class RecordingInput:
    """One recording to diarize, already decoded.

    Attributes:
        reco_id: recording id (becomes the RTTM file id).
        waveform: shape (num_samples,), float32 mono at the diarizer's ``sample_rate``: an array,
            or a :class:`~diar.audio.SpooledAudio` (from :meth:`Diarizer.load`) read by range.
        num_speakers: known speaker count (e.g. from reco2num_spk), or None to estimate.
        profiles: shape (num_profiles, dim) enrolled speaker embeddings (profile mode).
        profile_names: one name per profile row; spk1..N when None.
        enrollment: ((speaker, path or URL), ...) enrollment files to make the profiles from
            when ``profiles`` is None (profile mode); speakers named as there.
    """

    reco_id: str
    waveform: Waveform
    num_speakers: int | None = None
    profiles: np.ndarray | None = None
    profile_names: tuple[str, ...] | None = None
    enrollment: tuple[tuple[str, str], ...] | None = None


@dataclass(frozen=True)
class SpeakerTrace:
    """What a recording's speaker sounds like: what links speakers across recordings.

    Attributes:
        speaker: the speaker's label in the recording's annotation.
        embedding: shape (dim,) float32, unit norm: the speech-weighted mean of the embeddings
            of the speaker's clean speech, with the pipeline's embedder.
        seconds: the speaker's speech in the annotation (seconds).
        enrolled: the label is an enrolled speaker's name (profile mode with named profiles):
            the same person in every recording where it appears.
    """

    speaker: str
    embedding: np.ndarray
    seconds: float
    enrolled: bool = False


@dataclass(frozen=True)
class Diarization:
    """One recording's turns and, where the pipeline has them, its speakers' traces and its
    exclusive turns.

    Attributes:
        annotation: the turns: overlap-aware (several speakers at once where the pipeline hears
            them), or the exclusive ones with ``postprocess.exclusive``.
        traces: what each speaker sounds like (speaker linking).
        exclusive: the same speakers at most one at a time (per frame, of those active, the one
            the pipeline scores highest: :func:`~diar.postprocess.exclusive_labels`), made from
            the same model outputs as ``annotation``; None from a pipeline that does not make
            them (:meth:`exclusive_turns` then derives them from ``annotation``).
    """

    annotation: Annotation
    traces: tuple[SpeakerTrace, ...] = ()
    exclusive: Annotation | None = None

    def exclusive_turns(self) -> Annotation:
        """At most one speaker at each instant: the pipeline's exclusive turns, else those of
        :func:`~diar.postprocess.exclusive_turns` ``(annotation)`` (by turn length)."""
        if self.exclusive is not None:
            return self.exclusive
        from diar.postprocess import exclusive_turns

        return exclusive_turns(self.annotation)


def speaker_traces(
    annotation: Annotation, embeddings: np.ndarray, weights: np.ndarray, speakers: Sequence[str]
) -> tuple[SpeakerTrace, ...]:
    """Traces of an annotation's speakers from labelled embeddings.

    Args:
        embeddings: shape (n, dim) embeddings of clean speech.
        weights: shape (n,) speech seconds behind each.
        speakers: shape (n,) the speaker label of each (labels not in the annotation are ignored).

    Returns:
        one trace per speaker of the annotation that has an embedding, in label order.
    """
    seconds: dict[str, float] = {}
    for turn in annotation:
        seconds[turn.speaker] = seconds.get(turn.speaker, 0.0) + turn.end - turn.start
    x = np.asarray(embeddings, dtype=np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12) if x.size else x
    w = np.asarray(weights, dtype=np.float64)
    labels = np.asarray(speakers, dtype=object)
    out = []
    for speaker in annotation.speakers:
        rows = np.flatnonzero(labels == speaker) if len(labels) else np.zeros(0, dtype=np.int64)
        if len(rows) == 0 or w[rows].sum() <= 0:
            continue
        mean = (x[rows] * w[rows, None]).sum(axis=0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        out.append(SpeakerTrace(speaker, mean.astype(np.float32), round(seconds[speaker], 3)))
    return tuple(out)


class Diarizer:
    """Base class of the diarization pipelines (one per ``config.mode``)."""

    sample_rate: int = 16000
    #: Whether :meth:`load` spools recordings to a temporary file instead of memory
    #: (pipelines that read a recording window by window, whatever its length).
    spools_audio: bool = False

    def __init__(self, config: Config) -> None:
        self.config = config

    def load(self, source: str, reco_id: str | None = None, allow_pipes: bool = False) -> Waveform:
        """Decode ``source`` for :meth:`apply`: float32 mono at ``self.sample_rate``.

        Held in memory (:func:`~diar.audio.load_audio`), or on disk
        (:func:`~diar.audio.spool_audio`) when ``spools_audio``.
        """
        from diar.audio import load_audio, spool_audio

        read = spool_audio if self.spools_audio else load_audio
        return read(source, self.sample_rate, reco_id=reco_id, allow_pipes=allow_pipes)

    def apply(self, recording: RecordingInput, hook: StepHook = no_hook) -> Annotation:
        """Diarize one recording."""
        return self.diarize(recording, hook).annotation

    def diarize(self, recording: RecordingInput, hook: StepHook = no_hook) -> Diarization:
        """Diarize one recording, with its speakers' traces where the pipeline has embeddings.

        Pipelines override this or :meth:`apply` (without traces).
        """
        if type(self).apply is Diarizer.apply:
            raise NotImplementedError(f"{type(self).__name__} implements neither apply nor diarize")
        return Diarization(self.apply(recording, hook))

    def __call__(
        self,
        audio: str | np.ndarray,
        reco_id: str | None = None,
        num_speakers: int | None = None,
        hook: StepHook = no_hook,
    ) -> Annotation:
        """Diarize a path/URL or a waveform at ``self.sample_rate``."""
        waveform: Waveform
        if isinstance(audio, str):
            if reco_id is None:
                from diar.manifests import reco_id_from_path

                reco_id = reco_id_from_path(audio)
            waveform = self.load(audio, reco_id)
        else:
            waveform = np.asarray(audio, dtype=np.float32)
        return self.apply(RecordingInput(reco_id or "recording", waveform, num_speakers), hook)


#: Diarizer classes by ``config.mode``: cluster, profile, frame.
DIARIZERS: Registry[type[Diarizer]] = Registry("diarization mode")


def build_diarizer(config: Config) -> Diarizer:
    """Build (and load the models of) the diarizer that ``config.mode`` names."""
    import diar.pipelines  # noqa: F401  (registers the modes)

    return DIARIZERS.get(config.mode)(config)
