"""How a command ends on a signal: Ctrl-C (SIGINT), `kill` (SIGTERM), a closed terminal
(SIGHUP), each to the CLI alone or to its whole process group.

The first signal interrupts the command (`Terminated`, a KeyboardInterrupt), so that
`run` and `dev` stop the stack they started on their way out. A later signal never raises
again: `make` forwards SIGTERM to the CLI, which therefore often gets two, and a second
exception would abort the stop halfway, leaving processes running. A later signal only
hurries the stop along (the callbacks given to `on_repeat`).

The exit code is 128 + the first signal's number, as a shell reports a process that
signal ended: 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
EXIT_INTERRUPTED = 128 + signal.SIGINT


class Terminated(KeyboardInterrupt):
    """The command was stopped by `signum`."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def exit_code(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal that stopped the command (a plain KeyboardInterrupt: SIGINT's)."""
    return 128 + interrupt.signum if isinstance(interrupt, Terminated) else EXIT_INTERRUPTED


class _Termination:
    def __init__(self) -> None:
        self.signum: int | None = None
        self.hurry: list[Callable[[], None]] = []

    def handle(self, signum: int, frame: object) -> None:
        if self.signum is None:
            self.signum = signum
            raise Terminated(signum)
        # Runs in the main thread between two of its bytecodes, possibly while it holds a
        # lock: the callbacks must take none (they set a flag).
        for hurry in self.hurry:
            hurry()


_state = _Termination()


def install() -> None:
    """Handle SIGINT, SIGTERM and SIGHUP as described above (main thread only)."""
    global _state
    _state = _Termination()
    for signum in SIGNALS:
        signal.signal(signum, _state.handle)


def on_repeat(hurry: Callable[[], None]) -> None:
    """Call `hurry` on each signal after the first (from the signal handler: it must take
    no lock)."""
    _state.hurry.append(hurry)
