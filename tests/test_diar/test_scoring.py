"""DER / JER scoring, checked against pyannote.metrics as the golden reference.

pyannote.metrics' ``collar`` is the total width of the no-score zone, diar's is the
margin on each side (md-eval ``-c``), hence ``collar=2 * collar`` on its side.
"""

from __future__ import annotations

import argparse
import io
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyannote.core import Annotation as PyannoteAnnotation
from pyannote.core import Segment, Timeline
from pyannote.metrics.diarization import DiarizationErrorRate, JaccardErrorRate

from diar.commands import score as score_command
from diar.formats.rttm import read_rttm, write_rttm
from diar.manifests import read_uem
from diar.scoring import Score, ScoringError, score, score_recording
from diar.types import Annotation, Turn

# Golden comparison tolerance: the check allows 5e-4 absolute DER; we agree to float noise.
TOL = 1e-6

Uem = dict[str, list[tuple[float, float]]]


# --------------------------------------------------------------------------- golden reference


def to_pyannote(annotation: Annotation | None, reco_id: str) -> PyannoteAnnotation:
    """One track per turn, as pyannote.database's RTTM loader builds it."""
    out = PyannoteAnnotation(uri=reco_id)
    for i, turn in enumerate(annotation.turns if annotation is not None else ()):
        out[Segment(turn.start, turn.end), i] = turn.speaker
    return out


def golden(
    reference: Mapping[str, Annotation],
    hypothesis: Mapping[str, Annotation],
    uem: Uem | None,
    collar: float,
    skip_overlap: bool,
) -> tuple[dict[str, tuple[float, float]], float, float]:
    """pyannote.metrics' per-file (DER, JER) and corpus DER, JER, for the recordings diar scores."""
    der = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip_overlap)
    jer = JaccardErrorRate(collar=2 * collar, skip_overlap=skip_overlap)
    files = {}
    recos = list(reference) + [r for r in hypothesis if r not in reference]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "uem was approximated by the union of extents"
        for reco in recos:
            kwargs = {}
            if uem is not None:
                kwargs["uem"] = Timeline([Segment(s, e) for s, e in uem[reco]])
            ref = to_pyannote(reference.get(reco), reco)
            hyp = to_pyannote(hypothesis.get(reco), reco)
            files[reco] = (der(ref, hyp, **kwargs), jer(ref, hyp, **kwargs))
    return files, abs(der), abs(jer)


def assert_matches_pyannote(
    reference: Mapping[str, Annotation],
    hypothesis: Mapping[str, Annotation],
    uem: Uem | None,
    collar: float,
    skip_overlap: bool,
    jer_equal: bool = False,
) -> None:
    result = score(reference, hypothesis, uem=uem, collar=collar, skip_overlap=skip_overlap)
    files, corpus_der, corpus_jer = golden(reference, hypothesis, uem, collar, skip_overlap)
    assert list(result.files) == list(files)
    for reco, (der, jer) in files.items():
        mine = result.files[reco]
        assert mine.der == pytest.approx(der, abs=TOL), reco
        assert mine.der == pytest.approx(mine.miss + mine.false_alarm + mine.confusion, abs=1e-12)
        if mine.num_ref_speakers == 0:
            continue  # pyannote gives JER 1.0 to a file without speech, dscore (and diar) 0.0
        # pyannote maps speakers by overlap time, dscore by Jaccard error: never worse.
        assert mine.jer <= jer + TOL, reco
        if jer_equal:
            assert mine.jer == pytest.approx(jer, abs=TOL), reco
    assert result.corpus.der == pytest.approx(corpus_der, abs=TOL)
    assert result.corpus.jer <= corpus_jer + TOL
    if jer_equal:
        assert result.corpus.jer == pytest.approx(corpus_jer, abs=TOL)


# --------------------------------------------------------------------------- perturbed hypotheses


def perturb(annotation: Annotation, rng: np.random.Generator, kinds: Sequence[str]) -> Annotation:
    """A system-like hypothesis made from a reference by the given kinds of error.

    shift: every boundary moves (Gaussian, 0.25 s); drop: 15 % of turns vanish;
    invent: turns of known and unknown speakers appear; swap: two speakers trade
    labels on half their turns; merge: two speakers share one label (turns of one
    label then overlap); split: a speaker's turns get several labels;
    relabel: every label is renamed.
    """
    reco = annotation.reco_id
    speakers = annotation.speakers
    label = {s: s for s in speakers}
    turns = [(t.start, t.end, t.speaker) for t in annotation.turns]
    end_time = max((t.end for t in annotation.turns), default=10.0)
    if "drop" in kinds:
        turns = [t for t in turns if rng.random() > 0.15]
    if "shift" in kinds:
        shifted = []
        for start, end, spk in turns:
            s = max(0.0, start + rng.normal(0, 0.25))
            e = end + rng.normal(0, 0.25)
            if e > s + 0.05:
                shifted.append((round(s, 3), round(e, 3), spk))
        turns = shifted
    if "swap" in kinds and len(speakers) >= 2:
        a, b = (str(x) for x in rng.choice(speakers, 2, replace=False))
        turns = [(s, e, {a: b, b: a}.get(spk, spk) if rng.random() < 0.5 else spk) for s, e, spk in turns]
    if "merge" in kinds and len(speakers) >= 2:
        a, b = (str(x) for x in rng.choice(speakers, 2, replace=False))
        label[b] = label[a]
    if "split" in kinds and speakers:
        victim = str(rng.choice(speakers))
        turns = [(s, e, f"{spk}~{rng.integers(4)}" if spk == victim else spk) for s, e, spk in turns]
    if "invent" in kinds:
        for _ in range(int(rng.integers(2, 8))):
            start = float(rng.uniform(0, end_time))
            spk = str(rng.choice([*speakers, "ghost1", "ghost2"])) if speakers else "ghost1"
            turns.append((round(start, 3), round(start + float(rng.uniform(0.2, 3.0)), 3), spk))
    out = [Turn(reco, s, e, label.get(spk, spk)) for s, e, spk in turns]
    hyp = Annotation(reco, tuple(out))
    if "relabel" in kinds:
        names = [f"spk{i:02d}" for i in rng.permutation(len(hyp.speakers) + 5)]
        hyp = hyp.rename(dict(zip(hyp.speakers, names, strict=False)))
    return hyp


ALL_KINDS = ("shift", "drop", "invent", "swap", "merge", "split", "relabel")
#: Hypotheses for which overlap mapping and Jaccard mapping agree on the corpus (JER equal).
MILD_KINDS = ("shift", "drop", "relabel")


def synthetic_reference(
    reco: str, rng: np.random.Generator, num_speakers: int, duration: float
) -> Annotation:
    """Random turns at arbitrary (not millisecond) times, with overlaps and touching turns."""
    turns = []
    t = float(rng.uniform(0, 2))
    while t < duration:
        spk = f"S{int(rng.integers(num_speakers))}"
        length = float(rng.uniform(0.3, 6.0))
        turns.append(Turn(reco, t, t + length, spk))
        if rng.random() < 0.15:  # the same speaker goes on in a touching turn
            turns.append(Turn(reco, t + length, t + length + float(rng.uniform(0.2, 2)), spk))
        t += length + float(rng.uniform(-1.5, 1.5))
        t = max(t, turns[-1].start + 0.1)
    return Annotation(reco, tuple(turns))


def synthetic_corpus(seed: int) -> tuple[dict[str, Annotation], dict[str, Annotation], Uem]:
    rng = np.random.default_rng(seed)
    reference, hypothesis, uem = {}, {}, {}
    for i in range(6):
        reco = f"syn{i}"
        ref = synthetic_reference(reco, rng, num_speakers=int(rng.integers(1, 6)), duration=60.0)
        reference[reco] = ref
        kinds = [k for k in ALL_KINDS if rng.random() < 0.5] or ["shift"]
        hypothesis[reco] = perturb(ref, rng, kinds)
        # two scored regions that cut through turns, plus one beyond the speech
        uem[reco] = [(3.25, 27.5), (31.125, 55.0), (70.0, 75.0)]
    # a recording the system skipped, and one without reference speech
    reference["missing"] = synthetic_reference("missing", rng, 2, 20.0)
    uem["missing"] = [(0.0, 25.0)]
    hypothesis["extra"] = synthetic_reference("extra", rng, 2, 10.0)
    uem["extra"] = [(0.0, 12.0)]
    # many hypothesis speakers, named "0" .. "13": pyannote sorts labels as strings, ties follow that order
    ref = synthetic_reference("many", rng, 4, 80.0)
    reference["many"] = ref
    shattered = _ann("many", *((t.start, t.end, f"{t.speaker}{rng.integers(3)}") for t in ref.turns))
    shattered = perturb(shattered, rng, ["shift", "invent"])
    hypothesis["many"] = shattered.rename({s: str(i) for i, s in enumerate(shattered.speakers)})
    uem["many"] = [(0.0, 90.0)]
    return reference, hypothesis, uem


# --------------------------------------------------------------------------- golden comparisons


@pytest.mark.parametrize("collar", [0.0, 0.25])
@pytest.mark.parametrize("skip_overlap", [False, True])
@pytest.mark.parametrize("with_uem", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_pyannote_on_synthetic_references(
    seed: int, with_uem: bool, skip_overlap: bool, collar: float
) -> None:
    reference, hypothesis, uem = synthetic_corpus(seed)
    assert_matches_pyannote(reference, hypothesis, uem if with_uem else None, collar, skip_overlap)


def _corpus_references(corpus: Path) -> tuple[dict[str, Annotation], Uem]:
    reference = read_rttm(corpus / "sim" / "ref.rttm")
    uem = read_uem(corpus / "sim" / "uem")
    seriously = read_rttm(corpus / "seriously" / "mixture.rttm")
    assert set(seriously) == {"mixture"}
    reference.update(seriously)
    uem["mixture"] = [(0.0, 60.0)]
    return reference, uem


@pytest.mark.corpus
@pytest.mark.parametrize("collar", [0.0, 0.25])
@pytest.mark.parametrize("skip_overlap", [False, True])
@pytest.mark.parametrize("with_uem", [False, True])
def test_matches_pyannote_on_corpus_references(
    corpus: Path, with_uem: bool, skip_overlap: bool, collar: float
) -> None:
    reference, uem = _corpus_references(corpus)
    rng = np.random.default_rng(20240522)
    for kinds in (ALL_KINDS, ("shift", "swap", "merge"), ("drop", "invent", "split")):
        hypothesis = {reco: perturb(ref, rng, kinds) for reco, ref in reference.items()}
        assert_matches_pyannote(reference, hypothesis, uem if with_uem else None, collar, skip_overlap)
    hypothesis = {reco: perturb(ref, rng, MILD_KINDS) for reco, ref in reference.items()}
    assert_matches_pyannote(
        reference, hypothesis, uem if with_uem else None, collar, skip_overlap, jer_equal=True
    )


@pytest.mark.corpus
def test_corpus_reference_against_itself_and_nothing(corpus: Path) -> None:
    reference, uem = _corpus_references(corpus)
    perfect = score(reference, reference, uem=uem, collar=0.25)
    assert perfect.corpus.der == 0.0 and perfect.corpus.jer == 0.0
    silent = score(reference, {}, uem=uem)
    assert silent.corpus.miss == 1.0 and silent.corpus.der == 1.0 and silent.corpus.jer == 1.0
    # seriously/README: 60 s of speech, 7.56 s of it with two speakers
    assert silent.files["mixture"].total == pytest.approx(60.0 + 7.56, abs=0.01)


# --------------------------------------------------------------------------- hand-computed cases


def _ann(reco: str, *turns: tuple[float, float, str]) -> Annotation:
    return Annotation(reco, tuple(Turn(reco, s, e, spk) for s, e, spk in turns))


REF = _ann("r", (0, 10, "A"), (5, 15, "B"))
HYP = _ann("r", (0, 8, "x"), (8, 15, "y"))


def test_hand_computed_der_and_jer() -> None:
    # x -> A, y -> B; [5, 10) has two reference speakers but one hypothesis speaker.
    s = score_recording(REF.turns, HYP.turns)
    assert (s.total, s.missed_seconds, s.false_alarm_seconds, s.confusion_seconds) == (20, 5, 0, 0)
    assert s.der == 0.25
    assert s.jer == pytest.approx((0.2 + 0.3) / 2)  # A: 8/10 shared, B: 7/10


def test_collar_is_per_side() -> None:
    # 1 s on each side of 0, 5, 10, 15 leaves [1, 4], [6, 9], [11, 14].
    s = score_recording(REF.turns, HYP.turns, collar=1.0)
    assert s.total == pytest.approx(3 + 2 * 3 + 3)
    assert s.missed_seconds == pytest.approx(3)
    assert s.der == pytest.approx(0.25)


def test_skip_overlap_removes_reference_overlap() -> None:
    s = score_recording(REF.turns, HYP.turns, skip_overlap=True)
    assert s.total == 10 and s.der == 0.0


def test_uem_restricts_scoring() -> None:
    s = score_recording(REF.turns, HYP.turns, uem=[(0, 4), (12, 20)])
    assert s.total == 7 and s.der == 0.0
    assert score_recording(REF.turns, HYP.turns, uem=[]).total == 0.0


def test_confusion_and_false_alarm() -> None:
    hyp = _ann("r", (0, 12, "x"), (15, 17, "z"))
    s = score_recording(REF.turns, hyp.turns)
    # x -> A (10 s together, 7 s with B): [5, 10) misses B, [10, 12) confuses B, [12, 15) misses B
    assert (s.missed_seconds, s.false_alarm_seconds, s.confusion_seconds) == (8, 2, 2)
    assert s.der == pytest.approx(12 / 20)
    assert s.jer == pytest.approx((0.0 + 1.0) / 2 + (1 - 10 / 12) / 2)


def test_missing_and_extra_recordings() -> None:
    result = score({"r": REF}, {"other": HYP})
    assert list(result.files) == ["r", "other"]
    assert result.files["r"].miss == 1.0 and result.files["r"].jer == 1.0
    extra = result.files["other"]
    assert extra.total == 0 and extra.false_alarm_seconds == 15 and extra.der == 1.0 and extra.jer == 1.0
    assert result.corpus.der == pytest.approx((20 + 15) / 20)
    empty = score({"e": Annotation("e")}, {"e": Annotation("e")})
    assert empty.corpus.to_dict() == {
        "der": 0.0,
        "jer": 0.0,
        "miss": 0.0,
        "false_alarm": 0.0,
        "confusion": 0.0,
        "total": 0.0,
    }


def test_bad_inputs_raise() -> None:
    with pytest.raises(ScoringError, match="'r' is not in the UEM"):
        score({"r": REF}, {"r": HYP}, uem={"other": [(0.0, 1.0)]})
    with pytest.raises(ScoringError, match="collar"):
        score({"r": REF}, {"r": HYP}, collar=-0.1)
    with pytest.raises(ScoringError, match="UEM interval"):
        score_recording(REF.turns, HYP.turns, uem=[(5.0, 1.0)])


# --------------------------------------------------------------------------- properties


@st.composite
def annotations(draw: st.DrawFn, reco: str = "p", merge: bool = False) -> Annotation:
    """Turns on a millisecond grid (as RTTM files hold them), up to 5 speakers."""
    items = draw(
        st.lists(
            st.tuples(st.integers(0, 20_000), st.integers(1, 5_000), st.sampled_from("ABCDE")),
            max_size=12,
        )
    )
    turns = [Turn(reco, s / 1000, (s + d) / 1000, spk) for s, d, spk in items]
    return Annotation.from_turns(reco, turns, merge=merge)


collars = st.sampled_from([0.0, 0.1, 0.25, 0.5])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ref=annotations(), hyp=annotations(), collar=collars, skip_overlap=st.booleans(), uem=st.booleans())
def test_matches_pyannote_on_random_annotations(
    ref: Annotation, hyp: Annotation, collar: float, skip_overlap: bool, uem: bool
) -> None:
    regions = {"p": [(1.0, 12.5), (14.0, 30.0)]} if uem else None
    assert_matches_pyannote({"p": ref}, {"p": hyp}, regions, collar, skip_overlap)


@settings(max_examples=60, deadline=None)
@given(ref=annotations(), collar=collars, skip_overlap=st.booleans())
def test_reference_against_itself_scores_zero(ref: Annotation, collar: float, skip_overlap: bool) -> None:
    s = score_recording(ref.turns, ref.turns, collar=collar, skip_overlap=skip_overlap)
    assert s.der == 0.0 and s.jer == 0.0


@settings(max_examples=60, deadline=None)
@given(
    ref=annotations(),
    hyp=annotations(merge=True),
    collar=collars,
    skip_overlap=st.booleans(),
    names=st.permutations(["q1", "q2", "q3", "q4", "q5"]),
)
def test_relabelling_the_hypothesis_changes_nothing(
    ref: Annotation, hyp: Annotation, collar: float, skip_overlap: bool, names: list[str]
) -> None:
    renamed = hyp.rename(dict(zip("ABCDE", names, strict=True)))
    a = score_recording(ref.turns, hyp.turns, collar=collar, skip_overlap=skip_overlap)
    b = score_recording(ref.turns, renamed.turns, collar=collar, skip_overlap=skip_overlap)
    assert b.der == pytest.approx(a.der, abs=1e-12)
    assert b.jer == pytest.approx(a.jer, abs=1e-12)
    assert min(a.miss, a.false_alarm, a.confusion) >= 0.0
    assert 0.0 <= a.jer <= 1.0


def test_corpus_sums_components() -> None:
    a, b = Score(10, 1, 2, 3, 0.5, 2, 2), Score(30, 3, 0, 1, 1.0, 3, 1)
    total = a + b
    assert total.der == pytest.approx((1 + 2 + 3 + 3 + 0 + 1) / 40)
    assert total.jer == pytest.approx(1.5 / 5)


# --------------------------------------------------------------------------- command line


def _run_command(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    parser = argparse.ArgumentParser()
    score_command.add_arguments(parser)
    code = score_command.run(parser.parse_args(list(argv)))
    return code, capsys.readouterr().out


def _write(path: Path, annotations: Sequence[Annotation]) -> str:
    buffer = io.StringIO()
    write_rttm(list(annotations), buffer)
    path.write_text(buffer.getvalue())
    return str(path)


def test_command_json_matches_library(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reference, hypothesis, uem = synthetic_corpus(3)
    ref_path = _write(tmp_path / "ref.rttm", list(reference.values()))
    hyp_path = _write(tmp_path / "hyp.rttm", list(hypothesis.values()))
    (tmp_path / "uem").write_text(
        "".join(f"{r} 1 {s:.3f} {e:.3f}\n" for r, ivs in uem.items() for s, e in ivs)
    )
    code, out = _run_command(
        capsys,
        "--ref",
        ref_path,
        "--hyp",
        hyp_path,
        "--uem",
        str(tmp_path / "uem"),
        "--collar",
        "0.25",
        "--json",
    )
    assert code == 0
    figures = json.loads(out)  # exactly one JSON object
    expected = score(read_rttm(ref_path), read_rttm(hyp_path), uem=read_uem(tmp_path / "uem"), collar=0.25)
    keys = {"der", "jer", "miss", "false_alarm", "confusion", "total"}
    assert set(figures) == keys | {"files"}
    assert {k: figures[k] for k in keys} == pytest.approx(expected.corpus.to_dict())
    assert set(figures["files"]) == set(reference) | set(hypothesis)
    for reco, values in figures["files"].items():
        assert values == pytest.approx(expected.files[reco].to_dict())
    # the RTTM round trip rounds times to milliseconds; pyannote agrees on what was read
    golden_files, golden_der, _ = golden(
        read_rttm(ref_path), read_rttm(hyp_path), read_uem(tmp_path / "uem"), 0.25, False
    )
    assert figures["der"] == pytest.approx(golden_der, abs=TOL)
    assert all(figures["files"][r]["der"] == pytest.approx(d, abs=TOL) for r, (d, _) in golden_files.items())


def test_command_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref_path = _write(tmp_path / "ref.rttm", [REF])
    hyp_path = _write(tmp_path / "hyp.rttm", [HYP])
    code, out = _run_command(capsys, "--ref", ref_path, "--hyp", hyp_path, "--skip-overlap")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["recording", "DER%", "miss%", "FA%", "conf%", "JER%", "scored_s"]
    assert lines[2].split()[0] == "r" and lines[-1].split()[0] == "corpus"
    assert lines[-1].split()[1:] == ["0.00", "0.00", "0.00", "0.00", "0.00", "10.000"]
    code, out = _run_command(capsys, "--ref", ref_path, "--hyp", hyp_path)
    assert out.splitlines()[-1].split()[1:3] == ["25.00", "25.00"]


def test_exact_tie_broken_as_pyannote() -> None:
    # x talks twice at once on [0, 1] (2 s with A) and once on [2, 4] (2 s with B): a tie
    # in co-occurrence whose two mappings give different DERs (1.0 and 0.75).
    ref = _ann("t", (0, 2, "A"), (2, 4, "B"))
    hyp = _ann("t", (0, 1, "x"), (0, 1, "x"), (2, 4, "x"))
    assert_matches_pyannote({"t": ref}, {"t": hyp}, None, 0.0, False)
    for names in (("B", "A"), ("b", "a")):
        renamed = ref.rename(dict(zip("AB", names, strict=True)))
        assert_matches_pyannote({"t": renamed}, {"t": hyp}, None, 0.0, False)


# --------------------------------------------------------------------------- memory layout


@st.composite
def crowded(draw: st.DrawFn, reco: str = "p") -> Annotation:
    """Up to 40 turns of up to 30 speakers on a millisecond grid: many speakers, some never
    talking with one another (several blocks of the mapping)."""
    items = draw(
        st.lists(
            st.tuples(st.integers(0, 60_000), st.integers(1, 8_000), st.integers(0, 29)),
            max_size=40,
        )
    )
    return Annotation(reco, tuple(Turn(reco, s / 1000, (s + d) / 1000, f"s{k}") for s, d, k in items))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ref=crowded(), hyp=crowded(), collar=collars, skip_overlap=st.booleans(), blocks=st.booleans())
def test_sparse_scoring_matches_pyannote_with_many_speakers(
    ref: Annotation, hyp: Annotation, collar: float, skip_overlap: bool, blocks: bool
) -> None:
    """The sparse count matrices, and the mapping split into blocks of speakers who talk
    together (what matrices above DENSE_MAPPING_CELLS get), score as pyannote.metrics."""
    from unittest import mock

    import diar.scoring

    with mock.patch.object(diar.scoring, "DENSE_MAPPING_CELLS", 0 if blocks else 4_000_000):
        assert_matches_pyannote({"p": ref}, {"p": hyp}, None, collar, skip_overlap)
        whole = score({"p": ref}, {"p": hyp}, collar=collar, corpus_mapping=True).corpus
    per_file = score({"p": ref}, {"p": hyp}, collar=collar).corpus
    assert whole.der == pytest.approx(per_file.der, abs=1e-12)  # one file: one mapping either way


def random_annotation(reco: str, speakers: int, turns: int, seconds: float, seed: int) -> Annotation:
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, seconds, turns)
    ends = starts + rng.uniform(0.5, 5.0, turns)
    labels = np.concatenate([np.arange(speakers), rng.integers(0, speakers, turns - speakers)])
    return Annotation(
        reco,
        tuple(Turn(reco, float(s), float(e), f"s{k}") for s, e, k in zip(starts, ends, labels, strict=True)),
    )


def test_a_thousand_speakers_score_in_memory_that_grows_with_the_turns() -> None:
    """1 000 speakers and 3 000 turns: the dense layout took 11.2 GiB (speakers² x intervals)."""
    import tracemalloc
    from unittest import mock

    import diar.scoring

    ref = random_annotation("r", 1000, 3000, 3600.0, seed=1)
    hyp = random_annotation("r", 1000, 3000, 3600.0, seed=2)
    tracemalloc.start()
    try:
        result = score({"r": ref}, {"r": hyp}, collar=0.25)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 256 * 2**20, peak  # two 1000 x 1000 float64 mapping matrices are 16 MB
    assert result.corpus.num_ref_speakers > 900 and 0 < result.corpus.der  # a few only in collars
    with mock.patch.object(diar.scoring, "DENSE_MAPPING_CELLS", 0):
        blocks = score({"r": ref}, {"r": hyp}, collar=0.25)
    assert blocks.corpus.der == pytest.approx(result.corpus.der, abs=1e-12)
    assert blocks.corpus.jer == pytest.approx(result.corpus.jer, abs=1e-12)


def test_a_mapping_block_too_large_is_refused_before_it_is_allocated() -> None:
    from unittest import mock

    import diar.scoring

    ref = random_annotation("r", 40, 400, 60.0, seed=1)
    hyp = random_annotation("r", 40, 400, 60.0, seed=2)
    with (
        mock.patch.object(diar.scoring, "DENSE_MAPPING_CELLS", 0),
        mock.patch.object(diar.scoring, "MAX_MAPPING_CELLS", 100),
        pytest.raises(ScoringError, match=r"40 x 40 speakers all talk with one another"),
    ):
        score({"r": ref}, {"r": hyp})


# --------------------------------------------------------------------------- one mapping for the corpus


def concatenated(
    reference: Mapping[str, Annotation], hypothesis: Mapping[str, Annotation], uem: Uem | None
) -> tuple[Annotation, Annotation, list[tuple[float, float]] | None]:
    """The recordings one after the other on one timeline (100 s apart), as one recording."""
    recos = list(reference) + [r for r in hypothesis if r not in reference]
    ref_turns, hyp_turns, regions = [], [], []
    offset = 0.0
    for reco in recos:
        ref, hyp = reference.get(reco), hypothesis.get(reco)
        turns = [*(ref.turns if ref else ()), *(hyp.turns if hyp else ())]
        ends = [t.end for t in turns] + ([e for _, e in uem[reco]] if uem is not None else [])
        ref_turns += [
            Turn("all", t.start + offset, t.end + offset, t.speaker) for t in (ref.turns if ref else ())
        ]
        hyp_turns += [
            Turn("all", t.start + offset, t.end + offset, t.speaker) for t in (hyp.turns if hyp else ())
        ]
        if uem is not None:
            regions += [(s + offset, e + offset) for s, e in uem[reco]]
        offset += max(ends, default=0.0) + 100.0
    return Annotation("all", tuple(ref_turns)), Annotation("all", tuple(hyp_turns)), regions if uem else None


@pytest.mark.parametrize("collar", [0.0, 0.25])
@pytest.mark.parametrize("skip_overlap", [False, True])
@pytest.mark.parametrize("with_uem", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_corpus_mapping_equals_pyannote_on_the_concatenated_recordings(
    seed: int, with_uem: bool, skip_overlap: bool, collar: float
) -> None:
    reference, hypothesis, uem = synthetic_corpus(seed)
    regions = uem if with_uem else None
    result = score(
        reference, hypothesis, uem=regions, collar=collar, skip_overlap=skip_overlap, corpus_mapping=True
    )
    ref, hyp, one_uem = concatenated(reference, hypothesis, regions)
    der = DiarizationErrorRate(collar=2 * collar, skip_overlap=skip_overlap)
    kwargs = {"uem": Timeline([Segment(s, e) for s, e in one_uem])} if one_uem is not None else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = der(to_pyannote(ref, "all"), to_pyannote(hyp, "all"), detailed=True, **kwargs)
    assert result.corpus.der == pytest.approx(expected["diarization error rate"], abs=TOL)
    assert result.corpus.total == pytest.approx(expected["total"], abs=1e-6)
    assert result.corpus.confusion_seconds == pytest.approx(expected["confusion"], abs=1e-6)
    # the same as diar scoring the concatenation itself (one file, its own mapping)
    alone = score(
        {"all": ref},
        {"all": hyp},
        uem={"all": one_uem} if one_uem is not None else None,
        collar=collar,
        skip_overlap=skip_overlap,
    )
    assert result.corpus.der == pytest.approx(alone.corpus.der, abs=TOL)
    assert result.corpus.jer == pytest.approx(alone.corpus.jer, abs=TOL)
    # one mapping for all can only be worse than one per recording
    per_file = score(reference, hypothesis, uem=regions, collar=collar, skip_overlap=skip_overlap)
    assert result.corpus.der >= per_file.corpus.der - TOL
    assert sum(s.total for s in result.files.values()) == pytest.approx(result.corpus.total)


def test_corpus_mapping_counts_linking_errors_hand_computed() -> None:
    # one reader in two recordings; the hypothesis calls her x in one and y in the other
    reference = {"r1": _ann("r1", (0, 10, "A")), "r2": _ann("r2", (0, 10, "A"))}
    split = {"r1": _ann("r1", (0, 10, "x")), "r2": _ann("r2", (0, 10, "y"))}
    assert score(reference, split).corpus.der == 0.0  # per recording: perfect
    result = score(reference, split, corpus_mapping=True)
    assert result.corpus.der == pytest.approx(0.5)  # A -> x: r2's 10 s are confusion
    assert result.corpus.confusion_seconds == pytest.approx(10.0)
    assert result.speaker_map == {"A": "x"}
    assert (result.files["r1"].der, result.files["r2"].der) == (0.0, 1.0)
    assert result.corpus.jer == pytest.approx(0.5)  # |A ∩ x| = 10 of |A ∪ x| = 20
    assert (result.files["r1"].jer, result.files["r2"].jer) == (0.0, 1.0)
    # two readers that the hypothesis merged into one global speaker
    merged_ref = {"r1": _ann("r1", (0, 10, "A")), "r2": _ann("r2", (0, 6, "B"))}
    merged = {"r1": _ann("r1", (0, 10, "x")), "r2": _ann("r2", (0, 6, "x"))}
    result = score(merged_ref, merged, corpus_mapping=True)
    assert result.speaker_map == {"A": "x"}
    assert result.corpus.der == pytest.approx(6 / 16)
    assert result.corpus.jer == pytest.approx((1 - 10 / 16 + 1.0) / 2)  # A: 10 of 16 s; B unmapped
    # a linked hypothesis scores as per recording
    linked = {"r1": _ann("r1", (0, 10, "x")), "r2": _ann("r2", (0, 10, "x"))}
    assert score(reference, linked, corpus_mapping=True).corpus.der == 0.0


def test_command_corpus_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref_path = _write(tmp_path / "ref.rttm", [_ann("r1", (0, 10, "A")), _ann("r2", (0, 10, "A"))])
    hyp_path = _write(tmp_path / "hyp.rttm", [_ann("r1", (0, 10, "x")), _ann("r2", (0, 10, "y"))])
    code, out = _run_command(capsys, "--ref", ref_path, "--hyp", hyp_path, "--corpus", "--json")
    figures = json.loads(out)
    assert code == 0 and figures["der"] == pytest.approx(0.5)
    assert figures["mapping"] == "corpus" and figures["speaker_map"] == {"A": "x"}
    assert figures["files"]["r2"]["confusion"] == pytest.approx(1.0)
    code, out = _run_command(capsys, "--ref", ref_path, "--hyp", hyp_path, "--corpus")
    assert out.splitlines()[-2].split()[:2] == ["corpus", "50.00"]
    assert "one speaker mapping for the corpus: 1 of 1 reference speakers mapped, 2 hypothesis" in out
    code, out = _run_command(capsys, "--ref", ref_path, "--hyp", hyp_path, "--json")
    assert json.loads(out)["der"] == 0.0 and "mapping" not in json.loads(out)
