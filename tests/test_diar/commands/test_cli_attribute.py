"""``diar attribute`` end to end, in process: words + turns -> CTM, STM, SRT, WebVTT, JSON."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from helpers import REPO

from diar.cli import main
from diar.formats.ctm import read_ctm, write_ctm
from diar.formats.rttm import read_rttm
from diar.formats.srt import read_srt
from diar.formats.stm import read_stm
from diar.formats.vtt import read_vtt
from diar.formats.words_json import read_words_json
from diar.words import Word

SAMPLE = REPO / "diar" / "data" / "sample"
REF = SAMPLE / "ref.rttm"


def reference_words() -> list[Word]:
    """The sample's reference turns cut into words of about 0.3 s, in time order."""
    words = []
    for annotation in read_rttm(REF).values():
        for t in annotation:
            n = max(1, round(t.duration / 0.3))
            step = t.duration / n
            words += [
                Word(t.reco_id, t.start + k * step, t.start + (k + 1) * step, f"w{k}") for k in range(n)
            ]
    return sorted(words, key=lambda w: w.start)


def alone(word: Word) -> str | None:
    (annotation,) = read_rttm(REF).values()
    talking = {t.speaker for t in annotation if min(t.end, word.end) - max(t.start, word.start) > 1e-9}
    return talking.pop() if len(talking) == 1 else None


@pytest.fixture
def ctm(tmp_path: Path) -> Path:
    path = tmp_path / "words.ctm"
    with path.open("w", encoding="utf-8") as f:
        write_ctm(reference_words(), f)
    return path


def test_ctm_out_keeps_the_words_and_gives_single_speaker_words_their_speaker(
    ctm: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out.ctm"
    assert main(["attribute", str(ctm), "-d", str(REF), "-o", str(out)]) == 0
    words_in, words_out = read_ctm(ctm), read_ctm(out)
    assert [w.with_speaker(None) for w in words_out] == words_in  # order and count
    single = [(w, alone(w)) for w in words_out if alone(w) is not None]
    assert len(single) > 150 and all(w.speaker == speaker for w, speaker in single)
    assert all(len(line.split()) == 7 for line in out.read_text().splitlines())


@pytest.mark.parametrize("fmt", ["stm", "srt", "vtt", "json"])
def test_every_output_format(ctm: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"out.{fmt}"
    assert main(["attribute", str(ctm), "-d", str(REF), "-o", str(out)]) == 0
    if fmt == "json":
        words = read_words_json(out)
        assert [w.with_speaker(None) for w in words] == [w.with_speaker(None) for w in read_ctm(ctm)]
        assert all(w.speaker == alone(w) for w in words if alone(w) is not None)
        return
    cues = read_stm(out) if fmt == "stm" else (read_srt if fmt == "srt" else read_vtt)(out, "sim01_2spk")
    texts = " ".join(c.text.replace("\n", " ") for c in sorted(cues, key=lambda c: c.start)).split()
    assert Counter(texts) == Counter(w.text for w in read_ctm(ctm))  # every word once
    assert {c.speaker for c in cues} == {"3005", "3331"}
    assert all(c.end - c.start <= 7.0 + 1e-6 for c in cues)
    if fmt != "stm":
        assert all(len(line) <= 42 for c in cues for line in c.text.splitlines())


def test_recordings_without_diarization_are_reported_and_the_others_written(
    ctm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = tmp_path / "both.ctm"
    both.write_text(ctm.read_text() + "other 1 0.5 0.2 hi\nother 1 0.7 0.2 there\n", encoding="utf-8")
    out = tmp_path / "out.ctm"
    assert main(["attribute", str(both), "-d", str(REF), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "1 of 2 recordings failed" in err and "other\tattribute\tMissingDiarization" in err
    assert "its 2 words are left out" in err
    assert [w.with_speaker(None) for w in read_ctm(out)] == read_ctm(ctm)


def test_malformed_words_exit_2_naming_file_line_and_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.ctm"
    bad.write_text("sim01_2spk 1 1.3 0.2 hi\nsim01_2spk 1 1.5 zero there\n", encoding="utf-8")
    assert main(["attribute", str(bad), "-d", str(REF), "-o", str(tmp_path / "x.ctm")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{bad}:2: duration 'zero' is not a number" in err
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"segments": [{"words": [\n {"word": "hi", "start": 1, "end": null}]}]}', encoding="utf-8"
    )
    assert main(["attribute", str(bad), "-d", str(REF), "-o", str(tmp_path / "x.ctm")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "\n" not in err
        and f"{bad}:2: recording 'bad' segment 1 word 1: 'end' is not a number >= 0: None" in err
    )
    assert not (tmp_path / "x.ctm").exists()


def test_whisper_json_in_and_the_recording_id(tmp_path: Path) -> None:
    words = [w for w in reference_words() if w.start < 20]
    segment = {
        "start": 0.0,
        "end": 20.0,
        "words": [{"word": f" {w.text}", "start": w.start, "end": w.end} for w in words],
    }
    whisper = tmp_path / "sim01_2spk.json"  # the file name is the recording id
    whisper.write_text(json.dumps({"text": "", "segments": [segment]}), encoding="utf-8")
    out = tmp_path / "out.json"
    assert main(["attribute", str(whisper), "-d", str(REF), "-o", str(out)]) == 0
    got = read_words_json(out)
    assert [w.text for w in got] == [f" {w.text}" for w in words]
    assert all(w.speaker == alone(w) for w in got if alone(w) is not None)
    renamed = tmp_path / "whisper-output.json"
    renamed.write_text(whisper.read_text(), encoding="utf-8")
    assert main(["attribute", str(renamed), "--reco-id", "sim01_2spk", "-d", str(REF), "-o", str(out)]) == 0
    assert read_words_json(out) == got


def test_subtitles_of_several_recordings_go_to_a_folder(
    ctm: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    two = tmp_path / "two.ctm"
    two.write_text(ctm.read_text() + ctm.read_text().replace("sim01_2spk", "copy"), encoding="utf-8")
    turns = tmp_path / "turns.rttm"
    turns.write_text(REF.read_text() + REF.read_text().replace("sim01_2spk", "copy"), encoding="utf-8")
    folder = tmp_path / "subs"
    assert main(["attribute", str(two), "-d", str(turns), "-o", str(folder), "--format", "vtt"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["copy.vtt", "sim01_2spk.vtt"]
    assert read_vtt(folder / "copy.vtt", "copy") == read_vtt(folder / "sim01_2spk.vtt", "copy")
    taken = tmp_path / "file.srt"
    taken.write_text("", encoding="utf-8")
    assert main(["attribute", str(two), "-d", str(turns), "-o", str(taken)]) == 2
    assert "2 recordings make 2 srt files: give a folder" in capsys.readouterr().err
    assert main(["attribute", str(two), "-d", str(turns), "-o", str(tmp_path / "out.txt")]) == 2
    assert "cannot tell the output format" in capsys.readouterr().err


def test_the_jobs_output_folder_and_parquet_as_diarization(ctm: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "OUT"
    out_dir.mkdir()
    (out_dir / "corpus.rttm").write_bytes(REF.read_bytes())
    a, b = tmp_path / "a.ctm", tmp_path / "b.ctm"
    assert main(["attribute", str(ctm), "-d", str(out_dir), "-o", str(a)]) == 0
    assert main(["attribute", str(ctm), "-d", str(REF), "-o", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()


def test_with_diars_own_diarization_of_the_bundled_sample(ctm: Path, tmp_path: Path) -> None:
    hyp = tmp_path / "hyp.rttm"
    assert main(["diarize", str(SAMPLE / "wav.scp"), "-o", str(hyp), "--exclusive"]) == 0
    out = tmp_path / "out.ctm"
    assert main(["attribute", str(ctm), "-d", str(hyp), "-o", str(out)]) == 0
    pairs = [(alone(w), w.speaker) for w in read_ctm(out) if alone(w) is not None]
    mapping = {ref: Counter(h for r, h in pairs if r == ref).most_common(1)[0][0] for ref, _ in pairs}
    assert len(set(mapping.values())) == 2  # two speakers found, one per reference speaker
    right = sum(mapping[r] == h for r, h in pairs)
    assert right >= 0.97 * len(pairs), (right, len(pairs))
