"""A service clock the test moves by hand (never slept on)."""

from __future__ import annotations

from datetime import datetime, timedelta

from functions.jobs import utcnow


class ManualClock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta
