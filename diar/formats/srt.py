"""SubRip subtitles (SRT) with speaker names: reader and writer.

One cue per utterance, numbered from 1, the speaker's name in brackets before its text
(as WhisperX and subtitle editors mark speakers)::

    1
    00:00:01,250 --> 00:00:03,900
    [spk1] Hello there, how are
    you today?

Times are ``HH:MM:SS,mmm`` (rounded to milliseconds; hours go past 99 when needed). An
SRT file holds one recording: the reader takes its id from the caller. It accepts ``.``
for ``,``, a missing cue number, CRLF line ends and a byte-order mark; a malformed cue raises
:class:`~diar.errors.ManifestError` naming the file, the line and the value.

The cue blocks, clock and numbering are WebVTT's too: :mod:`diar.formats.vtt` writes and reads
its cues with :func:`write_cues` and :func:`parse_cue`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from diar.errors import FormatError, ManifestError, quote
from diar.formats import read_file
from diar.formats.rttm import to_milliseconds
from diar.words import Utterance

_CLOCK = r"(?:(\d+):)?(\d{1,2}):(\d{2})[,.](\d{3})"
_TIMING = re.compile(rf"^\s*{_CLOCK}\s*-->\s*{_CLOCK}(?:\s+.*)?$")
_SPEAKER = re.compile(r"^\[([^\[\]\n]+)\] ")


def format_clock(seconds: float, separator: str = ",") -> str:
    """Seconds as ``HH:MM:SS,mmm`` (rounded to milliseconds)."""
    ms = to_milliseconds(seconds)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def parse_timing(line: str) -> tuple[float, float] | None:
    """``start --> end`` of a cue's timing line (``[HH:]MM:SS,mmm``, ``,`` or ``.``), or None."""
    m = _TIMING.match(line)
    if m is None:
        return None
    g = m.groups()

    def seconds(h: str | None, mi: str, s: str, ms: str) -> float:
        return int(h or 0) * 3600 + int(mi) * 60 + int(s) + int(ms) / 1000

    return seconds(*g[:4]), seconds(*g[4:])


def blocks(f: IO[str]) -> Iterator[tuple[int, list[str]]]:
    """The blocks of non-blank lines of a subtitle file: (first line number, lines)."""
    block: list[str] = []
    first = 0
    for number, text in enumerate(f, start=1):
        line = text.rstrip("\r\n").lstrip("\ufeff") if number == 1 else text.rstrip("\r\n")
        if line.strip():
            if not block:
                first = number
            block.append(line)
        elif block:
            yield first, block
            block = []
    if block:
        yield first, block


def cue_lines(cue: Utterance, form: str) -> list[str]:
    """The non-blank lines of a cue's text; FormatError for a cue without any (``form``: the
    format's name)."""
    lines = [line for line in cue.text.splitlines() if line.strip()]
    if not lines:
        raise FormatError(
            f"{form} cannot hold an empty cue of recording {quote(cue.reco_id)} at {cue.start:.3f} s"
        )
    return lines


def write_cues(
    cues: Iterable[Utterance],
    f: IO[str],
    cue_text: Callable[[Utterance], str],
    separator: str = ",",
    header: str = "",
) -> int:
    """Write ``header``, then the cues numbered from 1, each its timing line (``separator``
    before the milliseconds) and ``cue_text(cue)``; returns the number of cues.

    Every cue's text is made (and checked) before anything is written.
    """
    texts = [(cue, cue_text(cue)) for cue in cues]
    if header:
        f.write(header)
    for index, (cue, text) in enumerate(texts, start=1):
        timing = f"{format_clock(cue.start, separator)} --> {format_clock(cue.end, separator)}"
        f.write(f"{index}\n{timing}\n{text}\n\n")
    return len(texts)


def parse_cue(
    name: str, first: int, lines: list[str], at: int, separator: str = ","
) -> tuple[float, float, str]:
    """The start, end and text of the cue in the block ``lines`` (from line ``first`` of file
    ``name``) whose timing line is ``lines[at]``; ManifestError for a missing or malformed timing
    line or a cue that ends before it starts."""
    timing = parse_timing(lines[at]) if at < len(lines) else None
    if timing is None:
        raise ManifestError(
            name,
            first + at,
            f"expected a timing line 'HH:MM:SS{separator}mmm --> HH:MM:SS{separator}mmm'",
            lines[min(at, len(lines) - 1)],
        )
    start, end = timing
    if end < start:
        raise ManifestError(name, first + at, "the cue ends before it starts", lines[at])
    return start, end, "\n".join(lines[at + 1 :])


def _cue_text(cue: Utterance) -> str:
    lines = cue_lines(cue, "SRT")
    if cue.speaker is not None:
        if not cue.speaker.strip() or any(c in cue.speaker for c in "[]\n"):
            raise FormatError(
                f"SRT cannot mark speaker {quote(cue.speaker)}: empty or holds [, ] or a newline"
            )
        lines[0] = f"[{cue.speaker}] {lines[0]}"
    return "\n".join(lines)


def write_srt(cues: Iterable[Utterance], f: IO[str]) -> int:
    """Write cues (of one recording, in time order) as SRT; returns the number of cues."""
    return write_cues(cues, f, _cue_text)


def read_srt(source: str | os.PathLike[str] | IO[str], reco_id: str) -> list[Utterance]:
    """The cues of an SRT file as utterances of ``reco_id`` (speaker None where unmarked)."""
    return read_file(source, lambda f, name: _parse(f, name, reco_id), "SRT")


def _parse(f: IO[str], name: str, reco_id: str) -> list[Utterance]:
    cues = []
    for first, lines in blocks(f):
        at = 1 if lines[0].strip().isdigit() else 0
        start, end, text = parse_cue(name, first, lines, at)
        m = _SPEAKER.match(text)
        speaker = m.group(1) if m else None
        cues.append(Utterance(reco_id, start, end, speaker, text[m.end() :] if m else text))
    return cues
