"""``diar plot`` (diar.report.plot): the picture shows the speakers and the errors diar score
counts; checked in the SVG, whose marks are named groups, and in the PNG's pixels."""

from __future__ import annotations

import builtins
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from diar.cli import main
from diar.formats.parquet import write_parquet
from diar.formats.rttm import read_rttm, write_rttm
from diar.manifests import read_uem
from diar.report.plot import row_length
from diar.report.timeline import build_timeline, crop
from diar.types import Annotation, Turn

SVG = "{http://www.w3.org/2000/svg}"
RECO = "ami_EN2002a_0-30"  # 4 speakers, 60 % overlap


def groups(svg: Path) -> dict[str, ET.Element]:
    """The SVG's named groups (matplotlib writes an artist's gid as its group's id)."""
    root = ET.parse(svg).getroot()
    return {g.get("id", ""): g for g in root.iter(f"{SVG}g")}


def texts(svg: Path) -> list[str]:
    return ["".join(t.itertext()).strip() for t in ET.parse(svg).getroot().iter(f"{SVG}text")]


def bars(group: ET.Element) -> int:
    return sum(1 for _ in group.iter(f"{SVG}path"))


@pytest.fixture(scope="module")
def ami(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A system-like hypothesis for the ami30 clips: the words-only reference moved by 0.2 s,
    two of EN2002a's speakers merged into one label, and a false alarm at 16-18.5 s."""
    folder = tmp_path_factory.mktemp("ami")
    ref = corpus / "ami30" / "ref.rttm"
    words = read_rttm(corpus / "ami30" / "ref_only_words.rttm")
    hyp = []
    for reco, annotation in words.items():
        speakers = annotation.speakers
        label = {s: f"spk{i}" for i, s in enumerate(speakers)}
        if reco == RECO:
            label[speakers[1]] = label[speakers[0]]
        moved = [(round(t.start + 0.2, 3), round(min(t.end + 0.2, 30.0), 3), t.speaker) for t in annotation]
        turns = [Turn(reco, s, e, label[spk]) for s, e, spk in moved if e > s]
        turns.append(Turn(reco, 16.0, 18.5, "spk0"))  # where one reference speaker talks
        hyp.append(Annotation(reco, tuple(turns)))
    with open(folder / "hyp.rttm", "w", encoding="utf-8") as f:
        write_rttm(hyp, f)
    return {
        "hyp": folder / "hyp.rttm",
        "ref": ref,
        "uem": corpus / "ami30" / "uem",
        "wav": corpus / "ami30" / "audio" / f"{RECO}.wav",
        "scp": corpus / "ami30" / "wav.scp",
    }


@pytest.mark.corpus
def test_plot_ami_with_reference_shows_speakers_and_errors(
    ami: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png, svg = tmp_path / "p.png", tmp_path / "p.svg"
    argv = ["plot", str(ami["hyp"]), "--reco", RECO, "--ref", str(ami["ref"]), "--uem", str(ami["uem"])]
    argv += ["--collar", "0.25", "--audio", str(ami["wav"]), "-o", str(png), "-o", str(svg)]
    assert main(argv) == 0
    assert capsys.readouterr().out.split() == [str(png), str(svg)]

    # the PNG: a real picture, mostly white, with the lanes' colours in it
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[0] > 300 and pixels.shape[1] == 1400  # 14 in at 100 dpi
    assert 0.05 < float(np.mean(pixels[..., :3].min(axis=2) < 0.9)) < 0.8
    assert len(np.unique((pixels[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)) > 20

    # the SVG: one group of bars per reference and system speaker, overlap, errors
    named = groups(svg)
    reference = read_rttm(ami["ref"])[RECO]
    hypothesis = read_rttm(ami["hyp"])[RECO]
    for speaker in reference.speakers:
        assert bars(named[f"ref:{speaker}:row0"]) >= 1
    for speaker in hypothesis.speakers:
        assert bars(named[f"hyp:{speaker}:row0"]) >= 1
    assert bars(named["overlap:row0"]) >= 1 and bars(named["ref-overlap:row0"]) >= 1
    assert bars(named["envelope:row0"]) == 1

    # the error marks are those diar score counts: one bar per span of error_regions
    timeline = build_timeline(
        hypothesis, reference, uem=read_uem(ami["uem"])[RECO], collar=0.25, duration=30.0
    )
    for kind in ("missed", "false_alarm", "confusion"):
        spans = timeline.error_spans(kind)
        assert spans, kind  # merged speakers, moved boundaries and the false alarm: every kind occurs
        assert bars(named[f"{kind}:row0"]) == len(spans), kind
    assert bars(named["unscored:row0"]) == len(timeline.unscored())

    # labels and the title are text: speakers, the mapping and diar score's DER
    words = " ".join(texts(svg))
    for speaker in reference.speakers:
        assert f"ref {speaker}" in words
    assert "spk0 = " in words
    scoring = ["score", "--ref", str(ami["ref"]), "--hyp", str(ami["hyp"]), "--uem", str(ami["uem"])]
    assert main([*scoring, "--collar", "0.25", "--json"]) == 0
    der = json.loads(capsys.readouterr().out)["files"][RECO]["der"]
    assert f"DER {100 * der:.2f} %" in words
    assert f"missed {timeline.errors.score.missed_seconds:.2f} s" in words  # type: ignore[union-attr]


@pytest.mark.corpus
def test_plot_time_range_and_rows(ami: dict[str, Path], tmp_path: Path) -> None:
    svg = tmp_path / "zoom.svg"
    argv = ["plot", str(ami["hyp"]), "--reco", RECO, "--ref", str(ami["ref"]), "--start", "10", "--end", "20"]
    assert main([*argv, "--row-seconds", "4", "-o", str(svg)]) == 0
    named = groups(svg)
    assert {f"missed:row{r}" for r in range(3)} <= set(named) and "missed:row3" not in named
    hypothesis = read_rttm(ami["hyp"])[RECO]
    timeline = build_timeline(hypothesis, read_rttm(ami["ref"])[RECO])
    for r, (lo, hi) in enumerate([(10, 14), (14, 18), (18, 20)]):
        part = crop(timeline, lo, hi)
        for lane in part.hypothesis:
            drawn = named.get(f"hyp:{lane.speaker}:row{r}")
            assert (bars(drawn) if drawn is not None else 0) == len(lane.spans)
    # --wav-scp finds the audio of the recording; no reference: no error lanes
    plain = tmp_path / "plain.svg"
    assert (
        main(["plot", str(ami["hyp"]), "--reco", RECO, "--wav-scp", str(ami["scp"]), "-o", str(plain)]) == 0
    )
    named = groups(plain)
    assert "envelope:row0" in named and "missed:row0" not in named and "ref-overlap:row0" not in named


def test_inputs_rttm_parquet_and_job_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = Annotation("rec-ü", (Turn("rec-ü", 0.0, 4.0, "A"), Turn("rec-ü", 3.0, 9.0, "B")))
    other = Annotation("rec-b", (Turn("rec-b", 1.0, 2.0, "A"),))
    out = tmp_path / "OUT"
    out.mkdir()
    with open(out / "corpus.rttm", "w", encoding="utf-8") as f:
        write_rttm([one, other], f)
    (out / "job.json").write_text(json.dumps({"shards": [{"items": [["rec-ü", 12.0], ["rec-b", 3.0]]}]}))
    write_parquet([one, other], tmp_path / "t.parquet", model="m")
    for source in (out / "corpus.rttm", tmp_path / "t.parquet", out):
        svg = tmp_path / "x.svg"
        assert main(["plot", str(source), "--reco", "rec-ü", "-o", str(svg)]) == 0
        named = groups(svg)
        assert {"hyp:A:row0", "hyp:B:row0", "overlap:row0"} <= set(named)
    capsys.readouterr()
    # several recordings and no --reco: a clear error listing them
    assert main(["plot", str(out), "-o", str(tmp_path / "y.svg")]) == 2
    err = capsys.readouterr().err
    assert "holds 2 recordings" in err and "--reco" in err and "\n" == err[-1] and err.count("\n") == 1
    assert main(["plot", str(out), "--reco", "nope", "-o", str(tmp_path / "y.svg")]) == 2
    assert "'nope' is not in" in capsys.readouterr().err
    assert main(["plot", str(out), "--reco", "rec-b", "-o", str(tmp_path / "y.gif")]) == 2
    assert ".png, .svg, .pdf" in capsys.readouterr().err
    assert (
        main(
            ["plot", str(out), "--reco", "rec-b", "--start", "5", "--end", "2", "-o", str(tmp_path / "y.png")]
        )
        == 2
    )
    assert "empty or invalid" in capsys.readouterr().err
    assert not (tmp_path / "y.png").exists()
    # the output must not be an input
    (tmp_path / "a.png").write_bytes(b"")
    assert (
        main(
            [
                "plot",
                str(out),
                "--reco",
                "rec-b",
                "--audio",
                str(tmp_path / "a.png"),
                "-o",
                str(tmp_path / "a.png"),
            ]
        )
        == 2
    )
    assert "also an input" in capsys.readouterr().err


def test_missing_matplotlib_is_one_line_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    rttm = tmp_path / "h.rttm"
    rttm.write_text("SPEAKER r 1 0.000 1.000 <NA> <NA> A <NA> <NA>\n")
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["plot", str(rttm), "-o", str(tmp_path / "h.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'diar[plot]'" in err


def test_row_length() -> None:
    assert row_length(30.0) == 30.0
    assert row_length(600.0) == 120.0  # 5 rows of 2 min
    assert row_length(3 * 3600.0) == 1800.0  # 6 rows of 30 min
    assert row_length(600.0, 60.0) == 60.0
