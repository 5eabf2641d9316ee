"""The worker's native heap (glibc malloc), which LanceDB, Arrow and the model allocate from.

Two calls keep what a batch frees from staying resident in the worker:
- **A fixed mmap threshold.** glibc serves an allocation above the threshold with its own
  mapping, which `free` unmaps at once; the threshold starts at 128 KiB but rises to the
  size of each such block freed (up to 32 MiB). A batch's writes free buffers of several
  MB, so after the first few they came from the threads' arenas, where freed space
  fragments and stays resident. With the threshold fixed, the worker's peak at 100 MB of
  source was 571 MB, against 614 MB with glibc's sliding one in the same run
  (bench/ingest.py, memory section; docs/ingestion.md, Worker memory).
- **A trim after each batch**, which hands the arenas' free pages back to the system.

Elsewhere than glibc there are no such calls, and nothing to do.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools

# mallopt's parameter number for the mmap threshold (malloc.h).
_M_MMAP_THRESHOLD = -3


@functools.cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@functools.cache
def fix_mmap_threshold(threshold: int) -> bool:
    """Serve allocations of `threshold` bytes and more with their own mappings from now on,
    returned to the system when freed (0: leave glibc's sliding threshold). Once per
    process; whether it was applied."""
    libc = _libc()
    if threshold <= 0 or libc is None:
        return False
    with contextlib.suppress(AttributeError):
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold))
    return False


def trim() -> None:
    """Hand the memory freed in glibc's arenas back to the system."""
    libc = _libc()
    if libc is not None:
        with contextlib.suppress(AttributeError):
            libc.malloc_trim(0)
