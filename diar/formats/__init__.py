"""Output formats, one module each, reader and writer side by side.

* :mod:`diar.formats.rttm`: NIST RTTM (``write_rttm``, ``read_rttm``);
* :mod:`diar.formats.vad`: ModelScope's per-speaker ``vad`` lines (``write_vad``, ``read_vad``);
* :mod:`diar.formats.parquet`: a pyarrow table (``write_parquet``, ``read_parquet``).

Transcripts (``diar attribute``, :mod:`diar.words`):

* :mod:`diar.formats.ctm`: Kaldi/NIST CTM words, with a speaker field (``write_ctm``, ``read_ctm``);
* :mod:`diar.formats.words_json`: Whisper-style JSON words (``write_words_json``, ``read_words_json``);
* :mod:`diar.formats.stm`: NIST STM utterances (``write_stm``, ``read_stm``);
* :mod:`diar.formats.srt`, :mod:`diar.formats.vtt`: subtitles with speaker names.

Text writers take an open text file object; :func:`atomic_open` gives one whose
content appears at ``path`` only once the ``with`` block succeeds. It is the one way local
files are written atomically (temporary file beside the target, then rename), for one file
or, with :func:`atomic_files`, for several that are replaced all together or not at all
(the job's output folder, :class:`jobs.storage.OutDir`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO, TYPE_CHECKING, TypeVar

from diar.types import Annotation

T = TypeVar("T")

if TYPE_CHECKING:
    from diar.manifests import Line, LineProblems


class AtomicFiles:
    """Local files written under temporary names beside their targets (see :func:`atomic_files`)."""

    def __init__(self) -> None:
        #: (open file or None once closed, temporary path, target path), in the order opened
        self._pending: list[tuple[IO | None, str, str]] = []

    def open(self, path: str | os.PathLike[str], mode: str = "w") -> IO:
        """A new temporary file beside ``path`` (``"w"``: UTF-8 text, ``\\n`` line ends; ``"wb"``),
        renamed to ``path`` when the group commits; its folder is created if missing."""
        if mode not in ("w", "wb"):
            raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
        from diar.outputs import create_temp

        target = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(target))
        os.makedirs(folder, exist_ok=True)
        fd, tmp = create_temp(folder, os.path.basename(target))  # permissions from the umask
        try:
            f: IO = os.fdopen(fd, "w", encoding="utf-8", newline="\n") if mode == "w" else os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            os.unlink(tmp)
            raise
        self._pending.append((f, tmp, target))
        return f

    def write(self, path: str | os.PathLike[str], data: bytes) -> None:
        """Write ``data`` to a temporary file beside ``path`` and sync it now (a full disk raises
        OSError here, naming no other file)."""
        f = self.open(path, "wb")
        f.write(data)
        self._sync(len(self._pending) - 1)

    def _sync(self, index: int) -> None:
        f, tmp, target = self._pending[index]
        if f is not None:
            with f:
                f.flush()
                os.fsync(f.fileno())
            self._pending[index] = (None, tmp, target)

    def commit(self) -> None:
        """Sync every file, then rename each into place in the order opened."""
        for index in range(len(self._pending)):
            self._sync(index)
        for _, tmp, target in self._pending:
            os.replace(tmp, target)

    def discard(self) -> None:
        """Close and remove the temporary files not renamed (all of them before a commit)."""
        for f, tmp, _ in self._pending:
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        self._pending.clear()


@contextlib.contextmanager
def atomic_files() -> Iterator[AtomicFiles]:
    """Write several local files so that all of them replace their targets or none does.

    Files opened (or written) in the block go to temporary files beside their targets; when
    the block exits cleanly they are synced and renamed into place; on an exception they are
    removed and every target is left as it was.
    """
    group = AtomicFiles()
    try:
        yield group
        group.commit()
    finally:
        group.discard()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block exits cleanly.

    On an exception the temporary file is removed and ``path`` is left as it was,
    so a killed or failed writer never leaves a half-written output behind.
    """
    with atomic_files() as group:
        yield group.open(path, mode)


def as_annotations(annotations: Annotation | Iterable[Annotation]) -> list[Annotation]:
    """Accept one annotation or many (a dict's ``.values()``, a list, ...)."""
    if isinstance(annotations, Annotation):
        return [annotations]
    return list(annotations)


__all__ = ["AtomicFiles", "as_annotations", "atomic_files", "atomic_open"]


def read_text(
    source: str | os.PathLike[str] | IO[str],
    parse: Callable[[Iterable[Line], LineProblems], dict[str, Annotation]],
    what: str,
) -> dict[str, Annotation]:
    """``parse(lines, problems)`` of a path or an open text file, read by the manifests' one line
    reader (:func:`diar.manifests.iter_lines`: a byte-order mark dropped, a folder, a device,
    binary data or non-UTF-8 refused); the malformed lines ``parse`` records in ``problems``
    are raised together at the end (ManifestError naming the file and line)."""
    from diar.manifests import LineProblems, iter_lines, source_name

    problems = LineProblems(source_name(source))
    result = parse(iter_lines(source, problems, what=f"{what} file"), problems)
    problems.check()
    return result


def read_file(
    source: str | os.PathLike[str] | IO[str],
    parse: Callable[[IO[str], str], T],
    what: str,
) -> T:
    """``parse(file, name)`` of a path or an open text file, for formats that are not one record
    per line (JSON, subtitles); a byte-order mark is dropped; a path that is missing, a folder,
    unreadable or not UTF-8: ManifestError naming the file and saying which."""
    from diar.errors import ManifestError
    from diar.manifests import describe_path_error, source_name

    name = source_name(source)
    if not isinstance(source, (str, os.PathLike)):
        return parse(source, name)
    try:
        with open(name, encoding="utf-8-sig") as f:
            return parse(f, name)
    except OSError as exc:  # missing, a folder, no permission, ...
        raise ManifestError(name, None, describe_path_error(exc, f"{what} file")) from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(name, None, f"{what} file is not valid UTF-8 ({exc})") from exc
