"""However `fanout dev` (what `make dev` runs) is stopped, the stack stops whole: no process
it started is left, its ports are free for the next one, and the command exits 128 + the
signal, as a shell reports it (130 Ctrl-C, 143 `kill`, 129 a closed terminal)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from functions.local.emulators import ROOT, free_port_block
from functions.local.stack import FUNCTIONS
from tests.e2e.conftest import wait_for
from tests.e2e.test_cli import _alive, _cli, _kill_strays, _reaper_pid, _stack_pids, _wait_up


@dataclass(frozen=True)
class Way:
    """A way of stopping the running command: `stop(pid, output)` sends its signal(s) to
    the command's process group (led by `pid`) or to the command alone."""

    stop: Callable[[int, Path], None]
    exit_code: int


def _to_group(sig: signal.Signals) -> Callable[[int, Path], None]:
    return lambda pid, output: os.killpg(pid, sig)


def _to_command(sig: signal.Signals) -> Callable[[int, Path], None]:
    return lambda pid, output: os.kill(pid, sig)


def _again_while_stopping(pid: int, output: Path) -> None:
    """`kill`, and once the command says it is stopping, `kill` again."""
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: "Stopping the local stack" in output.read_text(), what="the stop to begin")
    os.kill(pid, signal.SIGTERM)


WAYS = {
    # A terminal sends Ctrl-C's SIGINT to its whole foreground process group.
    "ctrl-c": Way(_to_group(signal.SIGINT), 130),
    "kill": Way(_to_command(signal.SIGTERM), 143),
    # A process manager or a CI runner: `kill -TERM -- -PGID`.
    "kill-group": Way(_to_group(signal.SIGTERM), 143),
    # A closed terminal hangs up its session's foreground group.
    "terminal-closed": Way(_to_group(signal.SIGHUP), 129),
    "second-signal-while-stopping": Way(_again_while_stopping, 143),
}


@dataclass
class Running:
    process: subprocess.Popen[str]
    state: Path
    output: Path
    port_base: int

    def up(self) -> set[int]:
        """Wait for the stack to serve; the pids of its processes."""
        _wait_up(self.process, self.output)
        started = _stack_pids(self.state)
        assert len(started) >= len(FUNCTIONS) + 1, started  # the functions, the dispatcher
        return started


def _start(tmp_path: Path, argv: Callable[[Path, int], list[str]]) -> Iterator[Running]:
    """Start `argv(state, port_base)` in a session of its own (its own process group, as
    a terminal's foreground job is); end whatever it leaves if the test fails."""
    state, output, port_base = tmp_path / "state", tmp_path / "out", free_port_block(5)
    with output.open("w") as out:
        process = subprocess.Popen(
            argv(state, port_base),
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    try:
        yield Running(process, state, output, port_base)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        _kill_strays(state)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Running]:
    yield from _start(tmp_path, lambda state, port_base: _cli("dev", state, port_base))


@pytest.fixture
def dev_on_firestore(tmp_path: Path) -> Iterator[Running]:
    yield from _start(
        tmp_path, lambda state, port_base: _cli("dev", state, port_base, "--store", "firestore")
    )


@pytest.fixture
def make_dev(tmp_path: Path) -> Iterator[Running]:
    yield from _start(
        tmp_path,
        lambda state, port_base: [
            "make",
            "--no-print-directory",
            "dev",
            f"STATE_DIR={state}",
            f"PORT_BASE={port_base}",
        ],
    )


def _assert_stopped_whole(running: Running, started: set[int]) -> None:
    """No process of the stack runs (neither one seen at the start nor any started since),
    and each port takes a new server."""
    assert not {pid for pid in started | _stack_pids(running.state) if _alive(pid)}
    for offset in FUNCTIONS.values():
        with socket.socket() as server:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind
            server.bind(("127.0.0.1", running.port_base + offset))
            server.listen()


@pytest.mark.parametrize("way", WAYS.values(), ids=WAYS.keys())
def test_the_stack_stops_whole_whatever_stops_it(dev: Running, way: Way) -> None:
    started = dev.up()

    way.stop(dev.process.pid, dev.output)

    assert dev.process.wait(timeout=60) == way.exit_code, dev.output.read_text()
    _assert_stopped_whole(dev, started)
    assert not (dev.state / "stack.pids").exists()  # nothing for a next stack to end
    out = dev.output.read_text()
    assert out.rstrip().endswith("stopped") and "Traceback" not in out, out
    assert "restarting" not in out, out  # the supervisor took no stopped process for a crash


def test_make_dev_stops_whole_on_a_group_sigterm(make_dev: Running) -> None:
    """`kill -TERM -- -PGID` of `make dev`: make and the CLI both get SIGTERM, and make
    forwards its own to the CLI, which gets two, often a few milliseconds apart. The second
    only hurries the stop; the CLI exits 143, and make, ended by the signal, says so."""
    started = make_dev.up()

    os.killpg(make_dev.process.pid, signal.SIGTERM)

    assert make_dev.process.wait(timeout=60) == -signal.SIGTERM, make_dev.output.read_text()
    _assert_stopped_whole(make_dev, started)
    assert not (make_dev.state / "stack.pids").exists()
    out = make_dev.output.read_text()
    assert "] Error 143" in out and "Traceback" not in out, out


def test_kill_9_of_the_cli_is_followed_by_its_reaper(dev: Running) -> None:
    """Nothing runs in a process on SIGKILL: the stack's reaper, which watches the CLI
    from a session of its own, ends what the CLI started, without waiting for a next
    stack to find them."""
    started = dev.up()
    reaper = _reaper_pid(dev.state)

    dev.process.kill()

    assert dev.process.wait(timeout=60) == -signal.SIGKILL
    wait_for(
        lambda: not {pid for pid in started if _alive(pid)},
        timeout=60,
        what="the reaper to end the stack",
    )
    wait_for(lambda: not _alive(reaper), timeout=30, what="the reaper to exit")
    _assert_stopped_whole(dev, started)


def _stat(pid: int) -> list[str]:
    """Fields 3 on of /proc/PID/stat: state, ppid, pgrp, session, ..."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()


def _processes() -> Iterator[tuple[int, list[str]]]:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                yield int(entry.name), _stat(int(entry.name))
            except OSError:
                continue


def _emulator_child(parent: int) -> int | None:
    """The Firestore emulator `parent` started (it leads a session of its own)."""
    for pid, stat in _processes():
        try:
            if int(stat[1]) == parent and b"firestore" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        except OSError:
            continue
    return None


def test_ctrl_c_while_the_stack_starts_ends_what_it_started(dev_on_firestore: Running) -> None:
    """Ctrl-C while `fanout dev --store firestore` waits for its Firestore emulator to come
    up: the emulator, with everything in its session (gcloud starts Java), is ended too."""
    dev = dev_on_firestore
    emulator = wait_for(lambda: _emulator_child(dev.process.pid), what="the emulator to start")

    os.killpg(dev.process.pid, signal.SIGINT)

    assert dev.process.wait(timeout=60) == 130, dev.output.read_text()
    left = [pid for pid, stat in _processes() if int(stat[3]) == emulator and stat[0] != "Z"]
    assert not left, left
    assert not {pid for pid in _stack_pids(dev.state) if _alive(pid)}
