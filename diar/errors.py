"""Error types. Every error a user can cause derives from :class:`DiarError`.

Messages name the file, line, record id and offending value where there is one,
so that the CLI prints them as one line without a traceback.
"""

from __future__ import annotations

import reprlib
from typing import Any

#: Longest text an error message quotes from a value (a config value, a manifest line, a path).
MAX_QUOTE = 200
#: Longest message a command prints for one error (a last guard; :func:`quote` keeps them short).
MAX_MESSAGE = 2000


def _repr_limits(limit: int) -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 12
    r.maxlevel = 4
    return r


def quote(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` for an error message, at most about ``limit`` characters.

    Long strings, bytes and nested containers are cut without ever being expanded whole
    (a YAML alias bomb or a binary "line" of a megabyte stays a short message); a cut
    string says how long it was.
    """
    if isinstance(value, (str, bytes, bytearray)):
        text = repr(value[: limit + 1])  # never the repr of a megabyte
        if len(value) <= limit and len(text) <= limit:
            return text
        unit = "characters" if isinstance(value, str) else "bytes"
        return f"{text[: max(limit - 4, 8)]}...{text[-1]} ({len(value)} {unit})"
    text = _repr_limits(limit).repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def shorten(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` as it is when short, else its beginning and end around ``...`` (paths, commands)."""
    text = str(text)
    if len(text) <= limit:
        return text
    half = max((limit - 3) // 2, 1)
    return f"{text[:half]}...{text[-half:]}"


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line (whitespace runs, newlines included, become one space), capped."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DiarError(Exception):
    """Base of every user-facing error in diar."""


class ManifestError(DiarError):
    """A malformed, duplicate or dangling line in a manifest (wav.scp, profile.scp, ...)."""

    def __init__(
        self,
        path: str,
        line: int | None,
        message: str,
        text: str | bytes | None = None,
        note: str = "",
    ) -> None:
        where = f"{shorten(path)}:{line}" if line is not None else shorten(path)
        detail = f": {quote(text)}" if text is not None else ""
        super().__init__(f"{where}: {message}{detail}" + (f" ({note})" if note else ""))
        self.path = path
        self.line = line
        self.message = message
        self.text = text


class InputError(DiarError, ValueError):
    """A command-line input or output path that cannot be used: no recording id can be made of
    a file name, an output would overwrite an input, an output folder is not writable, ..."""


class AudioError(DiarError):
    """A recording that cannot be used; ``reco_id`` and ``source`` say which."""

    def __init__(self, reco_id: str | None, source: str, message: str) -> None:
        who = f"recording {quote(reco_id)} ({shorten(source)})" if reco_id is not None else shorten(source)
        super().__init__(f"{who}: {message}")
        self.reco_id = reco_id
        self.source = source


class AudioNotFoundError(AudioError):
    """The file or URL does not exist (or answers 404)."""


class AudioDecodeError(AudioError):
    """The bytes are not audio soundfile can decode (corrupt, truncated, not audio)."""


class EmptyAudioError(AudioError):
    """The audio has zero samples."""


class InvalidSamplesError(AudioError):
    """The audio holds NaN or infinite samples."""


class NoSpeechError(AudioError):
    """Audio that must hold speech holds none: a silent enrollment file, or one whose speaker
    embedding is all zeros (its profile would match nobody, or everybody)."""


class ProfileError(DiarError, ValueError):
    """Speaker profiles that cannot diarize a recording: none given for it, none to enroll, a
    row of zeros, another embedder's dimension; the message names the recording."""


class ModelLoadError(DiarError):
    """A model directory or id cannot be loaded; the message says which files to put where."""


class FormatError(DiarError, ValueError):
    """A value an output format cannot hold (e.g. an RTTM speaker label containing whitespace)."""
