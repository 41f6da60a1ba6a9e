"""Typed configuration: YAML files plus ``--set key.sub=value`` overrides.

Every section is a dataclass; unknown keys are rejected with their dotted name
and the valid alternatives. What to build (model, device, batch size) is kept
apart from tuned thresholds, which live in their own fields with their defaults
visible here and in ``configs/``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from diar.errors import DiarError


class ConfigError(DiarError, ValueError):
    """A config file or override names an unknown key or gives a value of the wrong type."""


@dataclass
class VadConfig:
    """Speech activity detection (silero-vad)."""

    name: str = "silero"
    threshold: float = 0.5
    min_speech_duration: float = 0.25
    min_silence_duration: float = 0.1
    speech_pad: float = 0.03


@dataclass
class EmbeddingConfig:
    """Speaker embedder and the sliding windows it sees."""

    name: str = "ge2e"
    model_dir: str | None = None
    device: str = "auto"
    batch_size: int = 64
    window: float = 1.5
    hop: float = 0.75
    # how frames of overlapping windows get their speaker: nearest window "center" or "mean"
    frame_method: str = "center"
    # each window is scaled to this RMS level (dBFS) before embedding; null: unchanged
    normalize_db: float | None = -30.0


@dataclass
class ClusteringConfig:
    """Clustering of window embeddings into speakers (mode: cluster)."""

    method: str = "spectral"
    num_speakers: int | None = None
    min_speakers: int = 1
    max_speakers: int | None = None
    # agglomerative: cosine-distance cut and linkage (average, complete, single, weighted)
    threshold: float = 0.4
    linkage: str = "average"
    # spectral: p-pruning fraction, neighbours kept at least, eigengap search limit
    pval: float = 0.06
    min_pnum: int = 6
    max_auto_speakers: int = 10
    # both: clusters with fewer windows are folded into the nearest larger one, then clusters
    # separated by less than this are merged (mean margin of own- over other-centroid cosine
    # similarity; one speaker split in two; 0: off)
    min_cluster_size: int = 1
    merge_separation: float = 0.12
    # finally each window moves to its nearest centroid, repeated up to this many times (0: off)
    refine_iterations: int = 3
    # a window also gets its second-nearest speaker when its similarity gap, relative to the
    # two centroids' distance, is below this (overlapped speech); 0: one speaker per window
    overlap_margin: float = 0.25


@dataclass
class ProfileConfig:
    """Scoring of window embeddings against enrolled speaker profiles (mode: profile)."""

    # seconds between window starts in profile mode (denser than clustering needs: the
    # overlap at turn changes is found per window); null: embedding.hop
    hop: float | None = 0.5
    # each profile is blended with the recording's own windows of that speaker:
    # adapt * profile + (1 - adapt) * their centroid (1: enrollment profile only)
    adapt: float = 0.5
    # in each window the best profile talks, and so does (overlap) any other whose cosine
    # similarity reaches `threshold` and whose gap to the best, divided by the two profiles'
    # cosine distance, is at most `overlap_margin`
    threshold: float = 0.5
    overlap_margin: float = 0.2
    # windows whose best similarity is below this get no speaker (-1: never)
    min_score: float = -1.0
    # seconds each speaker's activity is extended on both sides (overlap at turn changes)
    spread: float = 0.25
    # embed only the VAD-detected speech of enrollment files
    enroll_vad: bool = True
    # where a recording's profiles come from when the job gives none (e.g. `diar diarize`):
    # a profile.scp (`<reco-id> <ark>:<offset>`, names from profile.names beside it), or an
    # enrollment list (`<reco-id> <speaker> <path>`) embedded by the diarizer itself
    profile_scp: str | None = None
    enroll: str | None = None


@dataclass
class FrameModelConfig:
    """Frame-level speaker-activity model (mode: frame), e.g. WavLM-Base-Plus-SD.

    Build: ``name`` (FRAME_MODELS registry), ``model`` (Hugging Face id or local
    directory), ``device`` (auto|cpu|cuda), ``batch_size`` (windows per forward
    pass; None: the model's default for its device), ``autocast`` (none|bf16|fp16).
    Windows: ``window`` and ``hop`` seconds.
    Tuned: ``threshold`` (activity probability), stitching of local speakers:
    ``link_frames`` / ``link_iou`` (agreement needed on a window overlap to link
    two local speakers), ``link_threshold`` (cosine distance under which chains
    of local speakers are merged by their embeddings from ``embedding.name``;
    ``link_adapt`` lowers it to that fraction of the median distance between
    chains known to be different speakers, when lower; null: fixed threshold),
    ``split_chains`` (cut a chain where one window's embedding leaves the chain's),
    ``embed_min_seconds`` / ``embed_max_seconds`` (speech per chain embedding).
    """

    name: str = "wavlm-sd"
    model: str = "microsoft/wavlm-base-plus-sd"
    device: str = "auto"
    batch_size: int | None = None
    autocast: str = "none"
    window: float = 10.0
    hop: float = 8.0
    threshold: float = 0.5
    link_frames: int = 10
    link_iou: float = 0.5
    link_threshold: float = 0.4
    link_adapt: float | None = 0.9
    split_chains: bool = True
    embed_min_seconds: float = 1.0
    embed_max_seconds: float = 30.0


@dataclass
class PostprocessConfig:
    """Frame-level post-processing shared by every model (ModelScope's names, 10 ms frames)."""

    smooth_size: int = 83
    dur_threshold: int = 10


@dataclass
class JobConfig:
    """How the Ray job shards the corpus and runs actors (``python -m jobs.diarize``).

    Attributes:
        num_shards: number of shards; None derives it from ``shard_seconds``.
        shard_seconds: audio per shard when ``num_shards`` is None.
        num_actors: number of model actors; None: as many as the cluster's resources hold.
        num_cpus: CPUs per actor (also its torch threads).
        num_gpus: GPUs per actor (fractions share a GPU); None: 1 on a GPU cluster, else 0.
        max_failures: failure budget: a count if >= 1, a fraction of the recordings if < 1.
        max_restarts: times Ray restarts an actor whose process died.
        max_task_retries: times a shard interrupted by an actor death is retried.
        recording_timeout: seconds one recording may take (reading and diarizing) on a Ray
            actor; past it the actor ends itself and the recording becomes a failure row
            (None: no limit). Not enforced with ``--local``.
        out_formats: corpus formats besides RTTM: parquet, vad.
        allow_pipes: accept ``cmd |`` lines in wav.scp (they run a shell).
    """

    num_shards: int | None = None
    shard_seconds: float = 600.0
    num_actors: int | None = None
    num_cpus: float = 1.0
    num_gpus: float | None = None
    max_failures: float = 0.0
    max_restarts: int = 3
    max_task_retries: int = 3
    recording_timeout: float | None = None
    out_formats: list[str] = field(default_factory=lambda: ["rttm", "parquet"])
    allow_pipes: bool = False


@dataclass
class Config:
    """Everything one diarization run needs."""

    mode: str = "cluster"
    num_threads: int = 1
    sample_rate: int = 16000
    vad: VadConfig = field(default_factory=VadConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    clustering: ClusteringConfig = field(default_factory=ClusteringConfig)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    frame_model: FrameModelConfig = field(default_factory=FrameModelConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    job: JobConfig = field(default_factory=JobConfig)


C = TypeVar("C")


def from_dict(cls: type[C], data: dict[str, Any] | None, where: str = "") -> C:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys by dotted name."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key {dotted!r}; valid keys here: {', '.join(sorted(fields))}")
        kwargs[key] = _coerce(hints[key], value, dotted)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
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
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value


def to_dict(config: Any) -> dict[str, Any]:
    """The config as plain nested dicts (for YAML, JSON and summaries)."""
    return dataclasses.asdict(config)


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``; values are parsed as YAML scalars."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not of the form KEY=VALUE")
        value = yaml.safe_load(raw) if raw.strip() else None
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
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


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then ``KEY=VALUE`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {e}") from e
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping")
        data = loaded or {}
    if overrides:
        data = _deep_merge(data, parse_overrides(overrides))
    try:
        return from_dict(Config, data)
    except ConfigError as e:
        if path is not None:
            raise ConfigError(f"{path}: {e}") from None
        raise
