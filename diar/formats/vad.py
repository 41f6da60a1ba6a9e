"""ModelScope's ``vad`` diarization output: reader and writer.

One line per recording and speaker, the speaker's turns as ``[start, end]``
pairs in seconds with 2 decimals, in time order::

    <reco-id> <speaker>: [1.00, 3.00], [5.00, 8.00]

Speakers appear in the order of their first turn. Times are rounded to whole
centiseconds (ModelScope's 10 ms frames) and turns that last 0 after rounding
are dropped; a recording without turns has no line. The reader accepts any
number of decimals and reports malformed lines with file and line number.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from typing import IO

from diar.errors import FormatError, quote
from diar.formats import as_annotations, read_text
from diar.manifests import Line, LineProblems, parse_seconds
from diar.types import Annotation, Turn, is_token

_LINE = re.compile(r"^(?P<reco>\S+)\s+(?P<speaker>\S+):(?:\s+(?P<spans>.*?))?\s*$")
_SPAN = re.compile(r"\[\s*(?P<start>[^,\s\]]+)\s*,\s*(?P<end>[^,\s\]]+)\s*\]")


def _cs(seconds: float) -> int:
    return math.floor(seconds * 100 + 0.5)


def _fmt(cs: int) -> str:
    return f"{cs // 100}.{cs % 100:02d}"


def _check(value: str, what: str, reco_id: str) -> None:
    if not is_token(value):
        raise FormatError(
            f"vad format cannot hold {what} {quote(value)} of recording {quote(reco_id)}: "
            "empty or contains whitespace"
        )


def format_vad_lines(annotation: Annotation) -> list[str]:
    """The ``vad`` lines of one annotation (newline-terminated)."""
    _check(annotation.reco_id, "recording id", annotation.reco_id)
    spans: dict[str, list[str]] = {}
    for turn in annotation.turns:
        _check(turn.speaker, "speaker label", annotation.reco_id)
        if turn.speaker.endswith(":"):
            raise FormatError(f"vad format cannot hold speaker label {quote(turn.speaker)} (ends with ':')")
        start, end = _cs(turn.start), _cs(turn.end)
        if end > start:
            spans.setdefault(turn.speaker, []).append(f"[{_fmt(start)}, {_fmt(end)}]")
    return [f"{annotation.reco_id} {speaker}: {', '.join(items)}\n" for speaker, items in spans.items()]


def write_vad(annotations: Annotation | Iterable[Annotation], f: IO[str]) -> int:
    """Write annotations to a text file object; returns the number of lines."""
    blocks = [format_vad_lines(a) for a in as_annotations(annotations)]
    count = 0
    for lines in blocks:
        f.writelines(lines)
        count += len(lines)
    return count


def read_vad(source: str | os.PathLike[str] | IO[str]) -> dict[str, Annotation]:
    """Read ``vad`` lines into one :class:`Annotation` per recording.

    Raises:
        ManifestError naming the file, the line and its text for a malformed line.
    """
    return read_text(source, _parse, "vad")


def _parse(lines: Iterable[Line], problems: LineProblems) -> dict[str, Annotation]:
    turns: dict[str, list[Turn]] = {}
    for line in lines:
        with problems.catch():
            reco_id, found = _turns(line)
            turns.setdefault(reco_id, []).extend(found)
    return {reco_id: Annotation(reco_id, tuple(ts)) for reco_id, ts in turns.items()}


def _turns(line: Line) -> tuple[str, list[Turn]]:
    match = _LINE.match(line.text.strip())
    if match is None:
        raise line.error("expected '<reco-id> <speaker>: [start, end], ...'")
    reco_id, speaker, body = match["reco"], match["speaker"], match["spans"] or ""
    # Everything between the spans must be separators, else part of the line was not understood.
    if _SPAN.sub("", body).replace(",", "").strip():
        raise line.error("malformed '[start, end]' list")
    out = []
    for span in _SPAN.finditer(body):
        start = parse_seconds(line, span["start"], "start")
        end = parse_seconds(line, span["end"], "end")
        if start < 0 or end < start:
            raise line.error(f"invalid turn {quote(span[0])} (need 0 <= start <= end)")
        if end > start:
            out.append(Turn(reco_id, float(start), float(end), speaker))
    return reco_id, out
