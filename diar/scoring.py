"""Diarization error rate (DER) and Jaccard error rate (JER), md-eval conventions.

Scoring is exact on time intervals: every reference, hypothesis and scored-region
boundary cuts the timeline into elementary intervals on which the number of active
turns of every speaker is constant, and each quantity is a duration-weighted sum
over those intervals. There is no frame grid.

Conventions: those of pyannote.metrics, which the tests use as the golden reference
(the numbers agree with ``pyannote.metrics`` 4.x to float precision). They are NIST
md-eval's except in two points, both noted below: the speaker mapping is found after
collars are removed, and a speaker's own overlapping turns are not merged. On the
shared corpus md-eval-22 gives the same seconds to its printed precision when
neither point applies.

* Scored region: the UEM of the recording when one is given, else the extent of
  reference and hypothesis together (earliest start to latest end; outside the
  union of both nothing can be counted, so the two readings give the same numbers).
* ``collar``: seconds removed on EACH side of every reference turn boundary, as
  md-eval ``-c``. pyannote.metrics' ``collar`` is the total width, i.e.
  ``DiarizationErrorRate(collar=2 * collar)`` scores like ``collar`` here.
* ``skip_overlap``: regions where two or more reference turns are active are not
  scored (md-eval ``-1``).
* Speaker mapping: one-to-one, maximising the scored time on which a hypothesis
  speaker and a reference speaker talk together (Hungarian algorithm); it is found
  after collars and overlap have been removed. md-eval maps on the region before
  collars are removed, so with a collar its confusion can be higher where the
  mapping is close.
* Turns count with multiplicity: a speaker with two turns active at once (e.g. a
  hypothesis that merged two speakers) counts as two speakers there, as in
  pyannote.metrics; md-eval merges them instead, which
  ``Annotation.from_turns(merge=True)`` beforehand reproduces. Turns of
  1 microsecond or less are ignored.
* On each interval with ``n_ref`` reference and ``n_hyp`` hypothesis turns and
  ``n_correct`` mapped matches: missed ``max(0, n_ref - n_hyp)``, false alarm
  ``max(0, n_hyp - n_ref)``, confusion ``min(n_ref, n_hyp) - n_correct``, scored
  speech ``n_ref``, each times the interval's duration.
* Corpus figures sum the seconds of every file before dividing (pyannote's
  ``abs(metric)``), so long files weigh more.
* A recording with hypothesis but no reference contributes false alarm only; one
  with reference but no hypothesis is all missed speech. With no scored reference
  speech a rate is 0 if its numerator is 0, else 1 (pyannote's rule).

JER follows the DIHARD definition as implemented by dscore: for each reference
speaker ``1 - |ref ∩ hyp| / |ref ∪ hyp|`` with its mapped hypothesis speaker (1 when
unmapped), averaged over reference speakers; the mapping is one-to-one and
minimises the sum of those errors. Per file the mean is over the file's reference
speakers, for the corpus over all reference speakers of all files. JER is scored on
the same region as DER (UEM, collars, overlap), as pyannote's ``JaccardErrorRate``
does. Differences from pyannote's ``JaccardErrorRate``: pyannote maps speakers by
maximum overlap time rather than minimum Jaccard error (so its JER is never lower
than this one, and equal whenever both mappings agree), and it gives 1.0 to a file
with no speech at all where dscore and this module give 0.0.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from diar.errors import DiarError, quote
from diar.types import Annotation, Turn

logger = logging.getLogger(__name__)

#: Turns and intervals of this duration or less (seconds) are ignored, as in pyannote.core.
MIN_DURATION = 1e-6

Interval = tuple[float, float]


class ScoringError(DiarError):
    """Inputs that cannot be scored (e.g. a recording missing from the UEM, a negative collar)."""


@dataclass(frozen=True)
class Score:
    """Error components of one recording, or of a corpus once summed with ``+``.

    Durations are seconds of speaker time: an interval where two reference speakers
    talk counts twice in ``total``.
    """

    #: Scored reference speech, in seconds (the DER denominator).
    total: float = 0.0
    #: Seconds of missed speech, false alarm and speaker confusion.
    missed_seconds: float = 0.0
    false_alarm_seconds: float = 0.0
    confusion_seconds: float = 0.0
    #: Sum of the per-reference-speaker Jaccard errors and how many speakers they cover.
    jaccard_error_sum: float = 0.0
    num_ref_speakers: int = 0
    num_hyp_speakers: int = 0

    def __add__(self, other: Score) -> Score:
        return Score(
            total=self.total + other.total,
            missed_seconds=self.missed_seconds + other.missed_seconds,
            false_alarm_seconds=self.false_alarm_seconds + other.false_alarm_seconds,
            confusion_seconds=self.confusion_seconds + other.confusion_seconds,
            jaccard_error_sum=self.jaccard_error_sum + other.jaccard_error_sum,
            num_ref_speakers=self.num_ref_speakers + other.num_ref_speakers,
            num_hyp_speakers=self.num_hyp_speakers + other.num_hyp_speakers,
        )

    def _rate(self, seconds: float) -> float:
        if self.total > 0.0:
            return seconds / self.total
        return 0.0 if seconds == 0.0 else 1.0

    @property
    def miss(self) -> float:
        """Missed speech as a fraction of scored reference speech."""
        return self._rate(self.missed_seconds)

    @property
    def false_alarm(self) -> float:
        """False alarm as a fraction of scored reference speech."""
        return self._rate(self.false_alarm_seconds)

    @property
    def confusion(self) -> float:
        """Speaker confusion as a fraction of scored reference speech."""
        return self._rate(self.confusion_seconds)

    @property
    def der(self) -> float:
        """Diarization error rate: (missed + false alarm + confusion) / total, as a fraction."""
        return self._rate(self.missed_seconds + self.false_alarm_seconds + self.confusion_seconds)

    @property
    def jer(self) -> float:
        """Jaccard error rate, mean over reference speakers, as a fraction (dscore's edge cases)."""
        if self.num_ref_speakers > 0:
            return self.jaccard_error_sum / self.num_ref_speakers
        return 1.0 if self.num_hyp_speakers > 0 else 0.0

    def to_dict(self) -> dict[str, float]:
        """``{"der", "jer", "miss", "false_alarm", "confusion", "total"}``: rates as fractions, total in s."""
        return {
            "der": self.der,
            "jer": self.jer,
            "miss": self.miss,
            "false_alarm": self.false_alarm,
            "confusion": self.confusion,
            "total": self.total,
        }


@dataclass(frozen=True)
class ScoringResult:
    """Per-recording scores (in reference-then-hypothesis order) and their corpus sum.

    With one speaker mapping for the whole corpus (``corpus_mapping``), ``corpus_score``
    holds the corpus figures: its DER components are the files' sums, its JER is the mean
    over the corpus's reference speakers of their Jaccard error over all files.
    """

    files: dict[str, Score] = field(default_factory=dict)
    corpus_score: Score | None = None
    #: The hypothesis speaker each reference speaker was mapped to, with ``corpus_mapping``.
    speaker_map: dict[str, str] | None = None

    @property
    def corpus(self) -> Score:
        """Components summed over all files (rates computed on the sums)."""
        if self.corpus_score is not None:
            return self.corpus_score
        total = Score()
        for score in self.files.values():
            total = total + score
        return total

    def to_dict(self) -> dict[str, object]:
        """The corpus figures plus ``"files": {reco_id: figures}`` (see :meth:`Score.to_dict`);
        with a corpus-wide mapping also ``"mapping": "corpus"`` and ``"speaker_map": {ref: hyp}``."""
        out: dict[str, object] = dict(self.corpus.to_dict())
        out["files"] = {reco: score.to_dict() for reco, score in self.files.items()}
        if self.speaker_map is not None:
            out["mapping"] = "corpus"
            out["speaker_map"] = dict(self.speaker_map)
        return out


def score(
    reference: Mapping[str, Annotation],
    hypothesis: Mapping[str, Annotation],
    uem: Mapping[str, Sequence[Interval]] | None = None,
    collar: float = 0.0,
    skip_overlap: bool = False,
    corpus_mapping: bool = False,
) -> ScoringResult:
    """Score every recording found in the reference or the hypothesis.

    Args:
        reference: reco_id -> reference annotation.
        hypothesis: reco_id -> system annotation. A recording missing here is all
            missed speech; one missing from ``reference`` is all false alarm.
        uem: reco_id -> scored (start, end) intervals in seconds. When given, every
            scored recording must have an entry.
        collar: seconds not scored on each side of every reference boundary (md-eval ``-c``).
        skip_overlap: do not score regions where reference turns overlap.
        corpus_mapping: map hypothesis to reference speakers once for the whole corpus (the
            labels of both are taken to name the same person in every recording, e.g. after
            speaker linking), so that a speaker split or merged across recordings is an error.
            The mapping maximises the co-occurrence time summed over all files, which equals
            scoring the recordings concatenated on one timeline.

    Raises:
        ScoringError: a recording has no UEM entry, or ``collar`` is negative or not finite.
    """
    prepared = _prepare_corpus(reference, hypothesis, uem, collar, skip_overlap)
    if not corpus_mapping:  # one recording's intervals at a time
        return ScoringResult({reco_id: _score_per_file(p) for reco_id, p in prepared})
    return _score_corpus(dict(prepared))


def _prepare_corpus(
    reference: Mapping[str, Annotation],
    hypothesis: Mapping[str, Annotation],
    uem: Mapping[str, Sequence[Interval]] | None,
    collar: float,
    skip_overlap: bool,
) -> Iterator[tuple[str, _Prepared]]:
    """Every recording of the reference, then those only in the hypothesis, cut into intervals
    (one at a time: a corpus's interval matrices together can take gigabytes)."""
    for reco_id in itertools.chain(reference, (r for r in hypothesis if r not in reference)):
        ref = reference.get(reco_id)
        hyp = hypothesis.get(reco_id)
        if ref is None:
            logger.warning("recording %r has a hypothesis but no reference: all false alarm", reco_id)
        elif hyp is None:
            logger.warning("recording %r has a reference but no hypothesis: all missed", reco_id)
        regions: Sequence[Interval] | None = None
        if uem is not None:
            if reco_id not in uem:
                raise ScoringError(
                    f"recording {quote(reco_id)} is not in the UEM; add a line for it or score without a UEM"
                )
            regions = uem[reco_id]
        yield (
            reco_id,
            _prepare(
                ref.turns if ref is not None else (),
                hyp.turns if hyp is not None else (),
                uem=regions,
                collar=collar,
                skip_overlap=skip_overlap,
            ),
        )


def score_recording(
    reference: Iterable[Turn],
    hypothesis: Iterable[Turn],
    uem: Sequence[Interval] | None = None,
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> Score:
    """DER and JER components of one recording (see the module docstring for conventions).

    Args:
        reference, hypothesis: speaker turns of the recording (e.g. ``Annotation.turns``).
        uem: scored (start, end) intervals in seconds; None scores the extent of both.
        collar: seconds not scored on each side of every reference boundary.
        skip_overlap: do not score regions where reference turns overlap.
    """
    return _score_per_file(_prepare(reference, hypothesis, uem, collar, skip_overlap))


#: One stretch of an error: ``count`` speakers are missed (falsely detected, confused) from
#: ``start`` to ``end`` seconds.
ErrorSpan = tuple[float, float, int]


@dataclass(frozen=True)
class ErrorRegions:
    """Where the errors of one recording lie: what :func:`score` counts, as time intervals.

    Under the same one-to-one speaker mapping as :func:`score` (per recording), each error is a
    list of ``(start, end, count)`` spans, sorted, consecutive ones with the same count joined,
    so that ``sum((end - start) * count)`` over ``missed`` is ``score.missed_seconds`` (and so for
    false alarm and confusion), up to float rounding.
    """

    #: The recording's DER and JER components, equal to :func:`score`'s for it.
    score: Score
    #: Hypothesis speaker -> the reference speaker it is mapped to (unmapped speakers absent).
    mapping: dict[str, str]
    #: Sorted disjoint (start, end) seconds that are scored (the UEM or the extent of reference
    #: and hypothesis, less collars and, with ``skip_overlap``, reference overlap).
    scored: list[Interval]
    missed: list[ErrorSpan]
    false_alarm: list[ErrorSpan]
    confusion: list[ErrorSpan]


def error_regions(
    reference: Iterable[Turn],
    hypothesis: Iterable[Turn],
    uem: Sequence[Interval] | None = None,
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> ErrorRegions:
    """The missed, false-alarm and confusion spans of one recording (arguments as
    :func:`score_recording`; its score is the one :func:`score_recording` gives)."""
    return _regions(_prepare(reference, hypothesis, uem, collar, skip_overlap))


def score_regions(
    reference: Mapping[str, Annotation],
    hypothesis: Mapping[str, Annotation],
    uem: Mapping[str, Sequence[Interval]] | None = None,
    collar: float = 0.0,
    skip_overlap: bool = False,
) -> dict[str, ErrorRegions]:
    """:func:`error_regions` of every recording :func:`score` scores, in its order (arguments as
    :func:`score` with a mapping per recording).

    ``ScoringResult({reco: r.score for reco, r in regions.items()})`` holds exactly the figures
    of :func:`score` with the same arguments.
    """
    prepared = _prepare_corpus(reference, hypothesis, uem, collar, skip_overlap)
    return {reco_id: _regions(p) for reco_id, p in prepared}


def _regions(p: _Prepared) -> ErrorRegions:
    mapping = _overlap_mapping(p.ref_counts, p.hyp_counts, p.weights)
    jaccard_errors = _jaccard_errors(p.ref_counts > 0, p.hyp_counts > 0, p.weights)
    score = _score_mapped(p, mapping, float(jaccard_errors.sum()))
    n_ref, n_hyp, correct = _matches(p, mapping)
    scored = p.weights > 0
    # runs of scored intervals: +1 where one starts, -1 just after one ends
    change = np.diff(np.concatenate([[0], scored.astype(np.int8), [0]]))
    runs = zip(p.times[change == 1].tolist(), p.times[change == -1].tolist(), strict=True)
    return ErrorRegions(
        score=score,
        mapping={p.hyp_labels[h]: p.ref_labels[r] for r, h in mapping},
        scored=_union(list(runs)),
        missed=_spans(p.times, np.where(scored, np.maximum(n_ref - n_hyp, 0), 0)),
        false_alarm=_spans(p.times, np.where(scored, np.maximum(n_hyp - n_ref, 0), 0)),
        confusion=_spans(p.times, np.where(scored, np.minimum(n_ref, n_hyp) - correct, 0)),
    )


def _spans(times: np.ndarray, counts: np.ndarray) -> list[ErrorSpan]:
    """``(start, end, count)`` of the runs of equal nonzero ``counts`` (shape (K,)) on the
    intervals between ``times`` (shape (K + 1,))."""
    spans: list[ErrorSpan] = []
    for k in np.flatnonzero(counts):
        start, end, count = float(times[k]), float(times[k + 1]), int(counts[k])
        if spans and spans[-1][1] == start and spans[-1][2] == count:
            spans[-1] = (spans[-1][0], end, count)
        else:
            spans.append((start, end, count))
    return spans


@dataclass(frozen=True)
class _Prepared:
    """One recording cut into elementary intervals: who is active on each, and its scored seconds."""

    #: Speakers with scored time; column j of the count matrices is speaker j.
    ref_labels: list[str]
    hyp_labels: list[str]
    #: shape (K, R) and (K, H): active turns of each speaker on each interval
    ref_counts: np.ndarray
    hyp_counts: np.ndarray
    #: shape (K,): scored seconds of each interval
    weights: np.ndarray
    #: shape (K + 1,): the interval boundaries in seconds (interval k is times[k]..times[k + 1])
    times: np.ndarray


def _prepare(
    reference: Iterable[Turn],
    hypothesis: Iterable[Turn],
    uem: Sequence[Interval] | None,
    collar: float,
    skip_overlap: bool,
) -> _Prepared:
    if not math.isfinite(collar) or collar < 0:
        raise ScoringError(f"collar must be a finite number of seconds >= 0, got {quote(collar)}")
    ref = [t for t in reference if t.end - t.start > MIN_DURATION]
    hyp = [t for t in hypothesis if t.end - t.start > MIN_DURATION]

    # Scored region: sorted disjoint intervals.
    if uem is None:
        bounds = [t.start for t in ref + hyp] + [t.end for t in ref + hyp]
        region = [(min(bounds), max(bounds))] if bounds else []
    else:
        for start, end in uem:
            if not (math.isfinite(start) and math.isfinite(end)) or end < start:
                raise ScoringError(f"invalid UEM interval {quote(start)}..{quote(end)}")
        region = _union(list(uem))
    excluded: list[Interval] = []
    if collar > 0:
        for t in ref:
            excluded.append((t.start - collar, t.start + collar))
            excluded.append((t.end - collar, t.end + collar))
    if skip_overlap:
        excluded.extend(_overlap_regions(ref))
    if excluded:
        region = _subtract(region, _union(excluded))
    return _on_region(ref, hyp, region)


def _on_region(ref: list[Turn], hyp: list[Turn], region: list[Interval]) -> _Prepared:
    if not region:
        empty = np.zeros((0, 0), dtype=np.int64)
        return _Prepared([], [], empty, empty, np.zeros(0), np.zeros(1))
    ref_labels = sorted({t.speaker for t in ref})
    hyp_labels = sorted({t.speaker for t in hyp})
    times = np.unique(
        np.array(
            [x for t in ref + hyp for x in (t.start, t.end)] + [x for iv in region for x in iv],
            dtype=np.float64,
        )
    )
    # shape: (K,) durations of the elementary intervals between consecutive boundaries
    durations = np.diff(times)
    # shape: (K,) True where the interval is scored
    scored = _interval_counts(times, region, [0] * len(region), 1)[:, 0] > 0
    weights = np.where(scored, durations, 0.0)
    # shape: (K, R) and (K, H): number of active turns of each speaker on each interval
    ref_column = {s: i for i, s in enumerate(ref_labels)}
    hyp_column = {s: i for i, s in enumerate(hyp_labels)}
    ref_counts = _interval_counts(
        times, [(t.start, t.end) for t in ref], [ref_column[t.speaker] for t in ref], len(ref_labels)
    )
    hyp_counts = _interval_counts(
        times, [(t.start, t.end) for t in hyp], [hyp_column[t.speaker] for t in hyp], len(hyp_labels)
    )
    # Speakers with no scored time do not exist for the metric (pyannote crops them away).
    ref_keep = weights @ ref_counts > 0
    hyp_keep = weights @ hyp_counts > 0
    ref_counts = ref_counts[:, ref_keep]
    hyp_counts = hyp_counts[:, hyp_keep]
    ref_labels = [s for s, k in zip(ref_labels, ref_keep, strict=True) if k]
    hyp_labels = [s for s, k in zip(hyp_labels, hyp_keep, strict=True) if k]
    return _Prepared(ref_labels, hyp_labels, ref_counts, hyp_counts, weights, times)


def _score_per_file(p: _Prepared) -> Score:
    """The recording's score with its own optimal mapping."""
    mapping = _overlap_mapping(p.ref_counts, p.hyp_counts, p.weights)
    jaccard_errors = _jaccard_errors(p.ref_counts > 0, p.hyp_counts > 0, p.weights)
    return _score_mapped(p, mapping, float(jaccard_errors.sum()))


def _score_mapped(p: _Prepared, mapping: Sequence[tuple[int, int]], jaccard_error_sum: float) -> Score:
    """DER components of a recording under ``mapping`` ((ref column, hyp column) pairs)."""
    weights = p.weights
    n_ref, n_hyp, correct = _matches(p, mapping)
    total = float(weights @ n_ref)
    missed = float(weights @ np.maximum(n_ref - n_hyp, 0))
    false_alarm = float(weights @ np.maximum(n_hyp - n_ref, 0))
    confusion = float(weights @ (np.minimum(n_ref, n_hyp) - correct))
    return Score(
        total=total,
        missed_seconds=missed,
        false_alarm_seconds=false_alarm,
        confusion_seconds=confusion,
        jaccard_error_sum=jaccard_error_sum,
        num_ref_speakers=len(p.ref_labels),
        num_hyp_speakers=len(p.hyp_labels),
    )


def _matches(p: _Prepared, mapping: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """shape (K,) each: reference and hypothesis turns active on each interval, and how many of
    them are matched under ``mapping``."""
    n_ref = p.ref_counts.sum(axis=1)
    n_hyp = p.hyp_counts.sum(axis=1)
    correct = np.zeros_like(n_ref)
    for r, h in mapping:
        correct += np.minimum(p.ref_counts[:, r], p.hyp_counts[:, h])
    return n_ref, n_hyp, correct


def _score_corpus(prepared: Mapping[str, _Prepared]) -> ScoringResult:
    """Every recording scored under one speaker mapping for the whole corpus.

    The mapping maximises the co-occurrence seconds summed over the recordings (the
    per-recording matrices added up in one label space): exactly what scoring the
    recordings concatenated on one timeline would find. The corpus JER takes each
    reference speaker's intersection and union over all recordings (dscore's mapping,
    minimising the summed Jaccard errors).
    """
    ref_all = sorted({s for p in prepared.values() for s in p.ref_labels})
    hyp_all = sorted({s for p in prepared.values() for s in p.hyp_labels})
    ref_index = {s: i for i, s in enumerate(ref_all)}
    hyp_index = {s: i for i, s in enumerate(hyp_all)}
    # shape: (H, R) co-occurrence seconds; (R,) (H,) (R, H) speaking and shared seconds
    cooc = np.zeros((len(hyp_all), len(ref_all)))
    ref_time = np.zeros(len(ref_all))
    hyp_time = np.zeros(len(hyp_all))
    shared = np.zeros((len(ref_all), len(hyp_all)))
    for p in prepared.values():
        r = np.asarray([ref_index[s] for s in p.ref_labels], dtype=np.int64)
        h = np.asarray([hyp_index[s] for s in p.hyp_labels], dtype=np.int64)
        cooc[np.ix_(h, r)] += p.hyp_counts.T @ (p.ref_counts * p.weights[:, None])
        ref_active, hyp_active = p.ref_counts > 0, p.hyp_counts > 0
        ref_time[r] += p.weights @ ref_active
        hyp_time[h] += p.weights @ hyp_active
        shared[np.ix_(r, h)] += ref_active.T @ (hyp_active * p.weights[:, None])
    mapped = {ref_all[r]: hyp_all[h] for r, h in _mapping_from_cooc(cooc)}
    # Jaccard: per reference speaker, over the whole corpus, mapped to minimise the sum
    corpus_jaccard = np.ones(len(ref_all))
    jaccard_map: dict[int, int] = {}
    if len(ref_all) and len(hyp_all):
        union = ref_time[:, None] + hyp_time[None, :] - shared
        errors = 1.0 - shared / np.maximum(union, MIN_DURATION)
        rows, cols = linear_sum_assignment(errors)
        corpus_jaccard[rows] = errors[rows, cols]
        jaccard_map = dict(zip(rows.tolist(), cols.tolist(), strict=True))
    files: dict[str, Score] = {}
    for reco_id, p in prepared.items():
        hyp_col = {s: j for j, s in enumerate(p.hyp_labels)}
        pairs = [(i, hyp_col[mapped[s]]) for i, s in enumerate(p.ref_labels) if mapped.get(s) in hyp_col]
        errors_here = 0.0
        for i, s in enumerate(p.ref_labels):
            partner = jaccard_map.get(ref_index[s])
            col = hyp_col.get(hyp_all[partner]) if partner is not None else None
            if col is None:
                errors_here += 1.0
            else:
                ref_on, hyp_on = p.ref_counts[:, i] > 0, p.hyp_counts[:, col] > 0
                union_here = float(p.weights @ (ref_on | hyp_on))
                errors_here += 1.0 - float(p.weights @ (ref_on & hyp_on)) / union_here
        files[reco_id] = _score_mapped(p, pairs, errors_here)
    total = Score()
    for score in files.values():
        total = total + score
    corpus = Score(
        total=total.total,
        missed_seconds=total.missed_seconds,
        false_alarm_seconds=total.false_alarm_seconds,
        confusion_seconds=total.confusion_seconds,
        jaccard_error_sum=float(corpus_jaccard.sum()),
        num_ref_speakers=len(ref_all),
        num_hyp_speakers=len(hyp_all),
    )
    return ScoringResult(files, corpus, dict(sorted(mapped.items())))


def _overlap_mapping(
    ref_counts: np.ndarray, hyp_counts: np.ndarray, weights: np.ndarray
) -> list[tuple[int, int]]:
    """Optimal one-to-one (ref, hyp) column pairs maximising co-occurrence time."""
    # shape: (H, R) seconds of co-occurrence, counting turns with multiplicity
    return _mapping_from_cooc(hyp_counts.T @ (ref_counts * weights[:, None]))


def _mapping_from_cooc(cooc: np.ndarray) -> list[tuple[int, int]]:
    """Optimal one-to-one (ref, hyp) pairs of a (H, R) co-occurrence matrix, pairs with none left out.

    The matrix is laid out in the label order pyannote.metrics builds (labels renamed
    'A', 'B', ... and 0, 1, ..., then sorted as strings), so that exact ties are broken
    the same way.
    """
    if cooc.size == 0:
        return []
    hyp_order = sorted(range(cooc.shape[0]), key=str)
    ref_order = sorted(range(cooc.shape[1]), key=lambda i: _letters(i))
    ordered = cooc[np.ix_(hyp_order, ref_order)]
    rows, cols = linear_sum_assignment(-ordered)
    return [(ref_order[c], hyp_order[r]) for r, c in zip(rows, cols, strict=True) if ordered[r, c] > 0]


def _jaccard_errors(ref_active: np.ndarray, hyp_active: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per reference speaker ``1 - IoU`` with the mapping minimising their sum (dscore).

    Args:
        ref_active, hyp_active: shape (K, R) and (K, H), True where the speaker talks.
        weights: shape (K,), scored seconds of each interval.

    Returns:
        shape (R,): Jaccard error of each reference speaker (1 when unmapped).
    """
    num_ref, num_hyp = ref_active.shape[1], hyp_active.shape[1]
    errors = np.ones(num_ref)
    if num_ref == 0 or num_hyp == 0:
        return errors
    # shape: (K, R, H); summed exactly per pair so that identical speakers give exactly 0
    ref_pairs = ref_active[:, :, None]
    hyp_pairs = hyp_active[:, None, :]
    union = np.tensordot(weights, ref_pairs | hyp_pairs, axes=1)
    differ = np.tensordot(weights, ref_pairs ^ hyp_pairs, axes=1)
    # shape: (R, H); every scored reference speaker has some scored time, so union > 0
    pair_errors = differ / union
    rows, cols = linear_sum_assignment(pair_errors)
    errors[rows] = pair_errors[rows, cols]
    return errors


def _letters(index: int) -> str:
    """pyannote.core's string label generator: 0 -> 'A', 25 -> 'Z', 26 -> 'AA', ..."""
    width, offset = 1, index
    while offset >= 26**width:
        offset -= 26**width
        width += 1
    chars = []
    for _ in range(width):
        offset, digit = divmod(offset, 26)
        chars.append(chr(ord("A") + digit))
    return "".join(reversed(chars))


def _interval_counts(
    times: np.ndarray, spans: Sequence[Interval], columns: Sequence[int], num_columns: int
) -> np.ndarray:
    """How many spans of each column cover each elementary interval.

    Args:
        times: shape (K + 1,), sorted unique boundaries containing every span end point.
        spans: (start, end) pairs; ``columns[i]`` is the column of ``spans[i]``.

    Returns:
        shape (K, num_columns), int64.
    """
    delta = np.zeros((len(times), num_columns), dtype=np.int64)
    if spans:
        arr = np.asarray(spans, dtype=np.float64)
        cols = np.asarray(columns, dtype=np.int64)
        np.add.at(delta, (np.searchsorted(times, arr[:, 0]), cols), 1)
        np.add.at(delta, (np.searchsorted(times, arr[:, 1]), cols), -1)
    return np.cumsum(delta, axis=0)[:-1]


def _union(intervals: list[Interval]) -> list[Interval]:
    """Sorted disjoint union of intervals; gaps of MIN_DURATION or less are closed."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if end - start <= MIN_DURATION:
            continue
        if out and start - out[-1][1] <= MIN_DURATION:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _subtract(region: list[Interval], removed: list[Interval]) -> list[Interval]:
    """``region`` minus ``removed``; both sorted and disjoint."""
    out: list[Interval] = []
    j = 0
    for start, end in region:
        cur = start
        while j < len(removed) and removed[j][1] <= cur:
            j += 1
        k = j
        while k < len(removed) and removed[k][0] < end:
            if removed[k][0] - cur > MIN_DURATION:
                out.append((cur, removed[k][0]))
            cur = max(cur, removed[k][1])
            k += 1
        if end - cur > MIN_DURATION:
            out.append((cur, end))
    return out


def _overlap_regions(turns: list[Turn]) -> list[Interval]:
    """Intervals where two or more of ``turns`` are active."""
    events = sorted([(t.start, 1) for t in turns] + [(t.end, -1) for t in turns])
    out: list[Interval] = []
    active, since = 0, 0.0
    for time, step in events:
        if active >= 2 and time > since:
            out.append((since, time))
        active += step
        since = time
    return _union(out)
