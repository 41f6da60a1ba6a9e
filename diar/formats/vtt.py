"""WebVTT subtitles with speaker names (voice spans): reader and writer.

A ``WEBVTT`` header, then one cue per utterance, numbered from 1, its speaker as a voice
span that covers the whole cue (the W3C WebVTT ``<v>`` tag; browsers show it, captions
players style it)::

    WEBVTT

    1
    00:00:01.250 --> 00:00:03.900
    <v spk1>Hello there, how are
    you today?

Times are ``HH:MM:SS.mmm``; ``&``, ``<`` and ``>`` in the text are escaped. A WebVTT file
holds one recording: the reader takes its id from the caller. It accepts ``MM:SS.mmm``
times, cue settings, ``NOTE``/``STYLE``/``REGION`` blocks, a closing ``</v>`` and other
tags (dropped), and reports a malformed file or cue with its file, line and value
(:class:`~diar.errors.ManifestError`).
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Iterable
from typing import IO

from diar.errors import FormatError, ManifestError, quote
from diar.formats import read_file
from diar.formats.srt import blocks, cue_lines, parse_cue, write_cues
from diar.words import Utterance

_VOICE = re.compile(r"^<v(?:\.[^\s>]*)?[ \t]+([^>]+)>")
_TAG = re.compile(r"</?[^>\n]*>")


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cue_text(cue: Utterance) -> str:
    lines = [_escape(line) for line in cue_lines(cue, "WebVTT")]
    if cue.speaker is not None:
        if not cue.speaker.strip() or "\n" in cue.speaker:
            raise FormatError(f"WebVTT cannot name speaker {quote(cue.speaker)}: empty or holds a newline")
        lines[0] = f"<v {_escape(cue.speaker.strip())}>{lines[0]}"
    return "\n".join(lines)


def write_vtt(cues: Iterable[Utterance], f: IO[str]) -> int:
    """Write cues (of one recording, in time order) as WebVTT; returns the number of cues."""
    return write_cues(cues, f, _cue_text, ".", header="WEBVTT\n\n")


def read_vtt(source: str | os.PathLike[str] | IO[str], reco_id: str) -> list[Utterance]:
    """The cues of a WebVTT file as utterances of ``reco_id`` (speaker None without a voice span)."""
    return read_file(source, lambda f, name: _parse(f, name, reco_id), "WebVTT")


def _parse(f: IO[str], name: str, reco_id: str) -> list[Utterance]:
    cues = []
    found = list(blocks(f))
    if not found or not (found[0][1][0] == "WEBVTT" or found[0][1][0].startswith(("WEBVTT ", "WEBVTT\t"))):
        raise ManifestError(name, 1, "a WebVTT file starts with 'WEBVTT'", found[0][1][0] if found else "")
    for first, lines in found[1:]:
        if lines[0].startswith(("NOTE", "STYLE", "REGION")) and "-->" not in lines[0]:
            continue
        at = 0 if "-->" in lines[0] else 1  # an optional cue identifier first
        start, end, text = parse_cue(name, first, lines, at, ".")
        m = _VOICE.match(text)
        speaker = html.unescape(m.group(1).strip()) if m else None
        body = _TAG.sub("", text[m.end() :] if m else text)
        cues.append(Utterance(reco_id, start, end, speaker, html.unescape(body)))
    return cues
