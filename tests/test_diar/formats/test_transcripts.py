"""Transcript formats: CTM, Whisper-style JSON, SRT, WebVTT and STM, reader and writer side by side."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diar.errors import FormatError, ManifestError
from diar.formats.ctm import read_ctm, write_ctm
from diar.formats.srt import read_srt, write_srt
from diar.formats.stm import read_stm, write_stm
from diar.formats.vtt import read_vtt, write_vtt
from diar.formats.words_json import read_words_json, write_words_json
from diar.words import Utterance, Word, join_words


def ctm_text(words: list[Word]) -> str:
    buf = io.StringIO()
    write_ctm(words, buf)
    return buf.getvalue()


milliseconds = st.integers(0, 10_000_000)
tokens = st.text(st.characters(blacklist_categories=("Z", "C")), min_size=1, max_size=8)
words_st = st.lists(
    st.tuples(
        st.sampled_from(["rec-1", "réc_2"]),
        milliseconds,
        st.integers(0, 5000),
        tokens,
        st.one_of(st.none(), st.floats(0, 1, allow_nan=False)),
        st.one_of(st.none(), st.sampled_from(["spk1", "spk2", "Ann"])),
    ),
    max_size=30,
)


def make_words(items: list[tuple]) -> list[Word]:  # type: ignore[type-arg]
    return [Word(r, s / 1000, (s + d) / 1000, w, "1", c, spk) for r, s, d, w, c, spk in items]


@settings(max_examples=100, deadline=None)
@given(words_st)
def test_ctm_round_trip(items: list[tuple]) -> None:  # type: ignore[type-arg]
    words = make_words(items)
    assert read_ctm(io.StringIO(ctm_text(words))) == words


def test_ctm_fields_and_conventions() -> None:
    words = [
        Word("r", 1.0, 1.25, "hello"),
        Word("r", 1.25, 1.5, "world", confidence=0.5),
        Word("r", 2.0, 2.0, "uh", speaker="spk1"),  # 0 s words are kept
        Word("r", 2.1, 2.3004, " there", "A", 0.75, "spk2"),
    ]
    assert ctm_text(words).splitlines() == [
        "r 1 1.000 0.250 hello",
        "r 1 1.250 0.250 world 0.5",
        "r 1 2.000 0.000 uh NA spk1",
        "r A 2.100 0.200 there 0.75 spk2",
    ]
    read = read_ctm(io.StringIO(";; a comment\n\nr 1 0.5 0.25 a <NA> spk1\nr 1 .75 1e-1 b\n"))
    assert read == [Word("r", 0.5, 0.75, "a", speaker="spk1"), Word("r", 0.75, 0.85, "b")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("r 1 0.5 hi", "expected 5 to 7 fields"),
        ("r 1 0.5 0.2 hi 0.9 spk1 extra", "expected 5 to 7 fields"),
        ("r 1 abc 0.2 hi", "start time 'abc' is not a number"),
        ("r 1 -1 0.2 hi", "start time '-1' is not a number >= 0"),
        ("r 1 0.5 nan hi", "duration 'nan' is not a number"),
        ("r 1 0.5 -0.2 hi", "duration '-0.2' is not a number >= 0"),
        ("r 1 0.5 0.2 hi high", "confidence 'high' is not a number or NA"),
    ],
)
def test_malformed_ctm_lines_name_file_line_and_value(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "words.ctm"
    path.write_text(f"r 1 0.0 0.1 ok\n{line}\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=message) as e:
        read_ctm(path)
    assert str(e.value).startswith(f"{path}:2: ") and repr(line) in str(e.value)
    assert "\n" not in str(e.value)


def test_ctm_writer_refuses_what_a_field_cannot_hold() -> None:
    with pytest.raises(FormatError, match=r"word 'New York'.*whitespace"):
        ctm_text([Word("r", 0, 1, "New York")])
    with pytest.raises(FormatError, match=r"speaker label 'Ann Lee'"):
        ctm_text([Word("r", 0, 1, "hi", speaker="Ann Lee")])


WHISPER = {
    "text": " Hello there. Yes.",
    "segments": [
        {
            "id": 0,
            "start": 0.0,
            "end": 1.2,
            "text": " Hello there.",
            "words": [
                {"word": " Hello", "start": 0.0, "end": 0.42, "probability": 0.98},
                {"word": " there.", "start": 0.42, "end": 1.2, "probability": 0.9},
            ],
        },
        {
            "start": 2.0,
            "end": 2.5,
            "text": " Yes.",
            "words": [{"word": " Yes.", "start": 2, "end": 2.5, "score": 0.7}],
        },
    ],
    "language": "en",
}


def test_whisper_json_of_one_recording_takes_its_id_from_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "meeting-01.json"
    path.write_text(json.dumps(WHISPER, indent=1), encoding="utf-8")
    words = read_words_json(path)
    assert words == [
        Word("meeting-01", 0.0, 0.42, " Hello", confidence=0.98),
        Word("meeting-01", 0.42, 1.2, " there.", confidence=0.9),
        Word("meeting-01", 2.0, 2.5, " Yes.", confidence=0.7),
    ]
    assert {w.reco_id for w in read_words_json(path, reco_id="other")} == {"other"}
    path.write_text(json.dumps({**WHISPER, "reco_id": "inside"}), encoding="utf-8")
    assert {w.reco_id for w in read_words_json(path, reco_id="other")} == {"inside"}  # the file's own wins


@settings(max_examples=100, deadline=None)
@given(words_st)
def test_json_round_trip(items: list[tuple]) -> None:  # type: ignore[type-arg]
    words = make_words(items)
    buf = io.StringIO()
    write_words_json(words, buf)
    back = read_words_json(io.StringIO(buf.getvalue()))
    # the writer groups by recording (in order of first word); within one the order is kept
    expected = sorted(words, key=lambda w: [w.reco_id for w in words].index(w.reco_id))
    assert back == expected


def test_json_writer_segments_are_speaker_runs() -> None:
    words = [
        Word("r", 0.0, 0.4, " Hello", speaker="A"),
        Word("r", 0.4, 0.9, " there.", speaker="A"),
        Word("r", 1.0, 1.3, " Hi", speaker="B"),
    ]
    buf = io.StringIO()
    write_words_json(words, buf)
    (reco,) = json.loads(buf.getvalue())
    assert reco["reco_id"] == "r"
    assert [(s["speaker"], s["start"], s["end"], s["text"]) for s in reco["segments"]] == [
        ("A", 0.0, 0.9, "Hello there."),
        ("B", 1.0, 1.3, "Hi"),
    ]
    assert reco["segments"][1]["words"] == [{"word": " Hi", "start": 1.0, "end": 1.3, "speaker": "B"}]


def object_line(text: str, marker: str) -> int:
    """The line where the JSON object holding ``marker`` starts (its ``{``)."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if marker in line)
    while not lines[i].rstrip().endswith("{"):
        i -= 1
    return i + 1


@pytest.mark.parametrize(
    ("change", "marker", "message"),
    [
        (
            lambda d: d["segments"][0]["words"][1].update(start="x"),
            '"word": " there."',
            r"segment 1 word 2: 'start' is not a number >= 0: 'x'",
        ),
        (
            lambda d: d["segments"][0]["words"][0].update(end=-1),
            '"word": " Hello"',
            r"segment 1 word 1: 'end' is not a number >= 0: -1",
        ),
        (
            lambda d: d["segments"][0]["words"][0].update(end=0.1, start=0.2),
            '"word": " Hello"',
            r"word 1 ' Hello': ends \(0.1\) before",
        ),
        (
            lambda d: d["segments"][0]["words"][0].update(word=5),
            '"probability": 0.98',
            r"'word' is not a string: 5",
        ),
        (
            lambda d: d["segments"][0]["words"][0].update(probability="high"),
            '"word": " Hello"',
            r"'probability' is not a number: 'high'",
        ),
        (
            lambda d: d["segments"][1].pop("words"),
            '"text": " Yes."',
            r"segment 2 has no 'words' list.*word_timestamps=True",
        ),
        (lambda d: d["segments"][0]["words"].append(3), '"id": 0', r"segment 1 word 3 is not an object: 3"),
        (lambda d: d.update(segments={}), '"segments"', r"'segments' is not a list"),
    ],
)
def test_malformed_json_names_file_line_and_value(tmp_path: Path, change, marker: str, message: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(json.dumps(WHISPER))
    change(data)
    path = tmp_path / "talk.json"
    text = json.dumps(data, indent=1)
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=message) as e:
        read_words_json(path)
    assert str(e.value).startswith(f"{path}:{object_line(text, marker)}: "), str(e.value)
    assert "\n" not in str(e.value)


def test_json_syntax_and_shape_errors(tmp_path: Path) -> None:
    path = tmp_path / "talk.json"
    path.write_text('{"segments": [\n  {"words": [}\n]}', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"talk\.json:2: not valid JSON"):
        read_words_json(path)
    path.write_text('[{"segments": []}]', encoding="utf-8")
    with pytest.raises(ManifestError, match=r"item 1 of the list has no 'reco_id' string"):
        read_words_json(path)
    path.write_text("3", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"expected an object with 'segments'"):
        read_words_json(path)


CUES = [
    Utterance("r", 1.25, 3.9, "spk1", "Hello there, how are\nyou today?"),
    Utterance("r", 3.5, 4.0, "Dr. Lee", "Fine & <you>?"),
    Utterance("r", 3725.001, 3726.5, None, "no speaker marked"),
]


def test_srt_round_trip_and_layout() -> None:
    buf = io.StringIO()
    assert write_srt(CUES, buf) == 3
    text = buf.getvalue()
    assert text.startswith("1\n00:00:01,250 --> 00:00:03,900\n[spk1] Hello there, how are\nyou today?\n\n2\n")
    assert "3\n01:02:05,001 --> 01:02:06,500\nno speaker marked\n" in text
    assert read_srt(io.StringIO(text), "r") == CUES
    crlf = "\ufeff" + text.replace("\n", "\r\n").replace("1\r\n00:00:01,250", "00:00:01.250", 1)
    assert read_srt(io.StringIO(crlf), "r") == CUES


def test_vtt_round_trip_and_layout() -> None:
    buf = io.StringIO()
    assert write_vtt(CUES, buf) == 3
    text = buf.getvalue()
    assert text.startswith(
        "WEBVTT\n\n1\n00:00:01.250 --> 00:00:03.900\n<v spk1>Hello there, how are\nyou today?\n"
    )
    assert "<v Dr. Lee>Fine &amp; &lt;you&gt;?" in text
    assert read_vtt(io.StringIO(text), "r") == CUES
    other = (
        "WEBVTT - made elsewhere\n\nNOTE a note\n\n00:01.000 --> 00:02.500 align:start\n<v.loud Ann>Hi</v>\n"
    )
    assert read_vtt(io.StringIO(other), "x") == [Utterance("x", 1.0, 2.5, "Ann", "Hi")]


def test_subtitle_errors(tmp_path: Path) -> None:
    path = tmp_path / "talk.srt"
    path.write_text(
        "1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03,000 -> 00:00:04,000\nbad\n", encoding="utf-8"
    )
    with pytest.raises(
        ManifestError, match=r"talk\.srt:6: expected a timing line.*'00:00:03,000 -> 00:00:04,000'"
    ):
        read_srt(path, "r")
    path = tmp_path / "talk.vtt"
    path.write_text("1\n00:00:01.000 --> 00:00:02.000\nno header\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"talk\.vtt:1: a WebVTT file starts with 'WEBVTT'"):
        read_vtt(path, "r")
    with pytest.raises(FormatError, match=r"speaker '\[x\]'"):
        write_srt([Utterance("r", 0, 1, "[x]", "hi")], io.StringIO())


def test_stm_round_trip_sorted_as_sclite_wants() -> None:
    items = [
        Utterance("r2", 0.5, 1.0, "spk1", "later recording"),
        Utterance("r1", 2.0, 3.25, "spk2", "second"),
        Utterance("r1", 0.0, 1.5, "spk1", "first\nline"),
    ]
    buf = io.StringIO()
    write_stm(items, buf)
    assert buf.getvalue().splitlines() == [
        "r1 1 spk1 0.000 1.500 first line",
        "r1 1 spk2 2.000 3.250 second",
        "r2 1 spk1 0.500 1.000 later recording",
    ]
    back = read_stm(io.StringIO(";; comment\n" + buf.getvalue()))
    assert back == [
        Utterance("r1", 0.0, 1.5, "spk1", "first line"),
        Utterance("r1", 2.0, 3.25, "spk2", "second"),
        Utterance("r2", 0.5, 1.0, "spk1", "later recording"),
    ]
    assert read_stm(io.StringIO("r 1 A 0 1 <o,f1,male> hi there\n"))[0].text == "hi there"
    with pytest.raises(ManifestError, match=r"<stream>:1: end time '0.5' is not a number >= the start"):
        read_stm(io.StringIO("r 1 A 1 0.5 hi\n"))
    with pytest.raises(FormatError, match="speaker ''"):
        write_stm([Utterance("r", 0, 1, None, "hi")], io.StringIO())


def test_join_words() -> None:
    assert join_words([" Hello", " there."]) == "Hello there."
    assert join_words(["hello", "there"]) == "hello there"
    assert join_words(["你好", "世界"]) == "你好 世界"
