"""Frame-model diarization (mode ``frame``): WavLM-SD over windows, stitched into recording speakers.

The frame model sees a few local speakers per window (two for WavLM-Base-Plus-SD).
Windows overlap; :mod:`diar.stitching` links local speakers across overlaps, then
clusters the resulting chains with speaker embeddings (``embedding.name``) so
that a recording may have any number of speakers. A frame may be active for
several speakers (overlapped speech is kept).

Memory stays flat with the recording's length: the recording is spooled to a
temporary file (:meth:`FrameDiarizer.load`) and read back one batch of windows
at a time, and then one speaker's speech at a time for the embeddings; per
window only the 1-D probabilities of its active local speakers are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from diar.audio import SpooledAudio, Waveform
from diar.config import Config
from diar.memory import release_free_memory
from diar.models.base import FRAME_MODELS
from diar.pipelines.base import DIARIZERS, Diarizer, RecordingInput, StepHook, no_hook, timed
from diar.pipelines.clustering import build_embedder, set_torch_threads
from diar.postprocess import labels_to_annotation, resample_labels
from diar.stitching import (
    StitchResult,
    WindowStitcher,
    embed_chains,
    embed_pieces,
    link_chains,
    plan_windows,
    render_speaker,
    split_chains,
)
from diar.types import FRAME_SHIFT, Annotation, Turn

logger = logging.getLogger(__name__)


def build_frame_model(config: Config) -> object:
    """The frame model ``config.frame_model.name`` names, built from ``config.frame_model``."""
    import diar.models  # noqa: F401  (registers the models)

    fm = config.frame_model
    return FRAME_MODELS.get(fm.name)(
        model=fm.model,
        device=fm.device,
        batch_size=fm.batch_size,
        autocast=fm.autocast,
        num_threads=config.num_threads,
    )


def name_by_first_turn(annotation: Annotation) -> Annotation:
    """Rename speakers ``spk1``, ``spk2``, ... in order of their first turn (no gaps in the numbering
    when post-processing removed every turn of some speaker)."""
    order: dict[str, str] = {}
    for turn in annotation:  # sorted by start
        order.setdefault(turn.speaker, f"spk{len(order) + 1}")
    return annotation.rename(order)


def run_windows(
    model: object,
    waveform: Waveform,
    window: float,
    hop: float,
    batch_size: int,
    threshold: float = 0.5,
    link_frames: int = 10,
    link_iou: float = 0.5,
) -> StitchResult:
    """Run the frame model over overlapping windows and link local speakers across overlaps.

    Only ``batch_size`` windows of input exist at a time, and the heap's free
    pages go back to the system after each batch (:mod:`diar.memory`).

    Args:
        model: a frame model with ``sample_rate``, ``frame_stride``, ``num_frames(n)``
            and ``__call__((B, n)) -> (B, F, S)`` probabilities.
        waveform: shape (num_samples,) at ``model.sample_rate``, in memory or spooled.
        window, hop: seconds.

    Returns:
        the stitched pieces and chains (``num_frames`` = model frames of the whole recording).
    """
    sr = int(model.sample_rate)  # type: ignore[attr-defined]
    stride = int(model.frame_stride)  # type: ignore[attr-defined]
    num_frames = int(model.num_frames(len(waveform)))  # type: ignore[attr-defined]
    stitcher = WindowStitcher(num_frames, threshold, link_frames, link_iou)
    if num_frames == 0:
        return stitcher.finish()
    plan = plan_windows(len(waveform), round(window * sr), round(hop * sr), stride)
    for i in range(0, len(plan), batch_size):
        starts = plan.starts[i : i + batch_size]
        batch = np.stack([waveform[s : s + plan.length] for s in starts])  # shape: (B, L)
        probs = model(batch)  # type: ignore[operator]  # shape: (B, F, S)
        for s, p in zip(starts, probs, strict=True):
            stitcher.add(int(s) // stride, p)
        del batch, probs
        release_free_memory()  # the batch's activations, else pinned by the stitcher's arrays
    return stitcher.finish()


@DIARIZERS.register("frame")
class FrameDiarizer(Diarizer):
    """Frame model over windows -> stitched chains -> embeddings of every window's speakers
    (chains cut where a window's speaker changes, with ``frame_model.split_chains``) ->
    constrained clustering of the chains -> turns.

    :meth:`load` spools recordings to disk: ``apply`` reads a batch of windows
    at a time, so its memory does not grow with the recording's length.

    Speakers are named ``spk1``, ``spk2``, ... in order of first appearance. The
    speaker count comes from the recording (``RecordingInput.num_speakers``),
    else ``clustering.num_speakers``, else it is estimated (cosine distance
    ``frame_model.link_threshold``) within [``clustering.min_speakers``,
    ``clustering.max_speakers``].
    """

    spools_audio = True

    def __init__(
        self,
        config: Config,
        model: object | None = None,
        embed: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        super().__init__(config)
        self.embed: Callable[[np.ndarray], np.ndarray]
        self.model = model if model is not None else build_frame_model(config)
        self.sample_rate = int(self.model.sample_rate)  # type: ignore[attr-defined]
        # windows per batch: the config's, else the model's default for its device
        batch_size = config.frame_model.batch_size
        self.batch_size = int(batch_size if batch_size is not None else self.model.batch_size)  # type: ignore[attr-defined]
        if embed is None:
            embedder = build_embedder(config)
            self._embed_rate = int(embedder.sample_rate)
            self.embed = embedder.embed_utterance
            self._embed_min_samples = int(embedder.min_num_samples)
        else:
            self._embed_rate = self.sample_rate
            self.embed = embed
            self._embed_min_samples = 1
        set_torch_threads(config.num_threads)

    def _embed_speech(self, speech: np.ndarray) -> np.ndarray:
        """Embed speech at the model's rate with the embedder (resampled if its rate differs)."""
        if self._embed_rate != self.sample_rate:
            import soxr

            speech = soxr.resample(speech, self.sample_rate, self._embed_rate).astype(np.float32)
        if len(speech) < self._embed_min_samples:
            speech = np.pad(speech, (0, self._embed_min_samples - len(speech)))
        return self.embed(speech)

    def apply(self, recording: RecordingInput, hook: StepHook = no_hook) -> Annotation:
        """Diarize one recording (``recording.waveform`` at ``self.sample_rate``)."""
        cfg = self.config
        fm = cfg.frame_model
        sr = self.sample_rate
        wav = recording.waveform  # shape: (N,)
        if not isinstance(wav, SpooledAudio):
            wav = np.asarray(wav, dtype=np.float32)
        with timed(hook, "frame_model"):
            stitched = run_windows(
                self.model, wav, fm.window, fm.hop, self.batch_size, fm.threshold, fm.link_frames, fm.link_iou
            )
        stride = int(self.model.frame_stride)  # type: ignore[attr-defined]
        min_samples = round(fm.embed_min_seconds * sr)
        with timed(hook, "embedding"):
            pieces = embed_pieces(stitched, wav, self._embed_speech, stride, min_samples)  # P x (D,)
            if fm.split_chains:
                stitched = split_chains(stitched, pieces, fm.link_threshold, fm.link_adapt)
            embeddings, reliable = embed_chains(  # shape: (C, D), (C,)
                stitched,
                wav,
                self._embed_speech,
                stride,
                min_samples,
                round(fm.embed_max_seconds * sr),
                fm.threshold,
                pieces,
            )
        with timed(hook, "clustering"):
            speaker_of_chain = link_chains(  # shape: (C,)
                embeddings,
                stitched.cannot_link,
                fm.link_threshold,
                recording.num_speakers or cfg.clustering.num_speakers,
                cfg.clustering.min_speakers,
                cfg.clustering.max_speakers,
                reliable,
                fm.link_adapt,
            )
        with timed(hook, "postprocess"):
            # one speaker at a time: columns are independent, and memory stays O(T) for any count
            num_speakers = int(speaker_of_chain.max()) + 1 if len(speaker_of_chain) else 0
            turns: list[Turn] = []
            for k in range(num_speakers):
                probs = render_speaker(stitched, speaker_of_chain, k)  # shape: (T,) at the model's shift
                active = probs[:, None] > fm.threshold  # shape: (T, 1)
                labels = resample_labels(active, stride / sr, FRAME_SHIFT)  # shape: (T10, 1) at 10 ms
                turns.extend(
                    labels_to_annotation(
                        recording.reco_id,
                        labels,
                        [f"spk{k + 1}"],
                        smooth_size=cfg.postprocess.smooth_size,
                        dur_threshold=cfg.postprocess.dur_threshold,
                    ).turns
                )
            annotation = name_by_first_turn(Annotation.from_turns(recording.reco_id, turns))
        logger.debug(
            "%s: %d pieces in %d chains -> %d speakers",
            recording.reco_id,
            len(stitched.pieces),
            stitched.num_chains,
            num_speakers,
        )
        return annotation
