"""The job's output folder: a local path or any fsspec URL, written atomically.

Every file is first written under a temporary name in its final folder, then
renamed (locally through :func:`diar.formats.atomic_files`, the library's one atomic
writer; a move on other filesystems, where a single PUT is already all-or-nothing). A
reader therefore never sees half a file, and temporary leftovers of a killed run are
recognisable by name (:data:`diar.outputs.TMP_MARKER`) and removed on the next run.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from diar.errors import DiarError, shorten
from diar.formats import atomic_files
from diar.outputs import TMP_MARKER, probe_writable, temp_name


class OutError(DiarError):
    """The output folder cannot be opened, read or written (one line naming the file and why)."""


def _reason(error: BaseException) -> str:
    return getattr(error, "strerror", None) or f"{type(error).__name__}: {error}"


class OutDir:
    """A folder of job outputs addressed by relative paths (``shards/shard-00000.rttm``).

    Raises:
        OutError: the URL's protocol is unknown, or its fsspec backend is not installed.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            fs, root = fsspec.core.url_to_fs(url)
        except ImportError as e:  # s3://, gs://, ... without s3fs, gcsfs, ...
            raise OutError(f"--out {shorten(url)}: {' '.join(str(e).split())}") from None
        except (ValueError, TypeError) as e:  # "Protocol not known: ..."
            raise OutError(f"--out {shorten(url)}: cannot open it as a folder ({e})") from None
        self.fs: Any = fs
        self.root: str = root.rstrip("/") or "/"
        self.is_local = isinstance(fs, LocalFileSystem)

    def __repr__(self) -> str:
        return f"OutDir({self.url!r})"

    def path(self, rel: str) -> str:
        """Filesystem path of ``rel`` (for messages and local readers)."""
        return posixpath.join(self.root, rel)

    def display(self, rel: str) -> str:
        """``rel`` as the user would write it (with the URL's protocol, if any)."""
        base = self.url.rstrip("/")
        return f"{base}/{rel}"

    def makedirs(self, rel: str = "") -> None:
        self.fs.makedirs(self.path(rel) if rel else self.root, exist_ok=True)

    def exists(self, rel: str) -> bool:
        return bool(self.fs.exists(self.path(rel)))

    def read_bytes(self, rel: str) -> bytes:
        try:
            return bytes(self.fs.cat_file(self.path(rel)))
        except FileNotFoundError:
            raise
        except OSError as e:
            raise OutError(f"cannot read {self.display(rel)}: {_reason(e)}") from e

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def find(self) -> list[str]:
        """Relative paths of every file under the folder (``shards/x.rttm``), sorted."""
        if not self.fs.exists(self.root):
            return []
        prefix = self.root.rstrip("/") + "/"
        found = [str(p) for p in self.fs.find(self.root)]
        return sorted(p[len(prefix) :] if p.startswith(prefix) else posixpath.basename(p) for p in found)

    def check_writable(self) -> None:
        """Create and remove a temporary file in the (local) folder: OutError when it cannot.

        Remote folders are not probed (a probe would cost requests); their first write
        fails the same way, before any shard runs.
        """
        if not self.is_local:
            return
        try:
            probe_writable(self.root, ".lock")
        except OSError as e:
            raise OutError(f"cannot write in {self.display('')}: {_reason(e)}") from None

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) of the files directly inside folder ``rel``; empty if it does not exist."""
        folder = self.path(rel)
        if not self.fs.exists(folder):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(folder, detail=False))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` atomically: a temporary name in the same folder, then rename.

        Raises:
            OutError naming the file and the reason (full disk, read-only, ...); the previous
            content of ``rel`` is then left as it was.
        """
        self.write_many({rel: data})

    def write_many(self, files: Mapping[str, bytes]) -> None:
        """Write several files so that either all of them are replaced or none is.

        Every file is written under a temporary name first; only when all are written are
        they renamed into place. A write that fails (a full disk) removes the temporaries
        and leaves the previous versions of all the files as they were.

        Raises:
            OutError naming the file that could not be written and why.
        """
        if self.is_local:
            self._write_local(files)
            return
        temporaries: dict[str, str] = {}
        try:
            for rel, data in files.items():
                final = self.path(rel)
                tmp = posixpath.join(posixpath.dirname(final), temp_name(posixpath.basename(final)))
                temporaries[rel] = tmp
                try:
                    self.fs.makedirs(posixpath.dirname(final), exist_ok=True)
                    self.fs.pipe_file(tmp, data)
                except Exception as e:
                    raise OutError(f"cannot write {self.display(rel)}: {_reason(e)}") from e
            for rel, tmp in temporaries.items():
                try:
                    self.fs.mv(tmp, self.path(rel))
                except Exception as e:
                    raise OutError(f"cannot write {self.display(rel)}: {_reason(e)}") from e
        finally:
            for tmp in temporaries.values():
                self._discard(tmp)

    def _write_local(self, files: Mapping[str, bytes]) -> None:
        rel = ""
        try:
            with atomic_files() as group:
                for rel, data in files.items():
                    group.write(self.path(rel), data)
                rel = ""
        except OSError as e:
            failed = rel or self._rel(getattr(e, "filename", None))
            raise OutError(f"cannot write {self.display(failed)}: {_reason(e)}") from e

    def _rel(self, path: object) -> str:
        """The file in the folder that ``path`` (named by an OSError: the file or its temporary)
        is, relative to the folder; "" when it is not in it."""
        text = str(path or "").split(TMP_MARKER, 1)[0]
        prefix = self.root.rstrip("/") + "/"
        return text[len(prefix) :] if text.startswith(prefix) else ""

    def _discard(self, path: str) -> None:
        try:
            if self.fs.exists(path):
                self.fs.rm(path)
        except (OSError, ValueError):  # nothing more to do; a rerun removes it
            pass

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def remove(self, rel: str) -> None:
        try:
            if self.exists(rel):
                self.fs.rm(self.path(rel))
        except OSError as e:
            raise OutError(f"cannot remove {self.display(rel)}: {_reason(e)}") from e

    def remove_temporaries(self, rel: str, owned: Callable[[str], bool] | None = None) -> list[str]:
        """Delete the temporary files a killed writer left in folder ``rel``; return their names.

        With ``owned``, only those whose relative path it accepts (files of this job).
        """
        stale = [name for name in self.listdir(rel) if TMP_MARKER in name]
        if owned is not None:
            stale = [name for name in stale if owned(posixpath.join(rel, name) if rel else name)]
        for name in stale:
            self.fs.rm(self.path(posixpath.join(rel, name)))
        return stale
