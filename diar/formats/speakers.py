"""``speakers.tsv``: which global speaker each recording's speaker is (speaker linking).

Tab-separated, a header line, then one row per (recording, speaker), sorted by
recording id then speaker label::

    reco_id     speaker  global_speaker  seconds
    sim01_2spk  spk1     S0001           31.550

``seconds`` is the speaker's speech in the recording (3 decimals). Within a recording
every global speaker appears at most once, so the table maps both ways.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO

from diar.errors import FormatError, ManifestError, quote
from diar.linking import SpeakerLink

HEADER = ("reco_id", "speaker", "global_speaker", "seconds")


def write_speakers(rows: Iterable[SpeakerLink], f: IO[str]) -> int:
    """Write the rows, sorted, with a header; returns the number of rows.

    Raises:
        FormatError: a field that is empty or holds whitespace.
    """
    ordered = sorted(rows)
    f.write("\t".join(HEADER) + "\n")
    for row in ordered:
        for value, what in ((row.reco_id, "recording id"), (row.speaker, "speaker label")):
            if not value or any(c.isspace() for c in value):
                raise FormatError(f"speakers.tsv cannot hold {what} {quote(value)}: empty or with whitespace")
        if not row.global_speaker or any(c.isspace() for c in row.global_speaker):
            raise FormatError(f"speakers.tsv cannot hold global speaker {quote(row.global_speaker)}")
        f.write(f"{row.reco_id}\t{row.speaker}\t{row.global_speaker}\t{row.seconds:.3f}\n")
    return len(ordered)


def read_speakers(source: str | os.PathLike[str] | IO[str]) -> list[SpeakerLink]:
    """Read a ``speakers.tsv`` (a path or an open text file).

    Raises:
        ManifestError: naming the file and line of a malformed row, or a missing file.
    """
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            with open(name, encoding="utf-8") as f:
                return _parse(f, name)
        except FileNotFoundError:
            raise ManifestError(name, None, "speakers.tsv does not exist") from None
    return _parse(source, str(getattr(source, "name", "<stream>")))


def _parse(f: IO[str], name: str) -> list[SpeakerLink]:
    rows = []
    for number, line in enumerate(f, start=1):
        fields = line.rstrip("\n").split("\t")
        if number == 1:
            if tuple(fields) != HEADER:
                raise ManifestError(
                    name, 1, f"expected the header {' '.join(HEADER)}, got {quote(line.strip())}"
                )
            continue
        if not line.strip():
            continue
        if len(fields) != 4:
            raise ManifestError(name, number, f"expected 4 tab-separated fields, got {len(fields)}")
        try:
            seconds = float(fields[3])
        except ValueError:
            raise ManifestError(name, number, f"seconds {quote(fields[3])} is not a number") from None
        rows.append(SpeakerLink(fields[0], fields[1], fields[2], seconds))
    return rows
