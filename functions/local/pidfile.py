"""The local stack's record of the process groups it started (`<state_dir>/stack.pids`).

A stack stops its children on Ctrl-C, `kill` or a closed terminal. A CLI killed with
SIGKILL cannot: its reaper (functions/local/reaper.py) reads this file and ends those
groups, and should the reaper be gone too, the next stack on the same state directory does
so first, so `make run` works again.

A process is known by its pid and its start time (from `/proc`), so a recycled pid is
never signalled. Where there is no `/proc`, nothing is recorded, and leftovers show up as
ports already in use instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

STOP_SECONDS = 10.0


class PidFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def record(self, pid: int) -> None:
        """Add a process group leader (started with `start_new_session=True`)."""
        started = _start_time(pid)
        if started is None:
            return
        entries = self._read()
        entries.append({"pid": pid, "started": started})
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries))
        tmp.replace(self.path)  # atomic: a crash never leaves half a file

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def end_leftovers(self, *, clear: bool = True) -> int:
        """End the recorded groups whose leaders still run; return how many there were.
        Then remove the file, unless `clear` is False (the reaper: a new stack may have
        started on the same file meanwhile)."""
        leftovers = [
            (pid, started)
            for e in self._read()
            if isinstance(pid := e["pid"], int) and (started := _start_time(pid)) == e["started"]
        ]
        for pid, _ in leftovers:
            _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        while time.monotonic() < deadline and any(_start_time(p) == s for p, s in leftovers):
            time.sleep(0.05)  # bounded wait for other processes to exit
        for pid, started in leftovers:
            if _start_time(pid) == started:
                _signal_group(pid, signal.SIGKILL)
        if clear:
            self.clear()
        return len(leftovers)

    def _read(self) -> list[dict[str, object]]:
        try:
            entries = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return []
        if not isinstance(entries, list):  # not a file this module wrote
            return []
        return [e for e in entries if isinstance(e, dict) and {"pid", "started"} <= e.keys()]


def _start_time(pid: int) -> int | None:
    """When the process started (clock ticks after boot), or None if it is not running."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])  # field 22 of proc(5); Z: exited


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(OSError):  # already gone
        os.killpg(pid, sig)
