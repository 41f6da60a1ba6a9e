"""Frame-model diarization (mode ``frame``): windows -> stitching -> embeddings -> turns.

End to end with a frame model that hears tone "speakers" (two local outputs in a
random order per window), and with the real loader on a tiny random WavLM-SD
checkpoint plus the GE2E embedder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_stitching import STRIDE, TONES, conversation, frame_errors, tone_embedding, tones, turns_to_truth

from diar.audio import SpooledAudio
from diar.config import load_config
from diar.pipelines import RecordingInput, build_diarizer
from diar.pipelines.frame import FrameDiarizer, run_windows
from diar.types import Annotation

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "wavlm-sd.yaml"


class ToneFrameModel:
    """A frame model for tone speakers: per 20 ms frame, which tones sound, in two local outputs
    whose order is shuffled per window (as a permutation-invariant model's would be)."""

    sample_rate = 16000
    frame_stride = STRIDE
    frame_shift = STRIDE / 16000
    num_speakers = 2
    batch_size = 2  # its default, when frame_model.batch_size is null

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []
        self.lengths: set[int] = set()
        self.calls = 0

    def num_frames(self, num_samples: int) -> int:
        return num_samples // STRIDE

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(waveforms))
        self.lengths.add(waveforms.shape[1])
        out = []
        for w in waveforms:
            frames = w[: self.num_frames(len(w)) * STRIDE].reshape(-1, STRIDE)
            spectrum = np.abs(np.fft.rfft(frames, axis=1))  # 50 Hz bins
            energy = np.stack([spectrum[:, round(f / 50)] for f in TONES], axis=1)
            active = energy > 10.0  # shape: (frames, tones)
            present = np.flatnonzero(active.any(axis=0))
            assert len(present) <= 2, "test scenario puts at most two speakers in a window"
            probs = np.full((len(frames), 2), 0.05, dtype=np.float32)
            order = np.random.default_rng(self.calls).permutation(2)
            self.calls += 1
            for slot, k in zip(order, present, strict=False):
                probs[active[:, k], slot] = 0.95
            out.append(probs)
        return np.stack(out)


def tone_diarizer(**overrides: object) -> tuple[FrameDiarizer, ToneFrameModel]:
    sets = [f"{k}={v}" for k, v in overrides.items()]
    config = load_config(CONFIG, ["frame_model.batch_size=3", *sets])
    model = ToneFrameModel()
    return FrameDiarizer(config, model=model, embed=tone_embedding), model


def truth_of(annotation: Annotation, seconds: float) -> np.ndarray:
    speakers = annotation.speakers
    out = np.zeros((round(seconds * 50), len(speakers)), dtype=bool)
    for t in annotation:
        out[round(t.start * 50) : round(t.end * 50), speakers.index(t.speaker)] = True
    return out


def test_config_names_the_published_model() -> None:
    config = load_config(CONFIG)
    assert config.mode == "frame"
    assert config.frame_model.model == "microsoft/wavlm-base-plus-sd"
    assert config.frame_model.name == "wavlm-sd"


def test_four_speakers_end_to_end() -> None:
    turns = (
        conversation((0, 1), 0, 40, turn=3.0)
        + conversation((2, 3), 50, 90, turn=3.0)
        + conversation((0, 3), 100, 140, turn=3.0)
        + conversation((1, 2), 150, 190, turn=3.0)
    )
    truth = turns_to_truth(turns, 190.0, 4)
    diarizer, model = tone_diarizer()
    steps: list[str] = []
    annotation = diarizer.apply(RecordingInput("rec", tones(truth)), hook=lambda s, _: steps.append(s))
    assert steps == ["frame_model", "embedding", "clustering", "postprocess"]
    assert annotation.speakers == ["spk1", "spk2", "spk3", "spk4"]
    hyp = truth_of(annotation, 190.0)
    # smoothing moves boundaries a little; speakers and overlaps must be right
    assert frame_errors(truth, hyp) < 0.01 * truth.size
    overlapped = truth.sum(axis=1) == 2
    assert hyp[overlapped].sum(axis=1).mean() > 1.9
    # memory: the model never saw more than batch_size windows at once, all of one length
    assert max(model.batch_sizes) <= 3 and len(model.lengths) == 1


def test_recordings_are_spooled_to_disk_and_read_back_by_window(tmp_path: Path) -> None:
    turns = conversation((0, 1), 0, 30, turn=3.0) + conversation((2, 3), 40, 70, turn=3.0)
    audio = tones(turns_to_truth(turns, 70.0, 4))
    path = tmp_path / "rec.wav"
    sf.write(path, audio, 16000, subtype="FLOAT")
    in_memory, _ = tone_diarizer()
    expected = in_memory.apply(RecordingInput("rec", audio))
    diarizer, model = tone_diarizer()
    spooled = diarizer.load(str(path), "rec")
    assert isinstance(spooled, SpooledAudio) and len(spooled) == len(audio)
    assert diarizer.apply(RecordingInput("rec", spooled)).turns == expected.turns
    assert len(expected.speakers) == 4 and max(model.batch_sizes) <= 3


def test_batch_size_is_the_configs_else_the_models() -> None:
    audio = tones(turns_to_truth(conversation((0, 1), 0, 60, turn=3.0), 60.0, 4))
    for setting, expected in (("null", 2), ("5", 5)):
        diarizer, model = tone_diarizer(**{"frame_model.batch_size": setting})
        diarizer.apply(RecordingInput("rec", audio))
        assert diarizer.batch_size == expected and max(model.batch_sizes) == expected


def test_known_speaker_count_from_the_recording() -> None:
    turns = conversation((0, 1), 0, 30, turn=3.0) + conversation((2, 3), 40, 70, turn=3.0)
    truth = turns_to_truth(turns, 70.0, 4)
    # would merge all it may
    diarizer, _ = tone_diarizer(**{"frame_model.link_threshold": 1.5, "frame_model.link_adapt": "null"})
    merged = diarizer.apply(RecordingInput("rec", tones(truth)))
    assert len(merged.speakers) == 2  # cannot-links keep each pair apart, nothing more
    exact = diarizer.apply(RecordingInput("rec", tones(truth), num_speakers=4))
    assert len(exact.speakers) == 4


def test_short_and_silent_recordings_give_empty_annotations() -> None:
    diarizer, _ = tone_diarizer()
    assert len(diarizer.apply(RecordingInput("short", np.zeros(100, np.float32)))) == 0
    assert len(diarizer.apply(RecordingInput("silent", np.zeros(16000 * 12, np.float32)))) == 0


def test_run_windows_covers_a_recording_shorter_than_a_window() -> None:
    truth = turns_to_truth([(0, 0.5, 3.0)], 4.0, 1)
    result = run_windows(ToneFrameModel(), tones(truth), 10.0, 5.0, 8)
    assert result.num_frames == 200 and len(result.pieces) == 1
    assert result.pieces[0].start == 0 and len(result.pieces[0].probs) == 200


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from test_wavlm_sd import save_tiny

    return save_tiny(tmp_path_factory.mktemp("wavlm"), do_normalize=False, seed=3)


def test_real_loader_and_embedder_through_build_diarizer(tiny_wavlm: Path) -> None:
    config = load_config(
        CONFIG,
        [
            f"frame_model.model={tiny_wavlm}",
            "frame_model.device=cpu",
            "frame_model.window=4.0",
            "frame_model.hop=2.0",
            "embedding.device=cpu",
            "num_threads=1",
        ],
    )
    diarizer = build_diarizer(config)
    assert isinstance(diarizer, FrameDiarizer) and diarizer.sample_rate == 16000
    rng = np.random.default_rng(0)
    seconds = 13.0
    envelope = np.repeat(rng.uniform(0, 0.4, int(seconds * 10)), 1600)
    audio = (rng.normal(0, 1, len(envelope)) * envelope).astype(np.float32)
    annotation = diarizer(audio, reco_id="noise")
    assert annotation.reco_id == "noise"
    assert all(0 <= t.start < t.end <= seconds + 1e-6 for t in annotation)
    assert all(s.startswith("spk") for s in annotation.speakers)
    assert len(annotation) > 0  # random weights still say someone talks somewhere


def test_speakers_are_numbered_by_first_turn_without_gaps() -> None:
    from diar.pipelines.frame import name_by_first_turn
    from diar.types import Turn

    annotation = Annotation(
        "r", (Turn("r", 5.0, 6.0, "spk1"), Turn("r", 1.0, 2.0, "spk4"), Turn("r", 7, 8, "spk4"))
    )
    renamed = name_by_first_turn(annotation)
    assert [(t.start, t.speaker) for t in renamed] == [(1.0, "spk1"), (5.0, "spk2"), (7.0, "spk1")]
