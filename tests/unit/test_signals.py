"""A Ctrl-C (or `kill`) while the stack starts a child reaches its handler only once the
child's handle is kept, raised for real in this process."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from functions.local.signals import held_signals


@pytest.fixture
def interrupting() -> Iterator[list[int]]:
    """A SIGTERM handler that records the signal and interrupts, as the CLI's does."""
    seen: list[int] = []

    def interrupt(signum: int, frame: object) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    yield seen
    signal.signal(signal.SIGTERM, previous)


def test_a_signal_in_the_block_reaches_its_handler_as_the_block_ends(
    interrupting: list[int],
) -> None:
    seen_inside: list[list[int]] = []

    def start_a_child() -> None:
        with held_signals():
            signal.raise_signal(signal.SIGTERM)
            seen_inside.append(list(interrupting))  # runs: the signal waits

    with pytest.raises(KeyboardInterrupt):
        start_a_child()
    assert seen_inside == [[]]
    assert interrupting == [signal.SIGTERM]


def test_the_handlers_are_back_after_the_block(interrupting: list[int]) -> None:
    with held_signals():
        pass
    with pytest.raises(KeyboardInterrupt):
        signal.raise_signal(signal.SIGTERM)
    assert interrupting == [signal.SIGTERM]
