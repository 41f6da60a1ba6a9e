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

from diar.errors import FormatError, quote
from diar.linking import SpeakerLink
from diar.manifests import Line, LineProblems, iter_lines, parse_seconds, source_name

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
    """Read a ``speakers.tsv`` (a path or an open text file), by the manifests' line reader
    (a byte-order mark dropped; a folder, a device or binary data refused).

    Raises:
        ManifestError: naming the file and line of a malformed row (a missing header, another
            field count, seconds that are no finite number >= 0, a (recording, speaker) twice,
            a global speaker twice in one recording), or a missing file.
    """
    problems = LineProblems(source_name(source))
    rows: list[SpeakerLink] = []
    seen: tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]] = ({}, {})
    header = True
    for line in iter_lines(source, problems, what="speakers.tsv"):
        if header:
            if line.fields != HEADER or line.number != 1:
                raise line.error(f"expected the header {' '.join(HEADER)}, got", line.text.strip())
            header = False
            continue
        with problems.catch():
            rows.append(_row(line, seen))
    problems.check()
    return rows


def _row(line: Line, seen: tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]) -> SpeakerLink:
    """One row; ``seen``: the line of each (recording, speaker) and (recording, global speaker) so far."""
    if len(line.fields) != 4:
        raise line.error(f"expected 4 tab-separated fields, got {len(line.fields)}")
    reco_id, speaker, global_speaker, value = line.fields
    seconds = parse_seconds(line, value, "seconds")
    if seconds < 0:
        raise line.error(f"seconds {quote(value)} is negative")
    for label, what, table in ((speaker, "speaker", seen[0]), (global_speaker, "global speaker", seen[1])):
        first = table.setdefault((reco_id, label), line.number)
        if first != line.number:
            raise line.error(
                f"{what} {quote(label)} of recording {quote(reco_id)} twice (first on line {first})"
            )
    return SpeakerLink(reco_id, speaker, global_speaker, float(seconds))
