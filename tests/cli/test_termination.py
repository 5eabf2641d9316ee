"""The CLI's signals, raised for real in this process: the first stops the command with its
exit code; a later one, as `make` forwards, only hurries the stop and never raises again
(a second exception would abort the stop halfway)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from functions.cli import termination


@pytest.fixture
def installed() -> Iterator[None]:
    saved = {signum: signal.getsignal(signum) for signum in termination.SIGNALS}
    termination.install()
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)],
    ids=["ctrl-c", "kill", "terminal-closed"],
)
@pytest.mark.usefixtures("installed")
def test_the_first_signal_stops_the_command_with_its_exit_code(
    signum: signal.Signals, code: int
) -> None:
    with pytest.raises(termination.Terminated) as stopped:
        signal.raise_signal(signum)
    assert isinstance(stopped.value, KeyboardInterrupt)  # what `with stack` stops on
    assert termination.exit_code(stopped.value) == code


@pytest.mark.usefixtures("installed")
def test_a_later_signal_hurries_the_stop_and_raises_nothing() -> None:
    hurried: list[str] = []
    termination.on_repeat(lambda: hurried.append("hurry"))
    with pytest.raises(termination.Terminated):
        signal.raise_signal(signal.SIGTERM)

    signal.raise_signal(signal.SIGTERM)  # make's forwarded copy
    signal.raise_signal(signal.SIGINT)  # an impatient Ctrl-C

    assert hurried == ["hurry", "hurry"]


def test_a_plain_keyboard_interrupt_exits_130() -> None:
    assert termination.exit_code(KeyboardInterrupt()) == 130
