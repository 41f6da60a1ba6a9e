"""The report page in a real browser: headless Chromium renders it (a screenshot that is not
blank) and its DOM holds the rows, the scores and the timelines. Skipped without Chromium."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from report_helpers import FAILING, chromium

from diar.benchmarks.report import synthetic_job
from diar.cli import main
from diar.report.browser import dump_dom, screenshot


def built(dom: str) -> list[str]:
    """Ids of the figures whose timeline is an SVG element (not the text a lazy page keeps)."""
    figures = [f.split("</figure>", 1)[0] for f in dom.split('<figure id="')[1:]]
    return [f.split('"', 1)[0] for f in figures if '</figcaption><svg class="tl"' in f]


def assert_not_blank(png: Path, colours: list[tuple[int, int, int]]) -> None:
    """The screenshot shows a page: enough ink, and the given colours (the marks') in it."""
    from matplotlib.image import imread

    pixels = (imread(png)[..., :3] * 255).astype(np.int16)
    assert pixels.shape[0] >= 1000
    assert float(np.mean(pixels.min(axis=2) < 200)) > 0.02  # text, tables, lanes
    for colour in colours:
        near = np.abs(pixels - np.array(colour)).max(axis=2) <= 12
        assert int(near.sum()) > 50, colour


@pytest.mark.corpus
def test_sim_report_in_chromium(
    sim_out: Path, corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chromium()
    sim = corpus / "sim"
    options = ["--ref", str(sim / "ref.rttm"), "--uem", str(sim / "uem"), "--collar", "0.25"]
    page = tmp_path / "report.html"
    assert main(["report", str(sim_out), *options, "--page-size", "4", "-o", str(page)]) == 0
    capsys.readouterr()
    assert main(["score", "--hyp", str(sim_out / "corpus.rttm"), *options, "--json"]) == 0
    expected = json.loads(capsys.readouterr().out)

    dom = dump_dom(page)
    table = re.findall(r'<tr id="t\d+" data-reco="([^"]+)"', dom)
    assert sorted(table) == sorted(expected["files"])  # one row per recording
    der = re.search(r'<tr id="corpus-score" data-der="([^"]+)"', dom)
    assert der is not None and float(der.group(1)) == expected["der"]
    assert f"<td>{100 * expected['der']:.2f}</td>" in dom
    assert FAILING in dom and "model cannot handle recording" in dom
    assert len(re.findall(r'<figure id="r\d+"', dom)) == 10
    assert built(dom) == ["r0", "r1", "r2", "r3"]  # the first page's timelines

    # a link to a recording on the third page: the script builds that page's timelines
    dom = dump_dom(page, fragment="r9")
    assert built(dom) == ["r0", "r1", "r2", "r3", "r8", "r9"]
    svg = re.search(r'<figure id="r9".*?</figure>', dom, re.S)
    assert svg is not None and 'class="mi"' in svg.group(0) and re.search(r'class="c\d r"', svg.group(0))

    # a window taller than the page, so that no scrolling gets in the way of the screenshot
    png, third = tmp_path / "report.png", tmp_path / "page-3.png"
    screenshot(page, png, size=(1280, 3600))
    # the page's missed-speech orange and the first speaker's blue (lanes, legend)
    assert_not_blank(png, [(0xD5, 0x5E, 0x00), (0x1F, 0x77, 0xB4)])
    # CSS shows the table page a link points to (two recordings there, four on the first)
    screenshot(page, third, size=(1280, 3600), fragment="page-3")
    assert_not_blank(third, [(0xD5, 0x5E, 0x00), (0x1F, 0x77, 0xB4)])
    from matplotlib.image import imread

    first, last = imread(png)[..., :3], imread(third)[..., :3]
    assert float(np.mean(first.min(axis=2) < 0.8)) > float(np.mean(last.min(axis=2) < 0.8))


@pytest.mark.slow
def test_ten_thousand_recordings_open_in_chromium(tmp_path: Path) -> None:
    chromium()
    job = synthetic_job(tmp_path, recordings=10_000, minutes=(0.5, 2.0), seed=1)
    page = tmp_path / "report.html"
    options = ["--ref", job["ref"], "--uem", job["uem"], "--collar", "0.25"]
    assert main(["report", job["out"], *options, "-o", str(page)]) == 0
    dom = dump_dom(page, timeout=300)
    assert len(re.findall(r'<tr id="t\d+"', dom)) == 10_000
    assert len(re.findall(r'<figure id="r\d+"', dom)) == 10_000
    assert len(built(dom)) == 100  # one page of timelines built, not 10 000
    assert len(re.findall(r'<section class="page" id="page-\d+"', dom)) == 100
    last = dump_dom(page, timeout=300, fragment="page-100")
    assert built(last)[-1] == "r9999" and len(built(last)) == 200
    png = tmp_path / "report.png"
    screenshot(page, png, size=(1280, 5000), timeout=300)  # down to the first timelines
    assert_not_blank(png, [(0xD5, 0x5E, 0x00)])
