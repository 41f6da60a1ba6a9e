"""diar.memory: free heap pages pinned between live blocks go back to the system."""

from __future__ import annotations

import os

import numpy as np
import pytest

from diar.memory import _malloc_trim, release_free_memory


def resident_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(_malloc_trim() is None or not os.path.exists("/proc/self/statm"), reason="needs glibc")
def test_pages_between_live_blocks_are_released() -> None:
    # 64 KiB arrays come from the heap (under glibc's mmap threshold); a small live
    # block after each keeps free() from shrinking the heap, as the stitcher's arrays
    # do between a frame model's batches
    blocks, pins = [], []
    for _ in range(2000):
        blocks.append(np.ones(8192))
        pins.append(bytearray(4000))
    del blocks
    freed = resident_bytes()
    assert release_free_memory()
    trimmed = resident_bytes()
    assert freed - trimmed > 64 << 20  # of the 125 MiB freed
    del pins  # alive until here: they pin the freed pages the trim releases
