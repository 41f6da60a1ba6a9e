"""A recording's timeline drawn with matplotlib (``diar plot``): PNG, SVG or PDF.

One lane per speaker on a time axis: the reference's lanes above the system's when there is a
reference, each system speaker in the colour of the reference speaker it is mapped to; a lane
where two or more speakers talk at once; the missed speech, false alarm and speaker confusion
``diar score`` counts, one lane each (a darker bar where two or more speakers are concerned at
once), with the stretches that are not scored (outside the UEM, in collars) greyed; and the
audio's level under the lanes. A long recording is drawn in several rows.

In an SVG every mark is a group whose ``id`` says what it is (``hyp:<speaker>:row<r>``,
``ref:<speaker>:row<r>``, ``overlap:row<r>``, ``ref-overlap:row<r>``, ``missed:row<r>``,
``false_alarm:row<r>``, ``confusion:row<r>``, ``unscored:row<r>``, ``envelope:row<r>``), and
text stays text, so that the picture can be searched and checked.

matplotlib is an optional dependency (``pip install 'diar[plot]'``); it is imported only when
a figure is drawn, without pyplot (no global state, no display needed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from diar.errors import DiarError, quote
from diar.formats import atomic_open
from diar.report.timeline import ERROR_KINDS, Lane, Timeline, TimelineError, crop, format_time, nice_step

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: File formats by suffix.
FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf"}
#: Colours of the error lanes (Okabe-Ito: told apart by colour-blind readers too).
ERROR_COLORS = {"missed": "#D55E00", "false_alarm": "#E69F00", "confusion": "#CC79A7"}
UNSCORED_COLOR = "#d9d9d9"
OVERLAP_COLOR = "#404040"
#: Recording lengths up to this are drawn in one row by default.
ONE_ROW_SECONDS = 180.0
#: Most rows drawn by default (rows get longer instead).
MAX_ROWS = 8
#: Row lengths chosen from, in seconds.
ROW_LENGTHS = (60.0, 120.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 3600.0)


class PlotError(DiarError):
    """matplotlib is missing, or an output cannot be drawn (unknown format)."""


def require_matplotlib() -> Any:
    """The matplotlib module, or a one-line PlotError saying how to install it."""
    try:
        import matplotlib
    except ImportError:
        raise PlotError(
            "drawing timelines needs matplotlib, an optional extra of diar: pip install 'diar[plot]'"
        ) from None
    return matplotlib


def output_format(path: str | os.PathLike[str]) -> str:
    """The matplotlib format of an output path (``.png``, ``.svg`` or ``.pdf``)."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        raise PlotError(
            f"cannot tell the format of {quote(os.fspath(path))}: its name must end in {', '.join(FORMATS)}"
        )
    return FORMATS[suffix]


def row_length(span: float, row_seconds: float | None = None) -> float:
    """Seconds per row: ``row_seconds`` if given, else one row up to :data:`ONE_ROW_SECONDS`, and
    for longer spans the shortest of :data:`ROW_LENGTHS` that needs at most :data:`MAX_ROWS` rows."""
    if row_seconds is not None:
        if not (math.isfinite(row_seconds) and row_seconds > 0):
            raise TimelineError(f"row length {quote(row_seconds)} must be a number of seconds > 0")
        return float(row_seconds)
    if span <= ONE_ROW_SECONDS:
        return span
    for length in ROW_LENGTHS:
        if span / length <= MAX_ROWS:
            return length
    return 3600.0 * math.ceil(span / MAX_ROWS / 3600.0)


@dataclass(frozen=True)
class _LaneRow:
    """One horizontal lane of a row: its label and how to draw it."""

    label: str
    kind: str  # "ref", "hyp", "ref-overlap", "overlap" or an error kind
    lane: Lane | None = None


def _lanes(timeline: Timeline) -> list[_LaneRow]:
    rows: list[_LaneRow] = []
    if timeline.errors is not None:
        rows += [_LaneRow(f"ref {lane.speaker}", "ref", lane) for lane in timeline.reference]
        rows.append(_LaneRow("ref overlap", "ref-overlap"))
    for lane in timeline.hypothesis:
        mapped = f" = {lane.mapped_to}" if lane.mapped_to is not None else ""
        rows.append(_LaneRow(f"{lane.speaker}{mapped}", "hyp", lane))
    rows.append(_LaneRow("overlap", "overlap"))
    if timeline.errors is not None:
        rows += [_LaneRow(name, kind) for kind, name in ERROR_KINDS.items()]
    return rows


def plot_timeline(
    timeline: Timeline,
    *,
    row_seconds: float | None = None,
    width: float = 14.0,
    title: str | None = None,
) -> Figure:
    """Draw ``timeline`` as a matplotlib Figure (see the module docstring for what it shows).

    Args:
        timeline: the recording (crop it first with :func:`diar.report.timeline.crop` to zoom).
        row_seconds: seconds per row (None: :func:`row_length`'s choice).
        width: figure width in inches.
        title: the figure's title (default: :func:`describe_score`).
    """
    require_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    length = row_length(timeline.duration, row_seconds)
    num_rows = max(1, math.ceil(timeline.duration / length - 1e-9))
    lanes = _lanes(timeline)
    envelope = timeline.envelope is not None
    lane_inches = 0.26
    row_inches = lane_inches * len(lanes) + (0.7 if envelope else 0.0) + 0.45
    fig = Figure(figsize=(width, 0.9 + 0.5 + row_inches * num_rows), layout="constrained")
    ratios: list[float] = []
    for _ in range(num_rows):
        ratios.append(lane_inches * len(lanes) + 0.45)
        if envelope:
            ratios.append(0.7)
    grid = fig.add_gridspec(len(ratios), 1, height_ratios=ratios)
    palette = _palette()
    step = nice_step(length, 12)
    for r in range(num_rows):
        lo = timeline.start + r * length
        row = crop(timeline, lo, min(timeline.end, lo + length))
        ax = fig.add_subplot(grid[r * (2 if envelope else 1), 0])
        _draw_lanes(ax, row, r, palette)
        ax.set_xlim(lo, lo + length)
        ax.xaxis.set_major_locator(MultipleLocator(step))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: format_time(x, step)))
        ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
        ax.set_axisbelow(True)
        if envelope:
            env_ax = fig.add_subplot(grid[r * 2 + 1, 0], sharex=ax)
            _draw_envelope(env_ax, row, r)
            env_ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: format_time(x, step)))
            ax.tick_params(labelbottom=False)
    fig.suptitle(title if title is not None else describe_score(timeline), fontsize=11)
    handles = [Patch(facecolor=OVERLAP_COLOR, label="two or more speakers at once")]
    if timeline.errors is not None:
        score = timeline.errors.score
        seconds = {
            "missed": score.missed_seconds,
            "false_alarm": score.false_alarm_seconds,
            "confusion": score.confusion_seconds,
        }
        handles += [
            Patch(facecolor=ERROR_COLORS[kind], label=f"{name} {seconds[kind]:.2f} s")
            for kind, name in ERROR_KINDS.items()
        ]
        handles.append(Patch(facecolor=UNSCORED_COLOR, label="not scored (outside the UEM, collars)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig


def save_figure(figure: Figure, path: str | os.PathLike[str], dpi: int = 100) -> None:
    """Write ``figure`` to ``path`` (format from its suffix) atomically: a failed write leaves
    the previous file."""
    fmt = output_format(path)
    matplotlib = require_matplotlib()
    # text stays text in SVG (searchable, and smaller than glyph outlines); no date in the file,
    # so that the same timeline always gives the same bytes
    metadata = {"svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt)
    style = {"svg.fonttype": "none", "svg.hashsalt": "diar"}
    with matplotlib.rc_context(style), atomic_open(path, "wb") as f:
        figure.savefig(f, format=fmt, dpi=dpi, metadata=metadata)


def _palette() -> list[str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [_hex(cmap(i)) for i in range(10)]


def _hex(rgba: Sequence[float]) -> str:
    return "#" + "".join(f"{round(255 * c):02x}" for c in rgba[:3])


def _draw_lanes(ax: Any, row: Timeline, r: int, palette: list[str]) -> None:
    lanes = _lanes(row)
    height = 0.7
    for y, item in enumerate(lanes):
        bottom = -y - height / 2
        if item.lane is not None:
            color = palette[item.lane.color % len(palette)]
            spans = [(s, e - s) for s, e in item.lane.spans]
            alpha = 0.55 if item.kind == "ref" else 1.0
            _bars(ax, spans, bottom, height, color, f"{item.kind}:{item.lane.speaker}:row{r}", alpha)
        elif item.kind in ("overlap", "ref-overlap"):
            overlap = row.overlap if item.kind == "overlap" else row.reference_overlap
            _bars(ax, [(s, e - s) for s, e in overlap], bottom, height, OVERLAP_COLOR, f"{item.kind}:row{r}")
        else:
            if y == len(lanes) - 3:  # the first error lane: grey what is not scored, behind all three
                unscored = [(s, e - s) for s, e in row.unscored()]
                _bars(ax, unscored, -y - 2 - height / 2, 2 + height, UNSCORED_COLOR, f"unscored:row{r}")
            errors = row.error_spans(item.kind)
            color = ERROR_COLORS[item.kind]
            # darker where two or more speakers are missed (falsely detected, confused) at once
            colors = [color if n == 1 else _darker(color) for *_, n in errors]
            _bars(ax, [(s, e - s) for s, e, _ in errors], bottom, height, colors, f"{item.kind}:row{r}")
    ax.set_yticks([-y for y in range(len(lanes))], [item.label for item in lanes], fontsize=8)
    ax.set_ylim(-len(lanes) + 0.4, 0.6)
    for y, item in enumerate(lanes[1:], start=1):  # a rule between the reference, system and errors
        if item.kind != lanes[y - 1].kind and {item.kind, lanes[y - 1].kind} & {"ref-overlap", "overlap"}:
            ax.axhline(-y + 0.5, color="#909090", linewidth=0.6)
    ax.tick_params(axis="y", length=0)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)


def _bars(
    ax: Any,
    spans: list[tuple[float, float]],
    bottom: float,
    height: float,
    color: str | list[str],
    gid: str,
    alpha: float = 1.0,
) -> None:
    """``(start, width)`` bars as one collection whose SVG group is ``gid`` (none when empty)."""
    if spans:
        collection = ax.broken_barh(spans, (bottom, height), facecolors=color, alpha=alpha, linewidth=0)
        collection.set_gid(gid)


def _darker(color: str) -> str:
    rgb = [int(color[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c * 0.6):02x}" for c in rgb)


def _draw_envelope(ax: Any, row: Timeline, r: int) -> None:
    envelope = row.envelope
    assert envelope is not None
    if len(envelope.level_db):
        # a step outline: each bin's level from its start to its end
        xs = [x for a, b in zip(envelope.times[:-1], envelope.times[1:], strict=True) for x in (a, b)]
        ys = [y for y in envelope.level_db for _ in (0, 1)]
        fill = ax.fill_between(xs, ys, -80.0, color="#7f7f7f", linewidth=0)
        fill.set_gid(f"envelope:row{r}")
    ax.set_ylim(-80.0, 0.0)
    ax.set_yticks([-60.0, -30.0, 0.0], ["-60", "-30", "0 dB"], fontsize=7)
    ax.tick_params(axis="y", length=2)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


def describe_score(timeline: Timeline) -> str:
    """The title of a picture: the recording, its speakers and, with a reference, its DER and JER."""
    speakers = f"{len(timeline.hypothesis)} speakers"
    if timeline.errors is None:
        return f"{timeline.reco_id}: {speakers}"
    s = timeline.errors.score
    return (
        f"{timeline.reco_id}: {speakers} (reference {len(timeline.reference)}); "
        f"DER {100 * s.der:.2f} % (missed {100 * s.miss:.2f}, false alarm {100 * s.false_alarm:.2f}, "
        f"confusion {100 * s.confusion:.2f}), JER {100 * s.jer:.2f} %"
    )
