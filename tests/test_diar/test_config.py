"""The typed config: immutable, loaded and validated once, shortcuts as typed values."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from helpers import REPO

from diar.config import Config, ConfigError, load_config

CONFIGS = REPO / "configs"


def test_configs_are_immutable() -> None:
    config = load_config(None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mode = "cluster"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.clustering.num_speakers = 3  # type: ignore[misc]
    # a changed copy is made, not an edit in place
    changed = dataclasses.replace(config, num_threads=4)
    assert changed.num_threads == 4 and config.num_threads == 1


def test_values_are_taken_as_they_are_and_validated_with_the_rest(tmp_path: Path) -> None:
    odd = str(tmp_path / "[not yaml]: {x")  # a path YAML would not read back as itself
    config = load_config(None, ["clustering.max_speakers=3"], {"embedding.model_dir": odd, "num_threads": 2})
    assert config.embedding.model_dir == odd and config.num_threads == 2
    assert config.clustering.max_speakers == 3
    with pytest.raises(ConfigError, match=r"clustering\.min_speakers"):
        load_config(None, ["clustering.max_speakers=3"], {"clustering.min_speakers": 5})


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("job.num_actors=abc", "job.num_actors"),
        ("clustering.num_speakers=-3", "clustering.num_speakers"),
        ("embedding.device=tpu", "embedding.device"),
        ("vad.threshold=2", "vad.threshold"),
        ("frame_model.embed_every=0", "frame_model.embed_every"),
        ("identity.min_speaker_seconds=-1", "identity.min_speaker_seconds"),
        ("identity.distinct_distance=-0.1", "identity.distinct_distance"),
        ("identity.overlap_fraction=1.5", "identity.overlap_fraction"),
        ("identity.split_pause=0", "identity.split_pause"),
        ("identity.unknown_threshold=2", "identity.unknown_threshold"),
        ("frame_model.embed_all_seconds=-1", "frame_model.embed_all_seconds"),
    ],
)
def test_bad_values_fail_at_load_time_naming_the_key(override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_shipped_config_loads(name: str) -> None:
    config = load_config(CONFIGS / name)
    assert isinstance(config, Config)


def test_audio_allow_pipes_and_its_former_name_job_allow_pipes() -> None:
    """Whether 'cmd |' sources may run is read from audio.allow_pipes; job.allow_pipes, the
    key older configs use, still turns it on."""
    assert load_config(None).audio.allow_pipes is False
    assert load_config(None, ["audio.allow_pipes=true"]).audio.allow_pipes is True
    assert load_config(None, ["job.allow_pipes=true"]).audio.allow_pipes is True
    assert load_config(None, ["audio.allow_pipes=true", "job.allow_pipes=false"]).audio.allow_pipes is True
    with pytest.raises(ConfigError, match=r"job\.allow_pipes: 'maybe'.*audio\.allow_pipes"):
        load_config(None, ["job.allow_pipes=maybe"])
    for name in ("default.yaml", "ge2e.yaml", "profile.yaml"):
        assert "allow_pipes" not in (CONFIGS / name).read_text(encoding="utf-8").split("\njob:")[1]
