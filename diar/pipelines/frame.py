"""Frame-model diarization (mode ``frame``): a frame model over windows, local speakers made
recording speakers with speaker embeddings.

The frame model (pyannote segmentation-3.0: three local speakers per 10 s window, the
offline default; or WavLM-SD: two) hears a few local speakers per window. Windows
overlap; :mod:`diar.stitching` gathers every window's local speakers and their speech,
:mod:`diar.identity` makes them recording speakers (clustered, or matched to enrolled
profiles; two local speakers of one window are different people), and the turns are
rendered with per frame as many speakers as the frame model hears: overlapped speech is
kept, and frames where the model hears nobody are non-speech (no VAD runs, also not for
enrollment audio).

Memory stays flat with the recording's length: the recording is spooled to a temporary
file (:meth:`FrameDiarizer.load`) and read back one batch of windows at a time; per window
only the 1-D probabilities of its active local speakers are kept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from diar.audio import SpooledAudio, Waveform
from diar.cluster import build_clusterer, speaker_shortfall
from diar.config import Config
from diar.identity import IdentityParams, identify
from diar.identity.profiles import unknown_names
from diar.identity.splitting import split_at_pauses, split_parts
from diar.memory import release_free_memory
from diar.models.base import Embedder, FeatureEmbedder, FrameModel
from diar.models.build import build_embedder, build_frame_model, set_torch_threads
from diar.pipelines.base import (
    DIARIZERS,
    Diarization,
    Diarizer,
    RecordingInput,
    StepHook,
    no_hook,
    speaker_traces,
    timed,
)
from diar.pipelines.profile import check_profile_fit, compute_profiles_with, default_names
from diar.postprocess import exclusive_annotation, labels_to_annotation, model_frames_to_labels
from diar.stitching import (
    WindowCollector,
    WindowOutputs,
    embed_regions,
    frame_runs,
    gather_samples,
    piece_speech,
    plan_windows,
    render,
    select_by_count,
)
from diar.types import FRAME_SHIFT, Annotation

logger = logging.getLogger(__name__)

#: Local speakers whose speech is gathered and embedded at a time.
EMBED_BATCH = 64


def first_turn_names(annotation: Annotation) -> dict[str, str]:
    """``{label: spkN}``, numbering speakers ``spk1``, ``spk2``, ... in order of their first turn."""
    order: dict[str, str] = {}
    for turn in annotation:  # sorted by start
        order.setdefault(turn.speaker, f"spk{len(order) + 1}")
    return order


def name_by_first_turn(annotation: Annotation) -> Annotation:
    """Rename speakers ``spk1``, ``spk2``, ... in order of their first turn (no gaps in the numbering
    when post-processing removed every turn of some speaker)."""
    return annotation.rename(first_turn_names(annotation))


def run_windows(
    model: FrameModel,
    waveform: Waveform,
    window: float,
    hop: float,
    batch_size: int,
    threshold: float = 0.5,
) -> WindowOutputs:
    """Run the frame model over overlapping windows and collect their active local speakers.

    One recording of :func:`segment_many`.

    Args:
        model: a frame model with ``sample_rate``, ``frame_stride``, ``num_frames(n)``
            and ``__call__((B, n)) -> (B, F, S)`` activities.
        waveform: shape (num_samples,) at ``model.sample_rate``, in memory or spooled.
        window, hop: seconds.

    Returns:
        the windows' pieces and speaker counts (``num_frames`` = model frames of the recording).
    """
    return segment_many(model, [waveform], window, hop, batch_size, threshold)[0]


def segment_many(
    model: FrameModel,
    waveforms: Sequence[Waveform],
    window: float,
    hop: float,
    batch_size: int,
    threshold: float = 0.5,
) -> list[WindowOutputs]:
    """The frame model over the overlapping windows of several recordings, ``batch_size``
    windows per forward pass whichever recordings they come from (the model stage of the
    job's stage split gathers recordings to fill its batches).

    Only ``batch_size`` windows of input exist at a time, and the heap's free pages go
    back to the system after each batch (:mod:`diar.memory`). A window's output does not
    depend on the other windows of its batch (checked for segmentation-3.0 on CPU), so a
    recording's result is the same alone or with others.

    Args:
        waveforms: each shape (num_samples,) at ``model.sample_rate``, in memory or spooled.
        window, hop: seconds.

    Returns:
        per recording, its windows' pieces and speaker counts.
    """
    sr = int(model.sample_rate)
    stride = int(model.frame_stride)
    collectors: list[WindowCollector] = []
    # (recording, first sample) of every window, by window length: a recording shorter than
    # one window is a window of its own length, forwarded apart from the others
    todo: dict[int, list[tuple[int, int]]] = {}
    for r, waveform in enumerate(waveforms):
        plan = plan_windows(len(waveform), round(window * sr), round(hop * sr), stride)
        per_window = int(model.num_frames(plan.length)) if len(plan) else 0
        num_frames = int(plan.starts[-1]) // stride + per_window if len(plan) else 0
        collectors.append(WindowCollector(num_frames, threshold, stride, int(model.frame_center_offset)))
        if per_window:
            todo.setdefault(plan.length, []).extend((r, int(s)) for s in plan.starts)
    for length, windows in todo.items():
        for i in range(0, len(windows), batch_size):
            chunk = windows[i : i + batch_size]
            batch = np.stack([waveforms[r][s : s + length] for r, s in chunk])  # shape: (B, L)
            probs = model(batch)  # shape: (B, F, S)
            for (r, s), p in zip(chunk, probs, strict=True):
                collectors[r].add(s // stride, p)
            del batch, probs
            release_free_memory()  # the batch's activations, else pinned by the collector's arrays
    return [c.finish() for c in collectors]


#: Seconds around a local speaker labelled after the clustering where the speakers it may
#: take are looked for (:func:`~diar.identity.assign.fill_windows`).
NEAR_SECONDS = 10.0

#: Overlap the frame model must hear, besides ``identity.overlap_fraction`` of its speech,
#: before it raises the least number of speakers (:func:`~diar.identity.counting.heard_together`).
MIN_OVERLAP_SECONDS = 1.0

#: The models of a :class:`FrameDiarizer` (its ``load`` argument).
MODELS = ("frame_model", "embedder")


@dataclass
class EmbedInputs:
    """What the embedder is given for a batch of a recording's local speakers.

    The units embedded are numbered: first the recording's P local speakers (pieces), then
    the parts of the local speakers cut at their pauses (:meth:`FrameDiarizer.parts`).

    Attributes:
        pieces: shape (n,) indices of the units embedded (those with enough speech).
        seconds: shape (b,) speech seconds of every unit of the batch (also those left out).
        first: index of the batch's first unit.
        inputs: one per piece of ``pieces``: fbank features (T, feat_dim) where the embedder
            computes them apart from its network (CAM++), else speech (N,) at its rate.
    """

    pieces: np.ndarray
    seconds: np.ndarray
    first: int
    inputs: list[np.ndarray]


@DIARIZERS.register("frame")
class FrameDiarizer(Diarizer):
    """Frame model over windows -> one embedding per window and local speaker -> the identity
    step (:func:`diar.identity.identify`: clustering, and matching to enrolled profiles when
    the recording has some) -> distinct speakers per window -> per frame, as many speakers as
    the frame model hears -> turns.

    With profiles (``RecordingInput.profiles``, or ``enrollment`` files embedded here from the
    speech the frame model hears in them: no VAD) enrolled speakers are named as enrolled and
    the others ``unknown1``, ``unknown2``, ...

    :meth:`load` spools recordings to disk: ``apply`` reads a batch of windows at a time,
    so its memory does not grow with the recording's length.

    Speakers are named ``spk1``, ``spk2``, ... in order of first appearance. The speaker
    count comes from the recording (``RecordingInput.num_speakers``), else
    ``clustering.num_speakers``, else it is estimated within [``clustering.min_speakers``,
    ``clustering.max_speakers``].

    Args:
        config: the config (mode ``frame``).
        model: the frame model (default: built from ``config.frame_model``).
        embed: waveform -> embedding, in place of the embedder (tests).
        load: which of :data:`MODELS` to build when not given. A worker of the job's stage
            split that runs some steps builds only what they need (:meth:`segment`: the
            frame model; :meth:`piece_inputs` and :meth:`embed_inputs`: the embedder, whose
            checkpoint defines its features; :meth:`finish`: neither).
    """

    spools_audio = True

    def __init__(
        self,
        config: Config,
        model: FrameModel | None = None,
        embed: Callable[[np.ndarray], np.ndarray] | None = None,
        load: Collection[str] = MODELS,
    ) -> None:
        super().__init__(config)
        unknown = sorted(set(load) - set(MODELS))
        if unknown:
            raise ValueError(f"load: unknown models {unknown}; known: {', '.join(MODELS)}")
        if model is None and "frame_model" in load:
            model = build_frame_model(config)
        self.model: FrameModel | None = model
        self.sample_rate = int(model.sample_rate if model is not None else config.sample_rate)
        # windows per batch: the config's, else the model's default for its device
        batch_size = config.frame_model.batch_size
        self.batch_size = int(batch_size if batch_size is not None else (model.batch_size if model else 1))
        self.clusterer = build_clusterer(config.clustering)
        self._embedder: Embedder | None = None
        self._embed_one: Callable[[np.ndarray], np.ndarray] | None = embed
        self._embed_rate = self.sample_rate
        self._embed_min_samples = 1
        if embed is None and "embedder" in load:
            self._embedder = build_embedder(config)
            self._embed_rate = int(self._embedder.sample_rate)
            self._embed_min_samples = int(self._embedder.min_num_samples)
            self._embed_one = self._embedder.embed_utterance
        set_torch_threads(config.num_threads)

    def _frame_model(self) -> FrameModel:
        if self.model is None:
            raise RuntimeError("this FrameDiarizer was built without its frame model (load=...)")
        return self.model

    def _embed(self) -> Callable[[np.ndarray], np.ndarray]:
        if self._embed_one is None:
            raise RuntimeError("this FrameDiarizer was built without its embedder (load=...)")
        return self._embed_one

    @property
    def embed_device(self) -> str:
        """Where the embedder runs: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ..."""
        return str(getattr(self._embedder, "device", "cpu"))

    def _speech_inputs(self, speech: Sequence[np.ndarray], hook: StepHook) -> list[np.ndarray]:
        """Speech at the model's rate -> the embedder's inputs: resampled to its rate, padded to
        its minimum, and fbank features where the embedder computes them apart (CAM++)."""
        self._embed()  # the embedder's rate, minimum and features need it loaded
        if self._embed_rate != self.sample_rate:
            import soxr

            speech = [soxr.resample(x, self.sample_rate, self._embed_rate).astype(np.float32) for x in speech]
        m = self._embed_min_samples
        speech = [np.pad(x, (0, m - len(x))) if len(x) < m else x for x in speech]
        fbank = self._fbank()
        if fbank is None:
            return [np.asarray(x, dtype=np.float32) for x in speech]
        with timed(hook, "features"):
            return [fbank(x) for x in speech]

    def _fbank(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """The embedder's own features step, when it has one (CAM++)."""
        embedder = self._embedder
        return embedder.fbank if isinstance(embedder, FeatureEmbedder) else None

    def embed_inputs(self, inputs: Sequence[np.ndarray], hook: StepHook = no_hook) -> np.ndarray:
        """The model step of the embeddings: inputs of :class:`EmbedInputs` (of one or more
        recordings) -> shape (n, D) float32 embeddings, in order.

        Inputs of equal shape share forward passes, ``embedding.batch_size`` at a time.
        """
        if not inputs:
            return np.zeros((0, 0), dtype=np.float32)
        embedder = self._embedder
        with timed(hook, "embeddings"):
            if embedder is None:
                one = self._embed()
                return np.stack([np.asarray(one(x), dtype=np.float32).reshape(-1) for x in inputs])
            if not isinstance(embedder, FeatureEmbedder):
                many = getattr(embedder, "embed_many", None)
                if many is not None:
                    return np.asarray(many(list(inputs)), dtype=np.float32)
                return np.stack([np.asarray(embedder.embed_utterance(x), dtype=np.float32) for x in inputs])
            out = np.zeros((len(inputs), int(embedder.dimension)), dtype=np.float32)
            shapes = [x.shape for x in inputs]
            for shape in dict.fromkeys(shapes):
                rows = [i for i, s in enumerate(shapes) if s == shape]
                out[rows] = embedder.embed_features(np.stack([inputs[i] for i in rows]))
            return out

    def segment(self, waveforms: Sequence[Waveform]) -> list[WindowOutputs]:
        """The model step of segmentation: the frame model over the windows of one or more
        recordings (each shape (N,) at ``self.sample_rate``), ``batch_size`` windows per pass."""
        fm = self.config.frame_model
        return segment_many(self._frame_model(), waveforms, fm.window, fm.hop, self.batch_size, fm.threshold)

    def embed_every(self, outputs: WindowOutputs) -> int:
        """Every how many windows the local speakers are embedded: all of them in a recording
        shorter than ``frame_model.embed_all_seconds``, else every ``embed_every``-th."""
        fm = self.config.frame_model
        seconds = outputs.num_frames * outputs.frame_stride / self.sample_rate
        if fm.embed_all_seconds is not None and seconds < fm.embed_all_seconds:
            return 1
        return fm.embed_every

    def _to_step(self, speech: np.ndarray) -> np.ndarray:
        """Speech cut to a multiple of ``frame_model.embed_step`` seconds (at least
        ``embed_min_seconds``): local speakers of equal length share the embedder's forward
        passes, which on a CPU costs much less than one pass each."""
        fm = self.config.frame_model
        if not fm.embed_step:
            return speech
        step = round(fm.embed_step * self.sample_rate)
        least = round(fm.embed_min_seconds * self.sample_rate)
        if len(speech) < max(step, least):
            return speech
        return speech[: max(least, (len(speech) // step) * step)]

    def parts(self, outputs: WindowOutputs) -> tuple[WindowOutputs, np.ndarray, np.ndarray] | None:
        """The local speakers cut at their pauses of ``identity.split_pause`` seconds
        (:func:`~diar.identity.splitting.split_at_pauses`): ``(split outputs, shape (P',) the
        piece of each part, shape (C,) the parts of pieces that were cut)``; None when off."""
        pause = self.config.identity.split_pause
        if pause is None:
            return None
        frames = round(pause * self.sample_rate / outputs.frame_stride)
        split, parents = split_at_pauses(outputs, frames, self.config.frame_model.threshold)
        return split, parents, np.flatnonzero(split_parts(parents))

    def piece_inputs(
        self, outputs: WindowOutputs, waveform: Waveform, hook: StepHook = no_hook
    ) -> Iterator[EmbedInputs]:
        """The CPU step before the embeddings: every local speaker's speech (the stretch its
        window owns, :func:`~diar.stitching.piece_speech`) as the embedder's inputs,
        ``EMBED_BATCH`` local speakers at a time (memory stays flat with the recording's length),
        then the parts of the local speakers cut at their pauses (:meth:`parts`).

        Only units with ``frame_model.embed_min_seconds`` of speech are embedded (the others
        take the speaker whose activity agrees with theirs), except in a recording none of whose
        local speakers has that much: they are embedded for the speakers' traces (linking).
        """
        fm = self.config.frame_model
        sr = self.sample_rate
        stride = outputs.frame_stride
        every = self.embed_every(outputs)
        max_samples, context = round(fm.embed_max_seconds * sr), round(fm.embed_context * sr / stride)
        units: list[tuple[WindowOutputs, np.ndarray, np.ndarray, int]] = [
            (outputs, embed_regions(outputs, every), np.arange(len(outputs.pieces)), 0)
        ]
        parts = self.parts(outputs)
        if parts is not None:
            split, _, cut = parts
            units.append((split, embed_regions(split, every), cut, len(outputs.pieces)))
        for unit_outputs, regions, indices, offset in units:  # shape: (P, 2) frames each window owns
            for first in range(0, len(indices), EMBED_BATCH):
                batch = indices[first : first + EMBED_BATCH]
                speech = piece_speech(
                    unit_outputs, regions, waveform, stride, max_samples, context, batch.tolist()
                )
                speech = [self._to_step(x) for x in speech]
                seconds = np.array([len(x) / sr for x in speech], dtype=np.float64)  # shape: (b,)
                keep = np.flatnonzero((seconds > 0) & (seconds >= fm.embed_min_seconds))
                if not len(keep) and offset == 0 and len(indices) <= EMBED_BATCH:
                    # a recording of a second or two: its short local speakers give the traces
                    keep = np.flatnonzero(seconds > 0)
                inputs = self._speech_inputs([speech[i] for i in keep], hook)
                yield EmbedInputs(keep + offset + first, seconds, offset + first, inputs)
                del speech

    def diarize(self, recording: RecordingInput, hook: StepHook = no_hook) -> Diarization:
        """Diarize one recording (``recording.waveform`` at ``self.sample_rate``), with its
        speakers' traces (the speech-weighted mean of their local speakers' embeddings).

        The steps, each usable apart (the job's stage split runs the model steps on GPU actors,
        the others on CPU workers): :meth:`segment` (model) -> :meth:`piece_inputs` ->
        :meth:`embed_inputs` (model) -> :meth:`finish`.
        """
        wav = recording.waveform  # shape: (N,)
        if not isinstance(wav, SpooledAudio):
            wav = np.asarray(wav, dtype=np.float32)
        with timed(hook, "segmentation"):
            outputs = self.segment([wav])[0]
        batches: list[tuple[EmbedInputs, np.ndarray]] = []
        for batch in self.piece_inputs(outputs, wav, hook):
            batches.append((batch, self.embed_inputs(batch.inputs, hook)))
            batch.inputs = []  # the features are spent: memory stays flat
        return self.finish(recording, outputs, len(wav), batches, hook)

    def finish(
        self,
        recording: RecordingInput,
        outputs: WindowOutputs,
        num_samples: int,
        embedded: Sequence[tuple[EmbedInputs, np.ndarray]],
        hook: StepHook = no_hook,
    ) -> Diarization:
        """The CPU step after the embeddings: the identity step, rendering and post-processing.

        Args:
            recording: the recording (its waveform is not read: ``num_samples`` is its length;
                its ``profiles`` are matched, its ``enrollment`` files need the models loaded).
            outputs: of :meth:`segment`.
            embedded: each batch of :meth:`piece_inputs` with its embeddings, shape (n, D).
        """
        cfg = self.config
        stride = outputs.frame_stride
        count = len(outputs.pieces)
        parts = self.parts(outputs)
        cut = parts[2] if parts is not None else np.zeros(0, dtype=np.int64)
        seconds = np.zeros(count + len(cut))  # shape: (P + C,) pieces, then the cut parts
        found: dict[int, np.ndarray] = {}
        for batch, vectors in embedded:
            seconds[batch.first : batch.first + len(batch.seconds)] = batch.seconds
            found.update((int(i), v) for i, v in zip(batch.pieces, vectors, strict=True))
        dim = next(iter(found.values())).shape[0] if found else 0
        vectors = np.zeros((len(seconds), dim), dtype=np.float32)  # shape: (P + C, D)
        for i, v in found.items():
            vectors[i] = v
        has = np.zeros(len(seconds), dtype=bool)
        has[list(found)] = True
        embeddings, piece_seconds = vectors[:count], np.where(has[:count], seconds[:count], 0.0)
        split = None
        if parts is not None:
            split_outputs, parents, _ = parts
            part_vectors = embeddings[parents]  # shape: (P', D) a part's own, where it was cut
            part_seconds = np.zeros(len(parents))
            part_vectors[cut] = vectors[count:]
            part_seconds[cut] = np.where(has[count:], seconds[count:], 0.0)
            split = (split_outputs, parents, part_vectors, part_seconds)
        clu = cfg.clustering
        num_speakers = recording.num_speakers or clu.num_speakers
        profiles, enrolled = self.profiles_for(recording, dim)
        params = IdentityParams(
            embed_min_seconds=cfg.frame_model.embed_min_seconds,
            min_speaker_seconds=cfg.identity.min_speaker_seconds,
            distinct_distance=cfg.identity.distinct_distance,
            overlap_fraction=cfg.identity.overlap_fraction,
            overlap_frames=round(MIN_OVERLAP_SECONDS * self.sample_rate / stride),
            near=round(NEAR_SECONDS * self.sample_rate / stride),
            unknown_threshold=cfg.identity.unknown_threshold,
            min_speakers=clu.min_speakers,
            max_speakers=clu.max_speakers,
        )
        with timed(hook, "clustering"):
            identity = identify(
                outputs, embeddings, piece_seconds, self.clusterer, params, num_speakers, profiles, split
            )
        names_of = {k: enrolled[p] for k, p in enumerate(identity.profiles) if p is not None}
        with timed(hook, "rendering"):
            annotation, names, exclusive = self.render_labels(
                recording.reco_id,
                identity.outputs,
                identity.labels,
                num_samples,
                names_of if profiles is not None else None,
            )
        reliable = piece_seconds >= cfg.frame_model.embed_min_seconds
        # every speaker leaves a trace for linking: from its reliable local speakers, else (a
        # speaker of a recording of a second or two) from its short ones
        labels = identity.piece_labels
        used = np.flatnonzero(reliable & (labels >= 0))
        traced = set(labels[used].tolist())
        short = [
            i for i in np.flatnonzero(has[:count] & ~reliable) if labels[i] >= 0 and labels[i] not in traced
        ]
        used = np.concatenate([used, np.asarray(short, dtype=np.int64)])
        traces = speaker_traces(
            annotation,
            embeddings[used],
            seconds[used],
            [names.get(f"spk{k + 1}", "") for k in labels[used]],
        )
        named = set(names_of.values())
        traces = tuple(dataclasses.replace(t, enrolled=t.speaker in named) for t in traces)
        asked = num_speakers or (clu.min_speakers if clu.min_speakers > 1 else None)
        shortfall = speaker_shortfall(
            asked,
            len(annotation.speakers),
            int(reliable.sum()),
            len(identity.centroids),
            "embedded local speakers",
        )
        if shortfall:
            logger.warning("recording %r: %s", recording.reco_id, shortfall)
        logger.debug(
            "%s: %d windows, %d local speakers (%d embedded, %d parts) -> %d speakers",
            recording.reco_id,
            len(outputs.windows),
            count,
            int(reliable.sum()),
            len(identity.outputs.pieces),
            int(identity.labels.max(initial=-1)) + 1,
        )
        return Diarization(annotation, traces, exclusive)

    def profiles_for(self, recording: RecordingInput, dim: int) -> tuple[np.ndarray | None, tuple[str, ...]]:
        """The recording's enrolled profiles and names: given (``profiles``, names ``spk1``... when
        it has none), made from its ``enrollment`` files (:meth:`enroll`), or (None, ()).
        Checked against the embedder's dimension ``dim`` (0: nothing was embedded to check with)."""
        if recording.profiles is not None:
            profiles = np.asarray(recording.profiles, dtype=np.float32)
            names = recording.profile_names or default_names(len(profiles))
        elif recording.enrollment:
            profiles, names = self.enroll(recording.enrollment, recording.reco_id)
        else:
            return None, ()
        check_profile_fit(
            profiles, names, dim or profiles.shape[-1], self.config.embedding.name, recording.reco_id
        )
        return profiles, tuple(names)

    def enroll(
        self, enrollments: Sequence[tuple[str, str]], reco_id: str | None = None
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """Profiles of enrolled speakers: [(speaker, path or URL)] -> (shape (S, D) float32, names),
        each the mean embedding of its files' speech (:meth:`embed_speech`)."""
        return compute_profiles_with(
            self.embed_speech,
            enrollments,
            self.sample_rate,
            reco_id=reco_id,
            allow_pipes=self.config.audio.allow_pipes,
        )

    def embed_speech(self, waveform: np.ndarray) -> np.ndarray:
        """One embedding of the speech in an enrollment recording (shape (N,) at
        ``self.sample_rate``): the frames where the frame model hears exactly one speaker (all
        it hears when it never hears one alone; all of it when it hears nobody). No VAD: the
        frame model is the speech detector.

        Returns:
            shape (D,) float32.
        """
        wav = np.asarray(waveform, dtype=np.float32)
        outputs = self.segment([wav])[0]
        count = outputs.speaker_count()  # shape: (T,)
        for frames in (count == 1, count >= 1):
            if frames.any():
                break
        else:
            frames = np.ones(len(count), dtype=bool)
        runs = frame_runs(frames)
        speech = gather_samples(wav, runs, outputs.frame_stride, len(wav)) if runs else wav
        return self.embed_inputs(self._speech_inputs([speech if len(speech) else wav], no_hook))[0]

    def render_labels(
        self,
        reco_id: str,
        outputs: WindowOutputs,
        labels: np.ndarray,
        num_samples: int,
        enrolled: Mapping[int, str] | None = None,
    ) -> tuple[Annotation, dict[str, str], Annotation]:
        """The recording's turns from its pieces' speakers: in each frame the speakers with the
        highest rendered activity, as many as the frame model hears (:func:`select_by_count`),
        on the 10 ms grid, post-processed (``postprocess``) and named by first turn
        (``spk1``, ``spk2``, ...); with ``enrolled`` (label -> enrolled name, profile mode) the
        enrolled speakers by their names and the others ``unknown1``, ``unknown2``, ... by first
        turn.

        The exclusive turns keep, in each frame where the model hears anyone, the one speaker
        with the highest rendered activity (pyannote 4 caps its count at one the same way),
        before the smoothing; they are the annotation with ``postprocess.exclusive``.

        Args:
            labels: shape (P,) speaker of each piece (-1: none).

        Returns:
            (annotation, its names: ``spk<k+1>`` of label k -> name in the annotation,
            the exclusive turns with the same names).
        """
        stride = outputs.frame_stride
        scores = render(outputs, labels)  # shape: (T, K)
        active = select_by_count(scores, outputs.speaker_count())  # shape: (T, K)
        labels10 = model_frames_to_labels(  # shape: (T10, K) at 10 ms
            active,
            stride,
            outputs.frame_center_offset,
            num_samples,
            round(FRAME_SHIFT * self.sample_rate),
        )
        annotation = labels_to_annotation(
            reco_id,
            labels10,
            [f"spk{k + 1}" for k in range(labels10.shape[1])],
            smooth_size=self.config.postprocess.smooth_size,
            dur_threshold=self.config.postprocess.dur_threshold,
        )
        scores10 = model_frames_to_labels(  # shape: (T10, K) the rendered activity at 10 ms
            scores, stride, outputs.frame_center_offset, num_samples, round(FRAME_SHIFT * self.sample_rate)
        )
        exclusive = exclusive_annotation(
            reco_id,
            labels10,
            scores10,
            [f"spk{k + 1}" for k in range(labels10.shape[1])],
            smooth_size=self.config.postprocess.smooth_size,
            dur_threshold=self.config.postprocess.dur_threshold,
        )
        shown = exclusive if self.config.postprocess.exclusive else annotation
        order = list(first_turn_names(shown))
        both = first_turn_names(annotation) | first_turn_names(exclusive)
        order += [label for label in both if label not in order]  # only the other has them
        if enrolled is None:
            names = {label: f"spk{n + 1}" for n, label in enumerate(order)}
        else:
            fixed = {f"spk{k + 1}": name for k, name in enrolled.items()}
            others = [label for label in order if label not in fixed]
            names = {label: fixed[label] for label in order if label in fixed}
            names.update(zip(others, unknown_names(len(others), list(fixed.values())), strict=True))
        return shown.rename(names), names, exclusive.rename(names)
