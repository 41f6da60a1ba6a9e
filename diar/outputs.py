"""Checks on the files a command is about to write, made before any work; temporary files.

Every command that writes files calls :func:`check_outputs` before it loads a model:

* no output may be one of the command's inputs (compared as the same file on disk, or the
  same resolved path), so ``diar embed wav.scp -o wav.ark`` cannot replace ``wav.scp``
  with the index it writes beside the ark, nor ``diar diarize a.wav -o a.wav`` the audio;
* an output must be a regular file that may be written (not a folder, a device or a FIFO,
  not read-only), in a folder that exists and is writable or can be created.

Outputs are written through a temporary file in the output's folder and renamed into place
(:func:`diar.formats.atomic_open`); :func:`create_temp` makes that file with the permissions
the umask gives any new file (``tempfile.mkstemp`` would make it 0600), named so that a
leftover of a killed writer is recognisable (:data:`TMP_MARKER`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import uuid
from collections.abc import Iterable, Iterator

from diar.errors import InputError, quote, shorten

#: Marker inside the names of temporary files (``x.rttm.tmp-<hex>``).
TMP_MARKER = ".tmp-"


def temp_name(name: str) -> str:
    """A new temporary name for a file to be renamed to ``name``: ``<name>.tmp-<12 hex>``."""
    return f"{name}{TMP_MARKER}{uuid.uuid4().hex[:12]}"


def create_temp(folder: str, name: str) -> tuple[int, str]:
    """Create a new empty file :func:`temp_name` ``(name)`` in ``folder``; return (fd, path).

    Created with ``O_EXCL`` and mode 0666, so the umask decides its permissions as for any
    file the user creates (unlike ``tempfile.mkstemp``'s 0600).
    """
    while True:
        path = os.path.join(folder, temp_name(name))
        try:
            return os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666), path
        except FileExistsError:  # pragma: no cover - 48 random bits
            continue


def describe(path: str) -> str:
    """What is at ``path``, in words: "a directory", "a character device", "missing", ..."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "a broken symbolic link" if os.path.islink(path) else "missing"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a symbolic link loop"
        return f"unreadable ({e.strerror})"
    return kind_of(st.st_mode)


def kind_of(mode: int) -> str:
    """The file type of a ``st_mode`` in words."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def probe_writable(folder: str, name: str = "write-test") -> None:
    """Create and remove a temporary file (:func:`create_temp` ``(folder, name)``) in ``folder``;
    raises OSError when that cannot be done."""
    fd, path = create_temp(folder, name)
    os.close(fd)
    os.unlink(path)


def check_output_file(path: str, what: str) -> None:
    """Refuse, before any work, an output ``path`` that cannot be written.

    It must be a local path (not a URL); if it exists, a regular file with write permission;
    its folder must exist and be writable, or be creatable (its nearest existing ancestor a
    writable directory).

    Raises:
        InputError naming ``what`` (e.g. ``-o``), the path and the problem.
    """
    from diar.audio import is_url

    where = f"{what} {shorten(path)}"
    if not path.strip() or path.endswith(("/", os.sep)):
        raise InputError(f"{what} {quote(path)}: give the path of a file to write")
    if is_url(path):
        raise InputError(f"{where}: must be a local file path, not a URL")
    if os.path.lexists(path) or os.path.exists(path):
        kind = describe(path)
        if kind != "a regular file":
            raise InputError(f"{where}: is {kind}; give the path of a file to write")
        mode = os.stat(path).st_mode
        if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
            raise InputError(
                f"{where}: the file is read-only (mode {stat.S_IMODE(mode):04o}); "
                "make it writable or choose another output"
            )
    folder = os.path.dirname(os.path.abspath(path))
    existing = folder
    while not os.path.exists(existing):
        parent = os.path.dirname(existing)
        if parent == existing:
            break
        existing = parent
    kind = describe(existing)
    if kind != "a directory":
        raise InputError(f"{where}: {shorten(existing)} is {kind}, not a folder")
    try:
        probe_writable(existing)
    except OSError as e:
        missing = "" if existing == folder else f" (to create {shorten(folder)} in it)"
        raise InputError(
            f"{where}: cannot write in the folder {shorten(existing)}{missing}: {e.strerror or e}"
        ) from None


class FileSet:
    """Local input files, to tell whether a path about to be written is one of them.

    Compared by device and inode for files that exist (hard links and symlinks included) and by
    resolved path otherwise.
    """

    def __init__(self, paths: Iterable[str] = ()) -> None:
        self._inodes: dict[tuple[int, int], str] = {}
        self._paths: dict[str, str] = {}
        for path in paths:
            self.add(path)

    def add(self, path: str | None) -> None:
        from diar.audio import local_path

        if not path:
            return
        local = local_path(path)
        if local is None:
            return
        try:
            st = os.stat(local)
        except (OSError, ValueError):
            self._paths.setdefault(os.path.realpath(local), path)
            return
        self._inodes.setdefault((st.st_dev, st.st_ino), path)
        self._paths.setdefault(os.path.realpath(local), path)

    def find(self, path: str) -> str | None:
        """The input that ``path`` is (as given), or None."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return self._paths.get(os.path.realpath(path))
        return self._inodes.get((st.st_dev, st.st_ino)) or self._paths.get(os.path.realpath(path))

    def within(self, folder: str) -> list[tuple[str, str]]:
        """Inputs inside ``folder``: (resolved path, path as given)."""
        root = os.path.realpath(folder).rstrip(os.sep) + os.sep
        return [(real, given) for real, given in self._paths.items() if real.startswith(root)]


def check_outputs(outputs: Iterable[tuple[str, str]], inputs: FileSet) -> None:
    """Refuse, before any work, outputs that are inputs or cannot be written.

    Args:
        outputs: (what the output is, e.g. ``-o`` or ``the index beside -o``, its path).
        inputs: every local file the command reads.

    Raises:
        InputError naming the output, the input it would replace, or why it cannot be written.
    """
    for what, path in outputs:
        clash = inputs.find(path)
        if clash is not None:
            same = "" if os.path.abspath(clash) == os.path.abspath(path) else f" ({quote(clash)})"
            raise InputError(
                f"{what} {shorten(path)} is also an input{same}: writing it would destroy the input; "
                "choose another output path"
            )
        check_output_file(path, what)


@contextlib.contextmanager
def writing(what: str, path: str) -> Iterator[None]:
    """Turn an OSError of the block (a full disk, a folder made read-only meanwhile) into one
    InputError line naming the output; outputs are written atomically, so the previous
    file at ``path`` is then left as it was."""
    try:
        yield
    except OSError as e:
        raise InputError(
            f"cannot write {what} {shorten(path)}: {e.strerror or e}; any previous file there is unchanged"
        ) from e
