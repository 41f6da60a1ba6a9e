"""Output formats, one module each, reader and writer side by side.

* :mod:`diar.formats.rttm`: NIST RTTM (``write_rttm``, ``read_rttm``);
* :mod:`diar.formats.vad`: ModelScope's per-speaker ``vad`` lines (``write_vad``, ``read_vad``);
* :mod:`diar.formats.parquet`: a pyarrow table (``write_parquet``, ``read_parquet``).

Text writers take an open text file object; :func:`atomic_open` gives one whose
content appears at ``path`` only once the ``with`` block succeeds.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import IO

from diar.errors import ManifestError
from diar.types import Annotation


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it to ``path`` when the block exits cleanly.

    On an exception the temporary file is removed and ``path`` is left as it was,
    so a killed or failed writer never leaves a half-written output behind.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', got {mode!r}")
    from diar.outputs import create_temp

    target = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(target))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = create_temp(folder, os.path.basename(target))  # permissions from the umask
    try:
        if mode == "w":
            f: IO = os.fdopen(fd, "w", encoding="utf-8", newline="\n")
        else:
            f = os.fdopen(fd, "wb")
        with f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def as_annotations(annotations: Annotation | Iterable[Annotation]) -> list[Annotation]:
    """Accept one annotation or many (a dict's ``.values()``, a list, ...)."""
    if isinstance(annotations, Annotation):
        return [annotations]
    return list(annotations)


__all__ = ["as_annotations", "atomic_open"]


def read_text(
    source: str | os.PathLike[str] | IO[str],
    parse: Callable[[IO[str], str], dict[str, Annotation]],
    what: str,
) -> dict[str, Annotation]:
    """``parse(file, name)`` of a path or an open text file; missing or non-UTF-8 files: ManifestError."""
    if not isinstance(source, (str, os.PathLike)):
        return parse(source, str(getattr(source, "name", "<stream>")))
    name = os.fspath(source)
    try:
        with open(name, encoding="utf-8") as f:
            return parse(f, name)
    except FileNotFoundError as exc:
        raise ManifestError(name, None, f"{what} file does not exist") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(name, None, f"{what} file is not valid UTF-8 ({exc})") from exc
