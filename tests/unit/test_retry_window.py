"""The queue's retry window: how long one task can stay alive, from the dispatch settings.
The sweeper takes a batch still pending this long (plus the enqueue grace) after its task
was enqueued for one whose task was dropped."""

from __future__ import annotations

from datetime import timedelta

import pytest

from functions.config import DispatchSettings, Settings, retry_window
from functions.errors import ConfigError
from functions.queue.local import backoff


def _dispatch(attempts: int, low: float, high: float, deadline: float) -> DispatchSettings:
    return DispatchSettings(
        max_attempts=attempts,
        min_backoff=timedelta(seconds=low),
        max_backoff=timedelta(seconds=high),
        deadline=timedelta(seconds=deadline),
    )


@pytest.mark.parametrize(
    ("dispatch", "seconds"),
    [
        # The defaults (the Cloud Tasks queue of infra/queue.tf): 10 deadlines of 10 min,
        # and the backoffs 1 + 2 + 4 + 8 + 16 + 32 + 60 + 60 + 60 between them.
        (DispatchSettings(), 10 * 600 + 243),
        # One attempt: no retry, so no backoff.
        (_dispatch(1, 0.1, 60, 30), 30),
        # Doubling stops at max_backoff: 1 + 2 + 3 + 3.
        (_dispatch(5, 1, 3, 10), 5 * 10 + 9),
        # The e2e recovery stacks: 3 attempts of at most 1 s, backoffs 0.05 + 0.1.
        (_dispatch(3, 0.05, 0.5, 1), 3.15),
    ],
    ids=["defaults", "one-attempt", "capped", "e2e"],
)
def test_window_is_every_deadline_plus_every_backoff(
    dispatch: DispatchSettings, seconds: float
) -> None:
    """window = max_attempts x deadline + the sum of the backoffs before each retry."""
    assert retry_window(dispatch).total_seconds() == pytest.approx(seconds)


@pytest.mark.parametrize("attempts", [1, 2, 5, 12, 100])
def test_window_matches_the_local_dispatchers_backoff(attempts: int) -> None:
    """The window follows the backoff the local dispatcher actually waits (and Cloud Tasks
    with max_doublings past the cap), so the two cannot drift apart."""
    dispatch = _dispatch(attempts, 0.05, 0.5, 2)
    waits = sum((backoff(n, dispatch) for n in range(1, attempts)), timedelta())
    expected = attempts * dispatch.deadline + waits
    assert retry_window(dispatch).total_seconds() == pytest.approx(expected.total_seconds())


def test_many_attempts_do_not_overflow() -> None:
    """Doubling is bounded before it overflows: past the cap (0.1 s doubled 10 times is
    102.4 s), each of 1,000 attempts waits max_backoff."""
    window = retry_window(_dispatch(1_000, 0.1, 60, 1))
    doubling = sum(0.1 * 2**n for n in range(10))  # 0.1 .. 51.2
    assert window.total_seconds() == pytest.approx(1_000 + doubling + 989 * 60)


def test_max_dispatch_rounds_is_read_and_checked() -> None:
    """FANOUT_MAX_DISPATCH_ROUNDS: 3 by default, a whole number of at least 1."""
    assert Settings.from_env({}).max_dispatch_rounds == 3
    assert Settings.from_env({"FANOUT_MAX_DISPATCH_ROUNDS": "5"}).max_dispatch_rounds == 5
    for bad in ("0", "two"):
        with pytest.raises(ConfigError, match="FANOUT_MAX_DISPATCH_ROUNDS"):
            Settings.from_env({"FANOUT_MAX_DISPATCH_ROUNDS": bad})
