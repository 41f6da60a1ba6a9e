"""The job's output folder: a local path or any fsspec URL, written atomically.

Every file is first written under a temporary name in its final folder, then
renamed (``os.replace`` locally; a move on other filesystems, where a single
PUT is already all-or-nothing). A reader therefore never sees half a file, and
temporary leftovers of a killed run are recognisable by name and removed on
the next run.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

#: Marker inside the names of temporary files (``x.rttm.tmp-<hex>``).
TMP_MARKER = ".tmp-"


class OutDir:
    """A folder of job outputs addressed by relative paths (``shards/shard-00000.rttm``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        fs, root = fsspec.core.url_to_fs(url)
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
        return bytes(self.fs.cat_file(self.path(rel)))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def listdir(self, rel: str) -> list[str]:
        """Names (not paths) of the files directly inside folder ``rel``; empty if it does not exist."""
        folder = self.path(rel)
        if not self.fs.exists(folder):
            return []
        return sorted(posixpath.basename(p.rstrip("/")) for p in self.fs.ls(folder, detail=False))

    def write_bytes(self, rel: str, data: bytes) -> None:
        """Write ``data`` to ``rel`` atomically: a temporary name in the same folder, then rename."""
        final = self.path(rel)
        parent = posixpath.dirname(final)
        tmp = f"{final}{TMP_MARKER}{uuid.uuid4().hex[:12]}"
        if self.is_local:
            os.makedirs(parent, exist_ok=True)
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, final)
            except BaseException:
                if os.path.exists(tmp):
                    os.unlink(tmp)
                raise
            return
        self.fs.makedirs(parent, exist_ok=True)
        self.fs.pipe_file(tmp, data)
        try:
            self.fs.mv(tmp, final)
        except BaseException:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)
            raise

    def write_text(self, rel: str, text: str) -> None:
        self.write_bytes(rel, text.encode("utf-8"))

    def remove(self, rel: str) -> None:
        if self.exists(rel):
            self.fs.rm(self.path(rel))

    def remove_temporaries(self, rel: str) -> list[str]:
        """Delete the temporary files a killed writer left in folder ``rel``; return their names."""
        stale = [name for name in self.listdir(rel) if TMP_MARKER in name]
        for name in stale:
            self.fs.rm(self.path(posixpath.join(rel, name)))
        return stale
