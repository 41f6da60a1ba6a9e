"""Window-clustering diarization (mode ``cluster``, ``configs/ge2e.yaml``): silero VAD, window
embeddings (GE2E there), clustering.

Nothing here needs the network: the VAD and embedder weights ship in their wheels.
"""

from __future__ import annotations

import logging

import numpy as np

from diar.cluster import build_clusterer, speaker_shortfall
from diar.config import Config, ConfigError
from diar.errors import quote
from diar.models.build import build_embedder, build_vad, set_torch_threads
from diar.pipelines import steps
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
from diar.postprocess import exclusive_annotation, labels_to_annotation

logger = logging.getLogger(__name__)


@DIARIZERS.register("cluster")
class ClusteringDiarizer(Diarizer):
    """VAD -> windows over speech -> embeddings -> clustering -> 10 ms labels -> smoothed turns.

    A window between two speakers' centroids gives its frames both (overlap); the exclusive
    turns keep, per frame, the speaker of the windows' own cluster (the majority of the
    windows covering it with ``embedding.frame_method: mean``).

    Speakers are named ``spk1``, ``spk2``, ... in order of first appearance. The speaker
    count comes from the recording (``RecordingInput.num_speakers``, e.g. reco2num_spk),
    else from ``clustering.num_speakers``, else it is estimated within
    [``clustering.min_speakers``, ``clustering.max_speakers``].
    """

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.vad = build_vad(config)
        self.embedder = build_embedder(config)
        self.clusterer = build_clusterer(config.clustering)
        set_torch_threads(config.num_threads)
        self.sample_rate = self.embedder.sample_rate
        vad_rate = getattr(self.vad, "sample_rate", self.sample_rate)
        if vad_rate != self.sample_rate:
            raise ConfigError(
                f"vad.name {quote(config.vad.name)} runs at {vad_rate} Hz but embedding.name "
                f"{quote(config.embedding.name)} at {self.sample_rate} Hz; choose models of one sample rate"
            )

    def diarize(self, recording: RecordingInput, hook: StepHook = no_hook) -> Diarization:
        """Diarize one recording (``recording.waveform`` at ``self.sample_rate``), with its speakers'
        traces (the mean of their windows' embeddings)."""
        cfg = self.config
        sr = self.sample_rate
        wav = np.asarray(recording.waveform, dtype=np.float32)  # shape: (N,)
        num_frames = steps.num_label_frames(len(wav), sr)
        with timed(hook, "vad"):
            regions = steps.detect_speech(self.vad, wav)  # shape: (R, 2) samples
        with timed(hook, "windows"):
            windows = steps.windows_over_speech(  # shape: (W, 2) samples
                regions, cfg.embedding.window, cfg.embedding.hop, sr, len(wav)
            )
        with timed(hook, "embedding"):
            embeddings = steps.embed_windows(  # shape: (W, D)
                self.embedder, wav, windows, cfg.embedding.batch_size, cfg.embedding.normalize_db
            )
        with timed(hook, "clustering"):
            num_speakers = recording.num_speakers or cfg.clustering.num_speakers
            labels = self.clusterer(  # shape: (W,)
                embeddings, num_speakers, cfg.clustering.min_speakers, cfg.clustering.max_speakers
            )
        with timed(hook, "postprocess"):
            # shape: (W, K): 1 for a window's cluster, and for a second one where it looks overlapped
            scores = steps.cluster_scores(embeddings, labels, cfg.clustering.overlap_margin)
            speech = steps.speech_frame_mask(regions, num_frames, sr)  # shape: (T,)
            frame_labels = steps.window_scores_to_frame_labels(  # shape: (T, K)
                windows,
                scores,
                num_frames,
                sr,
                threshold=0.5,
                speech=speech,
                method=cfg.embedding.frame_method,
            )
            speakers = [f"spk{k + 1}" for k in range(scores.shape[1])]
            annotation = labels_to_annotation(
                recording.reco_id,
                frame_labels,
                speakers,
                smooth_size=cfg.postprocess.smooth_size,
                dur_threshold=cfg.postprocess.dur_threshold,
            )
            # where a frame has two speakers, the one of its windows' own cluster stays
            own = steps.window_scores_to_frame_scores(  # shape: (T, K)
                windows, steps.one_hot(labels, scores.shape[1]), num_frames, sr, cfg.embedding.frame_method
            )
            exclusive = exclusive_annotation(
                recording.reco_id,
                frame_labels,
                own,
                speakers,
                smooth_size=cfg.postprocess.smooth_size,
                dur_threshold=cfg.postprocess.dur_threshold,
            )
            if cfg.postprocess.exclusive:
                annotation = exclusive
        clu = cfg.clustering
        asked = num_speakers or (clu.min_speakers if clu.min_speakers > 1 else None)
        shortfall = speaker_shortfall(asked, len(annotation.speakers), len(windows), scores.shape[1])
        if shortfall:
            logger.warning("recording %r: %s", recording.reco_id, shortfall)
        logger.debug(
            "%s: %d speech regions, %d windows, %d speakers",
            recording.reco_id,
            len(regions),
            len(windows),
            scores.shape[1],
        )
        seconds = (windows[:, 1] - windows[:, 0]) / sr if len(windows) else np.zeros(0)
        traces = speaker_traces(annotation, embeddings, seconds, [f"spk{k + 1}" for k in labels])
        return Diarization(annotation, traces, exclusive)
