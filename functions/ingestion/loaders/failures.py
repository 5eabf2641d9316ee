"""Short, human-readable failure messages: the file's name and what is wrong with it."""

from __future__ import annotations

MAX_REASON_CHARS = 200


def display_name(uri: str) -> str:
    """The last part of a path or `gs://` URI, for messages."""
    return uri.rstrip("/").rsplit("/", 1)[-1] or uri


def one_line(text: str) -> str:
    """The first non-blank line of `text`, capped: library messages can quote whole streams."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(line) > MAX_REASON_CHARS:
        line = line[: MAX_REASON_CHARS - 3] + "..."
    return line


def reason(exc: BaseException) -> str:
    """One line about `exc`: its message, or its type when it has none."""
    return one_line(str(exc)) or type(exc).__name__
