"""Ends a local stack's processes when the process that started them dies without stopping
them: `kill -9` of the CLI, a test run killed mid-way. Nothing runs in a process on
SIGKILL, so this runs beside it.

`LocalStack` starts `python -m functions.local.reaper PIDFILE` in a session of its own
(so no signal for the CLI's terminal or process group reaches it), with the read end of a
pipe as its stdin, and keeps the write end. The kernel closes that end when the stack's
owner exits, however it exits; the reaper then reads EOF and ends the groups still in the
stack's pid file (functions/local/pidfile.py), which a stack that stopped itself has
already removed.

Why not Linux's PR_SET_PDEATHSIG in each child: it needs a `preexec_fn` (unsafe with the
stack's threads, and no vfork); it fires when the *thread* that started the child exits,
and the supervisor restarts processes from its own; and it reaches the child only, not
what the child started (gunicorn's worker, gcloud's Java emulator). Nor each child in the
CLI's process group: a `kill -9` of the CLI alone still leaves them, and the stack could
no longer end one child's group without the others.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from functions.humanize import plural
from functions.local.pidfile import PidFile

REAPER_STOP_SECONDS = 5.0


class Reaper:
    """The watching process of one stack; `close()` when the stack has stopped."""

    def __init__(self, pid_file: Path, log: Path) -> None:
        read_end, self._write_end = os.pipe()  # both not inherited by other children
        try:
            with log.open("ab") as out:
                self.process = subprocess.Popen(
                    [sys.executable, "-m", "functions.local.reaper", str(pid_file)],
                    cwd=Path(__file__).resolve().parents[2],
                    stdin=read_end,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        except BaseException:
            os.close(self._write_end)
            raise
        finally:
            os.close(read_end)

    def close(self) -> None:
        """Let the reaper go: it finds no pid file (the stack removed it) and exits."""
        if self._write_end >= 0:
            os.close(self._write_end)
            self._write_end = -1
        # A reaper still busy after that is ending leftovers after all: let it finish.
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=REAPER_STOP_SECONDS)


def main(pid_file: Path) -> None:
    sys.stdin.buffer.read()  # blocks until the stack's owner closed its end, or died
    ended = PidFile(pid_file).end_leftovers(clear=False)
    if ended:
        print(f"ended {plural(ended, 'process group')} of a stack whose owner died", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
