"""``failures.tsv``: one row per recording that could not be done, reader and writer side by side.

A header line ``reco_id  stage  error_type  message``, then one tab-separated row per
:class:`~diar.failures.Failure`, sorted by recording id; whitespace inside a cell (a message's
newlines and tabs) is folded to single spaces, so every row has exactly four cells. A job
with no failure writes the header alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO

from diar.errors import ManifestError
from diar.failures import Failure
from diar.formats import read_file

#: Header of ``failures.tsv``.
FAILURES_HEADER = ("reco_id", "stage", "error_type", "message")


def failures_tsv(failures: Iterable[Failure]) -> str:
    """``failures.tsv`` text: a header, then one row per failure sorted by recording id."""
    lines = ["\t".join(FAILURES_HEADER)]
    for f in sorted(failures):
        cells = (f.reco_id, f.stage, f.error_type, f.message)
        lines.append("\t".join(" ".join(c.split()) for c in cells))
    return "\n".join(lines) + "\n"


def read_failures(source: str | os.PathLike[str] | IO[str]) -> list[Failure]:
    """The rows of a ``failures.tsv`` (a path or an open text file), in file order.

    Raises:
        ManifestError naming the file, the line and its text: a missing or different header, a
        row without four cells, an unknown stage; or a file that does not exist.
    """
    return read_file(source, _parse, "failures")


def _parse(f: IO[str], name: str) -> list[Failure]:
    rows: list[Failure] = []
    for number, text in enumerate(f, start=1):
        line = text.rstrip("\n")
        if number == 1:
            if tuple(line.split("\t")) != FAILURES_HEADER:
                raise ManifestError(name, 1, f"expected the header {' '.join(FAILURES_HEADER)!r}", line)
            continue
        if not line:
            continue
        cells = line.split("\t")
        if len(cells) != len(FAILURES_HEADER):
            raise ManifestError(
                name, number, f"expected {len(FAILURES_HEADER)} tab-separated cells, found {len(cells)}", line
            )
        try:
            rows.append(Failure(*cells))
        except ValueError as e:
            raise ManifestError(name, number, str(e), line) from None
    return rows
