"""Transcript types: timed words (what an ASR system gives) and speaker utterances (what a
speaker-attributed transcript is made of: subtitle cues, STM segments).

Times are seconds (floats), as in :mod:`diar.types`; formats round them at their edges.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from diar.errors import quote


def _check_times(what: str, reco_id: str, start: float, end: float) -> None:
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ValueError(f"{what} of {quote(reco_id)} has non-finite times {start}..{end}")
    if start < 0 or end < start:
        raise ValueError(f"{what} of {quote(reco_id)} has invalid times start={start} end={end}")


@dataclass(frozen=True)
class Word:
    """One timed word of a transcript.

    Attributes:
        reco_id: the recording it was said in.
        start, end: seconds (``end >= start``; a word may last 0 s).
        text: the word as the ASR system wrote it (Whisper keeps a leading space).
        channel: the CTM channel ("1" when the source has none).
        confidence: the ASR system's confidence, when it gives one.
        speaker: who said it (None until attributed).
    """

    reco_id: str
    start: float
    end: float
    text: str
    channel: str = "1"
    confidence: float | None = None
    speaker: str | None = None

    def __post_init__(self) -> None:
        _check_times("word", self.reco_id, self.start, self.end)

    @property
    def duration(self) -> float:
        return self.end - self.start

    def with_speaker(self, speaker: str | None) -> Word:
        return replace(self, speaker=speaker)


@dataclass(frozen=True)
class Utterance:
    """What one speaker says between ``start`` and ``end``: a subtitle cue or an STM segment.

    Attributes:
        text: the words, joined (:func:`join_words`); may hold line breaks (subtitles).
        speaker: who says it (None: nobody named, e.g. a cue read from a plain SRT file).
    """

    reco_id: str
    start: float
    end: float
    speaker: str | None
    text: str
    channel: str = "1"

    def __post_init__(self) -> None:
        _check_times("utterance", self.reco_id, self.start, self.end)


def join_words(words: Sequence[str]) -> str:
    """The text of consecutive words: as written when they carry their own spaces (Whisper's
    ``" Hello"``), else separated by one space (CTM)."""
    if any(w[:1].isspace() for w in words[1:]):
        return "".join(words).strip()
    return " ".join(w.strip() for w in words if w.strip())
