"""The local stack's restart policy: the delay doubles with each death in the window, and
the fifth death within a minute is a crash loop."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from functions.errors import ProcessCrashLoop
from functions.local.supervisor import RestartPolicy, exit_status


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_delay_doubles_and_the_fifth_death_in_a_minute_is_a_crash_loop() -> None:
    clock = Clock()
    policy = RestartPolicy(clock=clock)
    delays = []
    for _ in range(5):
        delays.append(policy.died())
        clock.now += 1
    assert delays == [0.5, 1.0, 2.0, 4.0, None]


def test_the_delay_stops_at_its_maximum() -> None:
    clock = Clock()
    policy = RestartPolicy(first_delay=1, max_delay=5, max_deaths=10, clock=clock)
    assert [policy.died() for _ in range(6)] == [1, 2, 4, 5, 5, 5]


def test_deaths_older_than_the_window_are_forgotten() -> None:
    clock = Clock()
    policy = RestartPolicy(clock=clock)
    for _ in range(4):
        policy.died()
        clock.now += 10  # 4 deaths over 40 s
    assert policy.recent_deaths == 4
    clock.now += 31  # the first death is now 71 s old, the second 61 s
    assert policy.recent_deaths == 2
    assert policy.died() == 2.0  # the third in the window: not a crash loop


def test_a_process_killed_once_a_minute_is_never_a_crash_loop() -> None:
    clock = Clock()
    policy = RestartPolicy(clock=clock)
    delays = []
    for _ in range(20):
        delays.append(policy.died())
        clock.now += 60.5
    assert set(delays) == {0.5}


def test_both_limits_are_parameters() -> None:
    clock = Clock()
    policy = RestartPolicy(max_deaths=2, window=5, clock=clock)
    assert policy.died() == 0.5
    clock.now += 6
    assert policy.died() == 0.5  # the first death left the window
    clock.now += 4
    assert policy.died() is None


@pytest.mark.parametrize(
    "settings",
    [{"first_delay": 0}, {"max_delay": 0.1}, {"max_deaths": 0}, {"window": 0}],
)
def test_an_unusable_policy_is_refused(settings: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="restart policy"):
        RestartPolicy(**settings)  # type: ignore[arg-type]


def test_exit_statuses_read_as_words() -> None:
    assert exit_status(-signal.SIGKILL) == "signal SIGKILL"
    assert exit_status(2) == "status 2"


def test_the_crash_loop_error_names_the_process_its_deaths_and_its_log() -> None:
    error = ProcessCrashLoop("run_batch", 5, 60, "status 1", Path("/x/.local/logs/run_batch.log"))
    assert error.message == (
        "run_batch died 5 times within 60 s (last: exited with status 1); stopped the local "
        "stack. See /x/.local/logs/run_batch.log"
    )
