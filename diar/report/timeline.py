"""What a recording's timeline shows, whatever draws it (matplotlib, the report's SVG).

A :class:`Timeline` holds one lane per speaker (a speaker's turns joined where they overlap or
touch), the stretches where two or more speakers talk at once, and, given a reference, the
reference's lanes and the error spans of :func:`diar.scoring.error_regions`: the missed speech,
false alarm and confusion that ``diar score`` counts, under the same speaker mapping, UEM and
collar. Times are seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from diar.errors import DiarError, quote
from diar.scoring import ErrorRegions, ErrorSpan, Interval, error_regions
from diar.types import Annotation, Turn

#: The three kinds of error, as :class:`ErrorRegions` names them, with what the pictures call them.
ERROR_KINDS = {"missed": "missed", "false_alarm": "false alarm", "confusion": "confusion"}


class TimelineError(DiarError, ValueError):
    """A timeline that cannot be drawn: an empty or reversed time range, a bad row length."""


@dataclass(frozen=True)
class Lane:
    """One speaker's speech.

    Attributes:
        speaker: its label.
        spans: sorted disjoint (start, end) seconds where it talks.
        color: palette index; a hypothesis speaker takes the index of the reference speaker it
            is mapped to, so that equal colours mean "the same person" for the scoring.
        mapped_to: for a hypothesis speaker, the reference speaker it is mapped to (None if none).
    """

    speaker: str
    spans: tuple[Interval, ...]
    color: int
    mapped_to: str | None = None

    @property
    def seconds(self) -> float:
        return sum(end - start for start, end in self.spans)


@dataclass(frozen=True)
class Envelope:
    """The audio's level over time: ``level_db[i]`` (dBFS, RMS) from ``times[i]`` to ``times[i + 1]``.

    Attributes:
        times: shape (N + 1,), bin edges in seconds.
        level_db: shape (N,), RMS level of each bin in dB relative to full scale.
    """

    times: np.ndarray
    level_db: np.ndarray


@dataclass(frozen=True)
class Timeline:
    """Everything one recording's picture shows, from ``start`` to ``end`` seconds.

    Attributes:
        reco_id: the recording.
        start, end: the time range shown (by default 0 to the recording's duration, or to the
            last turn when the duration is unknown).
        hypothesis: one lane per hypothesis speaker (mapped ones in the order of their reference
            speaker, then the others by label).
        reference: one lane per reference speaker, by label; empty without a reference.
        overlap: (start, end) where two or more hypothesis speakers talk at once.
        reference_overlap: the same for the reference.
        errors: the error spans and scores (None without a reference).
        envelope: the audio's level (None without the audio).
    """

    reco_id: str
    start: float
    end: float
    hypothesis: tuple[Lane, ...]
    reference: tuple[Lane, ...] = ()
    overlap: tuple[Interval, ...] = ()
    reference_overlap: tuple[Interval, ...] = ()
    errors: ErrorRegions | None = None
    envelope: Envelope | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    def error_spans(self, kind: str) -> list[ErrorSpan]:
        """The spans of one error kind (a key of :data:`ERROR_KINDS`) within the shown range."""
        if self.errors is None:
            return []
        spans: list[ErrorSpan] = getattr(self.errors, kind)
        return [(s, e, n) for s, e, n in _clip_counted(spans, self.start, self.end)]

    def unscored(self) -> list[Interval]:
        """Where no error is counted within the shown range (outside the UEM, in collars, ...)."""
        if self.errors is None:
            return []
        gaps = _complement(self.errors.scored, self.start, self.end)
        return [(s, e) for s, e in gaps if e > s]


def build_timeline(
    hypothesis: Annotation,
    reference: Annotation | None = None,
    *,
    uem: Sequence[Interval] | None = None,
    collar: float = 0.0,
    skip_overlap: bool = False,
    duration: float | None = None,
    errors: ErrorRegions | None = None,
) -> Timeline:
    """The timeline of one recording.

    Args:
        hypothesis: the system's turns.
        reference: the reference turns; with it the timeline holds their lanes and the errors
            :func:`diar.scoring.error_regions` finds with ``uem``, ``collar`` and ``skip_overlap``
            (the same arguments as ``diar score``). A reference with no turns is all missed speech
            or all false alarm, as in ``diar score``.
        duration: the recording's length in seconds, if known (else the last turn's end).
        errors: the recording's :func:`diar.scoring.error_regions` when already found (e.g. by
            :func:`diar.scoring.score_regions` for a corpus); ``uem``, ``collar`` and
            ``skip_overlap`` are then not used.
    """
    reco_id = hypothesis.reco_id
    hyp_spans = _speaker_spans(hypothesis.turns)
    end = max((e for spans in hyp_spans.values() for _, e in spans), default=0.0)
    if reference is None:
        lanes = tuple(Lane(s, tuple(spans), i) for i, (s, spans) in enumerate(sorted(hyp_spans.items())))
        return Timeline(
            reco_id,
            0.0,
            _extent(end, duration),
            lanes,
            overlap=tuple(_overlap(hyp_spans.values())),
        )
    if errors is None:
        errors = error_regions(reference.turns, hypothesis.turns, uem, collar, skip_overlap)
    ref_spans = _speaker_spans(reference.turns)
    ends = [e for spans in ref_spans.values() for _, e in spans] + [
        e for _, e in [*(uem or ()), *errors.scored]
    ]
    end = max([end, *ends])
    ref_lanes = tuple(Lane(s, tuple(spans), i) for i, (s, spans) in enumerate(sorted(ref_spans.items())))
    color = {lane.speaker: lane.color for lane in ref_lanes}
    mapped = sorted(
        (s for s in hyp_spans if s in errors.mapping), key=lambda s: (color.get(errors.mapping[s], 0), s)
    )
    others = sorted(s for s in hyp_spans if s not in errors.mapping)
    hyp_lanes = [Lane(s, tuple(hyp_spans[s]), color[errors.mapping[s]], errors.mapping[s]) for s in mapped]
    hyp_lanes += [Lane(s, tuple(hyp_spans[s]), len(ref_lanes) + i) for i, s in enumerate(others)]
    return Timeline(
        reco_id,
        0.0,
        _extent(end, duration),
        tuple(hyp_lanes),
        ref_lanes,
        overlap=tuple(_overlap(hyp_spans.values())),
        reference_overlap=tuple(_overlap(ref_spans.values())),
        errors=errors,
    )


def crop(timeline: Timeline, start: float | None = None, end: float | None = None) -> Timeline:
    """The timeline shown from ``start`` to ``end`` seconds (None: its own bounds).

    Lanes, overlap and the envelope are clipped to the range; the scores stay those of the
    whole recording, and :meth:`Timeline.error_spans` clips the errors.

    Raises:
        TimelineError: the range is empty, reversed or not finite.
    """
    lo = timeline.start if start is None else float(start)
    hi = timeline.end if end is None else float(end)
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi <= lo:
        raise TimelineError(f"time range {quote(lo)}..{quote(hi)} is empty or invalid; need 0 <= start < end")

    def clip_lane(lane: Lane) -> Lane:
        return replace(lane, spans=tuple(_clip(lane.spans, lo, hi)))

    envelope = timeline.envelope
    if envelope is not None:
        keep = (envelope.times[1:] > lo) & (envelope.times[:-1] < hi)
        index = np.flatnonzero(keep)
        edges = envelope.times[index[0] : index[-1] + 2] if len(index) else envelope.times[:1]
        envelope = Envelope(edges, envelope.level_db[index])
    return replace(
        timeline,
        start=lo,
        end=hi,
        hypothesis=tuple(clip_lane(lane) for lane in timeline.hypothesis),
        reference=tuple(clip_lane(lane) for lane in timeline.reference),
        overlap=tuple(_clip(timeline.overlap, lo, hi)),
        reference_overlap=tuple(_clip(timeline.reference_overlap, lo, hi)),
        envelope=envelope,
    )


def level_envelope(
    waveform: np.ndarray, sample_rate: int, bins: int = 4000, floor_db: float = -80.0
) -> Envelope:
    """The RMS level of ``waveform`` (shape (num_samples,)) in ``bins`` equal bins (fewer for
    short audio: at least 10 ms each), in dBFS, no lower than ``floor_db``."""
    n = len(waveform)
    if n == 0:
        return Envelope(np.zeros(1), np.zeros(0))
    hop = max(n // max(bins, 1), sample_rate // 100, 1)
    count = -(-n // hop)
    # shape: (count * hop,), the last bin zero-padded; its mean is taken over its real samples only
    padded = np.zeros(count * hop, dtype=np.float64)
    padded[:n] = waveform
    # shape: (count,)
    sums = (padded.reshape(count, hop) ** 2).sum(axis=1)
    sizes = np.full(count, hop, dtype=np.float64)
    sizes[-1] = n - hop * (count - 1)
    level = 10.0 * np.log10(np.maximum(sums / sizes, 10.0 ** (floor_db / 10.0)))
    edges = np.minimum(np.arange(count + 1) * hop, n) / sample_rate
    return Envelope(edges, level)


def nice_step(span: float, target: int) -> float:
    """A round step (1, 2, 5, 10, 15, 30 s, 1, 2, 5, 10, 15, 30 min, 1 h, ...) giving about
    ``target`` steps over ``span`` seconds."""
    raw = span / max(target, 1)
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600):
        if step >= raw:
            return float(step)
    return 3600.0 * math.ceil(raw / 3600.0)


def format_time(seconds: float, step: float = 1.0) -> str:
    """``seconds`` as ``m:ss`` or ``h:mm:ss`` (with tenths when ``step`` is below a second)."""
    tenths = step < 1
    total = round(seconds * 10) if tenths else round(seconds)
    whole, fraction = divmod(total, 10) if tenths else (total, 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
    return f"{text}.{fraction}" if tenths else text


# --------------------------------------------------------------------------- intervals


def _speaker_spans(turns: Iterable[Turn]) -> dict[str, list[Interval]]:
    """Each speaker's turns as sorted disjoint intervals (overlapping or touching turns joined)."""
    by_speaker: dict[str, list[Interval]] = {}
    for t in turns:
        if t.end > t.start:
            by_speaker.setdefault(t.speaker, []).append((t.start, t.end))
    return {s: _join(spans) for s, spans in by_speaker.items()}


def _join(spans: Iterable[Interval]) -> list[Interval]:
    """Sorted disjoint union of ``spans`` (touching ones joined)."""
    out: list[Interval] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return out


def _overlap(lanes: Iterable[Sequence[Interval]]) -> list[Interval]:
    """Where two or more of the lanes (each sorted and disjoint) are active."""
    # ends (-1) sort before starts (+1) at equal times: touching is no overlap
    events = sorted(
        [(s, 1) for lane in lanes for s, _ in lane] + [(e, -1) for lane in lanes for _, e in lane]
    )
    out: list[Interval] = []
    active, since = 0, 0.0
    for time, step in events:
        if active >= 2 and time > since:
            if out and out[-1][1] == since:
                out[-1] = (out[-1][0], time)
            else:
                out.append((since, time))
        active += step
        since = time
    return out


def _clip(spans: Iterable[Interval], lo: float, hi: float) -> list[Interval]:
    return [(max(s, lo), min(e, hi)) for s, e in spans if e > lo and s < hi]


def _clip_counted(spans: Iterable[ErrorSpan], lo: float, hi: float) -> list[ErrorSpan]:
    return [(max(s, lo), min(e, hi), n) for s, e, n in spans if e > lo and s < hi]


def _complement(spans: Sequence[Interval], lo: float, hi: float) -> list[Interval]:
    out: list[Interval] = []
    cur = lo
    for s, e in spans:
        if e <= cur:
            continue
        if s > cur:
            out.append((cur, min(s, hi)))
        cur = max(cur, e)
        if cur >= hi:
            break
    if cur < hi:
        out.append((cur, hi))
    return out


def _extent(end: float, duration: float | None) -> float:
    if duration is not None and math.isfinite(duration) and duration > 0:
        return max(float(duration), end)
    return end if end > 0 else 1.0
