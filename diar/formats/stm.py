"""NIST STM (segment time marks) with speakers: reader and writer.

One line per utterance, what NIST sclite/asclite take as a reference and MeetEval
(``meeteval-wer cpwer/tcpwer -h hyp.stm``) takes as a speaker-attributed hypothesis::

    <reco-id> <channel> <speaker> <start> <end> <transcript ...>

Times are written in seconds with 3 decimals; lines are sorted by recording id, channel and
start, as sclite requires. The reader accepts an optional ``<label>`` field after the end
time, skips blank lines and ``;;`` comments, and reports a malformed line with its file,
line and value (:class:`~diar.errors.ManifestError`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import IO

from diar.errors import FormatError, ManifestError, quote
from diar.formats import read_file
from diar.formats.rttm import to_milliseconds
from diar.types import is_token
from diar.words import Utterance


def _ms(value: int) -> str:
    return f"{value // 1000}.{value % 1000:03d}"


def format_stm_line(u: Utterance) -> str:
    """The STM line of one utterance (newline-terminated; its line breaks become spaces)."""
    for what, value in (("recording id", u.reco_id), ("channel", u.channel), ("speaker", u.speaker or "")):
        if not is_token(value):
            raise FormatError(
                f"STM cannot hold {what} {quote(value)} of recording {quote(u.reco_id)} at {u.start:.3f} s: "
                "it is empty or contains whitespace"
            )
    text = " ".join(u.text.split())
    times = f"{_ms(to_milliseconds(u.start))} {_ms(to_milliseconds(u.end))}"
    return f"{u.reco_id} {u.channel} {u.speaker} {times} {text}\n"


def write_stm(utterances: Iterable[Utterance], f: IO[str]) -> int:
    """Write utterances as STM, sorted by (recording id, channel, start); returns the number of lines."""
    items = sorted(utterances, key=lambda u: (u.reco_id, u.channel, to_milliseconds(u.start)))
    lines = [format_stm_line(u) for u in items]
    f.writelines(lines)
    return len(lines)


def read_stm(source: str | os.PathLike[str] | IO[str]) -> list[Utterance]:
    """The utterances of an STM file, in file order."""
    return read_file(source, _parse, "STM")


def _number(value: str) -> Decimal | None:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() and number >= 0 else None


def _parse(f: IO[str], name: str) -> list[Utterance]:
    out = []
    for number, text in enumerate(f, start=1):
        fields = text.split()
        if not fields or fields[0].startswith(";;"):
            continue
        line = text.rstrip("\n")
        if len(fields) < 5:
            raise ManifestError(
                name,
                number,
                "expected '<reco-id> <channel> <speaker> <start> <end> [<label>] <transcript>', "
                f"found {len(fields)} fields",
                line,
            )
        reco_id, channel, speaker, start_s, end_s = fields[:5]
        start, end = _number(start_s), _number(end_s)
        if start is None:
            raise ManifestError(name, number, f"start time {quote(start_s)} is not a number >= 0", line)
        if end is None or end < start:
            raise ManifestError(name, number, f"end time {quote(end_s)} is not a number >= the start", line)
        words = fields[5:]
        if words and words[0].startswith("<") and words[0].endswith(">"):
            words = words[1:]
        out.append(Utterance(reco_id, float(start), float(end), speaker, " ".join(words), channel))
    return out
