"""Timed words as JSON in the shape of Whisper's result: reader and writer.

The reader takes what openai-whisper (``word_timestamps=True``), faster-whisper and
WhisperX write: an object with ``segments``, each with its ``words``, each word with
``word``, ``start`` and ``end`` (seconds) and optionally ``probability`` (Whisper),
``score`` (WhisperX) or ``confidence``::

    {"segments": [{"start": 0.0, "end": 2.1, "text": " Hello there.",
                   "words": [{"word": " Hello", "start": 0.0, "end": 0.42, "probability": 0.98}, ...]}]}

Such a file holds one recording (Whisper writes one per audio file). Its recording id is the
object's ``reco_id`` when it has one, else the one the caller gives (``diar attribute
--reco-id``), else the file name without its extension (``talk.json`` -> ``talk``), as
``diar diarize`` names a recording after its audio file. A file may also hold a list of
such objects, each with its ``reco_id`` (what the writer writes).

The writer writes that list, one object per recording (in order of first word), its
``segments`` the runs of consecutive words of one speaker, each with its ``speaker`` and
``text``, and every word with its ``speaker``::

    [{"reco_id": "talk", "segments": [{"start": 0.0, "end": 0.9, "speaker": "spk1",
      "text": "Hello there.", "words": [{"word": " Hello", "start": 0.0, "end": 0.42,
      "speaker": "spk1", "probability": 0.98}, ...]}, ...]}]

Times are written rounded to milliseconds. A malformed file or value raises
:class:`~diar.errors.ManifestError` naming the file, the line of the object and the value.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import json.scanner
import math
import os
import re
from collections.abc import Iterable, Sequence
from typing import IO, Any

from diar.errors import ManifestError, quote
from diar.formats import read_file
from diar.formats.rttm import to_milliseconds
from diar.words import Word, join_words

#: Keys a word's confidence may have, in order of preference.
CONFIDENCE_KEYS = ("probability", "score", "confidence")


class _Object(dict):  # type: ignore[type-arg]
    """A JSON object that knows the line it starts on."""

    line: int | None = None


def _load(text: str, name: str) -> Any:
    """``json.loads(text)`` whose objects are :class:`_Object` with their line numbers."""
    newlines = [m.start() for m in re.finditer("\n", text)]
    decoder: Any = json.JSONDecoder()
    json_object: Any = json.decoder.JSONObject  # type: ignore[attr-defined]

    def parse_object(
        s_and_end: tuple[str, int], strict: bool, scan_once: Any, *hooks: Any
    ) -> tuple[_Object, int]:
        pairs, end = json_object(s_and_end, strict, scan_once, None, None)
        obj = _Object(pairs)
        obj.line = bisect.bisect_left(newlines, s_and_end[1]) + 1
        return obj, end

    decoder.parse_object = parse_object
    # the C scanner calls its own object parser: the Python one calls parse_object
    decoder.scan_once = json.scanner.py_make_scanner(decoder)  # type: ignore[attr-defined]
    try:
        return decoder.decode(text)
    except json.JSONDecodeError as e:
        raise ManifestError(name, e.lineno, f"not valid JSON: {e.msg} (column {e.colno})") from None
    except RecursionError:
        raise ManifestError(name, None, "JSON nested too deeply") from None


def _line(obj: Any, parent: Any = None) -> int | None:
    """The line an object starts on; a value that is not an object: its parent's."""
    if isinstance(obj, _Object):
        return obj.line
    return parent.line if isinstance(parent, _Object) else None


def read_words_json(source: str | os.PathLike[str] | IO[str], reco_id: str | None = None) -> list[Word]:
    """The words of a Whisper-style JSON file, in file order (see the module docstring).

    Args:
        reco_id: the recording id of a file holding one recording without a ``reco_id`` key
            (default: the file name without its extension).

    Raises:
        ManifestError naming the file, the line and the value of a malformed entry.
    """
    return read_file(source, lambda f, name: _parse(f.read(), name, reco_id), "JSON")


def _parse(text: str, name: str, reco_id: str | None) -> list[Word]:
    data = _load(text, name)
    if isinstance(data, dict):
        return _recording(data, name, reco_id or _default_id(name))
    if isinstance(data, list):
        words: list[Word] = []
        for k, item in enumerate(data, start=1):
            if not isinstance(item, dict):
                raise ManifestError(name, 1, f"item {k} of the list is not an object: {quote(item)}")
            item_id = item.get("reco_id")
            if not isinstance(item_id, str) or not item_id:
                raise ManifestError(
                    name, _line(item), f"item {k} of the list has no 'reco_id' string: {quote(item_id)}"
                )
            words += _recording(item, name, None)
        return words
    raise ManifestError(name, 1, f"expected an object with 'segments' or a list of them, found {quote(data)}")


def _default_id(name: str) -> str:
    from diar.manifests import reco_id_from_path

    return reco_id_from_path(name)


def _recording(data: dict[str, Any], name: str, default_id: str | None) -> list[Word]:
    reco_id = data.get("reco_id", default_id)
    if not isinstance(reco_id, str) or not reco_id:
        raise ManifestError(name, _line(data), f"'reco_id' is not a non-empty string: {quote(reco_id)}")
    segments = data.get("segments")
    if not isinstance(segments, list):
        raise ManifestError(
            name, _line(data), f"recording {quote(reco_id)}: 'segments' is not a list: {quote(segments)}"
        )
    words: list[Word] = []
    for s, segment in enumerate(segments, start=1):
        where = f"recording {quote(reco_id)} segment {s}"
        if not isinstance(segment, dict):
            raise ManifestError(name, _line(segment, data), f"{where} is not an object: {quote(segment)}")
        items = segment.get("words")
        if not isinstance(items, list):
            raise ManifestError(
                name,
                _line(segment),
                f"{where} has no 'words' list ({quote(items)}); run Whisper with word_timestamps=True",
            )
        for w, item in enumerate(items, start=1):
            words.append(_word(item, name, f"{where} word {w}", reco_id, segment))
    return words


def _seconds(item: dict[str, Any], key: str, name: str, where: str) -> float:
    value = item.get(key)
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ManifestError(name, _line(item), f"{where}: {key!r} is not a number >= 0: {quote(value)}")
    return float(value)


def _word(item: Any, name: str, where: str, reco_id: str, segment: Any) -> Word:
    if not isinstance(item, dict):
        raise ManifestError(name, _line(item, segment), f"{where} is not an object: {quote(item)}")
    text = item.get("word")
    if not isinstance(text, str):
        raise ManifestError(name, _line(item), f"{where}: 'word' is not a string: {quote(text)}")
    start, end = _seconds(item, "start", name, where), _seconds(item, "end", name, where)
    if end < start:
        raise ManifestError(
            name, _line(item), f"{where} {quote(text)}: ends ({end}) before it starts ({start})"
        )
    confidence = None
    for key in CONFIDENCE_KEYS:
        if item.get(key) is not None:
            value = item[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ManifestError(name, _line(item), f"{where}: {key!r} is not a number: {quote(value)}")
            confidence = float(value)
            break
    speaker = item.get("speaker")
    if speaker is not None and not isinstance(speaker, str):
        raise ManifestError(name, _line(item), f"{where}: 'speaker' is not a string: {quote(speaker)}")
    return Word(reco_id, start, end, text, confidence=confidence, speaker=speaker)


# --------------------------------------------------------------------------- writer


def speaker_runs(words: Sequence[Word]) -> list[list[Word]]:
    """Consecutive words of one recording and one speaker, in order."""
    runs: list[list[Word]] = []
    for word in words:
        if runs and (runs[-1][-1].reco_id, runs[-1][-1].speaker) == (word.reco_id, word.speaker):
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def _ms(seconds: float) -> float:
    return to_milliseconds(seconds) / 1000


def to_json(words: Iterable[Word]) -> list[dict[str, Any]]:
    """The writer's data (see the module docstring): one object per recording."""
    by_reco: dict[str, list[Word]] = {}
    for word in words:
        by_reco.setdefault(word.reco_id, []).append(word)
    out = []
    for reco_id, items in by_reco.items():
        segments = []
        for run in speaker_runs(items):
            segment: dict[str, Any] = {"start": _ms(run[0].start), "end": _ms(max(w.end for w in run))}
            if run[0].speaker is not None:
                segment["speaker"] = run[0].speaker
            segment["text"] = join_words([w.text for w in run])
            segment["words"] = [_word_json(w) for w in run]
            segments.append(segment)
        out.append({"reco_id": reco_id, "segments": segments})
    return out


def _word_json(word: Word) -> dict[str, Any]:
    item: dict[str, Any] = {"word": word.text, "start": _ms(word.start), "end": _ms(word.end)}
    if word.speaker is not None:
        item["speaker"] = word.speaker
    if word.confidence is not None:
        item["probability"] = word.confidence
    return item


def write_words_json(words: Iterable[Word], f: IO[str]) -> int:
    """Write words (with their speakers) as JSON to a text file object; returns the number of words."""
    items = list(words)
    f.write(json.dumps(to_json(items), indent=2, ensure_ascii=False) + "\n")
    return len(items)
