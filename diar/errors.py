"""Error types. Every error a user can cause derives from :class:`DiarError`.

Messages name the file, line, record id and offending value where there is one,
so that the CLI prints them as one line without a traceback.
"""

from __future__ import annotations


class DiarError(Exception):
    """Base of every user-facing error in diar."""


class ManifestError(DiarError):
    """A malformed, duplicate or dangling line in a manifest (wav.scp, profile.scp, ...)."""

    def __init__(self, path: str, line: int | None, message: str, text: str | None = None) -> None:
        where = f"{path}:{line}" if line is not None else str(path)
        detail = f": {text!r}" if text is not None else ""
        super().__init__(f"{where}: {message}{detail}")
        self.path = path
        self.line = line
        self.text = text


class AudioError(DiarError):
    """A recording that cannot be used; ``reco_id`` and ``source`` say which."""

    def __init__(self, reco_id: str | None, source: str, message: str) -> None:
        who = f"recording {reco_id!r} ({source})" if reco_id is not None else str(source)
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


class ModelLoadError(DiarError):
    """A model directory or id cannot be loaded; the message says which files to put where."""


class FormatError(DiarError, ValueError):
    """A value an output format cannot hold (e.g. an RTTM speaker label containing whitespace)."""
