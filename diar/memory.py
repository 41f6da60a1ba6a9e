"""Give the C heap's free pages back to the operating system between batches.

A frame model's forward pass allocates and frees hundreds of MiB of activations
per batch, while the pipeline keeps small arrays alive between batches (window
probabilities, chain pieces). On glibc those long-lived arrays land between the
freed activations, and the pages around them are neither reused in full nor
returned: the resident size creeps up with the recording's length although
nothing leaks. ``malloc_trim(0)`` releases every free page of every heap, so a
long recording's memory stays that of one batch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl, Windows)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_free_memory() -> bool:
    """Return the free pages of the C heap to the operating system.

    Costs a walk over the heaps: after each batch of a full-size WavLM on CPU it
    changed the real-time factor by under 1 %. A no-op where the C library has no
    ``malloc_trim``.

    Returns:
        True when memory was released.
    """
    trim = _malloc_trim()
    return bool(trim(0)) if trim is not None else False
