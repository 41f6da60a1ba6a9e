"""The speaker-linking formats: trace files (Kaldi ark + Parquet table) and speakers.tsv."""

from __future__ import annotations

import io
from pathlib import Path

import kaldiio
import numpy as np
import pyarrow.parquet as pq
import pytest

from diar.errors import FormatError, ManifestError
from diar.formats.speakers import read_speakers, write_speakers
from diar.formats.traces import read_traces, write_traces
from diar.linking import SpeakerLink, Trace


def traces() -> list[Trace]:
    rng = np.random.default_rng(0)
    out = []
    for reco, speaker, enrolled in [
        ("rec-b", "spk1", False),
        ("rec-a", "alice", True),
        ("rec-ü", "spk2", False),
    ]:
        v = rng.normal(size=192).astype(np.float32)
        out.append(Trace(reco, speaker, v / np.linalg.norm(v), float(rng.uniform(1, 60)), enrolled))
    return out


def written(items: list[Trace], embedder: str = "campplus") -> tuple[bytes, bytes]:
    ark, table = io.BytesIO(), io.BytesIO()
    assert write_traces(items, ark, table, embedder) == len(items)
    return ark.getvalue(), table.getvalue()


def test_traces_round_trip_sorted() -> None:
    ark, table = written(traces())
    back = read_traces(ark, table)
    expected = sorted(traces(), key=lambda t: t.key)
    assert [(t.reco_id, t.speaker, t.seconds, t.enrolled) for t, _ in back] == [
        (t.reco_id, t.speaker, t.seconds, t.enrolled) for t in expected
    ]
    for (t, embedder), e in zip(back, expected, strict=True):
        assert embedder == "campplus"
        assert t.embedding.dtype == np.float32
        np.testing.assert_array_equal(t.embedding, e.embedding)


def test_trace_files_read_with_kaldiio_and_pyarrow(tmp_path: Path) -> None:
    ark, table = written(traces())
    (tmp_path / "t.ark").write_bytes(ark)
    (tmp_path / "t.parquet").write_bytes(table)
    entries = list(kaldiio.load_ark(str(tmp_path / "t.ark")))
    assert [k for k, _ in entries] == ["rec-a-alice", "rec-b-spk1", "rec-ü-spk2"]
    rows = pq.read_table(tmp_path / "t.parquet").to_pydict()
    assert list(rows) == ["reco_id", "speaker", "seconds", "dim", "enrolled", "embedder"]
    assert rows["dim"] == [192, 192, 192] and rows["enrolled"] == [True, False, False]
    expected = {t.key: t.embedding for t in traces()}
    for (_, vector), reco, speaker in zip(entries, rows["reco_id"], rows["speaker"], strict=True):
        np.testing.assert_array_equal(vector, expected[(reco, speaker)])


def test_empty_trace_files() -> None:
    ark, table = written([])
    assert ark == b"" and read_traces(ark, table) == []


def test_trace_files_that_do_not_match_are_refused() -> None:
    ark, table = written(traces())
    short_ark, _ = written(traces()[:2])
    with pytest.raises(FormatError, match="2 vectors for 3 table rows"):
        read_traces(short_ark, table, "x.traces.parquet")
    other = [Trace(t.reco_id, t.speaker + "x", t.embedding, t.seconds) for t in traces()]
    other_ark, _ = written(other)
    with pytest.raises(FormatError, match=r"ark entry 1 .* does not match table row 1"):
        read_traces(other_ark, table)
    with pytest.raises(FormatError, match="unreadable"):
        read_traces(ark, b"not parquet")
    with pytest.raises(FormatError, match="whitespace"):
        written([Trace("a b", "spk1", np.ones(2, np.float32), 1.0)])
    with pytest.raises(FormatError, match="two traces"):
        written([traces()[0], traces()[0]])


def test_speakers_tsv_round_trip(tmp_path: Path) -> None:
    rows = [
        SpeakerLink("rec-b", "spk1", "S0002", 12.3456),
        SpeakerLink("rec-a", "spk2", "S0001", 1.0),
        SpeakerLink("rec-a", "spk1", "alice", 30.25),
    ]
    buf = io.StringIO()
    assert write_speakers(rows, buf) == 3
    assert buf.getvalue() == (
        "reco_id\tspeaker\tglobal_speaker\tseconds\n"
        "rec-a\tspk1\talice\t30.250\n"
        "rec-a\tspk2\tS0001\t1.000\n"
        "rec-b\tspk1\tS0002\t12.346\n"
    )
    path = tmp_path / "speakers.tsv"
    path.write_text(buf.getvalue(), encoding="utf-8")
    assert read_speakers(path) == [
        SpeakerLink("rec-a", "spk1", "alice", 30.25),
        SpeakerLink("rec-a", "spk2", "S0001", 1.0),
        SpeakerLink("rec-b", "spk1", "S0002", 12.346),
    ]


def test_speakers_tsv_errors(tmp_path: Path) -> None:
    path = tmp_path / "speakers.tsv"
    path.write_text("reco_id\tspeaker\tglobal_speaker\tseconds\na\tspk1\tS1\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"speakers.tsv:2: expected 4 tab-separated fields, got 3"):
        read_speakers(path)
    path.write_text("a\tb\n", encoding="utf-8")
    with pytest.raises(ManifestError, match=r"speakers.tsv:1: expected the header"):
        read_speakers(path)
    with pytest.raises(ManifestError, match="does not exist"):
        read_speakers(tmp_path / "missing.tsv")
    with pytest.raises(FormatError, match="whitespace"):
        write_speakers([SpeakerLink("a", "spk 1", "S1", 1.0)], io.StringIO())


def test_trace_rows_that_are_no_trace_are_refused() -> None:
    import pyarrow as pa

    from diar.formats.traces import schema

    ark, table = written(traces()[:1])
    rows = pq.read_table(io.BytesIO(table)).to_pydict()
    for column, value in (("seconds", float("nan")), ("seconds", None), ("reco_id", None), ("dim", None)):
        bad = dict(rows, **{column: [value]})
        buf = io.BytesIO()
        pq.write_table(pa.table(bad, schema=schema()), buf)
        with pytest.raises(FormatError, match=r"x\.traces: table row 1 is not a trace"):
            read_traces(ark, buf.getvalue(), "x.traces")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\ufeffreco_id\tspeaker\tglobal_speaker\tseconds\na\tspk1\tS1\t1.0\n", None),
        (
            "reco_id\tspeaker\tglobal_speaker\tseconds\na\tspk1\tS1\tnan\n",
            ":2: seconds 'nan' is not a finite number",
        ),
        ("reco_id\tspeaker\tglobal_speaker\tseconds\na\tspk1\tS1\t-1\n", ":2: seconds '-1' is negative"),
        ("reco_id\tspeaker\tglobal_speaker\tseconds\na\tspk1\tS1\t1e400\n", ":2: seconds '1e400' is beyond"),
        (
            "reco_id\tspeaker\tglobal_speaker\tseconds\na\tspk1\tS1\t1\na\tspk1\tS2\t1\n",
            ":3: speaker 'spk1' of recording 'a' twice (first on line 2)",
        ),
        (
            "reco_id\tspeaker\tglobal_speaker\tseconds\na\tspk1\tS1\t1\na\tspk2\tS1\t1\n",
            ":3: global speaker 'S1' of recording 'a' twice (first on line 2)",
        ),
    ],
)
def test_speakers_tsv_rows_are_checked(tmp_path: Path, text: str, message: str | None) -> None:
    path = tmp_path / "speakers.tsv"
    path.write_text(text, encoding="utf-8")
    if message is None:
        assert read_speakers(path) == [SpeakerLink("a", "spk1", "S1", 1.0)]
        return
    with pytest.raises(ManifestError) as exc:
        read_speakers(path)
    assert f"{path}{message}" in str(exc.value)
    with pytest.raises(ManifestError, match=r"is a directory, not a speakers\.tsv"):
        read_speakers(tmp_path)
