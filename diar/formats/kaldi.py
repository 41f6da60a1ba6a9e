"""Kaldi archives: float32 matrices in a binary ``.ark`` with its ``.scp`` index (kaldiio).

The one writer of ``.ark`` + ``.scp`` pairs (speaker profiles, ``diar embed`` vectors,
speaker traces). Keys are checked once here; the ark is written through a temporary file
and renamed; the scp is removed first and written last, so a reader never finds an index
that points into a half-written archive.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from diar.errors import FormatError, quote
from diar.formats import atomic_open
from diar.types import is_token


def check_key(value: str, what: str = "recording id") -> None:
    """A Kaldi manifest key or field: non-empty, no whitespace.

    Raises:
        FormatError: naming ``what`` and the value.
    """
    if not is_token(value):
        raise FormatError(
            f"{what} {quote(value)} cannot be written to a Kaldi manifest (empty or has whitespace)"
        )


def write_ark(
    ark: str | os.PathLike[str], scp: str | os.PathLike[str], items: Iterable[tuple[str, np.ndarray]]
) -> list[str]:
    """Write ``(key, array)`` items to ``ark`` (float32, Kaldi binary) and index them in ``scp``.

    The scp lines are ``<key> <absolute-ark-path>:<offset>``, readable by ``kaldiio.load_scp``
    from any working directory.

    Returns:
        the keys written, in order.
    """
    import kaldiio

    ark_path = Path(ark).absolute()
    scp_path = Path(scp)
    lines: list[str] = []
    keys: list[str] = []
    with atomic_open(ark_path, "wb") as f:
        for key, array in items:
            check_key(key)
            f.write(key.encode("utf-8") + b" ")
            lines.append(f"{key} {ark_path}:{f.tell()}\n")
            kaldiio.save_mat(f, np.ascontiguousarray(array, dtype=np.float32))
            keys.append(key)
        scp_path.unlink(missing_ok=True)  # before the new ark takes the old one's place
    with atomic_open(scp_path, "w") as f:
        f.write("".join(lines))
    return keys
