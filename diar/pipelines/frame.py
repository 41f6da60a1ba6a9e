"""Frame-model diarization (mode ``frame``): a frame model over windows, local speakers made
recording speakers with speaker embeddings.

The frame model (pyannote segmentation-3.0: three local speakers per 10 s window, the
offline default; or WavLM-SD: two) hears a few local speakers per window. Windows
overlap; :mod:`diar.stitching` embeds every window's local speakers once, clusters them
into recording speakers (two local speakers of one window are different people), and
renders per frame as many speakers as the frame model hears: overlapped speech is kept,
and frames where the model hears nobody are non-speech (no VAD runs).

Memory stays flat with the recording's length: the recording is spooled to a temporary
file (:meth:`FrameDiarizer.load`) and read back one batch of windows at a time; per window
only the 1-D probabilities of its active local speakers are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np

from diar.audio import SpooledAudio, Waveform
from diar.cluster import build_clusterer, speaker_shortfall
from diar.config import Config
from diar.memory import release_free_memory
from diar.models.base import Embedder, FrameModel
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
from diar.postprocess import labels_to_annotation, model_frames_to_labels
from diar.stitching import (
    WindowCollector,
    WindowOutputs,
    attach_by_activity,
    cluster_pieces,
    embed_regions,
    nearest_speaker,
    piece_speech,
    plan_windows,
    relabel,
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

    Only ``batch_size`` windows of input exist at a time, and the heap's free
    pages go back to the system after each batch (:mod:`diar.memory`).

    Args:
        model: a frame model with ``sample_rate``, ``frame_stride``, ``num_frames(n)``
            and ``__call__((B, n)) -> (B, F, S)`` activities.
        waveform: shape (num_samples,) at ``model.sample_rate``, in memory or spooled.
        window, hop: seconds.

    Returns:
        the windows' pieces and speaker counts (``num_frames`` = model frames of the recording).
    """
    sr = int(model.sample_rate)
    stride = int(model.frame_stride)
    plan = plan_windows(len(waveform), round(window * sr), round(hop * sr), stride)
    per_window = int(model.num_frames(plan.length)) if len(plan) else 0
    num_frames = int(plan.starts[-1]) // stride + per_window if len(plan) else 0
    collector = WindowCollector(num_frames, threshold)
    if per_window == 0:
        return collector.finish()
    for i in range(0, len(plan), batch_size):
        starts = plan.starts[i : i + batch_size]
        batch = np.stack([waveform[s : s + plan.length] for s in starts])  # shape: (B, L)
        probs = model(batch)  # shape: (B, F, S)
        for s, p in zip(starts, probs, strict=True):
            collector.add(int(s) // stride, p)
        del batch, probs
        release_free_memory()  # the batch's activations, else pinned by the collector's arrays
    return collector.finish()


@DIARIZERS.register("frame")
class FrameDiarizer(Diarizer):
    """Frame model over windows -> one embedding per window and local speaker -> clustering
    (``clustering.method``) -> distinct speakers per window -> per frame, as many speakers as
    the frame model hears -> turns.

    :meth:`load` spools recordings to disk: ``apply`` reads a batch of windows at a time,
    so its memory does not grow with the recording's length.

    Speakers are named ``spk1``, ``spk2``, ... in order of first appearance. The speaker
    count comes from the recording (``RecordingInput.num_speakers``), else
    ``clustering.num_speakers``, else it is estimated within [``clustering.min_speakers``,
    ``clustering.max_speakers``].
    """

    spools_audio = True

    def __init__(
        self,
        config: Config,
        model: FrameModel | None = None,
        embed: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        super().__init__(config)
        self.model = model if model is not None else build_frame_model(config)
        self.sample_rate = int(self.model.sample_rate)
        # windows per batch: the config's, else the model's default for its device
        batch_size = config.frame_model.batch_size
        self.batch_size = int(batch_size if batch_size is not None else self.model.batch_size)
        self.clusterer = build_clusterer(config.clustering)
        self._embedder: Embedder | None = None
        self._embed_one: Callable[[np.ndarray], np.ndarray]
        if embed is None:
            self._embedder = build_embedder(config)
            self._embed_rate = int(self._embedder.sample_rate)
            self._embed_min_samples = int(self._embedder.min_num_samples)
            self._embed_one = self._embedder.embed_utterance
        else:
            self._embed_rate = self.sample_rate
            self._embed_min_samples = 1
            self._embed_one = embed
        set_torch_threads(config.num_threads)

    def _embed(self, speech: Sequence[np.ndarray], hook: StepHook) -> np.ndarray:
        """Embed speech at the model's rate (resampled to the embedder's, padded to its minimum)."""
        if self._embed_rate != self.sample_rate:
            import soxr

            speech = [soxr.resample(x, self.sample_rate, self._embed_rate).astype(np.float32) for x in speech]
        m = self._embed_min_samples
        speech = [np.pad(x, (0, m - len(x))) if len(x) < m else x for x in speech]
        if not speech:
            return np.zeros((0, 0), dtype=np.float32)
        embedder = self._embedder
        many = getattr(embedder, "embed_many", None)
        if many is not None:
            return np.asarray(many(speech, hook=hook), dtype=np.float32)
        with timed(hook, "embeddings"):
            return np.stack([np.asarray(self._embed_one(x), dtype=np.float32).reshape(-1) for x in speech])

    def diarize(self, recording: RecordingInput, hook: StepHook = no_hook) -> Diarization:
        """Diarize one recording (``recording.waveform`` at ``self.sample_rate``), with its
        speakers' traces (the speech-weighted mean of their local speakers' embeddings)."""
        cfg = self.config
        fm = cfg.frame_model
        sr = self.sample_rate
        model = self.model
        wav = recording.waveform  # shape: (N,)
        if not isinstance(wav, SpooledAudio):
            wav = np.asarray(wav, dtype=np.float32)
        stride = int(model.frame_stride)
        with timed(hook, "segmentation"):
            outputs = run_windows(model, wav, fm.window, fm.hop, self.batch_size, fm.threshold)
        # every local speaker of every window, embedded once from its exclusive speech
        regions = embed_regions(outputs, fm.embed_every)  # shape: (P, 2) frames each window owns

        def speech_of(pieces: Sequence[int]) -> list[np.ndarray]:
            max_samples, context = round(fm.embed_max_seconds * sr), round(fm.embed_context * sr / stride)
            return piece_speech(outputs, regions, wav, stride, max_samples, context, pieces)

        # a batch of local speakers at a time: memory stays flat with the recording's length
        seconds = np.zeros(len(outputs.pieces))  # shape: (P,)
        found: list[tuple[int, np.ndarray]] = []
        for first in range(0, len(outputs.pieces), EMBED_BATCH):
            batch = range(first, min(first + EMBED_BATCH, len(outputs.pieces)))
            speech = speech_of(batch)
            seconds[first : first + len(speech)] = [len(x) / sr for x in speech]
            keep = [(i, x) for i, x in zip(batch, speech, strict=True) if len(x) >= fm.embed_min_seconds * sr]
            if keep:
                vectors = self._embed([x for _, x in keep], hook)
                found.extend((i, v) for (i, _), v in zip(keep, vectors, strict=True))
            del speech, keep
        reliable = seconds >= fm.embed_min_seconds  # shape: (P,)
        embeddings = np.zeros((len(outputs.pieces), found[0][1].shape[0] if found else 0), dtype=np.float32)
        for i, vector in found:
            embeddings[i] = vector
        with timed(hook, "clustering"):
            labels, centroids = cluster_pieces(  # shape: (P,), (K, D)
                embeddings,
                reliable,
                seconds,
                outputs.pieces_by_window(),
                self.clusterer,
                recording.num_speakers or cfg.clustering.num_speakers,
                cfg.clustering.min_speakers,
                cfg.clustering.max_speakers,
                fm.min_speaker_seconds,
            )
            labels = attach_by_activity(outputs, labels)
        # pieces that overlap no speaker and had too little speech: their own short embedding
        alone = np.flatnonzero((labels < 0) & (seconds > 0))
        if len(alone) and len(centroids):
            labels[alone] = nearest_speaker(self._embed(speech_of(alone.tolist()), hook), centroids)
        elif len(labels) and labels.max() < 0:
            labels[:] = 0  # nothing to compare with: one speaker
        labels = relabel(labels)
        with timed(hook, "rendering"):
            scores = render(outputs, labels)  # shape: (T, K)
            active = select_by_count(scores, outputs.speaker_count())  # shape: (T, K)
            labels10 = model_frames_to_labels(  # shape: (T10, K) at 10 ms
                active,
                stride,
                int(model.frame_center_offset),
                len(wav),
                round(FRAME_SHIFT * sr),
            )
            annotation = labels_to_annotation(
                recording.reco_id,
                labels10,
                [f"spk{k + 1}" for k in range(labels10.shape[1])],
                smooth_size=cfg.postprocess.smooth_size,
                dur_threshold=cfg.postprocess.dur_threshold,
            )
            names = first_turn_names(annotation)
            annotation = annotation.rename(names)
        used = np.flatnonzero(reliable & (labels >= 0))
        traces = speaker_traces(
            annotation,
            embeddings[used],
            seconds[used],
            [names.get(f"spk{k + 1}", "") for k in labels[used]],
        )
        clu = cfg.clustering
        num_speakers = recording.num_speakers or clu.num_speakers
        asked = num_speakers or (clu.min_speakers if clu.min_speakers > 1 else None)
        shortfall = speaker_shortfall(
            asked, len(annotation.speakers), int(reliable.sum()), len(centroids), "embedded local speakers"
        )
        if shortfall:
            logger.warning("recording %r: %s", recording.reco_id, shortfall)
        logger.debug(
            "%s: %d windows, %d local speakers (%d embedded) -> %d speakers",
            recording.reco_id,
            len(outputs.windows),
            len(outputs.pieces),
            int(reliable.sum()),
            labels10.shape[1],
        )
        return Diarization(annotation, traces)
