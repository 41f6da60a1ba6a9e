"""Diarization error rate (DER) and Jaccard error rate (JER), md-eval conventions.

Scoring is exact on time intervals: every reference, hypothesis and scored-region
boundary cuts the timeline into elementary intervals on which the number of active
turns of every speaker is constant, and each quantity is a duration-weighted sum
over those intervals. There is no frame grid.

Memory grows with the turns, never with speakers x intervals: who talks on each interval
is a sparse matrix (an entry per interval a speaker talks in), and co-occurrence and
Jaccard intersections are sparse speaker x speaker matrices with an entry per pair that
talks together. Only the Hungarian mapping needs a dense speakers x speakers matrix; above
:data:`DENSE_MAPPING_CELLS` it is solved per block of speakers who talk together (the same
optimum), and a block above :data:`MAX_MAPPING_CELLS` is refused. 1 000 speakers with 3 000
turns in one recording score in under a second and about 100 MB.

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
from scipy import sparse
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
    mapping = _mapping_from_cooc(_cooccurrence(p))
    jaccard_errors = _jaccard_errors(p.ref_counts, p.hyp_counts, p.weights)
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
    """One recording cut into elementary intervals: who is active on each, and its scored seconds.

    The count matrices are sparse (an entry per interval a speaker talks in), so memory grows
    with the turns and their overlap, never with speakers x intervals.
    """

    #: Speakers with scored time; column j of the count matrices is speaker j.
    ref_labels: list[str]
    hyp_labels: list[str]
    #: shape (K, R) and (K, H), sparse CSC int64: active turns of each speaker on each interval
    ref_counts: sparse.csc_array
    hyp_counts: sparse.csc_array
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
        empty = sparse.csc_array((0, 0), dtype=np.int64)
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
    scored = _covered(times, region)
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
    ref_keep = ref_counts.T @ weights > 0
    hyp_keep = hyp_counts.T @ weights > 0
    ref_counts = sparse.csc_array(ref_counts[:, ref_keep])
    hyp_counts = sparse.csc_array(hyp_counts[:, hyp_keep])
    ref_labels = [s for s, k in zip(ref_labels, ref_keep, strict=True) if k]
    hyp_labels = [s for s, k in zip(hyp_labels, hyp_keep, strict=True) if k]
    return _Prepared(ref_labels, hyp_labels, ref_counts, hyp_counts, weights, times)


def _score_per_file(p: _Prepared) -> Score:
    """The recording's score with its own optimal mapping."""
    mapping = _mapping_from_cooc(_cooccurrence(p))
    jaccard_errors = _jaccard_errors(p.ref_counts, p.hyp_counts, p.weights)
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


def _row_sums(m: sparse.csc_array) -> np.ndarray:
    """shape (K,) int64: the sum of each row of a (K, C) sparse count matrix."""
    return np.asarray(m.sum(axis=1), dtype=np.int64).reshape(-1)


def _cooccurrence(p: _Prepared) -> sparse.csr_array:
    """shape (H, R), sparse: seconds of co-occurrence, counting turns with multiplicity."""
    return sparse.csr_array(p.hyp_counts.T @ p.ref_counts.multiply(p.weights[:, None]))


def _activity(
    ref_counts: sparse.csc_array, hyp_counts: sparse.csc_array, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, sparse.csr_array]:
    """Where each speaker talks, in scored seconds: ref_time (R,), hyp_time (H,) and shared
    (R, H) sparse, the seconds both speakers of a pair talk (turn multiplicity ignored)."""
    ref_on, hyp_on = _active(ref_counts), _active(hyp_counts)
    ref_time = ref_on.T @ weights
    hyp_time = hyp_on.T @ weights
    # row r of ref_on.T sums w over its intervals in the order ref_time does, so that a
    # hypothesis speaker identical to a reference speaker shares exactly its time
    shared = sparse.csr_array(ref_on.T @ hyp_on.multiply(weights[:, None]))
    return ref_time, hyp_time, shared


def _active(counts: sparse.csc_array) -> sparse.csc_array:
    """1.0 where a speaker has an active turn, as a sparse float matrix with sorted indices."""
    on = sparse.csc_array((np.ones(counts.nnz), counts.indices, counts.indptr), shape=counts.shape)
    on.sort_indices()
    return on


def _pair_errors(
    ref_time: np.ndarray, hyp_time: np.ndarray, shared: sparse.csr_array
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Jaccard error ``1 - |ref ∩ hyp| / |ref ∪ hyp|`` of every pair that talks together.

    Returns:
        (rows, cols, errors): shape (E,) each; every other pair's error is exactly 1.
    """
    coo = sparse.coo_array(shared)
    rows, cols, both = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    keep = both > 0
    rows, cols, both = rows[keep], cols[keep], both[keep]
    # summed apart so that identical speakers give exactly 0 (and never below it by rounding)
    differ = np.maximum(ref_time[rows] - both, 0.0) + np.maximum(hyp_time[cols] - both, 0.0)
    return rows, cols, differ / (both + differ)


def _jaccard_errors(
    ref_counts: sparse.csc_array, hyp_counts: sparse.csc_array, weights: np.ndarray
) -> np.ndarray:
    """Per reference speaker ``1 - IoU`` with the mapping minimising their sum (dscore).

    Args:
        ref_counts, hyp_counts: shape (K, R) and (K, H), active turns of each speaker.
        weights: shape (K,), scored seconds of each interval.

    Returns:
        shape (R,): Jaccard error of each reference speaker (1 when unmapped).
    """
    num_ref, num_hyp = ref_counts.shape[1], hyp_counts.shape[1]
    errors = np.ones(num_ref)
    if num_ref == 0 or num_hyp == 0:
        return errors
    ref_time, hyp_time, shared = _activity(ref_counts, hyp_counts, weights)
    rows, cols, pair = _pair_errors(ref_time, hyp_time, shared)
    return _min_jaccard(rows, cols, pair, num_ref, num_hyp)[0]


def _min_jaccard(
    rows: np.ndarray, cols: np.ndarray, pair: np.ndarray, num_ref: int, num_hyp: int
) -> tuple[np.ndarray, dict[int, int]]:
    """Each reference speaker's Jaccard error under the one-to-one mapping that minimises their
    sum, and that mapping (pairs that never talk together have error 1, as unmapped speakers).

    Minimising the summed errors is maximising the summed ``1 - error`` of the mapped pairs.

    Returns:
        (errors of shape (R,), {ref: hyp} of the mapped pairs).
    """
    errors = np.ones(num_ref)
    gain = sparse.csr_array((1.0 - pair, (rows, cols)), shape=(num_ref, num_hyp))
    lookup = dict(zip(zip(rows.tolist(), cols.tolist(), strict=True), pair.tolist(), strict=True))
    mapping = dict(_assignment(gain, list(range(num_ref)), list(range(num_hyp))))
    for r, h in mapping.items():
        errors[r] = lookup[(r, h)]
    return errors, mapping


def _matches(p: _Prepared, mapping: Sequence[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """shape (K,) each: reference and hypothesis turns active on each interval, and how many of
    them are matched under ``mapping`` ((ref column, hyp column) pairs)."""
    n_ref = _row_sums(p.ref_counts)  # shape: (K,)
    n_hyp = _row_sums(p.hyp_counts)
    correct = np.zeros_like(n_ref)
    if mapping:
        rows = np.asarray([r for r, _ in mapping], dtype=np.int64)
        cols = np.asarray([h for _, h in mapping], dtype=np.int64)
        # shape: (K, M) matched turns of each mapped pair on each interval
        correct = _row_sums(
            sparse.csc_array(p.ref_counts[:, rows]).minimum(sparse.csc_array(p.hyp_counts[:, cols]))
        )
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
    # (H, R) co-occurrence and (R, H) shared seconds, as triplets; (R,) (H,) speaking seconds
    cooc_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    shared_parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    ref_time = np.zeros(len(ref_all))
    hyp_time = np.zeros(len(hyp_all))
    for p in prepared.values():
        r = np.asarray([ref_index[s] for s in p.ref_labels], dtype=np.int64)
        h = np.asarray([hyp_index[s] for s in p.hyp_labels], dtype=np.int64)
        cooc = sparse.coo_array(_cooccurrence(p))
        cooc_parts.append((h[cooc.row], r[cooc.col], cooc.data))
        ref_here, hyp_here, shared = _activity(p.ref_counts, p.hyp_counts, p.weights)
        ref_time[r] += ref_here
        hyp_time[h] += hyp_here
        both = sparse.coo_array(shared)
        shared_parts.append((r[both.row], h[both.col], both.data))
    cooc_all = _summed(cooc_parts, (len(hyp_all), len(ref_all)))
    mapped = {ref_all[r]: hyp_all[h] for r, h in _mapping_from_cooc(cooc_all)}
    # Jaccard: per reference speaker, over the whole corpus, mapped to minimise the sum
    corpus_jaccard = np.ones(len(ref_all))
    jaccard_map: dict[int, int] = {}
    if len(ref_all) and len(hyp_all):
        shared_all = _summed(shared_parts, (len(ref_all), len(hyp_all)))
        rows, cols, pair = _pair_errors(ref_time, hyp_time, shared_all)
        corpus_jaccard, jaccard_map = _min_jaccard(rows, cols, pair, len(ref_all), len(hyp_all))
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
                ref_on, hyp_on = _rows_of(p.ref_counts, i), _rows_of(p.hyp_counts, col)
                union_here = float(p.weights[np.union1d(ref_on, hyp_on)].sum())
                errors_here += 1.0 - float(p.weights[np.intersect1d(ref_on, hyp_on)].sum()) / union_here
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


def _rows_of(m: sparse.csc_array, column: int) -> np.ndarray:
    """The rows (intervals) where column ``column`` of a sparse CSC matrix is nonzero."""
    return m.indices[m.indptr[column] : m.indptr[column + 1]]


def _summed(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], shape: tuple[int, int]
) -> sparse.csr_array:
    """A sparse matrix of the (rows, cols, values) triplets, values at one place summed."""
    if not parts:
        return sparse.csr_array(shape, dtype=np.float64)
    rows, cols, values = (np.concatenate([part[i] for part in parts]) for i in range(3))
    return sparse.csr_array((values, (rows, cols)), shape=shape)


def _mapping_from_cooc(cooc: sparse.csr_array) -> list[tuple[int, int]]:
    """Optimal one-to-one (ref, hyp) pairs of a (H, R) co-occurrence matrix, pairs with none left out.

    The matrix is laid out in the label order pyannote.metrics builds (labels renamed
    'A', 'B', ... and 0, 1, ..., then sorted as strings), so that exact ties are broken
    the same way.
    """
    num_hyp, num_ref = cooc.shape
    if num_hyp == 0 or num_ref == 0:
        return []
    hyp_order = sorted(range(num_hyp), key=str)
    ref_order = sorted(range(num_ref), key=lambda i: _letters(i))
    return [(r, h) for h, r in _assignment(cooc, hyp_order, ref_order)]


#: Largest speakers x speakers matrix mapped in one piece (float64, 32 MB): up to this size the
#: Hungarian algorithm runs on the whole matrix, in pyannote.metrics' label order (ties are
#: broken as there); a larger one is split into its blocks of speakers who talk together.
DENSE_MAPPING_CELLS = 4_000_000
#: Largest block mapped (float64, 800 MB): speakers who all talk together across a block this
#: large are no diarization output (a recording has a few dozen speakers at most).
MAX_MAPPING_CELLS = 100_000_000


def _assignment(
    gain: sparse.csr_array, row_order: Sequence[int], col_order: Sequence[int]
) -> list[tuple[int, int]]:
    """The one-to-one (row, col) pairs of positive ``gain`` whose summed gain is the largest.

    Args:
        gain: shape (A, B) sparse, >= 0 (co-occurrence seconds, or ``1 - Jaccard error``).
        row_order, col_order: the layout in which the Hungarian algorithm sees the rows and
            columns (it breaks exact ties by position).

    A pair with no gain is never part of the answer, so speakers in different connected
    blocks of the gain graph are mapped apart; that is done for large matrices only (above
    :data:`DENSE_MAPPING_CELLS`), whose memory is then that of the largest block.

    Raises:
        ScoringError: a block larger than :data:`MAX_MAPPING_CELLS`.
    """
    num_rows, num_cols = gain.shape
    if num_rows == 0 or num_cols == 0 or gain.nnz == 0:
        return []
    if num_rows * num_cols <= DENSE_MAPPING_CELLS:
        blocks = [(np.asarray(row_order, dtype=np.int64), np.asarray(col_order, dtype=np.int64))]
    else:
        blocks = _blocks(gain, row_order, col_order)
    pairs: list[tuple[int, int]] = []
    for rows, cols in blocks:
        if len(rows) * len(cols) > MAX_MAPPING_CELLS:
            gib = 8 * len(rows) * len(cols) / 2**30
            raise ScoringError(
                f"{len(rows)} x {len(cols)} speakers all talk with one another: mapping them needs a "
                f"matrix of {gib:.1f} GiB, more than the {MAX_MAPPING_CELLS} cells diar maps at once"
            )
        block = gain[rows][:, cols].toarray()  # shape: (a, b) dense
        r, c = linear_sum_assignment(-block)
        pairs += [(int(rows[i]), int(cols[j])) for i, j in zip(r, c, strict=True) if block[i, j] > 0]
    return pairs


def _blocks(
    gain: sparse.csr_array, row_order: Sequence[int], col_order: Sequence[int]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The connected blocks of the bipartite graph of positive ``gain``: (rows, cols) of each,
    in ``row_order`` / ``col_order``; rows and columns without any gain are left out."""
    from scipy.sparse.csgraph import connected_components

    num_rows, num_cols = gain.shape
    coo = sparse.coo_array(gain)
    keep = coo.data > 0
    a, b = coo.row[keep].astype(np.int64), coo.col[keep].astype(np.int64) + num_rows
    n = num_rows + num_cols
    graph = sparse.csr_array((np.ones(len(a)), (a, b)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    row_rank = np.empty(num_rows, dtype=np.int64)
    row_rank[np.asarray(row_order, dtype=np.int64)] = np.arange(num_rows)
    col_rank = np.empty(num_cols, dtype=np.int64)
    col_rank[np.asarray(col_order, dtype=np.int64)] = np.arange(num_cols)
    used_rows = np.unique(coo.row[keep])
    used_cols = np.unique(coo.col[keep])
    out = []
    for component in np.unique(label[used_rows]).tolist():
        rows = used_rows[label[used_rows] == component]
        cols = used_cols[label[used_cols + num_rows] == component]
        out.append((rows[np.argsort(row_rank[rows])], cols[np.argsort(col_rank[cols])]))
    return out


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


def _covered(times: np.ndarray, spans: Sequence[Interval]) -> np.ndarray:
    """shape (K,) whether some span covers each elementary interval between ``times``."""
    delta = np.zeros(len(times), dtype=np.int64)
    if spans:
        arr = np.asarray(spans, dtype=np.float64)
        np.add.at(delta, np.searchsorted(times, arr[:, 0]), 1)
        np.add.at(delta, np.searchsorted(times, arr[:, 1]), -1)
    return np.cumsum(delta)[:-1] > 0


def _interval_counts(
    times: np.ndarray, spans: Sequence[Interval], columns: Sequence[int], num_columns: int
) -> sparse.csc_array:
    """How many spans of each column cover each elementary interval.

    Args:
        times: shape (K + 1,), sorted unique boundaries containing every span end point.
        spans: (start, end) pairs; ``columns[i]`` is the column of ``spans[i]``.

    Returns:
        shape (K, num_columns), sparse CSC int64 with sorted indices: one entry per interval
        and column that some span covers (memory: the intervals the spans cover, summed).
    """
    shape = (max(len(times) - 1, 0), num_columns)
    if not spans:
        return sparse.csc_array(shape, dtype=np.int64)
    arr = np.asarray(spans, dtype=np.float64)
    first = np.searchsorted(times, arr[:, 0])  # shape: (S,) first interval of each span
    lengths = np.searchsorted(times, arr[:, 1]) - first  # shape: (S,) intervals it covers
    # shape: (nnz,) every (interval, column) a span covers, spans one after the other
    rows = np.arange(int(lengths.sum()), dtype=np.int64) - np.repeat(
        np.cumsum(lengths) - lengths - first, lengths
    )
    cols = np.repeat(np.asarray(columns, dtype=np.int64), lengths)
    counts = sparse.csc_array((np.ones(len(rows), dtype=np.int64), (rows, cols)), shape=shape)
    counts.sum_duplicates()  # turns of one speaker at once count with multiplicity
    return counts


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
