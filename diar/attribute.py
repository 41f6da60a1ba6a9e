"""Speaker-attributed transcripts: who said each word of an ASR transcript.

Every word gets the speaker who talks most during it (the most seconds of their turns
inside the word); a word during which nobody talks (a pause the diarization left out, a
word the ASR system timed at 0 s) gets the speaker of the nearest turn. Overlap-aware and
exclusive turns both work: in an overlap the speaker with more of the word wins.

Words are then grouped into utterances (:func:`utterances`): consecutive words of one
speaker, cut where the speaker changes, at a pause, and before an utterance grows past a
subtitle's length, for SRT / WebVTT cues and STM segments.

The words' order and count are kept: the attributed words are those given, in their order,
with a speaker; a recording without diarization is a :class:`~diar.failures.Failure`
row and its words are left out (``diar attribute`` reports them and exits 1).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from diar.errors import DiarError, ManifestError, one_line, quote, shorten
from diar.failures import Failure
from diar.types import Annotation
from diar.words import Utterance, Word, join_words

#: Defaults of the utterances (subtitle conventions: two lines of 42 characters, 7 s at most).
MAX_SECONDS = 7.0
MAX_CHARS = 84
LINE_CHARS = 42
MAX_GAP = 1.0


@dataclass
class Attribution:
    """The outcome of :func:`attribute`.

    Attributes:
        words: the words of the recordings with diarization, in input order, each with its
            speaker.
        failures: one row per recording whose words could not be attributed (no diarization,
            or a diarization without any turn), in order of first word.
    """

    words: list[Word] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def speaker_time(starts: np.ndarray, ends: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Seconds a speaker talks before each time in ``t``.

    Args:
        starts, ends: shape (n,) the speaker's turns, sorted and not overlapping.
        t: shape (m,) times.

    Returns:
        shape (m,) float64.
    """
    done = np.concatenate([[0.0], np.cumsum(ends - starts)])  # shape: (n + 1,) speech before turn k
    k = np.searchsorted(starts, t, side="right") - 1  # shape: (m,) the last turn starting by t
    inside = np.where(
        k >= 0, np.minimum(t - starts[np.maximum(k, 0)], (ends - starts)[np.maximum(k, 0)]), 0.0
    )
    return done[np.maximum(k, 0)] * (k >= 0) + np.maximum(inside, 0.0)


def turn_distance(starts: np.ndarray, ends: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Seconds from each interval [lo, hi] to the nearest of a speaker's turns (0 when they touch).

    Args:
        starts, ends: shape (n,) the speaker's turns, sorted and not overlapping, n >= 1.
        lo, hi: shape (m,) the intervals.

    Returns:
        shape (m,) float64.
    """
    n = len(starts)
    before = np.searchsorted(starts, hi, side="right") - 1  # shape: (m,) last turn starting by hi
    after = np.minimum(before + 1, n - 1)
    b = np.maximum(before, 0)
    gap_before = np.where(before >= 0, np.maximum(lo - ends[b], 0.0), np.inf)
    gap_after = np.where(starts[after] > hi, starts[after] - hi, np.inf)
    return np.minimum(gap_before, gap_after)


def assign_speakers(words: Sequence[Word], annotation: Annotation) -> list[str]:
    """The speaker of each word of one recording: the one who talks most during it, else
    the one whose turn is nearest (ties: the speaker label that sorts first).

    Raises:
        ValueError: the annotation has no turns (there is nobody to give the words to).
    """
    speakers = annotation.speakers
    if not speakers:
        raise ValueError(f"recording {quote(annotation.reco_id)} has no speaker turns")
    lo = np.array([w.start for w in words], dtype=np.float64)  # shape: (m,)
    hi = np.array([w.end for w in words], dtype=np.float64)
    talk = np.zeros((len(words), len(speakers)))  # shape: (m, S) seconds each speaker talks in each word
    distance = np.zeros((len(words), len(speakers)))  # shape: (m, S)
    merged = Annotation.from_turns(annotation.reco_id, annotation.turns, merge=True)
    for s, speaker in enumerate(speakers):
        turns = [t for t in merged if t.speaker == speaker]  # sorted, not overlapping
        starts = np.array([t.start for t in turns], dtype=np.float64)
        ends = np.array([t.end for t in turns], dtype=np.float64)
        talk[:, s] = speaker_time(starts, ends, hi) - speaker_time(starts, ends, lo)
        distance[:, s] = turn_distance(starts, ends, lo, hi)
    most = np.argmax(talk, axis=1)  # shape: (m,)
    nearest = np.argmin(distance, axis=1)
    rows = np.arange(len(words))
    chosen = np.where(talk[rows, most] > 1e-9, most, nearest)
    return [speakers[k] for k in chosen]


def attribute(words: Sequence[Word], diarization: Mapping[str, Annotation], source: str = "") -> Attribution:
    """Give every word its speaker (:func:`assign_speakers`).

    Args:
        words: the transcript's words, of any recordings, in any order.
        diarization: recording id -> its turns.
        source: where the diarization comes from (named in the failure rows).

    Returns:
        the attributed words in input order, and a failure row per recording left out.
    """
    by_reco: dict[str, list[int]] = {}
    for i, word in enumerate(words):
        by_reco.setdefault(word.reco_id, []).append(i)
    speaker: dict[int, str] = {}
    result = Attribution()
    where = f" in {shorten(source)}" if source else ""
    for reco_id, rows in by_reco.items():
        annotation = diarization.get(reco_id)
        if annotation is None:
            message = (
                f"no diarization of recording {quote(reco_id)}{where}; its {len(rows)} words are left out"
            )
            result.failures.append(Failure(reco_id, "attribute", "MissingDiarization", message))
            continue
        if not len(annotation):
            message = (
                f"recording {quote(reco_id)} has no speaker turns{where}; its {len(rows)} words are left out"
            )
            result.failures.append(Failure(reco_id, "attribute", "NoSpeakerTurns", message))
            continue
        speaker.update(zip(rows, assign_speakers([words[i] for i in rows], annotation), strict=True))
    result.words = [w.with_speaker(speaker[i]) for i, w in enumerate(words) if i in speaker]
    return result


def utterances(
    words: Sequence[Word],
    max_seconds: float = MAX_SECONDS,
    max_chars: int = MAX_CHARS,
    max_gap: float = MAX_GAP,
    line_chars: int = LINE_CHARS,
) -> list[Utterance]:
    """Consecutive words of one speaker as utterances: a new one starts where the recording or
    the speaker changes, after a pause longer than ``max_gap`` seconds, and where the next word
    would make it last more than ``max_seconds`` or hold more than ``max_chars`` characters
    (a single longer word stays whole). Its text is broken into lines of at most
    ``line_chars`` characters (at spaces), as subtitles show it.
    """
    out: list[Utterance] = []
    group: list[Word] = []

    def close() -> None:
        if group:
            text = join_words([w.text for w in group])
            end = max(w.end for w in group)
            out.append(
                Utterance(group[0].reco_id, group[0].start, end, group[0].speaker, wrap(text, line_chars))
            )
            group.clear()

    for word in words:
        if group:
            last = group[-1]
            longer = join_words([*(w.text for w in group), word.text])
            if (
                (word.reco_id, word.speaker, word.channel) != (last.reco_id, last.speaker, last.channel)
                or word.start - last.end > max_gap
                or max(word.end, last.end) - group[0].start > max_seconds
                or len(longer) > max_chars
            ):
                close()
        group.append(word)
    close()
    return out


def wrap(text: str, width: int) -> str:
    """``text`` broken at spaces into lines of at most ``width`` characters (balanced: a text
    that needs two lines is cut near its middle)."""
    if width <= 0 or len(text) <= width:
        return text
    parts = text.split(" ")
    lines_needed = math.ceil(len(text) / width)
    target = math.ceil(len(text) / lines_needed)
    lines: list[str] = []
    current = ""
    for part in parts:
        candidate = f"{current} {part}" if current else part
        if current and (len(candidate) > width or len(current) >= target):
            lines.append(current)
            current = part
        else:
            current = candidate
    lines.append(current)
    return "\n".join(lines)


# --------------------------------------------------------------------------- inputs


def read_words(path: str, kind: str = "auto", reco_id: str | None = None) -> list[Word]:
    """The words of a CTM (``.ctm``) or Whisper-style JSON (``.json``) file.

    Args:
        kind: ``ctm``, ``json``, or ``auto`` (by the file name's suffix).
        reco_id: the recording id of a JSON file of one recording without a ``reco_id`` key.
    """
    from diar.formats.ctm import read_ctm
    from diar.formats.words_json import read_words_json

    if kind == "auto":
        suffix = os.path.splitext(path)[1].lower()
        kinds = {".ctm": "ctm", ".json": "json"}
        if suffix not in kinds:
            raise DiarError(
                f"{shorten(path)}: cannot tell the words' format from its suffix {quote(suffix)}; "
                "name it .ctm or .json, or give --words-format ctm|json"
            )
        kind = kinds[suffix]
    if kind == "ctm":
        if reco_id is not None:
            raise DiarError("--reco-id names the recording of a JSON file; CTM lines name their own")
        return read_ctm(path)
    if kind == "json":
        return read_words_json(path, reco_id)
    raise DiarError(f"unknown words format {quote(kind)}; valid: auto, ctm, json")


#: Where the job's output folder keeps the turns (``diar run``).
OUT_TURNS = "corpus.rttm"


def read_diarization(path: str) -> dict[str, Annotation]:
    """Turns by recording from an RTTM file, a Parquet table (``.parquet``), or the job's
    output folder (its ``corpus.rttm``)."""
    from diar.formats.parquet import read_parquet
    from diar.formats.rttm import read_rttm

    if os.path.isdir(path):
        turns = os.path.join(path, OUT_TURNS)
        if not os.path.isfile(turns):
            raise ManifestError(
                path,
                None,
                f"holds no {OUT_TURNS}: give a finished output folder of the job, an RTTM or Parquet",
            )
        return read_rttm(turns)
    if path.lower().endswith(".parquet"):
        if not os.path.isfile(path):
            raise ManifestError(path, None, "Parquet file does not exist")
        try:
            return read_parquet(path)
        except (OSError, ValueError) as e:  # pyarrow's ArrowInvalid is a ValueError
            raise ManifestError(
                path, None, f"cannot read the Parquet table: {one_line(str(e), 200)}"
            ) from None
    return read_rttm(path)
