"""``diar report`` (diar.report.page): what the page holds, checked in its HTML; the page in a
browser is checked in test_browser.py."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fsspec
import pytest
from report_helpers import FAILING

from diar.cli import main
from diar.formats.rttm import write_rttm
from diar.report.inputs import JobOutputs, read_job_outputs
from diar.report.page import Reference, render_report
from diar.types import Annotation, Turn


def rows(html: str) -> dict[str, str]:
    """reco_id -> the row's HTML, for every row of the recordings table."""
    return {m.group(2): m.group(0) for m in re.finditer(r'<tr id="t(\d+)" data-reco="([^"]*)".*?</tr>', html)}


def cells(row: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", row)]


@pytest.mark.corpus
def test_report_with_reference_gives_diar_score_figures(
    sim_out: Path, corpus: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sim = corpus / "sim"
    options = ["--ref", str(sim / "ref.rttm"), "--uem", str(sim / "uem"), "--collar", "0.25"]
    assert main(["report", str(sim_out), *options]) == 0
    page = sim_out / "report.html"
    assert capsys.readouterr().out.strip() == str(page)
    html = page.read_text(encoding="utf-8")
    assert main(["score", "--hyp", str(sim_out / "corpus.rttm"), *options, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)

    corpus_row = re.search(r'<tr id="corpus-score" data-der="([^"]+)" data-jer="([^"]+)">(.*?)</tr>', html)
    assert corpus_row is not None
    assert float(corpus_row.group(1)) == expected["der"] and float(corpus_row.group(2)) == expected["jer"]
    assert cells(corpus_row.group(3))[:5] == [
        f"{100 * expected[k]:.2f}" for k in ("der", "miss", "false_alarm", "confusion", "jer")
    ]
    table = rows(html)
    assert sorted(table) == sorted(expected["files"])  # one row per recording, the failed one too
    for reco, figures in expected["files"].items():
        assert cells(table[reco])[8:13] == [
            f"{100 * figures[k]:.2f}" for k in ("der", "miss", "false_alarm", "confusion", "jer")
        ], reco
    assert "failed" in cells(table[FAILING])[2] and cells(table[FAILING])[8] == "100.00"  # all missed
    # every recording has its timeline, with the errors marked; the highest DER listed first
    assert len(re.findall(r'<figure id="r\d+" data-reco=', html)) == 10
    assert html.count('class="mi"') >= 10 and html.count('class="cf"') >= 9
    worst = re.search(r"<h3>Highest DER.*?</table>", html, re.S)
    assert worst is not None and FAILING not in worst.group(0)  # failed: listed under Failures
    listed = re.findall(r'<a href="#r\d+">(sim\w+)</a></td><td>([\d.]+)</td>', worst.group(0))
    assert len(listed) == 9 and [float(d) for _, d in listed] == sorted(
        (float(d) for _, d in listed), reverse=True
    )
    # the failure and its reason, the summary
    failure = re.search(rf'<tr data-reco="{FAILING}">(.*?)</tr>', html)
    assert failure is not None and cells(failure.group(0))[1:3] == ["diarize", "ValueError"]
    assert "model cannot handle recording" in failure.group(0)
    assert "10 (9 done, 1 failed)" in html
    assert "collar 0.25 s" in html and "overlap scored" in html


@pytest.mark.corpus
def test_job_page_is_what_diar_report_writes(sim_out: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.html"
    assert main(["report", str(sim_out), "-o", str(again)]) == 0
    assert again.read_bytes() == (sim_out.parent / "job-report.html").read_bytes()
    html = again.read_text(encoding="utf-8")
    summary = json.loads((sim_out / "summary.json").read_text())
    assert "report.html" in summary["outputs"]
    table = rows(html)
    assert len(table) == 10 and "DER %" not in html  # no reference, no scores
    assert cells(table["sim01_2spk"])[2:5] == ["done", "1:13", "2"]  # status, duration (job.json), speakers
    # self-contained: nothing is fetched (no URLs, no src, no stylesheets), links stay in the page
    assert not re.search(r"https?://|\bsrc=|<link\b|@import|url\(", html)
    assert all(h.startswith("#") for h in re.findall(r'href="([^"]*)"', html))
    assert html.count("<svg") == 9  # the done recordings' timelines, on the first page


def test_pages_escaping_and_determinism() -> None:
    odd = 'a<b&"c'
    annotations = {
        f"rec{i}": Annotation(f"rec{i}", (Turn(f"rec{i}", 0.0, 2.0 + i, "A"), Turn(f"rec{i}", 1.0, 3.0, "B")))
        for i in range(7)
    }
    annotations[odd] = Annotation(odd, (Turn(odd, 0.0, 1.0, "<spk>"),))
    outputs = JobOutputs("somewhere", dict(sorted(annotations.items())), None, [], {"rec0": 10.0})
    html = render_report(outputs, page_size=3)
    assert html == render_report(outputs, page_size=3)
    assert 'data-reco="a&lt;b&amp;&quot;c"' in html and "&lt;spk&gt;" in html and "<spk>" not in html
    assert len(re.findall(r'<section class="page" id="page-\d+">', html)) == 3
    # the first page's timelines are SVG, the others' the text the script builds them from
    first, *others = re.split(r'<section class="page" id="page-\d+">', html)[1:]
    assert first.count("<svg") == 3 and "text/html" not in first
    assert all(p.count('<script type="text/html" class="tl"><svg') == p.count("<figure") > 0 for p in others)
    assert "</script" not in "".join(re.findall(r'<script type="text/html" class="tl">(.*?)</script>', html))
    with pytest.raises(ValueError):
        render_report(outputs, page_size=0)
    scored = render_report(outputs, Reference({"rec0": annotations["rec0"]}))
    # rec0 scored against itself; the others, without a reference, are all false alarm
    assert cells(rows(scored)["rec0"])[8] == "0.00"
    der = re.search(r'id="corpus-score" data-der="([^"]+)"', scored)
    assert der is not None and float(der.group(1)) > 1.0
    assert "Highest DER" in scored


def test_inputs_a_file_a_url_and_bad_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    turns = Annotation("r1", (Turn("r1", 0.0, 5.0, "A"),))
    rttm = tmp_path / "h.rttm"
    with open(rttm, "w", encoding="utf-8") as f:
        write_rttm([turns], f)
    # a single RTTM: the page needs -o
    assert main(["report", str(rttm)]) == 2
    assert "give the page's path with -o" in capsys.readouterr().err
    assert main(["report", str(rttm), "-o", str(tmp_path / "r.html")]) == 0
    assert "r1" in (tmp_path / "r.html").read_text(encoding="utf-8")
    # an fsspec URL (memory://) holding a job's files
    fs = fsspec.filesystem("memory")
    fs.pipe("/job/corpus.rttm", rttm.read_bytes())
    fs.pipe("/job/failures.tsv", b"reco_id\tstage\terror_type\tmessage\nr2\tread\tAudioDecodeError\tbad\n")
    fs.pipe("/job/job.json", json.dumps({"shards": [{"items": [["r1", 6.0], ["r2", 3.0]]}]}).encode())
    outputs = read_job_outputs("memory://job")
    assert outputs.recordings == ["r1", "r2"] and outputs.durations == {"r1": 6.0, "r2": 3.0}
    assert [f.reco_id for f in outputs.failures] == ["r2"] and outputs.summary is None
    # a folder without corpus.rttm; a malformed failures.tsv; --uem without --ref
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 2
    assert "holds no corpus.rttm" in capsys.readouterr().err
    (empty / "corpus.rttm").write_bytes(rttm.read_bytes())
    (empty / "failures.tsv").write_text("reco_id\tstage\terror_type\tmessage\nr1\tread\n")
    assert main(["report", str(empty)]) == 2
    err = capsys.readouterr().err
    assert "failures.tsv:2" in err and err.count("\n") == 1
    assert main(["report", str(empty), "--uem", str(rttm)]) == 2
    assert "--uem needs --ref" in capsys.readouterr().err
    assert main(["report", str(empty), "-o", str(empty / "corpus.rttm")]) == 2
    assert "also an input" in capsys.readouterr().err
