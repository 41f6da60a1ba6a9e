"""diar.formats: RTTM, ModelScope vad lines and Parquet, each read back after writing."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diar.errors import FormatError, ManifestError
from diar.formats import atomic_open
from diar.formats.parquet import read_parquet, write_parquet
from diar.formats.parquet import schema as parquet_schema
from diar.formats.rttm import read_rttm, write_rttm
from diar.formats.vad import read_vad, write_vad
from diar.types import Annotation, Turn

speakers = st.sampled_from(["spk1", "spk2", "3005", "話者", "a-b_c.d"])
reco_ids = st.sampled_from(["rec1", "sim01_2spk", "réunion_會議", "a-b"])


@st.composite
def annotations_on_grid(draw: st.DrawFn, unit: int) -> list[Annotation]:
    """Annotations whose times are whole multiples of 1/unit seconds (exactly representable in text)."""
    out = []
    for reco_id in draw(st.lists(reco_ids, unique=True, max_size=3)):
        items = draw(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 10**5), speakers), max_size=20))
        turns = [Turn(reco_id, s / unit, (s + d) / unit, spk) for s, d, spk in items]
        out.append(Annotation(reco_id, tuple(turns)))
    return out


def rttm_text(annotations: list[Annotation] | Annotation) -> str:
    buffer = io.StringIO()
    write_rttm(annotations, buffer)
    return buffer.getvalue()


# --------------------------------------------------------------------------- RTTM


@settings(deadline=None, max_examples=50)
@given(annotations_on_grid(1000))
def test_rttm_round_trip_is_lossless_at_millisecond_precision(annotations: list[Annotation]) -> None:
    text = rttm_text(annotations)
    expected = {a.reco_id: a for a in annotations if len(a)}
    assert read_rttm(io.StringIO(text)) == expected
    assert rttm_text(list(expected.values())) == text


@settings(deadline=None, max_examples=50)
@given(st.lists(st.tuples(st.floats(0, 1e4), st.floats(0, 100), speakers), max_size=20))
def test_rttm_rounds_bounds_to_milliseconds(items: list[tuple[float, float, str]]) -> None:
    annotation = Annotation("r", tuple(Turn("r", s, s + d, spk) for s, d, spk in items))
    back = read_rttm(io.StringIO(rttm_text(annotation))).get("r", Annotation("r"))
    expected = sorted(
        (round(round(t.start * 1000) / 1000, 3), round(round(t.end * 1000) / 1000, 3), t.speaker)
        for t in annotation
        if round(t.end * 1000) > round(t.start * 1000)
    )
    got = sorted((t.start, t.end, t.speaker) for t in back)
    assert len(got) == len(expected)
    for (s1, e1, k1), (s2, e2, k2) in zip(got, expected, strict=True):
        assert k1 == k2 and abs(s1 - s2) <= 1e-9 and abs(e1 - e2) <= 1e-9


def test_rttm_line_format() -> None:
    annotation = Annotation(
        "réunion_會議", (Turn("réunion_會議", 1.5, 3.25, "話者"), Turn("réunion_會議", 0, 0.1, "b"))
    )
    assert rttm_text(annotation) == (
        "SPEAKER réunion_會議 1 0.000 0.100 <NA> <NA> b <NA> <NA>\n"
        "SPEAKER réunion_會議 1 1.500 1.750 <NA> <NA> 話者 <NA> <NA>\n"
    )


def test_rttm_drops_zero_length_turns_including_those_that_round_to_zero() -> None:
    annotation = Annotation(
        "r", (Turn("r", 1.0, 1.0, "a"), Turn("r", 2.0001, 2.0004, "a"), Turn("r", 3.0, 3.0006, "a"))
    )
    assert rttm_text(annotation) == "SPEAKER r 1 3.000 0.001 <NA> <NA> a <NA> <NA>\n"


@pytest.mark.parametrize(
    "annotation",
    [
        Annotation("my rec", (Turn("my rec", 0, 1, "a"),)),
        Annotation("r", (Turn("r", 0, 1, "alice smith"),)),
        Annotation("r", (Turn("r", 0, 1, "tab\there"),)),
    ],
)
def test_rttm_rejects_whitespace_in_ids_and_labels(annotation: Annotation) -> None:
    good = Annotation("ok", (Turn("ok", 0, 1, "a"),))
    buffer = io.StringIO()
    with pytest.raises(FormatError, match="whitespace"):
        write_rttm([good, annotation], buffer)
    assert buffer.getvalue() == ""  # checked before anything is written


@pytest.mark.corpus
def test_corpus_ref_rttm_is_rewritten_byte_for_byte(corpus: Path) -> None:
    path = corpus / "sim" / "ref.rttm"
    annotations = read_rttm(path)
    assert len(annotations) == 10 and sum(len(a) for a in annotations.values()) == 405
    assert rttm_text(list(annotations.values())) == path.read_text()


@pytest.mark.corpus
def test_corpus_rttm_with_two_decimals(corpus: Path) -> None:
    annotation = read_rttm(corpus / "seriously" / "mixture.rttm")["mixture"]
    assert len(annotation) == 17
    per_speaker = {s: sum(t.duration for t in annotation if t.speaker == s) for s in annotation.speakers}
    assert per_speaker == pytest.approx({"FEE013": 22.96, "FEE016": 23.49, "MEE014": 1.19, "MEO015": 19.92})
    assert max(t.end for t in annotation) == 60.0
    assert annotation.speech_duration() == pytest.approx(60.0)


def test_rttm_reader_accepts_comments_other_types_and_nine_fields() -> None:
    text = (
        ";; a comment\n"
        "SPKR-INFO r 1 <NA> <NA> <NA> unknown a <NA> <NA>\n"
        "\n"
        "SPEAKER r 1 0.5 1.25 <NA> <NA> a <NA>\n"
        "SPEAKER r 0 2 0 <NA> <NA> a <NA> <NA>\n"
        "SPEAKER q 1    3.1234 1 <NA> <NA> b <NA> <NA>\n"
    )
    got = read_rttm(io.StringIO(text))
    assert got == {
        "r": Annotation("r", (Turn("r", 0.5, 1.75, "a"),)),
        "q": Annotation("q", (Turn("q", 3.1234, 4.1234, "b"),)),
    }


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("SPEAKER r 1 0.5 1.0 <NA> a", "expected 10 fields"),
        ("SPEAKER r 1 abc 1.0 <NA> <NA> a <NA> <NA>", "not a finite number"),
        ("SPEAKER r 1 1.0 nan <NA> <NA> a <NA> <NA>", "not a finite number"),
        ("SPEAKER r 1 1.0 -2 <NA> <NA> a <NA> <NA>", "negative"),
        ("hello world", "unknown RTTM line type"),
    ],
)
def test_rttm_reader_names_file_and_line(tmp_path: Path, line: str, what: str) -> None:
    path = tmp_path / "bad.rttm"
    path.write_text(f"SPEAKER r 1 0.0 1.0 <NA> <NA> a <NA> <NA>\n{line}\n")
    with pytest.raises(ManifestError, match=what) as exc:
        read_rttm(path)
    assert exc.value.line == 2 and f"{path}:2" in str(exc.value) and line in str(exc.value)


# --------------------------------------------------------------------------- vad


def test_vad_format_matches_modelscope() -> None:
    annotation = Annotation(
        "rec1",
        (
            Turn("rec1", 1.0, 3.0, "spk1"),
            Turn("rec1", 5.0, 8.0, "spk1"),
            Turn("rec1", 2.5, 4.126, "spk2"),
            Turn("rec1", 9.0, 9.004, "spk2"),  # 0 cs after rounding: dropped
        ),
    )
    buffer = io.StringIO()
    assert write_vad([annotation, Annotation("silent")], buffer) == 2
    assert buffer.getvalue() == "rec1 spk1: [1.00, 3.00], [5.00, 8.00]\nrec1 spk2: [2.50, 4.13]\n"


@settings(deadline=None, max_examples=50)
@given(annotations_on_grid(100))
def test_vad_round_trip_at_centisecond_precision(annotations: list[Annotation]) -> None:
    buffer = io.StringIO()
    write_vad(annotations, buffer)
    assert read_vad(io.StringIO(buffer.getvalue())) == {a.reco_id: a for a in annotations if len(a)}


@pytest.mark.parametrize(
    "line",
    ["rec1 spk1 [1.00, 2.00]", "rec1 spk1: [1.00 2.00]", "rec1 spk1: [1.00, x]", "rec1 spk1: [3.00, 2.00]"],
)
def test_vad_reader_names_file_and_line(tmp_path: Path, line: str) -> None:
    path = tmp_path / "result.txt"
    path.write_text(f"rec1 spk2: [0.00, 1.00]\n{line}\n")
    with pytest.raises(ManifestError) as exc:
        read_vad(path)
    assert exc.value.line == 2 and f"{path}:2" in str(exc.value)


def test_vad_rejects_labels_it_cannot_hold() -> None:
    with pytest.raises(FormatError):
        write_vad(Annotation("r", (Turn("r", 0, 1, "a b"),)), io.StringIO())
    with pytest.raises(FormatError):
        write_vad(Annotation("r", (Turn("r", 0, 1, "a:"),)), io.StringIO())


# --------------------------------------------------------------------------- parquet


@settings(deadline=None, max_examples=50)
@given(annotations_on_grid(1000))
def test_parquet_round_trip(annotations: list[Annotation]) -> None:
    buffer = io.BytesIO()
    rows = write_parquet(annotations, buffer, model="ge2e")
    assert rows == sum(len(a) for a in annotations)
    buffer.seek(0)
    assert read_parquet(buffer) == {a.reco_id: a for a in annotations if len(a)}


def test_parquet_columns_and_atomic_write(tmp_path: Path) -> None:
    path = tmp_path / "out" / "turns.parquet"
    annotation = Annotation("r", (Turn("r", 0.5, 2.0, "a"), Turn("r", 1.0, 1.25, "b")))
    write_parquet([annotation], path, model="xvector")
    table = pq.read_table(path)
    assert table.column_names == ["reco_id", "speaker", "start", "end", "duration", "model"]
    assert table.schema.field("start").type == pa.float64()
    assert table.to_pydict() == {
        "reco_id": ["r", "r"],
        "speaker": ["a", "b"],
        "start": [0.5, 1.0],
        "end": [2.0, 1.25],
        "duration": [1.5, 0.25],
        "model": ["xvector", "xvector"],
    }
    assert sorted(p.name for p in path.parent.iterdir()) == ["turns.parquet"]


def test_atomic_open_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "all.rttm"
    path.write_text("old\n")
    with pytest.raises(FormatError), atomic_open(path) as f:
        write_rttm(Annotation("r", (Turn("r", 0, 1, "a"),)), f)
        write_rttm(Annotation("bad id", (Turn("bad id", 0, 1, "a"),)), f)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["all.rttm"]
    with atomic_open(path) as f:
        write_rttm(Annotation("r", (Turn("r", 0, 1, "a"),)), f)
    assert path.read_text() == "SPEAKER r 1 0.000 1.000 <NA> <NA> a <NA> <NA>\n"


def test_one_registry_of_output_formats_for_the_command_and_the_job() -> None:
    """`diar diarize --format` and `job.out_formats` take their names from OUTPUT_FORMATS;
    an unknown name is an error that lists the known ones."""
    import argparse

    from diar.commands import diarize
    from diar.config import ConfigError, JobConfig
    from diar.formats.writers import OUTPUT_FORMATS, corpus_formats, output_format

    assert list(OUTPUT_FORMATS) == ["rttm", "parquet", "vad", "exclusive"]
    parser = argparse.ArgumentParser()
    diarize.add_arguments(parser)
    choices = next(a.choices for a in parser._actions if a.dest == "format")
    assert list(choices) == list(OUTPUT_FORMATS)
    with pytest.raises(
        FormatError, match=r"unknown output format 'csv'; valid: rttm, parquet, vad, exclusive"
    ):
        output_format("csv")
    with pytest.raises(ConfigError, match=r"out_formats.*rttm, parquet, vad, exclusive"):
        JobConfig(out_formats=["rttm", "csv"]).validate()
    assert [f.name for f in corpus_formats(["vad"])] == ["rttm", "vad"]  # RTTM always, first
    turns = Annotation("r", (Turn("r", 0.5, 1.25, "A"),))
    rttm = output_format("rttm").to_bytes([turns])
    assert rttm == b"SPEAKER r 1 0.500 0.750 <NA> <NA> A <NA> <NA>\n"
    assert output_format("vad").to_bytes([turns]) == b"r A: [0.50, 1.25]\n"
    assert read_parquet(io.BytesIO(output_format("parquet").to_bytes([turns], "m")))["r"].speakers == ["A"]
    # the exclusive turns are RTTM in a file of their own
    exclusive = output_format("exclusive")
    assert exclusive.exclusive and exclusive.to_bytes([turns]) == rttm
    assert [f.file_name("corpus") for f in corpus_formats(["exclusive"])] == [
        "corpus.rttm",
        "corpus.exclusive.rttm",
    ]


def test_parquet_rows_that_are_no_turn_are_refused(tmp_path: Path) -> None:
    good = {
        "reco_id": ["r"],
        "speaker": ["a"],
        "start": [0.5],
        "end": [1.0],
        "duration": [0.5],
        "model": ["m"],
    }
    for column, value in (
        ("start", float("nan")),
        ("end", None),
        ("reco_id", None),
        ("end", 0.1),
        ("speaker", ""),
    ):
        path = tmp_path / "bad.parquet"
        pq.write_table(pa.table(dict(good, **{column: [value]}), schema=parquet_schema()), path)
        with pytest.raises(ManifestError, match=r"bad.parquet: row 1: not a turn"):
            read_parquet(path)
    (tmp_path / "text.parquet").write_text("not a table\n")
    with pytest.raises(ManifestError, match=r"text\.parquet: not a Parquet table"):
        read_parquet(tmp_path / "text.parquet")
    with pytest.raises(ManifestError, match="Parquet file does not exist"):
        read_parquet(tmp_path / "gone.parquet")


def test_rttm_and_vad_readers_share_the_line_reader(tmp_path: Path) -> None:
    """A byte-order mark is dropped, several malformed lines are reported at once, binary data
    and folders are refused in one line, times beyond MAX_SECONDS are refused."""
    path = tmp_path / "bom.rttm"
    path.write_bytes(b"\xef\xbb\xbfSPEAKER r 1 0.5 1.0 <NA> <NA> a <NA> <NA>\n")
    assert read_rttm(path) == {"r": Annotation("r", (Turn("r", 0.5, 1.5, "a"),))}
    assert read_rttm(io.StringIO("\ufeffSPEAKER r 1 0.5 1.0 <NA> <NA> a <NA> <NA>\n"))["r"].turns
    path.write_text("SPEAKER r 1 x 1 <NA> <NA> a <NA> <NA>\nSPEAKER r 1 1 y <NA> <NA> a <NA> <NA>\n")
    with pytest.raises(ManifestError, match=r"bom.rttm:1: onset 'x' .* \(2 malformed lines \(1, 2\)\)"):
        read_rttm(path)
    vad = tmp_path / "result.txt"
    vad.write_text("\ufeffrec1 spk1: [0.00, 1.00]\nrec1 spk2: [1.00, 1e400]\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"result.txt:2: end '1e400' is beyond"):
        read_vad(vad)
    with pytest.raises(ManifestError, match="is a directory, not a vad file"):
        read_vad(tmp_path)
    vad.write_bytes(b"\x00" * 70_000)
    with pytest.raises(ManifestError, match="line longer than"):
        read_vad(vad)
