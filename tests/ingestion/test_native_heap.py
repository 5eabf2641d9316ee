"""The worker's native heap: large buffers it frees go back to the system at once, with the
fixed mmap threshold it sets by default; with glibc's sliding one they stayed resident."""

from __future__ import annotations

import ctypes
import multiprocessing
from pathlib import Path

from functions.config import Settings
from functions.ingestion import native_heap

BUFFER = 8 * 1024 * 1024  # a batch's writes free buffers of several MB


def _resident_mib() -> float:
    status = Path("/proc/self/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1]) / 1024


def _kept_after_frees(env: dict[str, str]) -> float:
    """In a fresh process, as a worker set up from `env`: the resident MiB that three
    written and freed 8 MiB buffers leave behind, with no trim in between."""
    native_heap.fix_mmap_threshold(Settings.from_env(env).ingestion.malloc_mmap_threshold)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = [ctypes.c_void_p]
    before = _resident_mib()
    for _ in range(3):
        buffer = libc.malloc(BUFFER)
        ctypes.memset(buffer, 1, BUFFER)
        libc.free(buffer)
    return _resident_mib() - before


def test_freed_large_buffers_leave_the_worker() -> None:
    """By default nothing stays; with FANOUT_MALLOC_MMAP_THRESHOLD=0 (glibc's threshold,
    which rises to the first freed buffer's size) the later buffers came from the heap and
    one stays resident."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(2, maxtasksperchild=1) as pool:
        fixed, sliding = pool.map(
            _kept_after_frees, [{}, {"FANOUT_MALLOC_MMAP_THRESHOLD": "0"}], chunksize=1
        )
    assert fixed < 1
    assert sliding >= 7
