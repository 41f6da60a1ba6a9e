"""Typed configuration: YAML files plus ``--set key.sub=value`` overrides.

Every section is a dataclass; unknown keys are rejected with their dotted name
and the valid alternatives. What to build (model, device, batch size) is kept
apart from tuned thresholds, which live in their own fields with their defaults
visible here and in ``configs/``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from diar.errors import DiarError, quote, shorten


class ConfigError(DiarError, ValueError):
    """A config file or override names an unknown key, gives a value of the wrong type, or one
    outside what the key allows (the message names the dotted key, the value and what is allowed)."""


#: ``*.device`` values: auto (CUDA when there is one), cpu, cuda or cuda:N.
DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
#: Names of modes, models and methods (looked up in their registries when built).
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
#: ``clustering.linkage`` values (scipy linkage methods that work on cosine distances).
LINKAGES = ("average", "complete", "single", "weighted")
#: ``embedding.frame_method`` values.
FRAME_METHODS = ("center", "mean")
#: ``frame_model.autocast`` and ``embedding.autocast`` values.
AUTOCAST = ("none", "bf16", "fp16")


def _positive(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


class _Checks:
    """The problems of one config section: each names the dotted key, the value and what is allowed."""

    def __init__(self, section: str) -> None:
        self.section = section
        self.problems: list[str] = []

    def require(self, key: str, value: Any, ok: bool, allowed: str) -> None:
        if not ok:
            self.problems.append(f"{self.section}.{key}: {quote(value)} is not allowed; expected {allowed}")

    def number(
        self,
        key: str,
        value: Any,
        low: float | None = None,
        high: float | None = None,
        *,
        low_open: bool = False,
        null: str = "",
    ) -> None:
        """A finite number in [low, high] (``low_open``: above low); ``null``: what null means."""
        if value is None and null:
            return
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok and low is not None:
            ok = value > low if low_open else value >= low
        if ok and high is not None:
            ok = value <= high
        kind = "an integer" if isinstance(value, int) and not isinstance(value, bool) else "a number"
        if low is not None and high is not None:
            allowed = f"{kind} in {'(' if low_open else '['}{low:g}, {high:g}]"
        elif low is not None:
            allowed = f"{kind} {'>' if low_open else '>='} {low:g}"
        else:
            allowed = "a finite number"
        self.require(key, value, ok, allowed + (f", or null ({null})" if null else ""))

    def choice(self, key: str, value: Any, choices: tuple[str, ...]) -> None:
        self.require(key, value, value in choices, f"one of {', '.join(choices)}")

    def device(self, key: str, value: Any) -> None:
        self.require(
            key,
            value,
            isinstance(value, str) and DEVICE_PATTERN.match(value) is not None,
            "auto, cpu, cuda or cuda:N",
        )

    def name(self, key: str, value: Any) -> None:
        ok = isinstance(value, str) and NAME_PATTERN.match(value) is not None
        self.require(key, value, ok, "a registered name (letters, digits, '.', '_', '+', '-')")

    def raise_if_any(self) -> None:
        if self.problems:
            raise ConfigError("; ".join(self.problems))


@dataclass(frozen=True)
class AudioConfig:
    """How audio is read (wav.scp, enrollment lists, the files given to ``diar diarize``).

    Attributes:
        allow_pipes: accept Kaldi pipe lines ``cmd |`` (they run a shell command).
    """

    allow_pipes: bool = False

    def validate(self) -> None:
        """Nothing to check beyond the types :func:`from_dict` enforces."""


@dataclass(frozen=True)
class VadConfig:
    """Speech activity detection (silero-vad)."""

    name: str = "silero"
    threshold: float = 0.5
    min_speech_duration: float = 0.25
    min_silence_duration: float = 0.1
    speech_pad: float = 0.03

    def validate(self) -> None:
        """Raise ConfigError naming each ``vad.*`` key whose value is out of range."""
        c = _Checks("vad")
        c.name("name", self.name)
        c.number("threshold", self.threshold, 0.0, 1.0)
        for key in ("min_speech_duration", "min_silence_duration", "speech_pad"):
            c.number(key, getattr(self, key), 0.0)
        c.raise_if_any()


@dataclass(frozen=True)
class EmbeddingConfig:
    """Speaker embedder and the sliding windows it sees."""

    name: str = "campplus"
    model_dir: str | None = None
    device: str = "auto"
    batch_size: int = 64
    # mixed precision of the embedder's forward passes (none | bf16 | fp16; campplus only)
    autocast: str = "none"
    window: float = 1.5
    hop: float = 0.75
    # how frames of overlapping windows get their speaker: nearest window "center" or "mean"
    frame_method: str = "center"
    # each window is scaled to this RMS level (dBFS) before embedding; null: unchanged
    normalize_db: float | None = -30.0

    def validate(self) -> None:
        """Raise ConfigError naming each ``embedding.*`` key whose value is out of range."""
        c = _Checks("embedding")
        c.name("name", self.name)
        c.device("device", self.device)
        c.number("batch_size", self.batch_size, 1)
        c.choice("autocast", self.autocast, AUTOCAST)
        c.number("window", self.window, 0.0, low_open=True)
        c.number("hop", self.hop, 0.0, low_open=True)
        if _positive(self.window) and _positive(self.hop) and self.hop > self.window:
            c.require("hop", self.hop, False, f"at most embedding.window ({self.window:g} s)")
        c.choice("frame_method", self.frame_method, FRAME_METHODS)
        c.number("normalize_db", self.normalize_db, -200.0, 0.0, null="unchanged level")
        c.raise_if_any()


@dataclass(frozen=True)
class ClusteringConfig:
    """Clustering of embeddings into speakers: of windows (mode: cluster), of local speakers
    (mode: frame, the identity step). The built-in values are the frame mode's (CAM++ local
    speakers: average linkage cut at cosine distance 0.75, no merging or refinement, which
    the identity step's per-window assignment does); ``configs/ge2e.yaml`` and
    ``configs/xvector.yaml`` set the cluster mode's."""

    method: str = "agglomerative"
    num_speakers: int | None = None
    min_speakers: int = 1
    max_speakers: int | None = None
    # agglomerative: cosine-distance cut and linkage (average, complete, single, weighted)
    threshold: float = 0.75
    linkage: str = "average"
    # spectral: p-pruning fraction, neighbours kept at least, eigengap search limit
    pval: float = 0.06
    min_pnum: int = 6
    max_auto_speakers: int = 10
    # both: clusters with fewer windows are folded into the nearest larger one, then clusters
    # separated by less than this are merged (mean margin of own- over other-centroid cosine
    # similarity; one speaker split in two; 0: off)
    min_cluster_size: int = 1
    merge_separation: float = 0.0
    # finally each window moves to its nearest centroid, repeated up to this many times (0: off)
    refine_iterations: int = 0
    # a window also gets its second-nearest speaker when its similarity gap, relative to the
    # two centroids' distance, is below this (overlapped speech); 0: one speaker per window
    overlap_margin: float = 0.25

    def validate(self) -> None:
        """Raise ConfigError naming each ``clustering.*`` key whose value is out of range."""
        c = _Checks("clustering")
        c.name("method", self.method)
        c.number("num_speakers", self.num_speakers, 1, null="estimated per recording")
        c.number("min_speakers", self.min_speakers, 1)
        c.number("max_speakers", self.max_speakers, 1, null="no upper bound")
        low, high = self.min_speakers, self.max_speakers
        if isinstance(low, int) and isinstance(high, int) and 1 <= high < low:
            c.require(
                "min_speakers",
                self.min_speakers,
                False,
                f"at most clustering.max_speakers ({self.max_speakers})",
            )
        c.number("threshold", self.threshold, 0.0, 2.0)
        c.choice("linkage", self.linkage, LINKAGES)
        c.number("pval", self.pval, 0.0, 1.0, low_open=True)
        c.number("min_pnum", self.min_pnum, 1)
        c.number("max_auto_speakers", self.max_auto_speakers, 1)
        c.number("min_cluster_size", self.min_cluster_size, 1)
        c.number("merge_separation", self.merge_separation, 0.0, 2.0)
        c.number("refine_iterations", self.refine_iterations, 0)
        c.number("overlap_margin", self.overlap_margin, 0.0)
        c.raise_if_any()


@dataclass(frozen=True)
class ProfileConfig:
    """Scoring of window embeddings against enrolled speaker profiles (mode: profile).

    Defaults tuned for the default embedder, CAM++, on the simulated LibriSpeech
    conversations of the shared corpus (``configs/profile.yaml``); GE2E and x-vector want
    other windows (``configs/ge2e.yaml``, ``configs/xvector.yaml``).
    """

    # seconds per window and between window starts in profile mode; null: embedding.window /
    # embedding.hop. Short, dense windows: a speaker's turns end where its windows end, and
    # CAM++ knows a voice from 1 s of it (longer windows blur turn changes)
    window: float | None = 1.0
    hop: float | None = 0.25
    # each profile is blended with the recording's own windows of that speaker:
    # adapt * profile + (1 - adapt) * their centroid (1: enrollment profile only)
    adapt: float = 0.5
    # in each window the best profile talks, and so does (overlap) any other whose cosine
    # similarity reaches `threshold` and whose gap to the best, divided by the two profiles'
    # cosine distance, is at most `overlap_margin` (with CAM++ the second voice of a window
    # rarely scores that high: overlap comes mostly from `spread` at turn changes)
    threshold: float = 0.5
    overlap_margin: float = 0.2
    # windows whose best similarity is below this get no speaker (-1: never)
    min_score: float = -1.0
    # seconds each speaker's activity is extended on both sides (overlap at turn changes)
    spread: float = 0.25
    # embed only the VAD-detected speech of enrollment files
    enroll_vad: bool = True
    # where a recording's profiles come from when --profile-scp gives none: a profile.scp
    # (`<reco-id> <ark>:<offset>`, names from profile.names beside it), or an enrollment list
    # (`<reco-id> <speaker> <path>`) whose files the diarizer embeds; read once by `diar
    # diarize` or the job's driver, which hand each recording its own (ProfileSources)
    profile_scp: str | None = None
    enroll: str | None = None

    def windows(self, embedding: EmbeddingConfig) -> tuple[float, float]:
        """(window, hop) seconds of profile mode: ``window`` / ``hop``, else ``embedding``'s."""
        window = self.window if self.window is not None else embedding.window
        hop = self.hop if self.hop is not None else embedding.hop
        return window, hop

    def validate(self) -> None:
        """Raise ConfigError naming each ``profile.*`` key whose value is out of range."""
        c = _Checks("profile")
        c.number("window", self.window, 0.0, low_open=True, null="embedding.window")
        c.number("hop", self.hop, 0.0, low_open=True, null="embedding.hop")
        c.number("adapt", self.adapt, 0.0, 1.0)
        c.number("threshold", self.threshold, -1.0, 1.0)
        c.number("overlap_margin", self.overlap_margin, 0.0)
        c.number("min_score", self.min_score, -1.0, 1.0)
        c.number("spread", self.spread, 0.0)
        for key in ("profile_scp", "enroll"):
            value = getattr(self, key)
            c.require(key, value, value is None or value.strip() != "", "a file path, or null")
        c.raise_if_any()


@dataclass(frozen=True)
class FrameModelConfig:
    """Frame-level speaker-activity model (mode: frame): pyannote segmentation-3.0 (the
    offline default) or WavLM-Base-Plus-SD, and what of its local speakers is embedded.

    Build: ``name`` (FRAME_MODELS registry: segmentation-3.0, wavlm-sd), ``model`` (null:
    the model's default weights; or a local file or directory, or a hub id in the local
    cache), ``device`` (auto|cpu|cuda), ``batch_size`` (windows per forward pass; None: the
    model's default for its device), ``autocast`` (none|bf16|fp16).
    Windows: ``window`` and ``hop`` seconds.
    Embedding budget: the local speakers of every window are embedded in recordings shorter
    than ``embed_all_seconds`` (short recordings need more embeddings per second of audio to
    find their speakers), of every ``embed_every``-th window in longer ones (None: always
    every ``embed_every``-th).
    Tuned: ``threshold`` (activity probability; segmentation-3.0's decoded powerset is 0/1),
    ``embed_context`` (seconds of each window's speech beyond the stretch it owns that
    go into the embedding of each of its local speakers), ``embed_min_seconds`` /
    ``embed_max_seconds`` (speech per embedding; local speakers with less take the speaker
    whose activity agrees with theirs), ``embed_step`` (each embedding's speech is cut to a
    multiple of this many seconds, so that local speakers share forward passes; None: as
    gathered). The step from local speakers to speakers has its own
    section, :class:`IdentityConfig`.
    """

    name: str = "segmentation-3.0"
    model: str | None = None
    device: str = "auto"
    batch_size: int | None = None
    autocast: str = "none"
    window: float = 7.0
    hop: float = 2.5
    threshold: float = 0.5
    embed_every: int = 2
    embed_all_seconds: float | None = 600.0
    embed_context: float = 1.5
    embed_min_seconds: float = 1.0
    embed_max_seconds: float = 2.0
    embed_step: float | None = 0.5

    def validate(self) -> None:
        """Raise ConfigError naming each ``frame_model.*`` key whose value is out of range."""
        c = _Checks("frame_model")
        c.name("name", self.name)
        c.device("device", self.device)
        c.number("batch_size", self.batch_size, 1, null="the model's default for its device")
        c.choice("autocast", self.autocast, AUTOCAST)
        c.number("window", self.window, 0.0, low_open=True)
        c.number("hop", self.hop, 0.0, low_open=True)
        if _positive(self.window) and _positive(self.hop) and self.hop > self.window:
            c.require("hop", self.hop, False, f"at most frame_model.window ({self.window:g} s)")
        c.number("threshold", self.threshold, 0.0, 1.0)
        c.number("embed_every", self.embed_every, 1)
        c.number("embed_all_seconds", self.embed_all_seconds, 0.0, null="every embed_every-th window only")
        c.number("embed_context", self.embed_context, 0.0)
        c.number("embed_step", self.embed_step, 0.0, low_open=True, null="the speech as gathered")
        c.number("embed_min_seconds", self.embed_min_seconds, 0.0)
        c.number("embed_max_seconds", self.embed_max_seconds, 0.0, low_open=True)
        seconds = (self.embed_min_seconds, self.embed_max_seconds)
        if all(_positive(x) for x in seconds) and self.embed_max_seconds < self.embed_min_seconds:
            c.require("embed_max_seconds", self.embed_max_seconds, False, "at least embed_min_seconds")
        c.raise_if_any()


@dataclass(frozen=True)
class IdentityConfig:
    """Frame mode's step from local speakers to recording speakers (:mod:`diar.identity`),
    with or without enrolled profiles (``profile.enroll`` / ``profile.profile_scp``).

    ``min_speaker_seconds``: clusters with less embedded speech fold into the nearest
    speaker. ``distinct_distance``: local speakers of one window whose embeddings are this far
    apart (cosine distance) are different people: without a known count, at least as many
    speakers as one window holds such local speakers are kept (None: no such bound).
    ``overlap_fraction``: where the frame model hears n speakers at once in at least this
    fraction of the speech it hears (and for a second or more), the recording has at least n
    speakers (None: no such bound). ``split_pause``: a local speaker is cut at its pauses of
    at least this many seconds, and a part with enough speech of its own that sounds like
    another speaker takes that speaker (None: never cut). ``unknown_threshold``: least cosine
    similarity between a speaker and the enrolled profile it matches; below it the speaker
    is unknown (named ``unknown1``, ...).
    """

    min_speaker_seconds: float = 1.0
    distinct_distance: float | None = 0.55
    overlap_fraction: float | None = 0.05
    split_pause: float | None = 0.34
    unknown_threshold: float = 0.3

    def validate(self) -> None:
        """Raise ConfigError naming each ``identity.*`` key whose value is out of range."""
        c = _Checks("identity")
        c.number("min_speaker_seconds", self.min_speaker_seconds, 0.0)
        c.number("distinct_distance", self.distinct_distance, 0.0, 2.0, null="no lower bound on the count")
        c.number("overlap_fraction", self.overlap_fraction, 0.0, 1.0, null="no lower bound on the count")
        c.number("split_pause", self.split_pause, 0.0, low_open=True, null="local speakers are never cut")
        c.number("unknown_threshold", self.unknown_threshold, -1.0, 1.0)
        c.raise_if_any()


@dataclass(frozen=True)
class PostprocessConfig:
    """Frame-level post-processing shared by every model (ModelScope's names, 10 ms frames).

    The default's median filter (51 frames) is shorter than ModelScope's 83 (its pipelines'
    configs keep 83): the frame model's outputs are smooth already.

    With ``exclusive`` the turns keep at most one speaker at each instant, the one the
    pipeline scores highest among those it hears there (pyannote 4's exclusive diarization,
    for aligning with a transcript); the default keeps overlapped speech.
    """

    smooth_size: int = 51
    dur_threshold: int = 10
    exclusive: bool = False

    def validate(self) -> None:
        """Raise ConfigError naming each ``postprocess.*`` key whose value is out of range."""
        c = _Checks("postprocess")
        c.number("smooth_size", self.smooth_size, 1)
        c.number("dur_threshold", self.dur_threshold, 0)
        c.require("exclusive", self.exclusive, isinstance(self.exclusive, bool), "true or false")
        c.raise_if_any()


#: How the job runs a recording's steps (``job.stages``).
JOB_STAGES = ("auto", "single", "split")


@dataclass(frozen=True)
class JobConfig:
    """How the Ray job shards the corpus and runs actors (``python -m jobs.diarize``).

    Attributes:
        num_shards: number of shards; None derives it from ``shard_seconds``.
        shard_seconds: audio per shard when ``num_shards`` is None.
        num_actors: number of model actors; None: one per shard, up to ``max_actors``, and on
            a cluster without autoscaler no more than it holds.
        max_actors: most actors the job asks for when ``num_actors`` is None (None: one per
            shard). On an autoscaling cluster the actors that do not fit yet are demand: the
            autoscaler adds nodes for them, and each takes shards once it is ready.
        num_cpus: CPUs per actor (also its torch threads).
        num_gpus: GPUs per actor (fractions share a GPU); None: 1 on a GPU cluster, else 0.
        max_failures: failure budget: a count if >= 1, a fraction of the recordings if < 1.
        max_restarts: times Ray restarts an actor whose process died.
        max_task_retries: times a shard interrupted by an actor death is retried.
        recording_timeout: seconds one recording may take (reading and diarizing) on a Ray
            actor; past it the actor ends itself and the recording becomes a failure row
            (None: no limit). Not enforced with ``--local``.
        out_formats: corpus formats besides RTTM: parquet, vad, exclusive (the exclusive turns,
            corpus.exclusive.rttm).
        report: write ``OUT/report.html`` at the end, the page ``diar report OUT`` writes (summary,
            failures, a table of the recordings and their timelines; no scores: ``diar report OUT
            --ref REF`` adds them).
        placement_timeout: seconds to wait for a node that can hold one actor on a cluster
            that cannot grow (no autoscaler); past it the job stops (None: wait forever).
            On an autoscaling cluster such an actor is demand and the job waits.
        link_speakers: the reduce step links speakers across recordings (``speakers.tsv``, corpus
            files with global speaker labels; see :mod:`diar.linking`).
        link_threshold: cosine distance (average linkage between speakers' mean embeddings) up to
            which speakers of different recordings are linked.
        link_min_seconds: speakers with less speech attach to the nearest global speaker instead
            of founding one.
        link_neighbors: nearest neighbours per speaker considered for linking.
        stages: ``single``: one actor kind does everything for its shards; ``split``: the stage
            split (mode frame only; :mod:`jobs.stages`): reading, features, clustering and
            writing on CPU workers, the two model forwards on GPU actors; ``auto``: split when
            the cluster has GPUs and the mode is frame, else single.
        stage_cpus: CPUs per CPU-stage worker of the split.
        stage_workers: most workers per CPU stage of the split.
        model_cpus: CPUs per model-stage actor of the split (also its torch threads).
        model_gpus: GPUs per model-stage actor of the split; the segmentation and embedding
            actors share a GPU at 0.5 each.
        model_actors: most actors per model stage of the split (each stage starts with one).
        model_batch: recordings per model-stage call of the split: their windows share
            segmentation batches (``frame_model.batch_size`` windows per forward pass), and on
            a GPU their CAM++ inputs of equal shape share forward passes.
    """

    num_shards: int | None = None
    shard_seconds: float = 600.0
    num_actors: int | None = None
    max_actors: int | None = None
    num_cpus: float = 1.0
    num_gpus: float | None = None
    max_failures: float = 0.0
    max_restarts: int = 3
    max_task_retries: int = 3
    recording_timeout: float | None = None
    out_formats: list[str] = field(default_factory=lambda: ["rttm", "parquet"])
    report: bool = True
    placement_timeout: float | None = 60.0
    link_speakers: bool = False
    link_threshold: float = 0.4
    link_min_seconds: float = 4.0
    link_neighbors: int = 20
    stages: str = "auto"
    stage_cpus: float = 1.0
    stage_workers: int = 2
    model_cpus: float = 1.0
    model_gpus: float = 0.5
    model_actors: int = 1
    model_batch: int = 4

    def validate(self) -> None:
        """Raise ConfigError naming each ``job.*`` key whose value is impossible."""
        c = _Checks("job")
        c.number("num_shards", self.num_shards, 1, null="one per job.shard_seconds of audio")
        c.number("shard_seconds", self.shard_seconds, 0.0, low_open=True)
        c.number("num_actors", self.num_actors, 1, null="one per shard, up to job.max_actors")
        c.number("max_actors", self.max_actors, 1, null="one per shard")
        if isinstance(self.num_actors, int) and isinstance(self.max_actors, int):
            c.require(
                "num_actors",
                self.num_actors,
                self.num_actors <= self.max_actors,
                f"at most job.max_actors ({self.max_actors}), or null",
            )
        c.number("num_cpus", self.num_cpus, 0.0, low_open=True)
        c.number("num_gpus", self.num_gpus, 0.0, null="1 on a GPU cluster, else 0")
        c.number("max_failures", self.max_failures, 0.0)
        c.number("max_restarts", self.max_restarts, -1)
        c.number("max_task_retries", self.max_task_retries, -1)
        c.number("recording_timeout", self.recording_timeout, 0.0, low_open=True, null="no limit")
        c.number("placement_timeout", self.placement_timeout, 0.0, null="wait forever")
        c.require("link_speakers", self.link_speakers, isinstance(self.link_speakers, bool), "true or false")
        c.require("report", self.report, isinstance(self.report, bool), "true or false")
        c.number("link_threshold", self.link_threshold, 0.0, 2.0)
        c.number("link_min_seconds", self.link_min_seconds, 0.0)
        c.number("link_neighbors", self.link_neighbors, 1)
        c.choice("stages", self.stages, JOB_STAGES)
        c.number("stage_cpus", self.stage_cpus, 0.0, low_open=True)
        c.number("stage_workers", self.stage_workers, 1)
        c.number("model_cpus", self.model_cpus, 0.0, low_open=True)
        c.number("model_gpus", self.model_gpus, 0.0)
        c.number("model_actors", self.model_actors, 1)
        c.number("model_batch", self.model_batch, 1)
        from diar.formats.writers import OUTPUT_FORMATS

        unknown = [f for f in self.out_formats if f not in OUTPUT_FORMATS]
        c.require("out_formats", self.out_formats, not unknown, f"formats among {', '.join(OUTPUT_FORMATS)}")
        c.raise_if_any()


@dataclass(frozen=True)
class Config:
    """Everything one diarization run needs."""

    mode: str = "frame"
    num_threads: int = 1
    sample_rate: int = 16000
    audio: AudioConfig = field(default_factory=AudioConfig)
    vad: VadConfig = field(default_factory=VadConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    frame_model: FrameModelConfig = field(default_factory=FrameModelConfig)
    identity: IdentityConfig = field(default_factory=IdentityConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    job: JobConfig = field(default_factory=JobConfig)

    def validate(self) -> None:
        """Check every value against what its key allows, before any model loads or file is written.

        Raises:
            ConfigError: one line naming each offending dotted key, its value and what is allowed.
        """
        c = _Checks("config")
        c.name("mode", self.mode)
        c.number("num_threads", self.num_threads, 1)
        c.number("sample_rate", self.sample_rate, 1000)
        problems = [p.replace("config.", "", 1) for p in c.problems]
        sections = (self.audio, self.vad, self.embedding, self.clustering, self.profile, self.frame_model)
        for section in (*sections, self.identity, self.postprocess, self.job):
            try:
                section.validate()
            except ConfigError as e:
                problems.append(str(e))
        problems.extend(self._profile_window_problems())
        if problems:
            raise ConfigError("; ".join(problems))

    def _profile_window_problems(self) -> list[str]:
        """Profile mode's hop must not exceed its window, whichever section each comes from."""
        profile, embedding = self.profile, self.embedding
        window, hop = profile.windows(embedding)
        if not (_positive(window) and _positive(hop)) or hop <= window:
            return []
        window_key = "profile.window" if profile.window is not None else "embedding.window"
        if profile.hop is not None:
            return [f"profile.hop: {quote(hop)} is not allowed; expected at most {window_key} ({window:g} s)"]
        if profile.window is not None:
            return [
                f"profile.window: {quote(window)} is not allowed; expected at least embedding.hop "
                f"({hop:g} s, the hop while profile.hop is null)"
            ]
        return []  # both from embedding.*: its own check names them


C = TypeVar("C")


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str = "") -> C:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys by dotted name."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {quote(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(
                f"unknown config key {quote(dotted)}; valid keys here: {', '.join(sorted(fields))}"
            )
        kwargs[key] = _coerce(hints[key], value, dotted)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:  # `vad: null` would silently mean "the defaults"
            raise ConfigError(
                f"{where}: null is not allowed; expected a mapping of {where}.* keys "
                "(leave the section out for its defaults)"
            )
        return from_dict(tp, value, where)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {quote(value)}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {quote(value)}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {quote(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {quote(value)}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {quote(value)}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {quote(value)}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts (for YAML, JSON and summaries)."""
    return dataclasses.asdict(config)


#: Most YAML nodes a config may expand to once its aliases (``*name``) are followed: a real
#: config has a few hundred; nested aliases ("billion laughs") could reach billions.
MAX_YAML_NODES = 10_000
#: Largest config file read (bytes); ``--config /dev/zero`` must not fill the memory.
MAX_CONFIG_BYTES = 1 << 20


def _expanded_size(root: yaml.Node, limit: int) -> int:
    """Nodes of the YAML graph under ``root`` counted as the data it constructs (aliases
    expanded), stopping once above ``limit``; -1 for a recursive alias."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            return -1
        active.add(key)
        total = 1
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        for child in children:
            n = size(child)
            if n < 0:
                return -1
            total += n
            if total > limit:
                break
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _check_unique_keys(root: yaml.Node, what: str) -> None:
    """Raise ConfigError naming the line of a key given twice in one mapping.

    PyYAML keeps the last of two equal keys without a word (a second ``clustering:`` section
    would silently drop the first); YAML 1.2 says keys are unique. Merge keys (``<<``) and
    the keys they bring in may be overridden, as YAML allows.
    """
    seen: set[int] = set()
    todo = [root]
    while todo:
        node = todo.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            todo.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                todo.extend((key, value))
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    continue
                line = key.start_mark.line + 1
                if (key.tag, key.value) in first:
                    raise ConfigError(
                        f"{what}:{line}: duplicate key {quote(key.value)} (first on line "
                        f"{first[(key.tag, key.value)]}); YAML keeps only the last, so give each key once"
                    )
                first[(key.tag, key.value)] = line


def safe_load(text: str, what: str) -> Any:
    """``yaml.safe_load(text)``, refusing aliases that expand beyond :data:`MAX_YAML_NODES`.

    Raises:
        ConfigError naming ``what`` for invalid YAML, a recursive alias or an alias bomb.
    """
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except yaml.YAMLError as e:
            raise ConfigError(f"{what}: invalid YAML: {shorten(' '.join(str(e).split()))}") from None
        if node is None:
            return None
        size = _expanded_size(node, MAX_YAML_NODES)
        if size < 0:
            raise ConfigError(f"{what}: a YAML alias refers to itself; refused")
        if size > MAX_YAML_NODES:
            raise ConfigError(
                f"{what}: its YAML aliases (*name) expand to more than {MAX_YAML_NODES} values; refused"
            )
        _check_unique_keys(node, what)
        try:
            return loader.construct_document(node)
        except yaml.YAMLError as e:
            raise ConfigError(f"{what}: invalid YAML: {shorten(' '.join(str(e).split()))}") from None
    finally:
        loader.dispose()


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {quote(item)} is not of the form KEY=VALUE")
        value = safe_load(raw, f"--set {shorten(key.strip())}") if raw.strip() else None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {quote(item)} conflicts with another override")
        node[parts[-1]] = value
    return nested


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_config_text(path: str | Path) -> str:
    """The text of a config file (UTF-8, at most :data:`MAX_CONFIG_BYTES`), or a ConfigError naming it."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"cannot read config file {shorten(str(path))}: {e.strerror or e}") from e
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{shorten(str(path))}: larger than {MAX_CONFIG_BYTES} bytes; not a config file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(
            f"{shorten(str(path))}:{line}: not valid UTF-8 (byte {raw[e.start]:#04x} at offset {e.start}); "
            "save the config as UTF-8"
        ) from None


def _former_names(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``job.allow_pipes``, the former name of ``audio.allow_pipes``, read as it:
    true turns pipes on (whatever ``audio.allow_pipes`` says), false leaves them as they are."""
    job = data.get("job")
    if not isinstance(job, dict) or "allow_pipes" not in job:
        return data
    job = dict(job)
    value = job.pop("allow_pipes")
    if not isinstance(value, bool):
        raise ConfigError(
            f"job.allow_pipes: {quote(value)} is not allowed; expected true or false "
            "(the former name of audio.allow_pipes)"
        )
    data = {**data, "job": job}
    audio = data.get("audio")
    if value and (audio is None or isinstance(audio, dict)):  # anything else: from_dict says why
        data["audio"] = {**(audio or {}), "allow_pipes": True}
    return data


#: Modes that diarize against enrolled profiles when ``profile.enroll`` / ``profile_scp`` name some.
PROFILE_MODES = ("frame", "profile")


def with_profiles(config: Config) -> Config:
    """The config to diarize with the profiles ``--enroll`` / ``--profile-scp`` give: frame and
    profile modes take them as they are (frame mode matches its speakers to them), mode
    ``cluster`` has no use for them and becomes mode ``profile`` (the windows scored against
    the profiles, as before)."""
    if config.mode in PROFILE_MODES:
        return config
    changed = dataclasses.replace(config, mode="profile")
    changed.validate()
    return changed


def uses_profiles(config: Config) -> bool:
    """Whether the recordings are diarized against the enrolled profiles the config names
    (mode profile, or mode frame with ``profile.enroll`` or ``profile.profile_scp``)."""
    if config.mode == "profile":
        return True
    return config.mode == "frame" and bool(config.profile.enroll or config.profile.profile_scp)


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``KEY=VALUE`` overrides, then
    ``values`` (dotted keys with values as they are, e.g. a command's shortcut options: a path
    is not parsed as YAML), validated once. The config is immutable: to change it, load it
    again with more overrides, or ``dataclasses.replace`` a validated copy.

    Raises:
        ConfigError: an unreadable or non-UTF-8 file, invalid YAML, an alias bomb, an unknown
            key, a value of the wrong type, or one its key does not allow (:meth:`Config.validate`).
    """
    data: dict[str, Any] = {}
    if path is not None:
        loaded = safe_load(read_config_text(path), shorten(str(path)))
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{shorten(str(path))}: the top level must be a mapping")
        data = loaded or {}
    if overrides:
        data = _deep_merge(data, parse_overrides(overrides))
    for key, value in (values or {}).items():
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    try:
        config = from_dict(Config, _former_names(data))
    except ConfigError as e:
        if path is not None:
            raise ConfigError(f"{shorten(str(path))}: {e}") from None
        raise
    config.validate()
    return config
