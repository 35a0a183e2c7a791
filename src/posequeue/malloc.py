"""glibc malloc settings for processes that move multi-megabyte buffers batch after batch.

A batch is a few large buffers (5.5 MB of frames read from Redis, 4.8 MB of detector input,
1.5 MB of crops at 8 frames of 640x360). By default glibc serves each from a fresh mmap and
unmaps it when freed, so every batch page-faults its buffers in again: ~1 ms per 5 MB, measured
as 30-40% of the host-side letterbox and crop steps. Keeping freed memory in the heap lets the
next batch reuse the same pages. The process keeps its peak working set (tens of MB for a
worker) instead of returning it between batches.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1  # from malloc.h
M_MMAP_THRESHOLD = -3
# Below this, served from the heap (reused), not a fresh mapping. 32 MB is the most glibc
# accepts on 64-bit (older versions refuse more) and holds a batch of 8 1280x720 frames (22 MB).
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20  # free heap kept at the top before any is returned to the system


def reuse_freed_memory() -> bool:
    """Apply the settings to this process (and the processes it forks). True when applied: on
    glibc; other C libraries are left as they are."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    results = [mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD), mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)]
    return all(results)
