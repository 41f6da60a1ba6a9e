"""Kaldi-style manifests: wav.scp, profile.scp + ark, enrollment lists, reco2num_spk, uem.

Conventions (as FunASR and lhotse read Kaldi data directories):

* one record per line, fields separated by whitespace, the first field is the id;
  blank lines are skipped; there are no comments (Kaldi has none, and ``#`` is a
  valid first character of an id);
* relative paths are resolved against the folder of the manifest that names them,
  so a data directory can be moved as a whole; URLs (``scheme://...``) are kept
  as they are and opened through fsspec by :mod:`diar.audio`;
* a Kaldi pipe (``cmd args |``) is refused unless ``allow_pipes=True``;
* every problem raises :class:`~diar.errors.ManifestError` naming the file, the
  line number and the offending text.

All readers return insertion-ordered dicts (file order).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, AnyStr

import numpy as np

from diar.audio import is_pipe, is_url
from diar.errors import InputError, ManifestError, ProfileError, quote, shorten
from diar.types import MAX_SECONDS

PathLike = str | os.PathLike[str]

#: Name of the speaker-names file written beside ``profile.scp`` (see :func:`write_profiles`).
NAMES_SUFFIX = ".names"


@dataclass(frozen=True)
class Line:
    """One non-blank manifest line: 1-based ``number``, raw ``text`` and its ``fields``."""

    path: str
    number: int
    text: str
    fields: tuple[str, ...]

    def error(self, message: str, text: str | None = None) -> ManifestError:
        return ManifestError(self.path, self.number, message, self.text if text is None else text)


#: Longest manifest line read, in bytes: a longer one is not a manifest (audio, a binary file).
MAX_LINE_BYTES = 1 << 16
#: Malformed lines a reader reports before it stops reading the file.
MAX_BAD_LINES = 5


class LineProblems:
    """The malformed lines of one manifest: a reader goes past each one, to report several
    at once, and stops after :data:`MAX_BAD_LINES` (a binary file given as a manifest has
    malformed lines without end).

    Use ``with problems.catch():`` around the handling of one line, then :meth:`check`.
    """

    def __init__(self, path: str, limit: int = MAX_BAD_LINES) -> None:
        self.path = path
        self.limit = limit
        self.errors: list[ManifestError] = []

    @contextlib.contextmanager
    def catch(self) -> Iterator[None]:
        """Record a ManifestError raised in the block instead of raising it (up to the limit)."""
        try:
            yield
        except ManifestError as error:
            self.add(error)

    def add(self, error: ManifestError) -> None:
        self.errors.append(error)
        if len(self.errors) >= self.limit:
            raise self._summary(stopped=True)

    def check(self) -> None:
        """Raise the first problem, with the count and lines of the others, if there was any."""
        if self.errors:
            raise self._summary(stopped=False)

    def _summary(self, stopped: bool) -> ManifestError:
        first = self.errors[0]
        if len(self.errors) == 1:
            return first
        numbers = ", ".join(str(e.line) for e in self.errors)
        note = f"{len(self.errors)} malformed lines ({numbers})"
        if stopped:
            note += "; stopped reading: is it a manifest?"
        error = ManifestError(first.path, first.line, first.message, first.text, note=note)
        error.__cause__ = first.__cause__
        return error


def _control_character(text: str) -> str | None:
    """The first control character of ``text`` (NUL, ESC, DEL, ...), or None."""
    for char in text:
        if unicodedata.category(char) == "Cc":
            return char
    return None


def _article(noun: str) -> str:
    """ "a" or "an" before ``noun`` as it is read aloud (an RTTM file, a UEM file, an audio file)."""
    if noun[:2].isupper():  # an acronym, spelled out: an RTTM, a UEM
        return "an" if noun[:1] in "AEFHILMNORSX" else "a"
    spoken_vowel = noun[:1].lower() in "aeiou"
    return "an" if spoken_vowel else "a"


def describe_path_error(exc: OSError, what: str) -> str:
    """Why ``what`` cannot be opened, saying what the path is (missing, a folder, a symlink loop)."""
    if isinstance(exc, FileNotFoundError):
        return f"{what} does not exist"
    if isinstance(exc, IsADirectoryError):
        return f"is a directory, not {_article(what)} {what}"
    if exc.errno == errno.ELOOP:
        return "is a symbolic link loop (too many levels of symbolic links)"
    return f"cannot read {what}: {exc.strerror or exc}"


def iter_lines(
    source: PathLike | IO[str], problems: LineProblems | None = None, what: str = "manifest file"
) -> Iterator[Line]:
    """Yield the non-blank lines of a UTF-8 text file (a manifest, an RTTM, ...), split on whitespace.

    ``source`` is a path or an open text file. A byte-order mark before the first line is
    dropped (Windows editors write one). A line that is not UTF-8 or holds a control
    character (NUL, ESC, ...) is malformed: given ``problems`` it is recorded there and
    skipped, else raised. A line longer than :data:`MAX_LINE_BYTES` stops the reading at once
    (the file is not text); so does a path that is a folder, a device or a socket.

    Args:
        what: what the file is, for the errors about the file itself ("RTTM file", ...).
    """
    if not isinstance(source, (str, os.PathLike)):
        yield from _lines(source_name(source), source.readline, _text_line, problems)
        return
    name = os.fspath(source)
    try:
        f = open(name, "rb")
    except OSError as exc:
        raise ManifestError(name, None, describe_path_error(exc, what)) from exc
    mode = os.fstat(f.fileno()).st_mode
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):  # a FIFO is fine: <(cmd)
        from diar.outputs import kind_of

        f.close()
        raise ManifestError(name, None, f"is {kind_of(mode)}, not {_article(what)} {what}")

    def readline(size: int) -> bytes:
        try:
            return f.readline(size)
        except OSError as exc:
            raise ManifestError(name, None, describe_path_error(exc, what)) from exc

    with f:
        yield from _lines(name, readline, _decode_line, problems)


def source_name(source: PathLike | IO[Any]) -> str:
    """How errors name ``source``: its path, or an open file's name (``<stream>`` without one)."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", "<stream>"))


def _lines(
    name: str,
    readline: Callable[[int], AnyStr],
    parse: Callable[[str, int, AnyStr], Line | None],
    problems: LineProblems | None,
) -> Iterator[Line]:
    """:func:`iter_lines`' loop over the bytes of a path or the text of an open file: each line
    ``parse(name, number, raw)``; a malformed one recorded in ``problems`` (else raised)."""
    number = 0
    while True:
        chunk = readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        if len(chunk) > MAX_LINE_BYTES:
            raise _long_line(name, number + 1, chunk[:64])
        for raw in chunk.splitlines():  # \n, \r\n and \r end a line (and, in text, \f, \x85, ...)
            number += 1
            try:
                line = parse(name, number, raw)
            except ManifestError as error:
                if problems is None:
                    raise
                problems.add(error)
                continue
            if line is not None:
                yield line


def _long_line(name: str, number: int, start: str | bytes) -> ManifestError:
    return ManifestError(
        name,
        number,
        f"line longer than {MAX_LINE_BYTES} bytes: not a text file (audio or other binary data?)",
        start,
    )


def _decode_line(name: str, number: int, raw: bytes) -> Line | None:
    try:
        text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(name, number, "line is not valid UTF-8", raw) from exc
    return _split_line(name, number, text)


def _text_line(name: str, number: int, text: str) -> Line | None:
    return _split_line(name, number, text.removeprefix("\ufeff") if number == 1 else text)


def _split_line(name: str, number: int, text: str) -> Line | None:
    fields = tuple(text.split())
    if not fields:
        return None
    for i, value in enumerate(fields, start=1):
        char = _control_character(value)
        if char is not None:
            what = "the id" if i == 1 else f"field {i}"
            raise ManifestError(
                name,
                number,
                f"control character U+{ord(char):04X} in {what}; ids and paths must be text",
                text,
            )
    return Line(name, number, text, fields)


def _table(path: PathLike, num_fields: int, form: str, problems: LineProblems) -> Iterator[Line]:
    for line in iter_lines(path, problems):
        if len(line.fields) != num_fields:
            problems.add(line.error(f"expected {num_fields} fields '{form}', found {len(line.fields)}"))
            continue
        yield line


def _unique(line: Line, key: str, seen: dict[str, int]) -> None:
    if key in seen:
        raise line.error(f"duplicate id {quote(key)} (first on line {seen[key]})")
    seen[key] = line.number


def resolve_source(value: str, base_dir: PathLike) -> str:
    """``value`` as an absolute path (relative to ``base_dir``) unless it is a URL or a pipe."""
    if is_url(value) or is_pipe(value):
        return value
    expanded = os.path.expanduser(value)
    return os.path.normpath(os.path.join(os.path.abspath(os.fspath(base_dir)), expanded))


def _parse_float(line: Line, value: str, what: str) -> float:
    return float(parse_seconds(line, value, what))


#: A decimal number as md-eval and pyannote read one: digits, a point, an exponent (ASCII only).
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def parse_seconds(line: Line, value: str, what: str) -> Decimal:
    """A time field of ``line`` (seconds, exact as written), or the error naming file, line and value.

    Raises:
        ManifestError: not a number, not finite, or beyond :data:`~diar.types.MAX_SECONDS`.
    """
    if _DECIMAL.fullmatch(value) is None:  # Decimal alone takes "1_0", "Infinity", "sNaN", ...
        raise line.error(f"{what} {quote(value)} is not a finite number")
    number = Decimal(value)
    if number.copy_abs() > Decimal(MAX_SECONDS):  # no arithmetic: 1e9999999999 would overflow
        raise line.error(f"{what} {quote(value)} is beyond {MAX_SECONDS:.0e} seconds (31 years): not a time")
    return number


def _check_exists(line: Line, source: str) -> None:
    if not is_url(source) and not is_pipe(source) and not os.path.isfile(source):
        raise line.error(f"file {quote(source)} does not exist")


def read_wav_scp(path: PathLike, allow_pipes: bool = False, check_exists: bool = False) -> dict[str, str]:
    """Read ``<reco-id> <path-or-URL>`` lines.

    Args:
        path: the wav.scp file.
        allow_pipes: accept ``cmd args |`` lines (returned as the command text,
            trailing ``|`` included); refused otherwise, since they run a shell.
        check_exists: also fail on local files that do not exist.

    Returns:
        reco_id -> absolute path, URL or pipe command, in file order.

    Raises:
        ManifestError: a malformed or duplicate line, a refused pipe, or no line at all.
    """
    base = os.path.dirname(os.path.abspath(os.fspath(path)))
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    problems = LineProblems(os.fspath(path))
    for line in iter_lines(path, problems):
        with problems.catch():
            reco_id = line.fields[0]
            if line.fields[-1].endswith("|") and len(line.fields) >= 2:
                if not allow_pipes:
                    raise line.error(
                        "pipe command ('cmd |') refused: it would run a shell command; "
                        "enable pipes explicitly (allow_pipes / audio.allow_pipes) if you trust this manifest"
                    )
                value = line.text.strip()[len(reco_id) :].strip()
            elif len(line.fields) != 2:
                raise line.error(
                    f"expected 2 fields '<reco-id> <path-or-URL>', found {len(line.fields)} "
                    "(paths containing whitespace are not supported)"
                )
            else:
                value = resolve_source(line.fields[1], base)
                if check_exists:
                    _check_exists(line, value)
            _unique(line, reco_id, seen)
            out[reco_id] = value
    problems.check()
    if not out:
        # an empty list is almost always a wrong path or a glob that matched nothing
        raise ManifestError(os.fspath(path), None, "no recordings: the manifest is empty")
    return out


def read_enrollment(path: PathLike, check_exists: bool = False) -> dict[str, list[tuple[str, str]]]:
    """Read ``<reco-id> <speaker> <path-or-URL>`` lines, one per enrollment file.

    A speaker may have several enrollment files (several lines); the same line twice is an error.

    Returns:
        reco_id -> [(speaker, absolute path or URL), ...] in file order.
    """
    base = os.path.dirname(os.path.abspath(os.fspath(path)))
    out: dict[str, list[tuple[str, str]]] = {}
    seen: dict[str, int] = {}
    problems = LineProblems(os.fspath(path))
    for line in _table(path, 3, "<reco-id> <speaker> <path-or-URL>", problems):
        with problems.catch():
            reco_id, speaker, value = line.fields
            if is_pipe(value):
                raise line.error("pipe commands are not supported in enrollment lists")
            source = resolve_source(value, base)
            if check_exists:
                _check_exists(line, source)
            _unique(line, f"{reco_id} {speaker} {source}", seen)
            out.setdefault(reco_id, []).append((speaker, source))
    problems.check()
    return out


def enrollment_from_list(items: Sequence[str]) -> tuple[str, list[tuple[str, str]]]:
    """ModelScope's list input ``[recording, enroll1, enroll2, ...]``.

    Returns:
        (recording source, [("spk1", enroll1), ("spk2", enroll2), ...]).
    """
    if isinstance(items, str) or len(items) < 2:
        raise InputError(
            "expected a list [recording, enroll1, enroll2, ...] with at least one enrollment, "
            f"got {quote(items)}"
        )
    recording, *enrollments = (str(x) for x in items)
    return recording, [(f"spk{i}", source) for i, source in enumerate(enrollments, start=1)]


def read_reco2num_spk(path: PathLike) -> dict[str, int]:
    """Read ``<reco-id> <number-of-speakers>`` lines (a positive integer)."""
    out: dict[str, int] = {}
    seen: dict[str, int] = {}
    problems = LineProblems(os.fspath(path))
    for line in _table(path, 2, "<reco-id> <num-speakers>", problems):
        with problems.catch():
            reco_id, value = line.fields
            if not (value.isascii() and value.isdigit()) or int(value) < 1:
                raise line.error(f"speaker count {quote(value)} is not a positive integer")
            _unique(line, reco_id, seen)
            out[reco_id] = int(value)
    problems.check()
    return out


def read_uem(path: PathLike) -> dict[str, list[tuple[float, float]]]:
    """Read ``<reco-id> <channel> <start> <end>`` lines (seconds).

    A recording may have several lines; its regions are returned sorted with
    overlapping or touching ones merged. The channel field is not interpreted.

    Returns:
        reco_id -> [(start, end), ...].
    """
    regions: dict[str, list[tuple[float, float]]] = {}
    problems = LineProblems(os.fspath(path))
    for line in _table(path, 4, "<reco-id> <channel> <start> <end>", problems):
        with problems.catch():
            reco_id, _channel, start_s, end_s = line.fields
            start = _parse_float(line, start_s, "start")
            end = _parse_float(line, end_s, "end")
            if start < 0 or end <= start:
                raise line.error(f"invalid region start={start_s} end={end_s} (need 0 <= start < end)")
            regions.setdefault(reco_id, []).append((start, end))
    problems.check()
    out: dict[str, list[tuple[float, float]]] = {}
    for reco_id, spans in regions.items():
        merged: list[tuple[float, float]] = []
        for start, end in sorted(spans):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        out[reco_id] = merged
    return out


def validate_ids(path: PathLike, known_ids: Iterable[str], known_name: str = "wav.scp") -> None:
    """Check that every id (first field) of manifest ``path`` is in ``known_ids``.

    Raises:
        ManifestError naming ``path``, the line and the unknown id, e.g. a
        profile.scp id that is not in wav.scp.
    """
    known = set(known_ids)
    problems = LineProblems(os.fspath(path))
    for line in iter_lines(path, problems):
        if line.fields[0] not in known:
            problems.add(line.error(f"recording id {quote(line.fields[0])} is not in {shorten(known_name)}"))
    problems.check()


# --------------------------------------------------------------------------- profiles

_ARK_VALUE = re.compile(r"^(?P<path>.+):(?P<offset>\d+)(?P<slice>\[[0-9:, ]*\])?$")


def read_profile_scp(path: PathLike) -> dict[str, str]:
    """Read ``<reco-id> <ark-path>:<offset>`` lines.

    Relative ark paths are resolved against the scp's folder.

    Returns:
        reco_id -> ``/abs/path.ark:offset`` (kaldiio rxfilename), in file order.
    """
    base = os.path.dirname(os.path.abspath(os.fspath(path)))
    out: dict[str, str] = {}
    seen: dict[str, int] = {}
    problems = LineProblems(os.fspath(path))
    for line in _table(path, 2, "<reco-id> <ark-path>:<offset>", problems):
        with problems.catch():
            reco_id, value = line.fields
            match = _ARK_VALUE.match(value)
            if match is None:
                raise line.error(f"expected '<ark-path>:<byte-offset>', got {quote(value)}")
            ark = resolve_source(match["path"], base)
            _unique(line, reco_id, seen)
            out[reco_id] = f"{ark}:{match['offset']}{match['slice'] or ''}"
    problems.check()
    return out


def ark_path(rxfilename: str) -> str:
    """The ark file of a ``<ark-path>:<offset>`` value of :func:`read_profile_scp`."""
    match = _ARK_VALUE.match(rxfilename)
    return match["path"] if match is not None else rxfilename


def names_path_for(profile_scp: PathLike) -> Path:
    """The speaker-names file beside a profile scp: ``profile.scp`` -> ``profile.names``."""
    return Path(profile_scp).with_suffix(NAMES_SUFFIX)


def read_profile_names(path: PathLike) -> dict[str, tuple[str, ...]]:
    """Read a speaker-names file: ``<reco-id> <name1> <name2> ...``, one name per profile row."""
    out: dict[str, tuple[str, ...]] = {}
    seen: dict[str, int] = {}
    problems = LineProblems(os.fspath(path))
    for line in iter_lines(path, problems):
        with problems.catch():
            reco_id, names = line.fields[0], line.fields[1:]
            if not names:
                raise line.error("expected '<reco-id> <name1> <name2> ...', found no names")
            if len(set(names)) != len(names):
                raise line.error("duplicate speaker name")
            _unique(line, reco_id, seen)
            out[reco_id] = tuple(names)
    problems.check()
    return out


def read_profiles(
    profile_scp: PathLike, names: PathLike | None = None
) -> dict[str, tuple[np.ndarray, tuple[str, ...] | None]]:
    """Load every profile matrix named by a profile.scp.

    Args:
        profile_scp: ``<reco-id> <ark-path>:<offset>`` lines.
        names: speaker-names file; by default ``<scp stem>.names`` beside the scp if it exists.

    Returns:
        reco_id -> (profiles of shape (num_speakers, dim) float32, speaker names or None).

    Raises:
        ManifestError naming the scp, the line and the value for an unreadable
        ark/offset or a non-matrix entry; naming the names file for a count mismatch.
    """
    import kaldiio

    scp_name = os.fspath(profile_scp)
    entries = read_profile_scp(scp_name)
    numbers = {line.fields[0]: line for line in iter_lines(scp_name)}
    names_file = Path(names) if names is not None else names_path_for(scp_name)
    all_names: dict[str, tuple[str, ...]] = {}
    if names is not None or names_file.exists():
        all_names = read_profile_names(names_file)
        unknown = [r for r in all_names if r not in entries]
        if unknown:
            line = next(li for li in iter_lines(names_file) if li.fields[0] == unknown[0])
            raise line.error(f"recording id {quote(unknown[0])} is not in {scp_name}")
    out: dict[str, tuple[np.ndarray, tuple[str, ...] | None]] = {}
    for reco_id, value in entries.items():
        line = numbers[reco_id]
        match = _ARK_VALUE.match(value)
        if match is None:  # read_profile_scp checked the form already
            raise line.error("expected '<ark-path>:<byte-offset>'", line.fields[1])
        ark, offset = match["path"], int(match["offset"])
        if not os.path.isfile(ark):
            raise line.error(f"cannot read ark entry: ark file {quote(ark)} does not exist", line.fields[1])
        if offset >= os.path.getsize(ark):
            raise line.error(
                f"cannot read ark entry: offset {offset} is beyond the end of {quote(ark)} "
                f"({os.path.getsize(ark)} bytes)",
                line.fields[1],
            )
        try:
            matrix = kaldiio.load_mat(value)
        except Exception as exc:  # kaldiio: ValueError, AssertionError, struct.error, ... on bad offsets
            detail = f"{type(exc).__name__}: {exc}".rstrip(": ")
            raise line.error(
                f"cannot read ark entry: no Kaldi matrix at byte offset {offset} ({detail})", line.fields[1]
            ) from exc
        matrix = np.asarray(matrix)
        if matrix.ndim != 2 or matrix.shape[0] == 0 or not np.issubdtype(matrix.dtype, np.floating):
            raise line.error(
                "profile must be a non-empty float matrix (speakers x dim), "
                f"got {matrix.dtype} {matrix.shape}",
                line.fields[1],
            )
        if not np.isfinite(matrix).all():
            raise line.error("profile holds NaN or infinite values", line.fields[1])
        speaker_names = all_names.get(reco_id)
        if speaker_names is not None and len(speaker_names) != matrix.shape[0]:
            raise ManifestError(
                os.fspath(names_file),
                None,
                f"{len(speaker_names)} names for recording {quote(reco_id)} but its profile has "
                f"{matrix.shape[0]} rows",
            )
        zero = np.flatnonzero(np.linalg.norm(matrix.astype(np.float64), axis=1) < 1e-6)
        if len(zero):
            who = f"speaker {quote(speaker_names[zero[0]])}" if speaker_names else f"row {zero[0] + 1}"
            raise line.error(
                f"the profile of {who} is all zeros (made from silent enrollment?); make it again "
                "from speech",
                line.fields[1],
            )
        out[reco_id] = (matrix.astype(np.float32, copy=False), speaker_names)
    return out


def profile_paths(out_dir_or_prefix: PathLike) -> tuple[Path, Path, Path]:
    target = os.fspath(out_dir_or_prefix)
    if target.endswith(("/", os.sep)) or os.path.isdir(target):
        prefix = Path(target) / "profile"
    else:
        prefix = Path(target)
    prefix = prefix.absolute()
    return (
        prefix.with_name(prefix.name + ".ark"),
        prefix.with_name(prefix.name + ".scp"),
        prefix.with_name(prefix.name + NAMES_SUFFIX),
    )


#: One recording's enrollment files: ((speaker, path or URL), ...).
Enrollment = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ProfileSources:
    """The speaker profiles of a corpus's recordings (profile mode), read once by whoever
    lists the recordings (``diar diarize``, the job's driver) and handed to each recording.

    Attributes:
        stored: reco_id -> (profiles of shape (num_speakers, dim), names or None), from a
            profile.scp (and the profile.names beside it).
        enrollment: reco_id -> its enrollment files, embedded when the recording comes.
    """

    stored: Mapping[str, tuple[np.ndarray, tuple[str, ...] | None]] = field(default_factory=dict)
    enrollment: Mapping[str, Enrollment] = field(default_factory=dict)

    @classmethod
    def read(cls, profile_scp: PathLike | None = None, enroll: PathLike | None = None) -> ProfileSources:
        """Read a profile.scp (with its ark files) and an enrollment list, either or both
        (ManifestError naming the file and line for a bad one)."""
        stored = read_profiles(profile_scp) if profile_scp else {}
        enrollment = read_enrollment(enroll) if enroll else {}
        return cls(stored, {reco_id: tuple(files) for reco_id, files in enrollment.items()})

    def of(self, reco_id: str) -> tuple[np.ndarray | None, tuple[str, ...] | None, Enrollment | None]:
        """``(profiles, names, None)`` from the profile.scp, else ``(None, None, enrollment files)``,
        else all None."""
        if reco_id in self.stored:
            profiles, names = self.stored[reco_id]
            return profiles, names, None
        return None, None, self.enrollment.get(reco_id)


def write_profiles(
    out_dir_or_prefix: PathLike,
    profiles: Mapping[str, tuple[np.ndarray, Sequence[str] | None]],
) -> Path:
    """Write profiles as a Kaldi ark + scp (+ names file), each file atomically.

    ``out_dir_or_prefix`` is an existing directory (or ends with ``/``; files
    ``profile.ark``, ``profile.scp``, ``profile.names`` inside it) or a prefix
    (``out/spk`` -> ``out/spk.ark``, ``out/spk.scp``, ``out/spk.names``).

    * ``.ark``: Kaldi binary float32 matrices (speakers x dim), keyed by recording id;
    * ``.scp``: ``<reco-id> <absolute-ark-path>:<offset>``, readable by kaldiio
      (``kaldiio.load_scp``) from any working directory;
    * ``.names``: ``<reco-id> <name1> <name2> ...`` (one name per matrix row), only
      for recordings whose names are given; not written when none are.

    The scp is written last, after removing any old one, so a reader never sees a scp
    pointing into a half-written ark (:func:`diar.formats.kaldi.write_ark`).

    Args:
        profiles: reco_id -> (matrix of shape (num_speakers, dim), names or None).

    Returns:
        path of the written scp.
    """
    from diar.formats import atomic_open
    from diar.formats.kaldi import check_key, write_ark

    ark_path, scp_path, names_path = profile_paths(out_dir_or_prefix)
    names_lines: list[str] = []

    def checked() -> Iterable[tuple[str, np.ndarray]]:
        for reco_id, (matrix, names) in profiles.items():
            mat = np.asarray(matrix)
            if mat.ndim != 2 or mat.shape[0] == 0:
                raise ProfileError(
                    f"profile of {quote(reco_id)} must be (speakers, dim), got shape {mat.shape}"
                )
            if names is not None:
                names = [str(n) for n in names]
                if len(names) != mat.shape[0]:
                    raise ProfileError(f"{len(names)} names for {mat.shape[0]} profiles of {quote(reco_id)}")
                for name in names:
                    check_key(name, "speaker name")
                names_lines.append(" ".join([reco_id, *names]) + "\n")
            yield reco_id, mat

    write_ark(ark_path, scp_path, checked())
    if names_lines:
        with atomic_open(names_path, "w") as f:
            f.write("".join(names_lines))
    else:
        names_path.unlink(missing_ok=True)
    return scp_path


def write_table(f: IO[str], rows: Mapping[str, object]) -> None:
    """Write ``<id> <value>`` lines (e.g. a wav.scp or reco2num_spk) to a text file object."""
    from diar.formats.kaldi import check_key

    for key, value in rows.items():
        check_key(key)
        f.write(f"{key} {value}\n")


# --------------------------------------------------------------------------- ids and file names

_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
_MAX_NAME_BYTES = 200


def safe_filename(reco_id: str) -> str:
    """A file name for ``reco_id`` that cannot leave its folder and never collides.

    Characters outside ``[A-Za-z0-9._-]`` (``/``, ``%``, spaces, non-ASCII, ...) are
    percent-encoded as UTF-8 bytes, and a leading ``.`` is encoded too, so the
    result is never ``.``, ``..`` or a hidden file. The encoding is injective
    (:func:`reco_id_from_filename` inverts it). Names longer than 200 bytes are
    cut and end with a hash of the full id, which keeps them distinct.
    """
    if not reco_id:
        raise InputError("an empty recording id has no file name")
    parts: list[str] = []
    for i, char in enumerate(reco_id):
        if char in _SAFE and not (i == 0 and char == "."):
            parts.append(char)
        else:
            parts.extend(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
    name = "".join(parts)
    if len(name) > _MAX_NAME_BYTES:
        digest = hashlib.sha256(reco_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        name = f"{name[: _MAX_NAME_BYTES - 17]}~{digest}"
    return name


def reco_id_from_filename(name: str) -> str:
    """Invert :func:`safe_filename` (not for hashed, shortened names)."""
    from urllib.parse import unquote

    return unquote(name, encoding="utf-8", errors="strict")


def reco_id_from_path(path: str) -> str:
    """Default recording id of an audio path or URL: the file name without its last extension."""
    from urllib.parse import unquote, urlparse

    tail = unquote(urlparse(path).path) if is_url(path) else path
    stem = Path(tail.rstrip("/")).stem
    if not stem:
        raise InputError(f"cannot derive a recording id from {quote(path)}")
    char = _control_character(stem)
    if char is not None:
        raise InputError(
            f"{quote(path)}: control character U+{ord(char):04X} in its name, which would be the "
            "recording id; rename the file or list it in a wav.scp with another id"
        )
    return stem
