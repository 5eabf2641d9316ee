"""How many local stacks and emulators a test run starts: the suite's main cost, printed
at the end of every run (with xdist, summed over the workers)."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from functions.local import emulators, tasks_emulator
from functions.local.stack import LocalStack

STARTS: Counter[str] = Counter()
_PATCH = pytest.MonkeyPatch()


def _counting(kind: Callable[..., str], start: Callable[..., Any]) -> Callable[..., Any]:
    def counted(*args: Any, **kwargs: Any) -> Any:
        STARTS[kind(*args, **kwargs)] += 1
        return start(*args, **kwargs)

    return counted


def _starts_dir(config: pytest.Config) -> Path:
    return config.rootpath / ".pytest_cache" / "starts"


def pytest_configure(config: pytest.Config) -> None:
    # Patched where every caller looks them up at call time: the modules and the class.
    start_emulator = _counting(lambda name, *_, **__: f"emulator {name}", emulators.start_emulator)
    _PATCH.setattr(emulators, "start_emulator", start_emulator)
    _PATCH.setattr(tasks_emulator, "start_emulator", start_emulator)
    _PATCH.setattr(
        LocalStack,
        "start",
        _counting(lambda stack: f"stack ({stack.config.cloud})", LocalStack.start),
    )
    if not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        directory = _starts_dir(config)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.json"):
            stale.unlink()


def pytest_unconfigure() -> None:
    _PATCH.undo()


def pytest_sessionfinish(session: pytest.Session) -> None:
    worker = getattr(session.config, "workerinput", {}).get("workerid", f"main-{os.getpid()}")
    (_starts_dir(session.config) / f"{worker}.json").write_text(json.dumps(STARTS))


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    total: Counter[str] = Counter()
    for path in _starts_dir(config).glob("*.json"):
        total.update(json.loads(path.read_text()))
    if total:
        terminalreporter.write_sep("=", "stacks and emulators started")
        for kind, count in sorted(total.items()):
            terminalreporter.write_line(f"{count:5d}  {kind}")
