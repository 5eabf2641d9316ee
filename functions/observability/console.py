"""Log lines for people: one coloured line per entry, for `make dev` and `fanout logs`.

`render` is pure, so the dev console and the CLI show a line the same way. `LogTailer`
follows the local stack's `fanout.jsonl` (several processes append to it) from its end, the
way `tail -F` does: it waits for the file to appear, holds back a last line until its
newline is written, and starts over if the file is replaced or truncated.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.text import Text

from functions.observability.lines import LogLine
from functions.observability.severity import severity_rank

_STYLES = {
    "DEFAULT": "dim",
    "DEBUG": "dim",
    "INFO": "blue",
    "NOTICE": "cyan",
    "WARNING": "yellow",
    "ERROR": "red",
}
_WORST = "bold white on red"  # CRITICAL and above
_ERROR_RANK = severity_rank("ERROR")
# Fields shown below the line rather than on it.
_BELOW = ("failed_items",)
_VALUE_WIDTH = 60


def severity_style(severity: str) -> str:
    if severity_rank(severity) > _ERROR_RANK:
        return _WORST
    return _STYLES.get(severity, "")


def short_time(value: str) -> str:
    """`HH:MM:SS.mmmZ` (UTC, like the lines themselves); the text as is if it is no time."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%H:%M:%S.%f")[:-3] + "Z"


def render(line: LogLine) -> Text:
    """`time severity function ids event message fields`, and each failed item on a line of
    its own below. The ids are the batch's (which begins with its job's) or the job's, and
    the attempt (`#2`) when the line has one."""
    labels = line.labels
    failed = _is_failure(line)
    text = Text(no_wrap=False)
    text.append(short_time(line.time), style="dim")
    text.append(" ")
    text.append(f"{line.severity:<7.7}", style=severity_style(line.severity))
    text.append(" ")
    text.append(f"{labels.get('function', '-'):<12}", style="magenta")
    text.append(" ")
    ids = labels.get("batch_id") or labels.get("job_id") or "-"
    text.append(ids, style="cyan")
    if labels.get("attempt"):
        text.append(f" #{labels['attempt']}", style="cyan")
    if line.event:
        text.append(" ")
        text.append(line.event, style="bold red" if failed else "bold")
    message = line.message.rstrip("\n").replace("\n", "\n    ")
    if message:
        text.append(" ")
        text.append(message, style="red" if failed else "")
    inline = _inline_fields(line.fields)
    if inline:
        text.append(" ")
        text.append(inline, style="dim")
    for item, error in _failed_items(line.fields):
        text.append("\n    ")
        text.append(item, style="red")
        text.append(f": {error}")
    return text


def _is_failure(line: LogLine) -> bool:
    return severity_rank(line.severity) >= _ERROR_RANK or (line.event or "").endswith("_failed")


def _inline_fields(fields: Mapping[str, Any]) -> str:
    """The event's scalar fields as `key=value`; nested ones are left to the raw line."""
    parts = []
    for key, value in fields.items():
        if key in _BELOW or isinstance(value, Mapping | list) or value is None:
            continue
        shown = str(value)
        if len(shown) > _VALUE_WIDTH:
            shown = shown[: _VALUE_WIDTH - 3] + "..."
        if not shown or any(c.isspace() for c in shown):
            shown = json.dumps(shown)  # where the value ends stays clear
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def _failed_items(fields: Mapping[str, Any]) -> list[tuple[str, str]]:
    items = fields.get("failed_items")
    if isinstance(items, Mapping):
        return [(str(item), str(error)) for item, error in items.items()]
    if isinstance(items, list):
        return [(str(item), "") for item in items]
    return []


def parse_line(raw: bytes) -> LogLine:
    """A line of the local log file; one that is not a JSON object (a crash's stray
    output) is shown as its text."""
    text = raw.decode(errors="replace").rstrip("\r\n")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        return LogLine.from_structured(data)
    return LogLine(time="", severity="DEFAULT", message=text)


class LogTailer:
    """Follows one file from its end at construction: `poll` returns the complete lines
    appended since; `start` runs a daemon thread (the dev console must never keep the CLI
    alive) that hands them to `on_line`."""

    def __init__(
        self, path: Path, on_line: Callable[[LogLine], None], *, interval: float = 0.2
    ) -> None:
        self.path = path
        self.on_line = on_line
        self.interval = interval
        self._offset = 0
        self._inode: int | None = None
        self._partial = b""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # What the file holds now (earlier runs' lines) is skipped. The end is taken here,
        # not in the thread, so a line appended once the tailer exists is always shown.
        self._seek_end()

    def start(self) -> LogTailer:
        self._thread = threading.Thread(target=self._run, daemon=True, name="log-tailer")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _seek_end(self) -> None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return  # once it appears, all of it is new
        self._inode, self._offset = stat.st_ino, stat.st_size

    def _run(self) -> None:
        # Polling a file: an inotify dependency is not worth it for a dev console.
        while not self._stop.wait(self.interval):
            for line in self.poll():
                self.on_line(line)

    def poll(self) -> list[LogLine]:
        """The lines completed since the last poll (or `start`), oldest first."""
        try:
            with self.path.open("rb") as file:
                stat = os.fstat(file.fileno())
                if stat.st_ino != self._inode or stat.st_size < self._offset:
                    # A new file (the state directory was cleared) or a truncated one.
                    self._inode, self._offset, self._partial = stat.st_ino, 0, b""
                file.seek(self._offset)
                data = file.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [parse_line(raw) for raw in complete if raw.strip()]
