"""NIST RTTM: reader and writer.

Written lines have the 10 fields md-eval and pyannote expect::

    SPEAKER <reco-id> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>

with channel 1 and times in seconds with 3 decimals. Times are rounded to whole
milliseconds first and the duration is taken between the rounded bounds, so
``start + duration`` read back is exactly the rounded end; turns that last 0 ms
after rounding are dropped. Ids and speaker labels containing whitespace cannot
be represented and raise :class:`~diar.errors.FormatError`.

The reader accepts any number of decimals, 9 or 10 fields (FunASR writes 9) and a
UTF-8 byte-order mark, skips ``;;`` comment lines and the other RTTM line types
(``SPKR-INFO``, ``SEGMENT``, ...), drops zero-length turns, and reports malformed lines
(an unknown type, a time that is not a finite number of seconds) with file and line number.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from decimal import Decimal
from typing import IO

from diar.errors import FormatError, quote
from diar.formats import as_annotations, read_text
from diar.manifests import Line, LineProblems, parse_seconds
from diar.types import MAX_SECONDS, Annotation, Turn, is_token


def _check(value: str, what: str, reco_id: str) -> None:
    if not is_token(value):
        raise FormatError(
            f"RTTM cannot hold {what} {quote(value)} of recording {quote(reco_id)}: "
            "it is empty or contains whitespace"
        )


def to_milliseconds(seconds: float) -> int:
    """Seconds rounded to the nearest whole millisecond (half up)."""
    return math.floor(seconds * 1000 + 0.5)


def _ms(value: int) -> str:
    return f"{value // 1000}.{value % 1000:03d}"


def format_rttm_lines(annotation: Annotation) -> list[str]:
    """The RTTM lines of one annotation (newline-terminated), zero-length turns dropped."""
    _check(annotation.reco_id, "recording id", annotation.reco_id)
    lines = []
    for turn in annotation.turns:
        _check(turn.speaker, "speaker label", annotation.reco_id)
        start, end = to_milliseconds(turn.start), to_milliseconds(turn.end)
        if end <= start:
            continue
        times = f"{_ms(start)} {_ms(end - start)}"
        lines.append(f"SPEAKER {annotation.reco_id} 1 {times} <NA> <NA> {turn.speaker} <NA> <NA>\n")
    return lines


def write_rttm(annotations: Annotation | Iterable[Annotation], f: IO[str]) -> int:
    """Write annotations to a text file object, in the given order; returns the number of lines.

    Every annotation is checked before anything is written.
    """
    blocks = [format_rttm_lines(a) for a in as_annotations(annotations)]
    count = 0
    for lines in blocks:
        f.writelines(lines)
        count += len(lines)
    return count


#: RTTM line types besides SPEAKER (NIST RT-09 evaluation plan, appendix A): read and skipped.
OTHER_TYPES = frozenset(
    {
        "SEGMENT", "NOSCORE", "NO_RT_METADATA", "LEXEME", "NON-LEX", "NON-SPEECH", "FILLER",
        "EDIT", "IP", "SU", "CB", "A/P", "SPKR-INFO",
    }
)  # fmt: skip


def read_rttm(source: str | os.PathLike[str] | IO[str]) -> dict[str, Annotation]:
    """Read ``SPEAKER`` lines into one :class:`Annotation` per recording (file order of first turn).

    Args:
        source: a path or an open text file object (a UTF-8 byte-order mark is dropped).

    Raises:
        ManifestError naming the file, the line and its text for a malformed line (up to
        :data:`~diar.manifests.MAX_BAD_LINES` of them in one message): an unknown line type,
        another field count, an onset or duration that is no finite number of seconds, negative,
        or beyond :data:`~diar.types.MAX_SECONDS`.
    """
    return read_text(source, _parse, "RTTM")


def _parse(lines: Iterable[Line], problems: LineProblems) -> dict[str, Annotation]:
    turns: dict[str, list[Turn]] = {}
    for line in lines:
        with problems.catch():
            turn = _turn(line)
            if turn is not None:
                turns.setdefault(turn.reco_id, []).append(turn)
    return {reco_id: Annotation(reco_id, tuple(ts)) for reco_id, ts in turns.items()}


def _turn(line: Line) -> Turn | None:
    fields = line.fields
    kind = fields[0]
    if kind.startswith(";;"):
        return None
    if kind != "SPEAKER":
        if kind in OTHER_TYPES:
            return None
        raise line.error(f"unknown RTTM line type {quote(kind)} (SPEAKER, SPKR-INFO, ...)")
    if len(fields) not in (9, 10):
        raise line.error(
            "expected 10 fields 'SPEAKER <file> <chnl> <tbeg> <tdur> <ortho> <stype> <name> <conf>"
            f" <slat>', found {len(fields)}"
        )
    reco_id, speaker = fields[1], fields[7]
    start = parse_seconds(line, fields[3], "onset")
    dur = parse_seconds(line, fields[4], "duration")
    if start < 0 or dur < 0:
        raise line.error("negative onset or duration")
    if start + dur > Decimal(MAX_SECONDS):
        raise line.error(f"the turn ends beyond {MAX_SECONDS:.0e} seconds (31 years): not a time")
    if dur == 0:
        return None
    return Turn(reco_id, float(start), float(start + dur), speaker)
