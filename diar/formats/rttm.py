"""NIST RTTM: reader and writer.

Written lines have the 10 fields md-eval and pyannote expect::

    SPEAKER <reco-id> 1 <start> <duration> <NA> <NA> <speaker> <NA> <NA>

with channel 1 and times in seconds with 3 decimals. Times are rounded to whole
milliseconds first and the duration is taken between the rounded bounds, so
``start + duration`` read back is exactly the rounded end; turns that last 0 ms
after rounding are dropped. Ids and speaker labels containing whitespace cannot
be represented and raise :class:`~diar.errors.FormatError`.

The reader accepts any number of decimals, 9 or 10 fields (FunASR writes 9),
skips ``;;`` comment lines and non-``SPEAKER`` lines (``SPKR-INFO``, ...),
drops zero-length turns, and reports malformed lines with file and line number.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import IO

from diar.errors import FormatError, ManifestError, quote
from diar.formats import as_annotations, read_text
from diar.types import Annotation, Turn, is_token


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


def _decimal(value: str) -> Decimal | None:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def read_rttm(source: str | os.PathLike[str] | IO[str]) -> dict[str, Annotation]:
    """Read ``SPEAKER`` lines into one :class:`Annotation` per recording (file order of first turn).

    Args:
        source: a path or an open text file object.

    Raises:
        ManifestError naming the file, the line and its text for a malformed line.
    """
    return read_text(source, _parse, "RTTM")


def _parse(f: IO[str], name: str) -> dict[str, Annotation]:
    turns: dict[str, list[Turn]] = {}
    for number, text in enumerate(f, start=1):
        fields = text.split()
        if not fields or fields[0].startswith(";;") or fields[0] != "SPEAKER":
            if fields and not fields[0].startswith(";;") and not fields[0].isupper():
                raise ManifestError(
                    name, number, f"unknown RTTM line type {quote(fields[0])}", text.rstrip("\n")
                )
            continue
        if len(fields) not in (9, 10):
            raise ManifestError(
                name,
                number,
                "expected 10 fields 'SPEAKER <file> <chnl> <tbeg> <tdur> <ortho> <stype> <name> <conf>"
                f" <slat>', found {len(fields)}",
                text.rstrip("\n"),
            )
        reco_id, start_s, dur_s, speaker = fields[1], fields[3], fields[4], fields[7]
        start, dur = _decimal(start_s), _decimal(dur_s)
        if start is None or dur is None:
            raise ManifestError(name, number, "onset or duration is not a finite number", text.rstrip("\n"))
        if start < 0 or dur < 0:
            raise ManifestError(name, number, "negative onset or duration", text.rstrip("\n"))
        if dur == 0:
            continue
        turns.setdefault(reco_id, []).append(Turn(reco_id, float(start), float(start + dur), speaker))
    return {reco_id: Annotation(reco_id, tuple(ts)) for reco_id, ts in turns.items()}
