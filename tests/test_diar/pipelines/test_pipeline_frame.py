"""Frame-model diarization (mode ``frame``): windows -> local speakers -> embeddings -> clustering
-> per-frame speaker count -> turns.

End to end with a frame model that hears tone "speakers" (two or three local outputs, in a
random order per window), and through ``build_diarizer`` with the real loaders on tiny random
checkpoints: WavLM-SD with the GE2E embedder, and segmentation-3.0 with CAM++.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from helpers import REPO, TEST_DATA
from stitching_helpers import STRIDE, TONES, conversation, frame_errors, tone_embedding, tones, turns_to_truth

from diar.audio import SpooledAudio
from diar.config import load_config
from diar.models.build import build_frame_model
from diar.pipelines import RecordingInput, build_diarizer
from diar.pipelines.frame import FrameDiarizer, name_by_first_turn, run_windows, segment_many
from diar.types import Annotation, Turn

CONFIG = REPO / "configs" / "wavlm-sd.yaml"
DATA = TEST_DATA


class ToneFrameModel:
    """A frame model for tone speakers: per 20 ms frame, which tones sound, in ``local`` outputs
    whose order is shuffled per window (as a permutation-invariant model's would be).

    Frame ``i`` hears samples ``[i * STRIDE + delay, (i + 1) * STRIDE + delay)`` of its window
    (a receptive field of ``2 * delay + STRIDE`` samples), so it is centred at
    ``i * STRIDE + frame_center_offset``.
    """

    sample_rate = 16000
    frame_stride = STRIDE
    frame_shift = STRIDE / 16000
    batch_size = 2  # its default, when frame_model.batch_size is null

    def __init__(self, local: int = 2, delay: int = 0) -> None:
        self.num_speakers = local
        self.delay = delay
        self.receptive_field = 2 * delay + STRIDE
        self.frame_center_offset = delay + STRIDE // 2
        self.batch_sizes: list[int] = []
        self.lengths: set[int] = set()
        self.orders: set[tuple[int, ...]] = set()  # the outputs the speakers of a window went to
        self.calls = 0

    def num_frames(self, num_samples: int) -> int:
        return max(0, (num_samples - self.receptive_field) // STRIDE + 1)

    def __call__(self, waveforms: np.ndarray) -> np.ndarray:
        self.batch_sizes.append(len(waveforms))
        self.lengths.add(waveforms.shape[1])
        out = []
        for w in waveforms:
            n = self.num_frames(len(w))
            frames = w[self.delay : self.delay + n * STRIDE].reshape(n, STRIDE)
            spectrum = np.abs(np.fft.rfft(frames, axis=1))  # 50 Hz bins
            energy = np.stack([spectrum[:, round(f / 50)] for f in TONES], axis=1)
            active = energy > 10.0  # shape: (frames, tones)
            present = np.flatnonzero(active.any(axis=0))
            assert len(present) <= self.num_speakers, "the test scenario has too many speakers in a window"
            probs = np.full((n, self.num_speakers), 0.05, dtype=np.float32)
            order = np.random.default_rng(self.calls).permutation(self.num_speakers)
            self.calls += 1
            self.orders.add(tuple(order[: len(present)].tolist()))
            for slot, k in zip(order, present, strict=False):
                probs[active[:, k], slot] = 0.95
            out.append(probs)
        return np.stack(out)


def tone_diarizer(
    model: ToneFrameModel | None = None, **overrides: object
) -> tuple[FrameDiarizer, ToneFrameModel]:
    sets = [f"{k}={v}" for k, v in overrides.items()]
    config = load_config(CONFIG, ["frame_model.batch_size=3", *sets])
    model = model or ToneFrameModel()
    return FrameDiarizer(config, model=model, embed=tone_embedding), model


def turns_near(annotation: Annotation, expected: list[tuple[float, float, str]], tol: float = 0.021) -> bool:
    """Whether the annotation's turns are ``expected`` (start, end, speaker), times within ``tol``."""
    got = [(t.start, t.end, t.speaker) for t in annotation]
    return len(got) == len(expected) and all(
        a[2] == b[2] and abs(a[0] - b[0]) <= tol and abs(a[1] - b[1]) <= tol
        for a, b in zip(got, expected, strict=True)
    )


def truth_of(annotation: Annotation, seconds: float) -> np.ndarray:
    """Turns -> shape (frames, speakers) bool on the 20 ms grid of turns_to_truth."""
    speakers = annotation.speakers
    out = np.zeros((round(seconds * 50), len(speakers)), dtype=bool)
    for t in annotation:
        out[round(t.start * 50) : round(t.end * 50), speakers.index(t.speaker)] = True
    return out


FOUR = (
    conversation((0, 1), 0, 40, turn=3.0)
    + conversation((2, 3), 50, 90, turn=3.0)
    + conversation((0, 3), 100, 140, turn=3.0)
    + conversation((1, 2), 150, 190, turn=3.0)
)


@pytest.fixture(scope="module")
def four() -> np.ndarray:
    """Four tone speakers, two at a time with overlapping turns, silent gaps between the pairs."""
    return turns_to_truth(FOUR, 190.0, 4)


def test_config_names_the_published_model() -> None:
    config = load_config(CONFIG)
    assert config.mode == "frame"
    assert config.frame_model.model == "microsoft/wavlm-base-plus-sd"
    assert config.frame_model.name == "wavlm-sd"


def test_four_speakers_from_two_local_outputs(four: np.ndarray) -> None:
    diarizer, model = tone_diarizer()
    steps: list[str] = []
    annotation = diarizer.apply(RecordingInput("rec", tones(four)), hook=lambda s, _: steps.append(s))
    assert list(dict.fromkeys(steps)) == ["segmentation", "embeddings", "clustering", "rendering"]
    assert annotation.speakers == ["spk1", "spk2", "spk3", "spk4"]
    hyp = truth_of(annotation, 190.0)
    # smoothing moves boundaries a little; speakers, gaps and overlaps must be right
    assert frame_errors(four, hyp) < 0.01 * four.size
    overlapped = four.sum(axis=1) == 2
    assert overlapped.sum() > 1000 and hyp[overlapped].sum(axis=1).mean() > 1.9
    assert not hyp[four.sum(axis=1) == 0].any()  # the gaps stay silent
    assert {o for o in model.orders if len(o) == 2} == {(0, 1), (1, 0)}  # the outputs did flip
    # memory: the model never saw more than batch_size windows at once, all of one length
    assert max(model.batch_sizes) <= 3 and len(model.lengths) == 1


def test_three_local_outputs() -> None:
    turns = conversation((0, 1, 2), 0, 40, turn=3.0) + conversation((2, 3, 4), 50, 90, turn=3.0)
    truth = turns_to_truth(turns, 90.0, 5)
    diarizer, model = tone_diarizer(ToneFrameModel(local=3))
    annotation = diarizer.apply(RecordingInput("rec", tones(truth)))
    assert len(annotation.speakers) == 5
    assert frame_errors(truth, truth_of(annotation, 90.0)) < 0.01 * truth.size
    assert len({o for o in model.orders if len(o) == 3}) > 1


@pytest.mark.parametrize("delay", [0, 1600])
def test_turns_are_placed_by_the_models_frame_centres(delay: int) -> None:
    truth = turns_to_truth([(0, 1.0, 6.0), (1, 8.0, 14.0), (0, 15.0, 19.0)], 20.0, 2)
    audio = tones(truth)
    diarizer, _ = tone_diarizer(ToneFrameModel(delay=delay))
    annotation = diarizer.apply(RecordingInput("rec", audio))
    expected = [(1.0, 6.0, "spk1"), (8.0, 14.0, "spk2"), (15.0, 19.0, "spk1")]
    assert turns_near(annotation, expected), annotation.turns
    if delay:  # a model that says its frames are centred 0.1 s earlier than they are
        wrong = ToneFrameModel(delay=delay)
        wrong.frame_center_offset = STRIDE // 2
        diarizer, _ = tone_diarizer(wrong)
        first = next(iter(diarizer.apply(RecordingInput("rec", audio))))
        assert first.start == pytest.approx(0.9, abs=0.021)


def test_known_speaker_count(four: np.ndarray) -> None:
    audio = tones(four)
    diarizer, _ = tone_diarizer()
    # from the recording (reco2num_spk)
    for count in (2, 3, 4):
        assert len(diarizer.apply(RecordingInput("rec", audio, num_speakers=count)).speakers) == count
    exact = diarizer.apply(RecordingInput("rec", audio, num_speakers=4))
    assert frame_errors(four, truth_of(exact, 190.0)) < 0.01 * four.size
    # from the config, unless the recording says otherwise
    configured, _ = tone_diarizer(**{"clustering.num_speakers": 3})
    assert len(configured.apply(RecordingInput("rec", audio)).speakers) == 3
    assert len(configured.apply(RecordingInput("rec", audio, num_speakers=2)).speakers) == 2


def test_min_and_max_speakers(four: np.ndarray) -> None:
    audio = tones(four)
    capped, _ = tone_diarizer(**{"clustering.max_speakers": 2})
    assert len(capped.apply(RecordingInput("rec", audio)).speakers) == 2
    two = tones(turns_to_truth(conversation((0, 1), 0, 40, turn=3.0), 40.0, 2))
    raised, _ = tone_diarizer(**{"clustering.min_speakers": 3})
    assert len(raised.apply(RecordingInput("rec", two)).speakers) == 3


def test_two_voices_heard_at_once_stay_two_speakers_however_alike_they_sound() -> None:
    truth = turns_to_truth(conversation((0, 1), 0, 40, turn=3.0), 40.0, 2)  # 1/6 of it overlapped
    audio = tones(truth)
    merge_all = {  # a clustering that hears one voice, and no window bound from the embeddings
        "clustering.method": "agglomerative",
        "clustering.threshold": 1.9,
        "identity.distinct_distance": "null",
    }
    for fraction, expected in (("null", 1), ("0.05", 2), ("0.5", 1)):
        diarizer, _ = tone_diarizer(**merge_all, **{"identity.overlap_fraction": fraction})
        annotation = diarizer.apply(RecordingInput("rec", audio))
        assert len(annotation.speakers) == expected, fraction
    two, _ = tone_diarizer(**merge_all)
    assert frame_errors(truth, truth_of(two.apply(RecordingInput("rec", audio)), 40.0)) < 0.02 * truth.size
    # a known count, or max_speakers, wins
    capped, _ = tone_diarizer(**merge_all, **{"clustering.max_speakers": 1})
    assert len(capped.apply(RecordingInput("rec", audio)).speakers) == 1
    assert len(two.apply(RecordingInput("rec", audio, num_speakers=1)).speakers) == 1


def test_short_and_silent_recordings_give_empty_annotations() -> None:
    diarizer, _ = tone_diarizer()
    assert len(diarizer.apply(RecordingInput("empty", np.zeros(0, np.float32)))) == 0
    assert len(diarizer.apply(RecordingInput("short", np.zeros(100, np.float32)))) == 0
    assert len(diarizer.apply(RecordingInput("silent", np.zeros(16000 * 12, np.float32)))) == 0


def test_a_recording_shorter_than_a_window() -> None:
    truth = turns_to_truth([(0, 0.5, 3.0)], 4.0, 1)
    outputs = run_windows(ToneFrameModel(), tones(truth), 10.0, 5.0, 8)
    assert outputs.num_frames == 200 and len(outputs.pieces) == 1
    assert outputs.pieces[0].start == 0 and len(outputs.pieces[0].probs) == 200
    diarizer, _ = tone_diarizer()
    annotation = diarizer.apply(RecordingInput("rec", tones(truth)))
    assert turns_near(annotation, [(0.5, 3.0, "spk1")]), annotation.turns


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


def test_speakers_are_numbered_by_first_turn_without_gaps() -> None:
    annotation = Annotation(
        "r", (Turn("r", 5.0, 6.0, "spk1"), Turn("r", 1.0, 2.0, "spk4"), Turn("r", 7, 8, "spk4"))
    )
    renamed = name_by_first_turn(annotation)
    assert [(t.start, t.speaker) for t in renamed] == [(1.0, "spk1"), (5.0, "spk2"), (7.0, "spk1")]


def noise(seconds: float) -> np.ndarray:
    """Gaussian noise whose loudness changes every 0.1 s."""
    rng = np.random.default_rng(0)
    envelope = np.repeat(rng.uniform(0, 0.4, int(seconds * 10)), 1600)
    return (rng.normal(0, 1, len(envelope)) * envelope).astype(np.float32)


def check_runs(diarizer: object, seconds: float) -> list[str]:
    """Diarize noise through the diarizer; the turns lie inside the recording. Returns the steps."""
    steps: list[str] = []
    annotation = diarizer(noise(seconds), reco_id="noise", hook=lambda s, _: steps.append(s))  # type: ignore[operator]
    assert annotation.reco_id == "noise"
    assert all(0 <= t.start < t.end <= seconds + 1e-6 for t in annotation)
    assert all(s.startswith("spk") for s in annotation.speakers)
    assert len(annotation) > 0  # random weights still say someone talks somewhere
    return steps


@pytest.fixture(scope="module")
def tiny_wavlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("transformers")
    from helpers import save_tiny_wavlm

    return save_tiny_wavlm(tmp_path_factory.mktemp("wavlm"), do_normalize=False, seed=3)


def test_tiny_wavlm_sd_through_build_diarizer(tiny_wavlm: Path) -> None:
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
    check_runs(diarizer, 13.0)


def test_tiny_segmentation_and_campplus_through_build_diarizer() -> None:
    config = load_config(
        None,
        [
            "mode=frame",
            f"frame_model.model={DATA / 'segmentation' / 'tiny_pyannet.ckpt'}",
            "frame_model.device=cpu",
            "embedding.name=campplus",
            f"embedding.model_dir={DATA / 'campplus' / 'tiny_campplus.pt'}",
            "embedding.device=cpu",
        ],
    )
    assert config.frame_model.name == "segmentation-3.0"  # the frame-mode default
    diarizer = build_diarizer(config)
    assert isinstance(diarizer, FrameDiarizer)
    steps = check_runs(diarizer, 16.0)
    assert list(dict.fromkeys(steps)) == ["segmentation", "features", "embeddings", "clustering", "rendering"]


def test_a_diarizer_for_some_steps_loads_only_their_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage split's CPU workers: piece_inputs needs only the embedder, finish no model;
    each gives what the whole diarizer gives."""
    import diar.pipelines.frame as frame

    config = load_config(
        None,
        [
            f"frame_model.model={DATA / 'segmentation' / 'tiny_pyannet.ckpt'}",
            "frame_model.device=cpu",
            f"embedding.model_dir={DATA / 'campplus' / 'tiny_campplus.pt'}",
            "embedding.device=cpu",
        ],
    )
    whole = FrameDiarizer(config)
    wav = noise(16.0)
    outputs = whole.segment([wav])[0]
    assert (outputs.frame_stride, outputs.frame_center_offset) == (270, 495)  # the model's grid
    batches = list(whole.piece_inputs(outputs, wav))
    embedded = [(b, whole.embed_inputs(b.inputs)) for b in batches]
    expected = whole.finish(RecordingInput("rec", wav), outputs, len(wav), embedded)

    def not_loaded(config: object) -> None:
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(frame, "build_frame_model", not_loaded)
    features = FrameDiarizer(config, load=("embedder",))
    got = list(features.piece_inputs(outputs, wav))
    assert len(got) == len(batches)
    for a, b in zip(got, batches, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a.inputs, b.inputs, strict=True))
    with pytest.raises(RuntimeError, match="without its frame model"):
        features.segment([wav])
    monkeypatch.setattr(frame, "build_embedder", not_loaded)
    finish = FrameDiarizer(config, load=())
    got_result = finish.finish(RecordingInput("rec", wav), outputs, len(wav), embedded)
    assert got_result.annotation == expected.annotation and len(expected.annotation) > 0
    for a, b in zip(got_result.traces, expected.traces, strict=True):
        assert (a.speaker, a.seconds) == (b.speaker, b.seconds) and np.array_equal(a.embedding, b.embedding)
    with pytest.raises(RuntimeError, match="without its embedder"):
        list(finish.piece_inputs(outputs, wav))
    with pytest.raises(ValueError, match="unknown models"):
        FrameDiarizer(config, load=("vad",))


def test_speaker_traces_are_the_speakers_embeddings_and_speech() -> None:
    turns = conversation((0, 1), 0, 30, turn=3.0) + conversation((2, 3), 40, 70, turn=3.0)
    truth = turns_to_truth(turns, 70.0, 4)
    diarizer, _ = tone_diarizer()
    result = diarizer.diarize(RecordingInput("rec", tones(truth)))
    assert result.annotation == diarizer.apply(RecordingInput("rec", tones(truth)))
    traces = {t.speaker: t for t in result.traces}
    assert sorted(traces) == result.annotation.speakers and len(traces) == 4
    for trace in traces.values():
        assert abs(float(np.linalg.norm(trace.embedding)) - 1.0) < 1e-5
        # a tone speaker's trace points at its own tone: one large coordinate
        assert np.sort(np.abs(trace.embedding))[-1] > 0.95
        spoken = sum(t.end - t.start for t in result.annotation if t.speaker == trace.speaker)
        assert trace.seconds == pytest.approx(spoken, abs=1e-3)
    tone_of = {s: int(np.argmax(t.embedding)) for s, t in traces.items()}
    assert sorted(tone_of.values()) == [0, 1, 2, 3]


def test_windows_of_several_recordings_share_batches_with_the_same_result() -> None:
    """What the job's stage split relies on: segmentation-3.0's windows batched across
    recordings (one shorter than a window among them) give each recording what it gets alone."""
    config = load_config(
        None,
        [f"frame_model.model={DATA / 'segmentation' / 'tiny_pyannet.ckpt'}", "frame_model.device=cpu"],
    )
    model = build_frame_model(config)
    fm = config.frame_model
    rng = np.random.default_rng(0)
    waves = [(0.1 * rng.standard_normal(round(s * 16000))).astype(np.float32) for s in (20.0, 3.0, 13.0)]
    together = segment_many(model, waves, fm.window, fm.hop, 4, fm.threshold)
    for wave, got in zip(waves, together, strict=True):
        alone = run_windows(model, wave, fm.window, fm.hop, 4, fm.threshold)
        assert got.num_frames == alone.num_frames > 0
        assert np.array_equal(got.count, alone.count) and np.array_equal(got.coverage, alone.coverage)
        assert got.windows == alone.windows and len(got.pieces) == len(alone.pieces)
        for a, b in zip(got.pieces, alone.pieces, strict=True):
            assert (a.window, a.local, a.start) == (b.window, b.local, b.start)
            assert np.array_equal(a.probs, b.probs)


def speech_frames(annotation: Annotation) -> set[int]:
    """The 10 ms frames where anyone talks."""
    return {k for t in annotation for k in range(round(t.start * 100), round(t.end * 100))}


def test_exclusive_turns_keep_one_speaker_of_an_overlap_from_the_same_model_outputs(four: np.ndarray) -> None:
    diarizer, model = tone_diarizer()
    result = diarizer.diarize(RecordingInput("rec", tones(four)))
    calls = model.calls
    assert result.exclusive is not None
    overlapping, exclusive = result.annotation, result.exclusive
    assert exclusive.speakers == overlapping.speakers  # named alike
    for a, b in itertools.pairwise(exclusive.turns):
        assert b.start >= a.end  # one speaker at a time
    assert speech_frames(exclusive) == speech_frames(overlapping)  # overlap becomes one speaker's
    # where one speaker talks, the exclusive turns are as right as the overlap-aware ones
    single = four.sum(axis=1) == 1
    hyp = truth_of(exclusive, 190.0)
    assert frame_errors(four[single], hyp[single]) < 0.01 * four[single].size
    # postprocess.exclusive gives these turns out, with the overlap-aware ones' names
    chosen, model = tone_diarizer(**{"postprocess.exclusive": "true"})
    again = chosen.diarize(RecordingInput("rec", tones(four)))
    assert again.annotation == exclusive == again.exclusive
    assert model.calls == calls  # both from one pass of the model
    assert (
        tone_diarizer(**{"postprocess.exclusive": "true"})[0].apply(RecordingInput("rec", tones(four)))
        == exclusive
    )
