"""Profile-based diarization (mode ``profile``): who of the enrolled speakers talks when.

As ModelScope's speaker-diarization pipeline, the input is a recording plus its
speakers' profiles: precomputed (wav.scp + profile.scp, "kaldi mode"), computed here
from enrollment audio (an enrollment list ``<reco-id> <speaker> <path>``), or the list
form ``[recording, enroll1, enroll2, ...]``. Windows over the recording's speech are
embedded; the profiles are blended with the recording's own windows of each speaker
(``profile.adapt``) and every window is scored against them (cosine similarity). In a
window the best-scoring speaker talks, and so does any other speaker whose score gap to
the best is small for how far apart the two voices are (overlapped speech); each
speaker's activity is spread a little at its ends (``profile.spread``, overlap at turn
changes) and cut to the detected speech; then the shared ``smooth_size`` /
``dur_threshold`` post-processing. The exclusive turns (``postprocess.exclusive``) keep, per
frame, the active speaker whose profile is most similar to the frame's windows. Defaults
(1 s windows every 0.25 s, ``profile.window`` / ``profile.hop``) were tuned with the CAM++
embedder on the simulated LibriSpeech conversations of the shared corpus (DER 0.065 at
collar 0.25, overlap scored); GE2E keeps its own (1.5 s windows every 0.5 s: DER 0.067),
set in ``configs/ge2e.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from scipy.ndimage import maximum_filter1d

from diar.audio import load_audio
from diar.cluster import l2_normalize
from diar.config import Config, ConfigError, ProfileConfig
from diar.errors import ProfileError, quote
from diar.linking import speaker_seconds
from diar.models.base import Embedder, VoiceActivityDetector
from diar.models.build import build_embedder, build_vad, set_torch_threads
from diar.pipelines import steps
from diar.pipelines.base import (
    DIARIZERS,
    Diarization,
    Diarizer,
    RecordingInput,
    SpeakerTrace,
    StepHook,
    no_hook,
    timed,
)
from diar.postprocess import exclusive_annotation, labels_to_annotation
from diar.types import Annotation, seconds_to_frames

logger = logging.getLogger(__name__)


def default_names(num_profiles: int) -> tuple[str, ...]:
    """ModelScope's speaker names when the profiles have none: spk1 .. spkN in profile order."""
    return tuple(f"spk{k + 1}" for k in range(num_profiles))


#: Peak level (linear) below which an enrollment file is silent (-80 dBFS).
SILENT_PEAK = steps.SILENT_PEAK
#: Norm below which an embedding or profile row counts as all zeros.
ZERO_NORM = steps.ZERO_NORM


def check_enrollment_audio(wav: np.ndarray, speaker: str, reco_id: str | None, source: str) -> None:
    """Raise NoSpeechError naming the speaker and file when an enrollment file is silent."""
    steps.check_not_silent(wav, reco_id, source, f"enrollment of speaker {quote(speaker)}")


def check_profiles(profiles: np.ndarray, names: Sequence[str], reco_id: str) -> None:
    """Raise ProfileError for a profile row that is all zeros (or not finite), naming its speaker."""
    norms = np.linalg.norm(np.asarray(profiles, dtype=np.float64), axis=1)
    for row, norm in enumerate(norms):
        if not np.isfinite(norm) or norm < ZERO_NORM:
            raise ProfileError(
                f"recording {quote(reco_id)}: the profile of speaker {quote(names[row])} (row {row + 1}) "
                "is all zeros or not finite; make it again from enrollment speech"
            )


def check_profile_fit(
    profiles: np.ndarray, names: Sequence[str], dimension: int, embedder: str, reco_id: str
) -> None:
    """Raise ProfileError when a recording's profiles do not fit the embedder (not a non-empty
    matrix of its dimension) or their names (one per row), or a row is all zeros."""
    p = np.asarray(profiles)
    if p.ndim != 2 or p.shape[0] == 0 or p.shape[1] != dimension:
        raise ProfileError(
            f"recording {reco_id!r}: profiles of shape {p.shape} do not fit the {embedder} embedder "
            f"(dimension {dimension}); make them with the same embedder"
        )
    if len(names) != len(p):
        raise ProfileError(f"recording {reco_id!r}: {len(names)} names for {len(p)} profiles")
    check_profiles(p, names, reco_id)


def compute_profiles(
    embedder: Embedder,
    enrollments: Sequence[tuple[str, str]],
    vad: VoiceActivityDetector | None = None,
    reco_id: str | None = None,
    allow_pipes: bool = False,
    normalize_db: float | None = None,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """One profile per enrolled speaker: the mean whole-utterance embedding of its files.

    Args:
        embedder: the embedder that will also embed the recording's windows.
        enrollments: [(speaker, path or URL)], a speaker may have several files.
        vad: when given, only the detected speech of each file is embedded.
        reco_id: recording the enrollment belongs to (for error messages).
        normalize_db: scale each file's (speech) audio to this RMS level first, as
            ``embedding.normalize_db`` does for the recording's windows.

    Returns:
        (profiles of shape (num_speakers, dim) float32, speaker names), speakers in order
        of first appearance in ``enrollments``.

    Raises:
        ProfileError: for an empty enrollment; audio errors (AudioError) name the file.
    """

    def embed(wav: np.ndarray) -> np.ndarray:
        return steps.embed_utterance(embedder, wav, vad, normalize_db)

    rate = int(embedder.sample_rate) if enrollments else 0  # none: refused before any audio is read
    return compute_profiles_with(embed, enrollments, rate, reco_id, allow_pipes)


def compute_profiles_with(
    embed: Callable[[np.ndarray], np.ndarray],
    enrollments: Sequence[tuple[str, str]],
    sample_rate: int,
    reco_id: str | None = None,
    allow_pipes: bool = False,
) -> tuple[np.ndarray, tuple[str, ...]]:
    """One profile per enrolled speaker: the mean of ``embed(waveform)`` over its files, each
    decoded at ``sample_rate`` (:func:`compute_profiles` with a VAD and an embedder; frame
    mode with the frame model as speech detector).

    Raises:
        ProfileError: for an empty enrollment; NoSpeechError for a silent file or an all-zero
        embedding; audio errors (AudioError) name the file.
    """
    if not enrollments:
        raise ProfileError(f"recording {reco_id!r} has no enrollment files")
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for speaker, source in enrollments:
        wav = load_audio(source, sample_rate, reco_id=reco_id, allow_pipes=allow_pipes)
        check_enrollment_audio(wav, speaker, reco_id, source)
        vec = np.asarray(embed(wav), dtype=np.float32).reshape(-1)  # shape: (dim,)
        steps.check_embedding(vec, reco_id, source, f"enrollment of speaker {quote(speaker)}")
        sums[speaker] = sums.get(speaker, 0.0) + vec.astype(np.float64)
        counts[speaker] = counts.get(speaker, 0) + 1
    names = tuple(sums)
    profiles = np.stack([sums[s] / counts[s] for s in names]).astype(np.float32)
    return profiles, names


class ProfileMaker:
    """Speaker profiles from enrollment audio (``diar profiles``, ``jobs.profiles``), made as
    the config's diarizer makes them: in mode ``frame`` from the speech the frame model hears
    (:meth:`~diar.pipelines.frame.FrameDiarizer.enroll`, no VAD), in the other modes from the
    VAD's speech (with ``profile.enroll_vad``) of the embedder's input.

    Loads the models of ``config`` once; each call makes one recording's profile matrix.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        self.frame = None
        if config.mode == "frame":
            from diar.pipelines.frame import FrameDiarizer

            self.frame = FrameDiarizer(config)
            return
        self.embedder = build_embedder(config)
        self.vad = build_vad(config) if config.profile.enroll_vad else None
        set_torch_threads(config.num_threads)

    def __call__(
        self, reco_id: str, enrollments: Sequence[tuple[str, str]]
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """[(speaker, path or URL)] -> (profiles (num_speakers, dim) float32, speaker names)."""
        if self.frame is not None:
            return self.frame.enroll(enrollments, reco_id)
        return compute_profiles(
            self.embedder,
            enrollments,
            self.vad,
            reco_id=reco_id,
            allow_pipes=self.config.audio.allow_pipes,
            normalize_db=self.config.embedding.normalize_db,
        )


def cosine_scores(embeddings: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    """Cosine similarity of every window to every profile. (W, D), (S, D) -> (W, S) float32."""
    e = np.asarray(embeddings)
    p = np.asarray(profiles)
    if e.ndim != 2 or p.ndim != 2 or e.shape[1] != p.shape[1]:
        raise ValueError(f"embeddings of shape {e.shape} do not fit profiles of shape {p.shape}")
    return (l2_normalize(e) @ l2_normalize(p).T).astype(np.float32)


def adapt_profiles(embeddings: np.ndarray, profiles: np.ndarray, weight: float) -> np.ndarray:
    """Move each profile towards the recording's own windows of that speaker.

    Every window is assigned to its most similar profile; a profile becomes
    ``weight * profile + (1 - weight) * centroid`` of its windows (all unit length), so
    it matches the recording's channel and level; a profile with no window is kept.
    ``weight`` 1 leaves the profiles unchanged.

    Args:
        embeddings: shape (W, D) window embeddings.
        profiles: shape (S, D).

    Returns:
        shape (S, D) float32, unit rows.
    """
    p = l2_normalize(profiles)
    if weight >= 1.0 or len(embeddings) == 0:
        return p.astype(np.float32)
    e = l2_normalize(embeddings)
    owner = np.argmax(e @ p.T, axis=1)  # shape: (W,)
    adapted = p.copy()
    for k in range(len(p)):
        mine = e[owner == k]
        if len(mine):
            centroid = mine.mean(axis=0)
            centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
            adapted[k] = weight * p[k] + (1.0 - weight) * centroid
    return l2_normalize(adapted).astype(np.float32)


def active_profiles(scores: np.ndarray, profiles: np.ndarray, config: ProfileConfig) -> np.ndarray:
    """Which profiles talk in each window, from its similarities.

    The best-scoring profile ``b`` is active, provided it reaches ``config.min_score``.
    Another profile ``k`` is active as well (overlapped speech) when its score reaches
    ``config.threshold`` and the gap to the best, relative to how far apart the two
    speakers are, is small: ``(s_b - s_k) / (1 - cos(p_b, p_k)) <= config.overlap_margin``.
    A window mixing two voices lies between their profiles; taking the gap relative to
    the profiles' distance keeps two similar voices from making every window overlapped.

    Args:
        scores: shape (W, S) cosine similarities.
        profiles: shape (S, D) the profiles the scores were computed with.

    Returns:
        shape (W, S) float32 0/1.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return np.zeros(scores.shape, dtype=np.float32)
    p = l2_normalize(profiles)
    best_k = np.argmax(scores, axis=1)  # shape: (W,)
    best = scores[np.arange(len(scores)), best_k][:, None]  # shape: (W, 1)
    distance = np.maximum(1.0 - (p @ p.T)[best_k], 1e-3)  # shape: (W, S)
    top = (scores >= best) & (best >= config.min_score)
    close = (scores >= config.threshold) & ((best - scores) / distance <= config.overlap_margin)
    return (top | close).astype(np.float32)


def spread_activity(labels: np.ndarray, frames: int) -> np.ndarray:
    """Extend every speaker's activity by ``frames`` on both sides (a maximum filter over time).

    At a turn change the windows on each side name a different speaker; spreading both
    over the change marks the overlap there, where a window mixes two voices and often
    names only one. labels: shape (T, S) 0/1 -> (T, S) int8.
    """
    arr = (np.asarray(labels) != 0).astype(np.int8)
    if frames <= 0 or arr.size == 0:
        return arr
    return maximum_filter1d(arr, size=2 * frames + 1, axis=0, mode="constant", cval=0)


@DIARIZERS.register("profile")
class ProfileDiarizer(Diarizer):
    """VAD -> windows over speech -> embeddings -> cosine to profiles -> frame labels -> turns.

    A recording needs profiles: ``RecordingInput.profiles`` (shape (S, dim), e.g. from a
    profile.scp), else its ``RecordingInput.enrollment`` files (embedded when the recording
    comes), or enrollment audio given to :meth:`enroll` / :meth:`diarize_list`. Whoever lists
    the recordings reads ``profile.profile_scp`` / ``profile.enroll`` once
    (:class:`~diar.manifests.ProfileSources`) and hands each recording its own. Speakers are
    named by the profile names (enrollment speakers; spk1..N when there are none).
    """

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.vad = build_vad(config)
        self.embedder = build_embedder(config)
        set_torch_threads(config.num_threads)
        self.sample_rate = self.embedder.sample_rate
        vad_rate = getattr(self.vad, "sample_rate", self.sample_rate)
        if vad_rate != self.sample_rate:
            raise ConfigError(
                f"vad.name {quote(config.vad.name)} runs at {vad_rate} Hz but embedding.name "
                f"{quote(config.embedding.name)} at {self.sample_rate} Hz; choose models of one sample rate"
            )

    def profiles_for(
        self, recording: RecordingInput, hook: StepHook = no_hook
    ) -> tuple[np.ndarray, tuple[str, ...] | None]:
        """The recording's profiles, else its enrollment files embedded now. Returns ((S, dim),
        names or None)."""
        if recording.profiles is not None:
            return np.asarray(recording.profiles, dtype=np.float32), recording.profile_names
        if recording.enrollment:
            with timed(hook, "enroll"):
                return self.enroll(recording.enrollment, recording.reco_id)
        given = [
            f"{what} {path}"
            for what, path in (
                ("profile.profile_scp", self.config.profile.profile_scp),
                ("profile.enroll", self.config.profile.enroll),
            )
            if path
        ]
        where = f" (not in {' or '.join(given)})" if given else ""
        raise ProfileError(
            f"recording {recording.reco_id!r} has no speaker profiles{where}: mode 'profile' needs a "
            "profile.scp entry (--profile-scp, profile.profile_scp) or enrollment files "
            "(profile.enroll: '<reco-id> <speaker> <path>' lines) for it"
        )

    def enroll(
        self, enrollments: Sequence[tuple[str, str]], reco_id: str | None = None
    ) -> tuple[np.ndarray, tuple[str, ...]]:
        """Profiles from enrollment audio [(speaker, path or URL)] -> ((S, dim), names)."""
        vad = self.vad if self.config.profile.enroll_vad else None
        return compute_profiles(
            self.embedder,
            enrollments,
            vad,
            reco_id=reco_id,
            allow_pipes=self.config.audio.allow_pipes,
            normalize_db=self.config.embedding.normalize_db,
        )

    def diarize_list(
        self, items: Sequence[str], reco_id: str | None = None, hook: StepHook = no_hook
    ) -> Annotation:
        """ModelScope's list input ``[recording, enroll1, enroll2, ...]``; speakers spk1..N."""
        from diar.manifests import enrollment_from_list, reco_id_from_path

        recording, enrollments = enrollment_from_list(items)
        reco_id = reco_id or reco_id_from_path(recording)
        with timed(hook, "enroll"):
            profiles, names = self.enroll(enrollments, reco_id)
        wav = load_audio(
            recording, self.sample_rate, reco_id=reco_id, allow_pipes=self.config.audio.allow_pipes
        )
        return self.apply(RecordingInput(reco_id, wav, None, profiles, names), hook)

    def diarize(self, recording: RecordingInput, hook: StepHook = no_hook) -> Diarization:
        """Diarize one recording against ``recording.profiles``, with a trace per speaker that
        talks: its profile adapted to the recording (``enrolled`` when the profiles have names)."""
        cfg = self.config
        sr = self.sample_rate
        profiles, names_given = self.profiles_for(recording, hook)  # shape: (S, D)
        names = names_given or default_names(len(profiles))
        check_profile_fit(
            profiles, names, int(self.embedder.dimension), cfg.embedding.name, recording.reco_id
        )
        wav = np.asarray(recording.waveform, dtype=np.float32)  # shape: (N,)
        num_frames = steps.num_label_frames(len(wav), sr)
        with timed(hook, "vad"):
            regions = steps.detect_speech(self.vad, wav)  # shape: (R, 2) samples
        with timed(hook, "windows"):
            window, hop = cfg.profile.windows(cfg.embedding)
            windows = steps.windows_over_speech(regions, window, hop, sr, len(wav))  # shape: (W, 2) samples
        with timed(hook, "embedding"):
            embeddings = steps.embed_windows(  # shape: (W, D)
                self.embedder, wav, windows, cfg.embedding.batch_size, cfg.embedding.normalize_db
            )
        with timed(hook, "scoring"):
            adapted = adapt_profiles(embeddings, profiles, cfg.profile.adapt)  # shape: (S, D)
            scores = cosine_scores(embeddings, adapted)  # shape: (W, S)
            active = active_profiles(scores, adapted, cfg.profile)  # shape: (W, S)
        with timed(hook, "postprocess"):
            speech = steps.speech_frame_mask(regions, num_frames, sr)  # shape: (T,)
            labels = steps.window_scores_to_frame_labels(  # shape: (T, S)
                windows, active, num_frames, sr, threshold=0.5, method=cfg.embedding.frame_method
            )
            spread = seconds_to_frames(cfg.profile.spread)
            labels = spread_activity(labels, spread) * speech[:, None]
            annotation = labels_to_annotation(
                recording.reco_id,
                labels,
                list(names),
                smooth_size=cfg.postprocess.smooth_size,
                dur_threshold=cfg.postprocess.dur_threshold,
            )
            # where several speakers are active, the one most similar to the frame's windows stays
            similarity = steps.window_scores_to_frame_scores(  # shape: (T, S)
                windows, scores, num_frames, sr, cfg.embedding.frame_method
            )
            exclusive = exclusive_annotation(
                recording.reco_id,
                labels,
                similarity,
                list(names),
                smooth_size=cfg.postprocess.smooth_size,
                dur_threshold=cfg.postprocess.dur_threshold,
            )
            if cfg.postprocess.exclusive:
                annotation = exclusive
        logger.debug(
            "%s: %d speech regions, %d windows, %d profiles",
            recording.reco_id,
            len(regions),
            len(windows),
            len(names),
        )
        seconds = speaker_seconds(annotation)
        traces = tuple(
            SpeakerTrace(name, adapted[k], seconds[name], enrolled=names_given is not None)
            for k, name in enumerate(names)
            if name in seconds
        )
        return Diarization(annotation, tuple(sorted(traces, key=lambda t: t.speaker)), exclusive)
