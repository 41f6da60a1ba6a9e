"""The report page of a job: one self-contained HTML file (``diar report``, ``job.report``).

It holds, with nothing fetched from anywhere (inline CSS and SVG, no server, no network):

* the corpus summary: recordings done and failed, hours of audio and of speech, speakers per
  recording, wall and compute time, throughput, time per pipeline step (from ``summary.json``);
* with a reference, DER and JER for the corpus, exactly the figures of ``diar score`` with the
  same reference, UEM, collar and overlap setting (:func:`diar.scoring.error_regions` of each
  recording, summed in ``diar score``'s order), and the recordings with the highest DER;
* the failures with their stage, error type and reason;
* a table of every recording (duration, speakers, speech, overlap, turns, and with a
  reference its DER, missed speech, false alarm, confusion and JER) whose rows link to each
  recording's timeline (:mod:`diar.report.svg`).

The table and timelines are split into pages of ``page_size`` recordings; CSS alone shows the
page a link points to (``:target``), so that paging works without JavaScript. The timelines of
the first page are inline SVG; those of the other pages are kept as text that a few lines of
script turn into SVG when their page is shown, so that the browser builds the elements of one
page rather than of every recording (a page of 10 000 recordings opens in seconds). The script
also adds a search by recording id. The output depends only on its inputs (no clock, no paths
other than those given), so a job that is run again with nothing to do writes the same bytes.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from diar.errors import quote
from diar.report.inputs import JobOutputs
from diar.report.svg import STYLE as SVG_STYLE
from diar.report.svg import legend_items, timeline_svg
from diar.report.timeline import build_timeline, format_time
from diar.scoring import ErrorRegions, Interval, Score, ScoringError, ScoringResult, error_regions
from diar.types import Annotation

#: Recordings per page of the table.
PAGE_SIZE = 100
#: Recordings listed under "highest DER".
WORST = 20


@dataclass(frozen=True)
class Reference:
    """A reference to score against, and how (the options of ``diar score``).

    Attributes:
        annotations: recording id -> reference turns.
        name: where it was read from (shown on the page).
        uem: recording id -> scored regions, or None; ``uem_name`` where it was read from.
    """

    annotations: Mapping[str, Annotation]
    name: str = ""
    uem: Mapping[str, Sequence[Interval]] | None = None
    uem_name: str = ""
    collar: float = 0.0
    skip_overlap: bool = False


@dataclass(frozen=True)
class _Row:
    """One recording of the table."""

    index: int
    reco_id: str
    status: str  # "done", "failed" or "not in the job" (only in the reference)
    duration: float | None
    speakers: int
    speech: float
    overlap: float
    turns: int
    score: Score | None
    #: the timeline's ``<svg>`` (rendered at once: a corpus's timelines are not all kept)
    svg: str | None


def render_report(
    outputs: JobOutputs,
    reference: Reference | None = None,
    *,
    title: str | None = None,
    page_size: int = PAGE_SIZE,
) -> str:
    """The report page of ``outputs`` as HTML text (see the module docstring).

    Raises:
        ScoringError: with a UEM that lacks a recording, or an invalid collar.
        ValueError: ``page_size`` below 1.
    """
    if page_size < 1:
        raise ValueError(f"page_size must be >= 1, got {page_size}")
    # what diar score scores: every recording of the reference, then those only the hypothesis
    # has, the hypothesis as corpus.rttm holds it (recordings without speech are not in it)
    scored: list[str] = []
    if reference is not None:
        spoken = [reco for reco, a in outputs.annotations.items() if a.turns]
        scored = [*reference.annotations, *(r for r in spoken if r not in reference.annotations)]
    failed = {f.reco_id: f for f in outputs.failures}
    names = sorted({*outputs.recordings, *scored})
    rows: list[_Row] = []
    for index, reco_id in enumerate(names):
        hyp = outputs.annotations.get(reco_id)
        status = "done" if hyp is not None else "failed" if reco_id in failed else "not in the job"
        hyp = hyp if hyp is not None else Annotation(reco_id, ())
        ref = None
        if reference is not None and (reco_id in reference.annotations or hyp.turns):
            ref = reference.annotations.get(reco_id, Annotation(reco_id, ()))
        timeline = None
        if status == "done" or ref is not None:
            # one recording at a time: a corpus's error spans are never all held at once
            errors = (
                _errors(reference, reco_id, ref, hyp) if reference is not None and ref is not None else None
            )
            timeline = build_timeline(hyp, ref, duration=outputs.durations.get(reco_id), errors=errors)
        lanes = timeline.hypothesis if timeline is not None else ()
        errors = timeline.errors if timeline is not None else None
        rows.append(
            _Row(
                index=index,
                reco_id=reco_id,
                status=status,
                duration=outputs.durations.get(reco_id),
                speakers=len(lanes),
                speech=_union_seconds([s for lane in lanes for s in lane.spans]),
                overlap=sum(e - s for s, e in timeline.overlap) if timeline is not None else 0.0,
                turns=len(hyp.turns),
                score=errors.score if errors is not None else None,
                svg=timeline_svg(timeline) if timeline is not None else None,
            )
        )
    scores: ScoringResult | None = None
    if reference is not None:  # in diar score's order, so that the corpus sums are its own
        by_id = {r.reco_id: r.score for r in rows if r.score is not None}
        scores = ScoringResult({reco: by_id[reco] for reco in scored})
    page_title = title or f"diar report: {outputs.source}"
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(page_title)}</title><style>{STYLE}{SVG_STYLE}</style></head><body>",
        f"<header><h1>{escape(page_title)}</h1>{_nav(outputs, scores)}</header><main>",
        _summary(outputs, rows),
    ]
    if scores is not None and reference is not None:
        parts.append(_scores(scores, reference, rows))
    parts.append(_failures(outputs))
    parts.append(_recordings(rows, scores is not None, page_size))
    parts.append(f"</main><script>{SCRIPT}</script></body></html>\n")
    return "".join(parts)


def _errors(reference: Reference, reco_id: str, ref: Annotation, hyp: Annotation) -> ErrorRegions:
    """The recording's errors as diar score finds them (its UEM, collar and overlap setting)."""
    uem = None
    if reference.uem is not None:
        if reco_id not in reference.uem:
            raise ScoringError(
                f"recording {quote(reco_id)} is not in the UEM; add a line for it or score without a UEM"
            )
        uem = reference.uem[reco_id]
    return error_regions(ref.turns, hyp.turns, uem, reference.collar, reference.skip_overlap)


# --------------------------------------------------------------------------- sections


def _nav(outputs: JobOutputs, scores: ScoringResult | None) -> str:
    links = [("#summary", "Summary")]
    if scores is not None:
        links.append(("#scores", "DER / JER"))
    links.append(("#failures", f"Failures ({len(outputs.failures)})"))
    links.append(("#recordings", "Recordings"))
    return "<nav>" + " · ".join(f'<a href="{href}">{escape(text)}</a>' for href, text in links) + "</nav>"


def _summary(outputs: JobOutputs, rows: list[_Row]) -> str:
    summary = outputs.summary or {}
    done = [r for r in rows if r.status == "done"]
    counts = _part(summary, "recordings")
    total = _int(counts.get("total"), len([r for r in rows if r.status != "not in the job"]))
    audio_hours = _number(summary.get("audio_hours"))
    if audio_hours is None:
        audio_hours = sum(r.duration or 0.0 for r in done) / 3600.0
    speech = sum(r.speech for r in done)
    overlap = sum(r.overlap for r in done)
    items: list[tuple[str, str]] = []
    if summary:
        items.append(("status", _text(summary.get("status"))))
    items += [
        (
            "recordings",
            f"{total:,} ({_int(counts.get('done'), len(done)):,} done, "
            f"{_int(counts.get('failed'), len(outputs.failures)):,} failed)",
        ),
        ("audio", f"{audio_hours:,.2f} h"),
        ("speech", f"{speech / 3600:,.2f} h, {_percent(overlap, speech)} of it overlapped"),
    ]
    speakers = [r.speakers for r in done]
    if speakers:
        items.append(
            (
                "speakers per recording",
                f"mean {statistics.fmean(speakers):.2f}, median {statistics.median(speakers):g}, "
                f"{min(speakers)} to {max(speakers)}",
            )
        )
    config = _part(summary, "config")
    model = _model(config)
    if model:
        items.append(("model", model))
    wall = _number(summary.get("wall_seconds"))
    processed = _number(summary.get("processed_audio_seconds"))
    compute = _number(summary.get("compute_seconds"))
    process = _number(summary.get("process_seconds"))
    if wall is not None:
        items.append(("wall time (this run)", _duration(wall)))
    if compute is not None:
        audio_seconds = audio_hours * 3600
        rate = f"; {audio_seconds / compute:,.1f} s of audio per compute second" if compute > 0 else ""
        items.append(("compute time (all actors)", f"{_duration(compute)}{rate}"))
    if processed is not None and wall:
        rtf = _number(summary.get("real_time_factor"))
        rate = f"{processed / wall:,.1f} s of audio per second of wall time"
        if process:
            rate += f" ({processed / process:,.1f} from the first actor ready to the last shard)"
        if rtf is not None:
            rate += f"; real-time factor {rtf:.4f}"
        items.append(("throughput (this run)", rate))
    actors = summary.get("num_actors")
    if actors is not None:
        nodes = summary.get("nodes")
        shards = _part(summary, "shards")
        items.append(
            (
                "actors, nodes, shards",
                f"{_text(summary.get('actors_ready'))} of {_text(actors)} actors ready, "
                f"{_text(nodes)} nodes, "
                f"{_text(shards.get('total'))} shards ({_text(shards.get('run'))} run, "
                f"{_text(shards.get('reused'))} reused)",
            )
        )
    out = ['<section id="summary"><h2>Summary</h2><dl class="kv">']
    out += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in items]
    out.append("</dl>")
    if speakers:
        out.append(_histogram(speakers))
    steps = _part(summary, "step_seconds")
    if steps:
        out.append(_steps(steps))
    out.append("</section>")
    return "".join(out)


def _histogram(speakers: list[int]) -> str:
    """Recordings by number of speakers, as a table of bars."""
    counts: dict[int, int] = {}
    for n in speakers:
        counts[n] = counts.get(n, 0) + 1
    most = max(counts.values())
    out = ['<table class="bars"><caption>recordings by number of speakers found</caption>']
    out.append("<tr><th>speakers</th><th>recordings</th><th></th></tr>")
    for n in sorted(counts):
        width = max(1, round(100 * counts[n] / most))
        bar = f'<td class="bar"><span style="width:{width}%"></span></td>'
        out.append(f"<tr><td>{n}</td><td>{counts[n]:,}</td>{bar}</tr>")
    out.append("</table>")
    return "".join(out)


def _steps(steps: Mapping[str, Any]) -> str:
    values = {str(k): v for k, v in steps.items() if _number(v) is not None}
    total = sum(float(v) for v in values.values())
    out = ['<table class="bars"><caption>compute time per pipeline step</caption>']
    out.append("<tr><th>step</th><th>seconds</th><th>share</th></tr>")
    for name, value in sorted(values.items(), key=lambda kv: -float(kv[1])):
        share = _percent(float(value), total)
        out.append(f"<tr><td>{escape(name)}</td><td>{float(value):,.1f}</td><td>{share}</td></tr>")
    out.append("</table>")
    return "".join(out)


def _scores(scores: ScoringResult, reference: Reference, rows: list[_Row]) -> str:
    corpus = scores.corpus
    settings = [f"reference {reference.name or '(given)'}"]
    settings.append(f"UEM {reference.uem_name or '(given)'}" if reference.uem is not None else "no UEM")
    settings.append(f"collar {reference.collar:g} s")
    settings.append("overlap not scored" if reference.skip_overlap else "overlap scored")
    out = ['<section id="scores"><h2>DER / JER</h2>']
    out.append(
        f"<p>{escape('; '.join(settings))}: the figures of <code>diar score</code> with the same options.</p>"
    )
    out.append('<table class="num"><tr><th></th>' + _score_header() + "<th>scored s</th></tr>")
    out.append(
        f'<tr id="corpus-score" data-der="{corpus.der!r}" data-jer="{corpus.jer!r}"><th>corpus</th>'
        f"{_score_cells(corpus)}<td>{corpus.total:,.3f}</td></tr></table>"
    )
    # the recordings done (those not done are all missed speech, and listed under Failures)
    done = [r for r in rows if r.score is not None and r.status == "done"]
    worst = sorted(done, key=lambda r: (-_der(r), r.reco_id))[:WORST]
    if worst:
        out.append(f"<h3>Highest DER ({len(worst)} of the {len(done):,} recordings done)</h3>")
        out.append('<table class="num"><tr><th>recording</th>' + _score_header() + "<th>scored s</th></tr>")
        for r in worst:
            assert r.score is not None
            out.append(f"<tr><td>{_link(r)}</td>{_score_cells(r.score)}<td>{r.score.total:,.3f}</td></tr>")
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def _failures(outputs: JobOutputs) -> str:
    failures = outputs.failures
    out = [f'<section id="failures"><h2>Failures ({len(failures):,})</h2>']
    if not failures:
        out.append("<p>No recording failed.</p></section>")
        return "".join(out)
    kinds: dict[tuple[str, str], int] = {}
    for f in failures:
        kinds[(f.stage, f.error_type)] = kinds.get((f.stage, f.error_type), 0) + 1
    out.append('<table class="num"><tr><th>stage</th><th>error type</th><th>recordings</th></tr>')
    for (stage, error_type), n in sorted(kinds.items(), key=lambda kv: (-kv[1], kv[0])):
        out.append(f"<tr><td>{escape(stage)}</td><td>{escape(error_type)}</td><td>{n:,}</td></tr>")
    out.append("</table>")
    out.append(f"<details{' open' if len(failures) <= 50 else ''}><summary>every failure</summary>")
    out.append(
        '<table class="failures"><tr><th>recording</th><th>stage</th><th>error type</th><th>reason</th></tr>'
    )
    for f in sorted(failures):
        out.append(
            f'<tr data-reco="{escape(f.reco_id)}"><td>{escape(f.reco_id)}</td><td>{escape(f.stage)}</td>'
            f"<td>{escape(f.error_type)}</td><td>{escape(f.message)}</td></tr>"
        )
    out.append("</table></details></section>")
    return "".join(out)


def _recordings(rows: list[_Row], scored: bool, page_size: int) -> str:
    pages = [rows[i : i + page_size] for i in range(0, len(rows), page_size)] or [[]]
    out = [f'<section id="recordings"><h2>Recordings ({len(rows):,})</h2>']
    out.append(
        '<form id="find"><label>recording id <input name="q" size="30"></label> '
        '<button>show</button> <output name="msg"></output></form>'
    )
    out.append('<p class="legend">')
    out += [f'<span class="key {cls}"></span>{escape(text)} ' for cls, text in legend_items(scored)]
    out.append("</p>")
    if len(pages) > 1:
        out.append('<nav class="pager">pages: ')
        for k, page in enumerate(pages, start=1):
            span = f"{page[0].reco_id} … {page[-1].reco_id}"
            out.append(f'<a href="#page-{k}" title="{escape(span)}">{k}</a> ')
        out.append("</nav>")
    out.append('<div class="pages">')
    header = "<tr><th>#</th><th>recording</th><th>status</th><th>duration</th><th>speakers</th>"
    header += "<th>speech</th><th>overlap</th><th>turns</th>"
    if scored:
        header += _score_header()
    header += "</tr>"
    for k, page in enumerate(pages, start=1):
        out.append(f'<section class="page" id="page-{k}">')
        if len(pages) > 1:
            out.append(_page_links(k, len(pages)))
        out.append(f'<table class="num recs">{header}')
        out += [_table_row(r, scored) for r in page]
        out.append('</table><div class="timelines">')
        if k > 1:
            out.append(f"<noscript><p>{escape(NO_SCRIPT)}</p></noscript>")
        out += [_figure(r, lazy=k > 1) for r in page if r.svg is not None]
        out.append("</div></section>")
    out.append("</div></section>")
    return "".join(out)


def _page_links(k: int, count: int) -> str:
    prev = f'<a href="#page-{k - 1}">← previous</a>' if k > 1 else "← previous"
    nxt = f'<a href="#page-{k + 1}">next →</a>' if k < count else "next →"
    return f'<p class="pagenav">{prev} · page {k} of {count} · {nxt}</p>'


def _table_row(r: _Row, scored: bool) -> str:
    name = _link(r) if r.svg is not None else escape(r.reco_id)
    duration = format_time(r.duration) if r.duration is not None else ""
    cells = (
        f'<tr id="t{r.index}" data-reco="{escape(r.reco_id)}" class="{r.status.split()[0]}">'
        f"<td>{r.index + 1}</td><td>{name}</td><td>{escape(r.status)}</td><td>{duration}</td>"
    )
    if r.status == "done":
        cells += (
            f"<td>{r.speakers}</td><td>{_percent(r.speech, r.duration)}</td>"
            f"<td>{_percent(r.overlap, r.speech)}</td><td>{r.turns}</td>"
        )
    else:
        cells += "<td></td>" * 4
    if scored:
        cells += _score_cells(r.score) if r.score is not None else "<td></td>" * 5
    return cells + "</tr>"


def _figure(r: _Row, lazy: bool) -> str:
    """The recording's timeline with a caption; ``lazy``: its SVG as text that the page's script
    turns into elements when its page is shown."""
    assert r.svg is not None
    facts = [f"{r.speakers} speakers", f"{r.turns} turns"] if r.status == "done" else [r.status]
    if r.duration is not None:
        facts.insert(0, format_time(r.duration))
    if r.score is not None:
        facts.append(f"DER {100 * r.score.der:.2f} %")
    # escaped markup holds no "</script": ids and labels have their "<" escaped
    body = f'<script type="text/html" class="tl">{r.svg}</script>' if lazy else r.svg
    caption = (
        f'<b>{escape(r.reco_id)}</b> {escape(", ".join(facts))} · <a href="#t{r.index}">back to the table</a>'
    )
    head = f'<figure id="r{r.index}" data-reco="{escape(r.reco_id)}">'
    return f"{head}<figcaption>{caption}</figcaption>{body}</figure>"


def _link(r: _Row) -> str:
    return f'<a href="#r{r.index}">{escape(r.reco_id)}</a>'


def _score_header() -> str:
    return "<th>DER %</th><th>miss %</th><th>FA %</th><th>conf %</th><th>JER %</th>"


def _score_cells(s: Score) -> str:
    values = (s.der, s.miss, s.false_alarm, s.confusion, s.jer)
    return "".join(f"<td>{100 * v:.2f}</td>" for v in values)


def _der(r: _Row) -> float:
    return r.score.der if r.score is not None else -1.0


def _union_seconds(spans: list[Interval]) -> float:
    total, end = 0.0, -math.inf
    for s, e in sorted(spans):
        if s > end:
            total += e - s
            end = e
        elif e > end:
            total += e - end
            end = e
    return total


def _percent(part: float, whole: float | None) -> str:
    if not whole:
        return ""
    return f"{100 * part / whole:.1f} %"


def _duration(seconds: float) -> str:
    return f"{format_time(seconds)} ({seconds:,.1f} s)"


def _part(summary: Mapping[str, Any], key: str) -> dict[str, Any]:
    """``summary[key]`` if it is an object, else empty (a summary of an older or newer layout)."""
    value = summary.get(key)
    return value if isinstance(value, dict) else {}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _int(value: Any, default: int) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else default


def _text(value: Any) -> str:
    return "?" if value is None else str(value)


def _model(config: Mapping[str, Any]) -> str:
    """The mode and models of the run, from the config in ``summary.json``."""
    mode = config.get("mode")
    if not isinstance(mode, str):
        return ""

    def name(section: str) -> str:
        value = config.get(section)
        return str(value.get("name")) if isinstance(value, dict) and value.get("name") else ""

    models = [name("frame_model"), name("embedding")] if mode == "frame" else [name("embedding")]
    return f"mode {mode}: " + " + ".join(m for m in models if m) if any(models) else f"mode {mode}"


STYLE = """
:root{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#222;
background:#fff;font-size:14px}
body{margin:0 auto;max-width:1280px;padding:0 16px 48px}
header{border-bottom:1px solid #ddd;margin-bottom:8px}h1{font-size:20px;margin:16px 0 4px}
h2{font-size:17px;margin:24px 0 8px}h3{font-size:15px}nav{margin:6px 0}a{color:#0b62a4}
dl.kv{display:grid;grid-template-columns:max-content auto;gap:3px 16px;margin:0}dt{color:#555}dd{margin:0}
table{border-collapse:collapse;margin:8px 0}
th,td{padding:2px 8px;border-bottom:1px solid #eee;text-align:left}
table.num td,table.num th{text-align:right}
table.num td:nth-child(2),table.recs td:nth-child(3){text-align:left}
table.bars td.bar{width:240px}td.bar span{display:block;height:10px;background:#7aa6d6}
caption{text-align:left;color:#555;padding:4px 0}tr.failed td{color:#b00}tr.not td{color:#777}
table.failures td:last-child{max-width:700px;word-break:break-word}
details summary{cursor:pointer;margin:6px 0}
.page{display:none}.page:target,.page:has(:target){display:block}
.pages:not(:has(:target))>.page:first-child{display:block}
.pager a{display:inline-block;min-width:1.8em}.pagenav{margin:4px 0}
figure{margin:10px 0 16px}figcaption{font-size:13px;margin-bottom:2px}figure:target{background:#fff8dc}
svg.tl{width:100%;height:auto;display:block}svg.tl text{font-size:9px;text-anchor:end;fill:#333}
svg.tl text.t{text-anchor:middle;fill:#666}svg.tl path{fill:none}svg.tl path.ax{stroke:#999;stroke-width:1}
.r{opacity:.55}.ov{stroke:#404040}.mi{stroke:#D55E00}.fa{stroke:#E69F00}.cf{stroke:#CC79A7}.un{stroke:#e4e4e4}
.c0{stroke:#1f77b4}.c1{stroke:#ff7f0e}.c2{stroke:#2ca02c}.c3{stroke:#d62728}.c4{stroke:#9467bd}
.c5{stroke:#8c564b}.c6{stroke:#e377c2}.c7{stroke:#7f7f7f}.c8{stroke:#bcbd22}.c9{stroke:#17becf}
.legend .key{display:inline-block;width:18px;height:9px;margin:0 4px 0 10px;border-top:9px solid}
.key.c0{border-color:#1f77b4}.key.ov{border-color:#404040}.key.mi{border-color:#D55E00}
.key.fa{border-color:#E69F00}.key.cf{border-color:#CC79A7}.key.un{border-color:#e4e4e4}
"""

#: Shown without JavaScript on the pages whose timelines are built by the script.
NO_SCRIPT = (
    "The timelines of this page are drawn by the page's script (JavaScript is off): "
    "the first page's are in the page itself, and diar plot draws any recording."
)

#: Builds the timelines of the page shown (those of pages after the first are kept as text,
#: so that a page of 10 000 recordings opens quickly), and searches by recording id.
SCRIPT = """
function build(page){if(!page||page.dataset.built)return;page.dataset.built='1';
page.querySelectorAll('script.tl').forEach(function(s){s.insertAdjacentHTML('afterend',s.textContent);s.remove();});}
function show(){var id=decodeURIComponent(location.hash.slice(1)),t=id?document.getElementById(id):null;
build(t&&t.closest('.page')||document.querySelector('.page'));if(t)t.scrollIntoView();}
window.addEventListener('hashchange',show);show();
document.getElementById('find').addEventListener('submit',function(e){e.preventDefault();
var q=this.q.value.trim(),rows=document.querySelectorAll('tr[data-reco]');
for(var i=0;i<rows.length;i++){if(rows[i].dataset.reco===q&&rows[i].id){location.hash=rows[i].id;
this.msg.value='';return;}}this.msg.value='no recording '+JSON.stringify(q);});
"""
