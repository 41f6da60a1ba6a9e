"""Window/frame steps of the embedding pipelines and the cluster-mode diarizer on the bundled sample."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO

from diar.config import Config, load_config
from diar.formats.rttm import read_rttm
from diar.pipelines import DIARIZERS, RecordingInput, build_diarizer, steps
from diar.pipelines.clustering import ClusteringDiarizer
from diar.scoring import score

SR = 16000
SAMPLE = REPO / "diar" / "data" / "sample"


class EnergyEmbedder:
    """Test double: embedding = (RMS, length in seconds, 1), recording every batch it sees."""

    sample_rate = SR
    dimension = 3
    metric = "cosine"
    min_num_samples = 400

    def __init__(self) -> None:
        self.batches: list[tuple[int, int, bool]] = []

    def __call__(self, waveforms: np.ndarray, masks: np.ndarray | None = None) -> np.ndarray:
        self.batches.append((waveforms.shape[0], waveforms.shape[1], masks is not None))
        valid = masks.sum(axis=1) if masks is not None else np.full(len(waveforms), waveforms.shape[1])
        rms = np.sqrt((waveforms**2).sum(axis=1) / valid)
        return np.stack([rms, valid / SR, np.ones(len(waveforms))], axis=1).astype(np.float32)

    def embed_utterance(self, waveform: np.ndarray) -> np.ndarray:
        return self(waveform[None])[0]


class FixedVAD:
    sample_rate = SR

    def __init__(self, regions: list[tuple[int, int]]) -> None:
        self.regions = np.array(regions, dtype=np.int64).reshape(-1, 2)

    def __call__(self, waveform: np.ndarray) -> np.ndarray:
        return self.regions


def test_windows_over_a_long_region_end_at_its_end() -> None:
    w = steps.windows_over_speech(np.array([[16000, 16000 + 40000]]), 1.5, 0.75, SR, 100000)
    # 2.5 s of speech: windows at 0 and 0.75 s, then one ending at the region's end
    assert w.tolist() == [[16000, 40000], [28000, 52000], [32000, 56000]]


def test_short_regions_get_one_centred_window_inside_the_recording() -> None:
    regions = np.array([[100, 4100], [50000, 52000], [99000, 100000]])
    w = steps.windows_over_speech(regions, 1.5, 0.75, SR, 100000)
    assert w.tolist() == [[0, 24000], [39000, 63000], [76000, 100000]]
    # a recording shorter than one window: the whole recording
    assert steps.windows_over_speech(np.array([[10, 5000]]), 1.5, 0.75, SR, 8000).tolist() == [[0, 8000]]
    assert steps.windows_over_speech(np.zeros((0, 2)), 1.5, 0.75, SR, 8000).shape == (0, 2)
    with pytest.raises(ValueError, match="positive"):
        steps.windows_over_speech(regions, 1.5, 0.0, SR, 100000)


def test_embed_windows_batches_equal_lengths_and_keeps_order() -> None:
    rng = np.random.default_rng(0)
    wav = (rng.standard_normal(60000) * np.linspace(0.01, 1, 60000)).astype(np.float32)
    windows = np.array([[0, 24000], [30000, 38000], [12000, 36000], [36000, 60000], [100, 300]])
    emb = EnergyEmbedder()
    out = steps.embed_windows(emb, wav, windows, batch_size=2)
    assert out.shape == (5, 3)
    for (s, e), row in zip(windows, out, strict=True):
        seg = wav[s:e]
        np.testing.assert_allclose(row[:2], [np.sqrt(np.mean(seg**2)), (e - s) / SR], rtol=1e-5)
    # three windows of 24000 in batches of 2, one of 8000, one of 200 padded to 400 with a mask
    assert sorted(emb.batches) == [(1, 400, True), (1, 8000, False), (1, 24000, False), (2, 24000, False)]
    levels = steps.embed_windows(EnergyEmbedder(), wav, windows[:4], normalize_db=-30.0)[:, 0]
    np.testing.assert_allclose(20 * np.log10(levels), -30.0, atol=1e-3)


def test_frame_scores_nearest_centre_and_mean() -> None:
    windows = np.array([[0, 16000], [8000, 24000]])  # centres at 0.5 s and 1.0 s
    scores = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    center = steps.window_scores_to_frame_scores(windows, scores, 200, SR, "center")
    assert center[:75, 0].all() and center[76:, 1].all()  # switch half way between centres
    mean = steps.window_scores_to_frame_scores(windows, scores, 200, SR, "mean")
    np.testing.assert_allclose(mean[:50], [[1, 0]] * 50)
    np.testing.assert_allclose(mean[50:100], [[0.5, 0.5]] * 50)
    np.testing.assert_allclose(mean[100:150], [[0, 1]] * 50)
    assert not mean[150:].any()
    with pytest.raises(ValueError, match="valid: center, mean"):
        steps.window_scores_to_frame_scores(windows, scores, 200, SR, "median")


def test_frame_labels_argmax_threshold_and_speech_mask() -> None:
    windows = np.array([[0, 16000], [8000, 24000]])
    scores = np.array([[0.9, 0.7], [0.2, 0.8]], dtype=np.float32)
    speech = np.ones(150, dtype=bool)
    speech[:10] = False
    single = steps.window_scores_to_frame_labels(windows, scores, 150, SR, speech=speech)
    assert single.dtype == np.int8 and (single.sum(axis=1)[10:] == 1).all() and not single[:10].any()
    multi = steps.window_scores_to_frame_labels(windows, scores, 150, SR, threshold=0.6)
    assert multi[:75].tolist() == [[1, 1]] * 75 and multi[76:].tolist() == [[0, 1]] * 74
    empty = steps.window_scores_to_frame_labels(np.zeros((0, 2)), np.zeros((0, 3)), 50, SR)
    assert empty.shape == (50, 3) and not empty.any()


def test_speech_frame_mask_and_label_frames() -> None:
    assert steps.num_label_frames(16000, SR) == 100 and steps.num_label_frames(16079, SR) == 100
    mask = steps.speech_frame_mask(np.array([[1600, 3200], [8000, 9600]]), 100, SR)
    assert np.flatnonzero(mask).tolist() == [*range(10, 20), *range(50, 60)]


def test_cluster_scores_mark_windows_between_two_speakers() -> None:
    a, b = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    mid = (a + b) / np.sqrt(2)
    x = np.stack([a, a, a, b, b, b, mid + 0.05 * a])
    labels = np.array([0, 0, 0, 1, 1, 1, 0])
    plain = steps.cluster_scores(x, labels, 0.0)
    assert plain.tolist() == steps.one_hot(labels).tolist()
    both = steps.cluster_scores(x, labels, 0.25)
    assert both[:6].tolist() == plain[:6].tolist()
    assert both[6].tolist() == [1.0, 1.0]


def test_embed_utterance_keeps_speech_and_pads_short_input() -> None:
    wav = np.zeros(32000, dtype=np.float32)
    wav[8000:16000] = 0.5
    vec = steps.embed_utterance(EnergyEmbedder(), wav, FixedVAD([(8000, 16000)]))
    np.testing.assert_allclose(vec, [0.5, 0.5, 1.0], rtol=1e-6)
    short = steps.embed_utterance(EnergyEmbedder(), np.ones(100, dtype=np.float32))
    assert short[1] == pytest.approx(400 / SR)


GE2E = REPO / "configs" / "ge2e.yaml"


@pytest.fixture(scope="module")
def diarizer() -> ClusteringDiarizer:
    d = build_diarizer(load_config(GE2E))
    assert isinstance(d, ClusteringDiarizer)
    return d


@pytest.fixture(scope="module")
def sample() -> np.ndarray:
    return sf.read(SAMPLE / "sim01_2spk.flac", dtype="float32")[0]


def test_cluster_mode_is_registered_and_frame_mode_the_default() -> None:
    assert "cluster" in DIARIZERS and "frame" in DIARIZERS
    assert Config().mode == "frame" and load_config(GE2E).mode == "cluster"


def test_diarizes_the_bundled_sample(diarizer: ClusteringDiarizer, sample: np.ndarray) -> None:
    steps_seen: list[str] = []
    hyp = diarizer.apply(RecordingInput("sim01_2spk", sample), hook=lambda s, t: steps_seen.append(s))
    assert steps_seen == ["vad", "windows", "embedding", "clustering", "postprocess"]
    assert hyp.speakers == ["spk1", "spk2"]
    ref = read_rttm(SAMPLE / "ref.rttm")
    der = score(ref, {"sim01_2spk": hyp}, collar=0.25).corpus.der
    assert der < 0.15, der


def test_speaker_count_from_the_recording_wins(diarizer: ClusteringDiarizer, sample: np.ndarray) -> None:
    part = sample[: 30 * SR]
    assert len(diarizer.apply(RecordingInput("r", part, num_speakers=3)).speakers) == 3
    assert len(diarizer.apply(RecordingInput("r", part, num_speakers=1)).speakers) == 1


def test_silence_and_very_short_audio(diarizer: ClusteringDiarizer, sample: np.ndarray) -> None:
    assert len(diarizer.apply(RecordingInput("silent", np.zeros(5 * SR, dtype=np.float32)))) == 0
    assert len(diarizer.apply(RecordingInput("empty", np.zeros(0, dtype=np.float32)))) == 0
    short = diarizer(sample[int(4.0 * SR) : int(5.0 * SR)], reco_id="short")
    assert short.speakers in ([], ["spk1"])


def test_run_config_bounds_and_method_by_name(sample: np.ndarray) -> None:
    config = load_config(GE2E, ["clustering.method=agglomerative", "clustering.num_speakers=2"])
    d = build_diarizer(config)
    assert len(d.apply(RecordingInput("r", sample[: 30 * SR])).speakers) == 2


def test_configs_default_yaml_equals_the_built_in_defaults() -> None:
    import yaml

    from diar.config import to_dict

    path = REPO / "configs" / "default.yaml"
    listed = yaml.safe_load(path.read_text())
    defaults = to_dict(Config())
    assert load_config(path) == Config()
    for key, value in listed.items():
        assert value == defaults[key], key


def test_speaker_traces_of_the_bundled_sample(diarizer: ClusteringDiarizer, sample: np.ndarray) -> None:
    result = diarizer.diarize(RecordingInput("sim01_2spk", sample))
    assert [t.speaker for t in result.traces] == result.annotation.speakers == ["spk1", "spk2"]
    a, b = (t.embedding for t in result.traces)
    assert abs(float(a @ a) - 1) < 1e-5 and float(a @ b) < 0.9  # two different voices
    assert all(t.seconds > 10 for t in result.traces)


def test_exclusive_turns_of_the_bundled_sample(diarizer: ClusteringDiarizer, sample: np.ndarray) -> None:
    result = diarizer.diarize(RecordingInput("sim01_2spk", sample))
    assert result.exclusive is not None
    assert result.exclusive.speakers == result.annotation.speakers
    turns = result.exclusive.turns
    assert all(b.start >= a.end for a, b in itertools.pairwise(turns))  # one at a time
    ref = read_rttm(SAMPLE / "ref.rttm")
    der = score(ref, {"sim01_2spk": result.exclusive}, collar=0.25).corpus.der
    assert der < 0.15, der
