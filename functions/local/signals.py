"""Holding off Ctrl-C, `kill` and a hang-up for the few lines that start a child process
and keep its handle.

A KeyboardInterrupt raised inside `subprocess.Popen` after the fork (it waits there for the
exec) loses the handle: the child runs on, and nothing knows to stop it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def held_signals() -> Iterator[None]:
    """Run the block with SIGINT, SIGTERM and SIGHUP held: one that arrives meanwhile goes
    to its handler as the block ends. Elsewhere than in the main thread, which alone runs
    signal handlers, the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []

    def hold(signum: int, frame: object) -> None:
        arrived.append(signum)

    previous = {signum: signal.signal(signum, hold) for signum in HELD}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            # None: a handler not set from Python, which cannot be put back; the default.
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        for held in arrived:
            signal.raise_signal(held)
