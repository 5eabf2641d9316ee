"""Supervision of the local stack's processes: a process that dies is started again, as
Cloud Run starts a new instance, and one that keeps dying stops the stack.

`RestartPolicy` decides (pure, with an injectable clock); `Supervisor` watches the
processes from a daemon thread and acts. Neither stamina nor tenacity fits the decision:
they retry one call until it succeeds, whereas a process that ran for an hour and then
died is a fresh failure, and a crash loop is a count over a sliding window.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from contextlib import suppress
from pathlib import Path

from functions.errors import FanoutError, ProcessCrashLoop, StartupError

# Its own logger, so that the CLI can show these lines on its console (and only these).
log = logging.getLogger("fanout.supervisor")

POLL_SECONDS = 0.2


class RestartPolicy:
    """How long to wait before restarting a process that died, or that it is in a crash
    loop. Both follow from its deaths in the last `window` seconds: the delay doubles with
    each (`first_delay`, 2x, 4x, ... up to `max_delay`), and the `max_deaths`-th death
    within the window is a crash loop. A process that stays up a whole window starts
    again from `first_delay`."""

    def __init__(
        self,
        *,
        first_delay: float = 0.5,
        max_delay: float = 10.0,
        max_deaths: int = 5,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if first_delay <= 0 or max_delay < first_delay or max_deaths < 1 or window <= 0:
            raise ValueError("restart policy: delays above 0, at least one death, a window")
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.max_deaths = max_deaths
        self.window = window
        self.clock = clock
        self._deaths: deque[float] = deque()

    @property
    def recent_deaths(self) -> int:
        """Deaths within the last `window` seconds."""
        self._forget(self.clock())
        return len(self._deaths)

    def died(self) -> float | None:
        """Record a death now; the seconds to wait before the restart, or None for a crash
        loop (the process must not be restarted)."""
        now = self.clock()
        self._forget(now)
        self._deaths.append(now)
        if len(self._deaths) >= self.max_deaths:
            return None
        delay: float = self.first_delay * 2.0 ** (len(self._deaths) - 1)
        return min(delay, self.max_delay)

    def _forget(self, now: float) -> None:
        while self._deaths and now - self._deaths[0] > self.window:
            self._deaths.popleft()


def exit_status(returncode: int) -> str:
    """`Popen.returncode` in words: 'signal SIGKILL' or 'status 1'."""
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"status {returncode}"


class Supervisor:
    """Polls the processes every `interval` seconds; restarts each one that exited.

    `processes` is the live mapping of name to process (the stack replaces an entry when it
    restarts one); `restart(name)` starts the process again and returns it; `ready(name,
    stop)` waits until the restarted process serves (False if it died first, or `stop` was
    set); `log_file(name)` is where its output goes; `on_failure(error)` is called once,
    from the supervisor's thread, when a process is in a crash loop (the stack stops).

    `stop()` returns once no restart is under way and none will follow.
    """

    def __init__(
        self,
        processes: Mapping[str, subprocess.Popen[bytes]],
        *,
        restart: Callable[[str], subprocess.Popen[bytes]],
        ready: Callable[[str, threading.Event], bool],
        log_file: Callable[[str], Path],
        on_failure: Callable[[FanoutError], None],
        policy: Callable[[], RestartPolicy] = RestartPolicy,
        interval: float = POLL_SECONDS,
    ) -> None:
        self.processes = processes
        self._restart = restart
        self._ready = ready
        self._log_file = log_file
        self._on_failure = on_failure
        self._policy = policy
        self.interval = interval
        self.policies: dict[str, RestartPolicy] = {}
        self.restarts: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="supervisor")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                for name, process in list(self.processes.items()):
                    returncode = process.poll()
                    if returncode is not None and not self._recover(name, process, returncode):
                        return
        except Exception as error:  # a bug here must not leave a stack without supervision
            log.exception("the supervisor failed; stopping the stack")
            self._on_failure(StartupError(f"the local stack's supervisor failed: {error!r}"))

    def _recover(self, name: str, process: subprocess.Popen[bytes], returncode: int) -> bool:
        """Restart a process that exited; False when the supervisor must end."""
        if self._stop.is_set():
            return False
        # The group may outlive its leader (functions-framework's worker holds the port).
        with suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        policy = self.policies.setdefault(name, self._policy())
        delay = policy.died()
        status = exit_status(returncode)
        if delay is None:
            error = ProcessCrashLoop(
                name, policy.max_deaths, policy.window, status, self._log_file(name)
            )
            log.error("%s", error.message)
            self._on_failure(error)
            return False
        self.restarts[name] += 1
        count = self.restarts[name]
        log.warning(
            "%s exited with %s; restarting in %g s (restart %d)", name, status, delay, count
        )
        if self._stop.wait(delay):
            return False
        restarted = self._restart(name)
        if self._ready(name, self._stop):
            log.info("%s is up again (pid %d, restart %d)", name, restarted.pid, count)
        # Otherwise it died before serving: the next poll counts that death.
        return not self._stop.is_set()
