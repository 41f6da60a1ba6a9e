"""A compact inline SVG of a recording's timeline, for the report page.

The same lanes as :mod:`diar.report.plot` draws (reference speakers, system speakers, overlap,
and the three kinds of error with the stretches not scored greyed), made small enough that a
page can hold thousands of them: time is quantised to :data:`WIDTH` units across the
recording (a turn covers at least one unit, so that no error is too short to see), each lane is
one line whose ``stroke-dasharray`` draws its turns, and the colours come from the page's
stylesheet (classes ``c0`` .. ``c9``, ``ov``, ``mi``, ``fa``, ``cf``, ``un``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from diar.report.timeline import Timeline, format_time, nice_step
from diar.scoring import Interval

#: Units across the time axis.
WIDTH = 1000
#: Units left of the axis for the lane labels.
LABEL_WIDTH = 120
#: Height of a speaker lane and of an error lane, in units.
LANE = 10
ERROR_LANE = 9
#: Height of the time axis below the lanes.
AXIS = 14
#: Stroke widths by class (the page's stylesheet): speaker and overlap lanes LANE - 2, error
#: lanes ERROR_LANE - 2, the grey of what is not scored the three error lanes' height.
STYLE = (
    f"svg.tl path{{stroke-width:{LANE - 2}}}"
    f"svg.tl path.mi,svg.tl path.fa,svg.tl path.cf{{stroke-width:{ERROR_LANE - 2}}}"
    f"svg.tl path.un{{stroke-width:{3 * ERROR_LANE}}}"
)
#: Narrowest stretch not scored that is drawn, in units.
MIN_UNSCORED = 3
#: Colours in the palette (classes c0 .. c9).
PALETTE_SIZE = 10
#: The error lanes: class, label, attribute of the timeline.
ERRORS = (("mi", "missed", "missed"), ("fa", "false alarm", "false_alarm"), ("cf", "confusion", "confusion"))


def timeline_svg(timeline: Timeline, label: str = "") -> str:
    """The ``<svg>`` element of ``timeline`` (``label``: its accessible name)."""
    scale = WIDTH / timeline.duration if timeline.duration > 0 else 0.0
    start = timeline.start
    rows: list[str] = []
    y = 0

    def lane(cls: str, name: str, spans: Sequence[Interval], height: int) -> None:
        nonlocal y
        middle = y + height // 2
        rows.append(f'<text x="{LABEL_WIDTH - 4}" y="{middle + 3}">{escape(name)}</text>')
        dashes = _strokes(spans, start, scale)
        if dashes:
            rows.append(_line(cls, middle, dashes))
        y += height

    scored = timeline.errors is not None
    if scored:
        for item in timeline.reference:
            lane(f"c{item.color % PALETTE_SIZE} r", f"ref {item.speaker}", item.spans, LANE)
        lane("ov r", "ref overlap", timeline.reference_overlap, LANE)
    for item in timeline.hypothesis:
        mapped = f" = {item.mapped_to}" if item.mapped_to is not None else ""
        lane(f"c{item.color % PALETTE_SIZE}", f"{item.speaker}{mapped}", item.spans, LANE)
    lane("ov", "overlap", timeline.overlap, LANE)
    if scored:
        # stretches not scored, at least MIN_UNSCORED units wide: at a whole recording's scale
        # the collars would only grey every turn's ends
        wide = [(s, e) for s, e in timeline.unscored() if (e - s) * scale >= MIN_UNSCORED]
        unscored = _strokes(wide, start, scale)
        if unscored:
            rows.append(_line("un", y + 3 * ERROR_LANE // 2, unscored))
        for cls, name, kind in ERRORS:
            lane(cls, name, [(s, e) for s, e, _ in timeline.error_spans(kind)], ERROR_LANE)
    rows.append(_axis(timeline, y))
    height = y + AXIS
    return (
        f'<svg class="tl" viewBox="0 0 {LABEL_WIDTH + WIDTH + 10} {height}" role="img" '
        f'aria-label="{escape(label or timeline.reco_id)}">' + "".join(rows) + "</svg>"
    )


def _strokes(spans: Sequence[Interval], start: float, scale: float) -> str:
    """A ``stroke-dasharray`` drawing ``spans`` (sorted by start) along the time axis: each span
    quantised outwards to whole units (at least one), spans that then touch joined; "" for none.

    The pattern is a zero dash, the gap to the first run, then run, gap, run, ..., and a last
    gap past the axis's end so that it never repeats. Plain Python: for the few dozen spans of
    a lane it is faster than numpy.
    """
    floor, ceil = math.floor, math.ceil
    parts = ["0"]
    pen = 0  # where the previous run ended
    run_start = run_end = 0
    started = False
    for s, e in spans:
        x0 = floor((s - start) * scale)
        x1 = ceil((e - start) * scale)
        if x1 <= x0:
            x1 = x0 + 1
        if started and x0 <= run_end:  # touches the run: extend it
            if x1 > run_end:
                run_end = x1
            continue
        if started:
            parts.append(f"{run_start - pen} {run_end - run_start}")
            pen = run_end
        run_start, run_end, started = x0, x1, True
    if not started:
        return ""
    parts.append(f"{run_start - pen} {run_end - run_start} {WIDTH}")
    return " ".join(parts)


def _line(cls: str, y: int, dashes: str) -> str:
    """A dashed horizontal line across the time axis at height ``y`` (its width: :data:`STYLE`)."""
    return f'<path class="{cls}" d="M{LABEL_WIDTH} {y}h{WIDTH}" stroke-dasharray="{dashes}"/>'


def _axis(timeline: Timeline, y: int) -> str:
    """Ticks and time labels under the lanes."""
    step = nice_step(timeline.duration, 8)
    first = math.ceil(timeline.start / step - 1e-9)
    ticks: list[float] = []
    k = first
    while k * step <= timeline.end + 1e-9:
        ticks.append(k * step)
        k += 1
    scale = WIDTH / timeline.duration if timeline.duration > 0 else 0.0
    xs = [LABEL_WIDTH + round((t - timeline.start) * scale) for t in ticks]
    d = "".join(f"M{x} {y}v3" for x in xs)
    labels = "".join(
        f'<text class="t" x="{x}" y="{y + 11}">{format_time(t, step)}</text>'
        for x, t in zip(xs, ticks, strict=True)
    )
    return f'<path class="ax" d="M{LABEL_WIDTH} {y}h{WIDTH}{d}"/>' + labels


def legend_items(scored: bool) -> Sequence[tuple[str, str]]:
    """(class, what it means) of the marks a timeline can hold."""
    items = [("c0", "a speaker (with a reference: the colour of the reference speaker it is mapped to)")]
    items.append(("ov", "two or more speakers at once"))
    if scored:
        items += [
            ("mi", "missed speech"),
            ("fa", "false alarm"),
            ("cf", "speaker confusion"),
            ("un", "not scored (outside the UEM, collars)"),
        ]
    return items
