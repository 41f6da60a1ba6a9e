"""What a timeline shows (diar.report.timeline): lanes, the mapping's colours, overlap, errors,
cropping and the level envelope."""

from __future__ import annotations

import numpy as np
import pytest

from diar.report.timeline import (
    Timeline,
    TimelineError,
    build_timeline,
    crop,
    format_time,
    level_envelope,
    nice_step,
)
from diar.types import Annotation, Turn


def ann(reco: str, *turns: tuple[float, float, str]) -> Annotation:
    return Annotation(reco, tuple(Turn(reco, s, e, spk) for s, e, spk in turns))


REF = ann("r", (0, 10, "A"), (5, 15, "B"), (16, 18, "C"))
HYP = ann("r", (0, 8, "x"), (7, 9, "x"), (8, 15, "y"), (20, 22, "z"))


def test_lanes_join_a_speakers_turns_and_show_overlap() -> None:
    timeline = build_timeline(HYP, duration=30.0)
    assert [lane.speaker for lane in timeline.hypothesis] == ["x", "y", "z"]
    assert timeline.hypothesis[0].spans == ((0.0, 9.0),)  # x's overlapping turns joined: no self-overlap
    assert timeline.overlap == ((8.0, 9.0),)
    assert (timeline.start, timeline.end) == (0.0, 30.0)
    assert timeline.errors is None and timeline.reference == ()


def test_with_a_reference_colours_follow_the_mapping() -> None:
    timeline = build_timeline(HYP, REF)
    assert [lane.speaker for lane in timeline.reference] == ["A", "B", "C"]
    colour = {lane.speaker: lane.color for lane in timeline.reference}
    by_hyp = {lane.speaker: lane for lane in timeline.hypothesis}
    assert by_hyp["x"].mapped_to == "A" and by_hyp["x"].color == colour["A"]
    assert by_hyp["y"].mapped_to == "B" and by_hyp["y"].color == colour["B"]
    # z talks where nobody does: mapped to nobody, a colour of its own
    assert by_hyp["z"].mapped_to is None and by_hyp["z"].color not in colour.values()
    assert [lane.speaker for lane in timeline.hypothesis] == ["x", "y", "z"]  # in the reference's order
    assert timeline.reference_overlap == ((5.0, 10.0),)
    assert timeline.error_spans("false_alarm") == [(20.0, 22.0, 1)]
    # as diar score counts: x's two turns at [7, 8) count twice, one of them confused (with B)
    assert timeline.error_spans("missed") == [(5.0, 7.0, 1), (9.0, 10.0, 1), (16.0, 18.0, 1)]
    assert timeline.error_spans("confusion") == [(7.0, 8.0, 1)]
    assert timeline.end == 22.0  # the last turn when the duration is unknown


def test_crop_clips_lanes_and_errors_not_scores() -> None:
    timeline = build_timeline(HYP, REF, collar=0.25)
    part = crop(timeline, 6.0, 17.0)
    assert (part.start, part.end) == (6.0, 17.0)
    assert dict((lane.speaker, lane.spans) for lane in part.hypothesis) == {
        "x": ((6.0, 9.0),),
        "y": ((8.0, 15.0),),
        "z": (),
    }
    assert all(6.0 <= s < e <= 17.0 for s, e, _ in part.error_spans("missed"))
    assert all(6.0 <= s < e <= 17.0 for s, e in part.unscored())
    assert part.errors == timeline.errors  # the scores stay those of the whole recording
    with pytest.raises(TimelineError, match="empty or invalid"):
        crop(timeline, 5.0, 5.0)
    with pytest.raises(TimelineError):
        crop(timeline, float("nan"), 4.0)


def test_unscored_is_outside_the_uem_and_in_collars() -> None:
    timeline = build_timeline(HYP, REF, uem=[(1.0, 19.0)], collar=0.5, duration=25.0)
    unscored = timeline.unscored()
    assert unscored[0] == (0.0, 1.0) and unscored[-1] == (19.0, 25.0)
    assert (4.5, 5.5) in unscored  # around the reference boundary at 5 s


def test_level_envelope() -> None:
    sr = 16000
    wave = np.zeros(3 * sr, dtype=np.float32)
    wave[sr : 2 * sr] = 0.5 * np.sin(2 * np.pi * 440 * np.arange(sr) / sr)
    env = level_envelope(wave, sr, bins=30)
    assert len(env.times) == len(env.level_db) + 1 == 31
    assert env.times[-1] == pytest.approx(3.0)
    middle = env.level_db[(env.times[:-1] >= 1.0) & (env.times[1:] <= 2.0)]
    assert np.allclose(middle, 20 * np.log10(0.5 / np.sqrt(2)), atol=0.1)  # a sine's RMS
    assert env.level_db[0] == -80.0  # silence at the floor
    with_env = crop(Timeline("r", 0.0, 3.0, (), envelope=env), 1.0, 2.0)
    assert with_env.envelope is not None
    assert with_env.envelope.times[0] <= 1.0 and with_env.envelope.times[-1] >= 2.0
    assert len(with_env.envelope.level_db) == 10


def test_time_formatting_and_steps() -> None:
    assert format_time(75) == "1:15"
    assert format_time(3725) == "1:02:05"
    assert format_time(12.34, step=0.5) == "0:12.3"
    assert nice_step(30, 10) == 5 and nice_step(3600, 12) == 300 and nice_step(4, 10) == 0.5
