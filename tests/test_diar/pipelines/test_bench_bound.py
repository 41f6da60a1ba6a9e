"""``diar bench default --bound``: the frame model's bound, every local speaker labelled with the
reference speaker it overlaps most and rendered as the diarizer renders.

With the tone frame model of the frame-mode tests, so what the bound hears is known exactly.
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf
from stitching_helpers import tones, turns_to_truth
from test_pipeline_frame import FOUR, tone_diarizer

from diar.benchmarks.default import DataSet, bound_dataset, main, reference_frames
from diar.scoring import score
from diar.types import Annotation, Turn

NAMES = ("A", "B", "C", "D")


def reference(turns: list[tuple[int, float, float]]) -> Annotation:
    return Annotation.from_turns(
        "rec", [Turn("rec", start, end, NAMES[k]) for k, start, end in turns], merge=True
    )


def test_reference_frames_sample_the_turns_at_the_frame_centres() -> None:
    ref = reference([(1, 0.0, 0.05), (0, 0.03, 0.1)])
    # frames every 0.02 s, centred 0.01 s after their start: centres 0.01, 0.03, ..., 0.11
    got = reference_frames(ref, 6, 320, 160, 16000)
    assert got.tolist() == [
        [False, True],
        [True, True],
        [True, False],
        [True, False],
        [True, False],
        [False, False],
    ]


def test_the_bound_renders_the_local_speakers_with_the_reference_speakers(tmp_path: Path) -> None:
    truth = turns_to_truth(FOUR, 190.0, 4)
    path = tmp_path / "rec.wav"
    sf.write(path, tones(truth), 16000)
    diarizer, _ = tone_diarizer()
    data = DataSet("tones", {"rec": str(path)}, rttm="")
    ref = reference(FOUR)

    bound = bound_dataset(diarizer, data, {"rec": ref})["rec"]
    assert len(bound.speakers) == 4
    result = score({"rec": ref}, {"rec": bound}, collar=0.25).corpus
    assert result.confusion < 0.005 and result.der < 0.02  # the speakers come from the reference

    # speakers the reference lacks are not rendered (where the model hears them, the count
    # gives their frames to a named speaker of the window: false alarm, never confusion)
    half = reference([t for t in FOUR if t[0] in (0, 1)])
    only = bound_dataset(diarizer, data, {"rec": half})["rec"]
    assert len(only.speakers) == 2
    result = score({"rec": half}, {"rec": only}, collar=0.25).corpus
    assert result.miss < 0.005 and result.confusion < 0.005 and result.false_alarm > 0.2
    # a recording the reference does not name: no speaker at all
    assert len(bound_dataset(diarizer, data, {})["rec"]) == 0


def test_bound_needs_a_frame_mode_config(capsys) -> None:  # type: ignore[no-untyped-def]
    ge2e = Path(__file__).resolve().parents[3] / "configs" / "ge2e.yaml"
    assert main(["--bound", "--config", str(ge2e), "--wav-scp", "x.scp", "--rttm", "x.rttm"]) == 2
    assert "--bound needs mode frame" in capsys.readouterr().err
