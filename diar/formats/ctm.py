"""Kaldi / NIST CTM (time-marked words): reader and writer.

One word per line, as Kaldi's ``lattice-to-ctm-conf`` and NIST sclite read them::

    <reco-id> <channel> <start> <duration> <word> [<confidence>]

A speaker-attributed CTM (``diar attribute``) adds the speaker as a seventh field, after
the confidence (``NA`` when the ASR system gave none)::

    <reco-id> <channel> <start> <duration> <word> <confidence|NA> <speaker>

Times are written in seconds with 3 decimals: both bounds are rounded to whole
milliseconds and the duration is taken between them, so ``start + duration`` read back is
exactly the rounded end. The reader accepts any number of decimals, 5, 6 or 7 fields,
``NA`` (or ``<NA>``) for the confidence, and skips blank lines and ``;;`` comments; a
malformed line raises :class:`~diar.errors.ManifestError` naming the file, the line and
the value. Words keep the file's order.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from typing import IO

from diar.errors import FormatError, ManifestError, quote
from diar.formats import read_file
from diar.formats.rttm import to_milliseconds
from diar.types import is_token
from diar.words import Word

#: What the confidence field holds when there is none.
NO_CONFIDENCE = ("NA", "<NA>")


def _ms(value: int) -> str:
    return f"{value // 1000}.{value % 1000:03d}"


def _token(value: str, what: str, word: Word) -> str:
    if not is_token(value):
        raise FormatError(
            f"CTM cannot hold {what} {quote(value)} of recording {quote(word.reco_id)} "
            f"at {word.start:.3f} s: it is empty or contains whitespace"
        )
    return value


def format_ctm_line(word: Word) -> str:
    """The CTM line of one word (newline-terminated); 7 fields when it has a speaker."""
    fields = [
        _token(word.reco_id, "recording id", word),
        _token(word.channel, "channel", word),
    ]
    start, end = to_milliseconds(word.start), to_milliseconds(word.end)
    fields += [_ms(start), _ms(end - start), _token(word.text.strip(), "word", word)]
    if word.confidence is not None or word.speaker is not None:
        fields.append(NO_CONFIDENCE[0] if word.confidence is None else repr(float(word.confidence)))
    if word.speaker is not None:
        fields.append(_token(word.speaker, "speaker label", word))
    return " ".join(fields) + "\n"


def write_ctm(words: Iterable[Word], f: IO[str]) -> int:
    """Write words to a text file object, in the given order; returns the number of lines.

    Every word is checked before anything is written.
    """
    lines = [format_ctm_line(w) for w in words]
    f.writelines(lines)
    return len(lines)


def read_ctm(source: str | os.PathLike[str] | IO[str]) -> list[Word]:
    """The words of a CTM file, in file order (see the module docstring for the fields).

    Raises:
        ManifestError naming the file, the line and the value for a malformed line.
    """
    return read_file(source, _parse, "CTM")


def _number(value: str) -> Decimal | None:
    try:
        number = Decimal(value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _parse(f: IO[str], name: str) -> list[Word]:
    words: list[Word] = []
    for number, text in enumerate(f, start=1):
        fields = text.split()
        if not fields or fields[0].startswith(";;"):
            continue
        line = text.rstrip("\n")
        if len(fields) not in (5, 6, 7):
            raise ManifestError(
                name,
                number,
                "expected 5 to 7 fields '<reco-id> <channel> <start> <duration> <word> [<confidence>] "
                f"[<speaker>]', found {len(fields)}",
                line,
            )
        reco_id, channel, start_s, dur_s, word = fields[:5]
        start, dur = _number(start_s), _number(dur_s)
        if start is None or start < 0:
            raise ManifestError(name, number, f"start time {quote(start_s)} is not a number >= 0", line)
        if dur is None or dur < 0:
            raise ManifestError(name, number, f"duration {quote(dur_s)} is not a number >= 0", line)
        confidence = None
        if len(fields) >= 6 and fields[5] not in NO_CONFIDENCE:
            conf = _number(fields[5])
            if conf is None:
                raise ManifestError(
                    name, number, f"confidence {quote(fields[5])} is not a number or NA", line
                )
            confidence = float(conf)
        speaker = fields[6] if len(fields) == 7 else None
        begin = float(start)
        end = float(start + dur)
        if not math.isfinite(end):
            raise ManifestError(name, number, f"end time {start_s} + {dur_s} is too large", line)
        words.append(Word(reco_id, begin, end, word, channel, confidence, speaker))
    return words
