"""failures.tsv: the writer the jobs use and its reader, round trip and malformed files."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from diar.errors import ManifestError
from diar.failures import Failure
from diar.formats.failures import FAILURES_HEADER, failures_tsv, read_failures


def test_round_trip_folds_whitespace_and_sorts() -> None:
    rows = [
        Failure("rec-ü", "read", "AudioDecodeError", "truncated\nWAV\tfile"),
        Failure("rec-a", "actor", "ActorDiedError", ""),
    ]
    text = failures_tsv(rows)
    assert text.splitlines()[0] == "\t".join(FAILURES_HEADER)
    back = read_failures(io.StringIO(text))
    assert back == [
        Failure("rec-a", "actor", "ActorDiedError", ""),
        Failure("rec-ü", "read", "AudioDecodeError", "truncated WAV file"),
    ]
    assert read_failures(io.StringIO(failures_tsv([]))) == []


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("id\tstage\n", 1, "header"),
        ("\t".join(FAILURES_HEADER) + "\nrec-a\tread\tOSError\n", 2, "4 tab-separated cells"),
        ("\t".join(FAILURES_HEADER) + "\nrec-a\tsomewhere\tOSError\tgone\n", 2, "somewhere"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    path = tmp_path / "failures.tsv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=rf"failures\.tsv:{line}: .*{what}"):
        read_failures(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        read_failures(tmp_path / "failures.tsv")
