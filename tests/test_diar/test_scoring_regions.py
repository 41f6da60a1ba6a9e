"""Where the errors lie (diar.scoring.error_regions / score_regions): the spans add up to the
seconds ``score`` counts, under the same mapping, on synthetic and real references."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from test_scoring import _ann, annotations, collars, perturb, synthetic_corpus

from diar.formats.rttm import read_rttm
from diar.manifests import read_uem
from diar.scoring import ErrorRegions, ScoringResult, error_regions, score, score_recording, score_regions
from diar.types import Annotation


def seconds(spans: list[tuple[float, float, int]]) -> float:
    return sum((e - s) * n for s, e, n in spans)


def assert_adds_up(regions: ErrorRegions) -> None:
    s = regions.score
    assert math.isclose(seconds(regions.missed), s.missed_seconds, abs_tol=1e-9)
    assert math.isclose(seconds(regions.false_alarm), s.false_alarm_seconds, abs_tol=1e-9)
    assert math.isclose(seconds(regions.confusion), s.confusion_seconds, abs_tol=1e-9)
    for spans in (regions.missed, regions.false_alarm, regions.confusion):
        assert all(e > s and n >= 1 for s, e, n in spans)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))  # sorted, disjoint
        # every error lies where scoring happens
        assert all(any(lo - 1e-9 <= s and e <= hi + 1e-9 for lo, hi in regions.scored) for s, e, _ in spans)


def test_hand_computed_spans() -> None:
    ref = _ann("r", (0, 10, "A"), (5, 15, "B"))
    hyp = _ann("r", (0, 8, "x"), (8, 15, "y"), (20, 22, "x"))
    regions = error_regions(ref.turns, hyp.turns)
    assert regions.mapping == {"x": "A", "y": "B"}
    # [5, 10): two reference speakers, one system speaker: one missed; [8, 10) y talks for A
    assert regions.missed == [(5.0, 10.0, 1)]
    assert regions.confusion == []  # the one speaker heard is always a right one
    assert regions.false_alarm == [(20.0, 22.0, 1)]
    assert regions.scored == [(0.0, 22.0)]
    assert regions.score == score_recording(ref.turns, hyp.turns)


def test_confusion_and_unscored_collars() -> None:
    ref = _ann("r", (0, 10, "A"), (10, 20, "B"))
    hyp = _ann("r", (0, 14, "x"), (14, 20, "y"))
    regions = error_regions(ref.turns, hyp.turns, collar=0.5)
    assert regions.confusion == [(10.5, 14.0, 1)]
    assert regions.scored == [(0.5, 9.5), (10.5, 19.5)]
    assert_adds_up(regions)


@pytest.mark.parametrize("collar", [0.0, 0.25])
@pytest.mark.parametrize("skip_overlap", [False, True])
@pytest.mark.parametrize("with_uem", [False, True])
def test_score_regions_gives_the_figures_of_score(collar: float, skip_overlap: bool, with_uem: bool) -> None:
    reference, hypothesis, uem = synthetic_corpus(3)
    regions = score_regions(reference, hypothesis, uem if with_uem else None, collar, skip_overlap)
    expected = score(reference, hypothesis, uem if with_uem else None, collar, skip_overlap)
    assert list(regions) == list(expected.files)  # the same recordings, in the same order
    assert ScoringResult({r: x.score for r, x in regions.items()}).to_dict() == expected.to_dict()
    for x in regions.values():
        assert_adds_up(x)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ref=annotations(), hyp=annotations(), collar=collars)
def test_spans_add_up_on_random_annotations(ref: Annotation, hyp: Annotation, collar: float) -> None:
    regions = error_regions(ref.turns, hyp.turns, collar=collar)
    assert regions.score == score_recording(ref.turns, hyp.turns, collar=collar)
    assert_adds_up(regions)


@pytest.mark.corpus
def test_spans_on_a_real_reference(corpus: Path) -> None:
    import numpy as np

    reference = read_rttm(corpus / "ami30" / "ref.rttm")
    uem = read_uem(corpus / "ami30" / "uem")
    rng = np.random.default_rng(0)
    hypothesis = {
        r: perturb(a, rng, ["shift", "drop", "merge", "invent", "relabel"]) for r, a in reference.items()
    }
    regions = score_regions(reference, hypothesis, uem, collar=0.25)
    expected = score(reference, hypothesis, uem, collar=0.25)
    assert ScoringResult({r: x.score for r, x in regions.items()}).to_dict() == expected.to_dict()
    assert sum(len(x.confusion) for x in regions.values()) > 0  # merged speakers are confused
    for reco, x in regions.items():
        assert_adds_up(x)
        assert set(x.mapping.values()) <= set(reference[reco].speakers)
        assert set(x.mapping) <= set(hypothesis[reco].speakers)
