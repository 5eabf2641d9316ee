"""Times, durations and sizes as people read them, on the pages and in the `fanout` command
("3 min ago", "1 min 5 s")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_UNITS = ((86_400, "d"), (3_600, "h"), (60, "min"))


def relative_time(moment: datetime, now: datetime) -> str:
    """`moment` relative to `now`: "just now", "42 s ago", "3 min ago", "2 h ago", "5 d ago";
    "in 3 min" for a moment ahead (another instance's clock may run a little fast)."""
    seconds = round((now - moment).total_seconds())
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 5:
        return "just now"
    text = f"{seconds} s"
    for size, unit in _UNITS:
        if seconds >= size:
            text = f"{seconds // size} {unit}"
            break
    return f"in {text}" if ahead else f"{text} ago"


def start_time(moment: datetime, now: datetime) -> str:
    """When a scheduled job starts: "starts in 2 h", "starts in 40 s"; "starting" once its
    time has come (its first batch is on its way)."""
    ahead = relative_time(moment, now)
    return f"starts {ahead}" if ahead.startswith("in ") else "starting"


def absolute_time(moment: datetime) -> str:
    """The exact moment, in UTC, to the second: for a `title` and for reading back."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(span: timedelta | None) -> str:
    """ "0.4 s", "12.3 s", "3 min 5 s", "2 h 10 min", "1 d 3 h"; a dash for none."""
    if span is None:
        return "\u2013"  # an en dash
    seconds = span.total_seconds()
    if seconds < 60:
        return f"{max(seconds, 0.0):.1f} s"
    whole = int(seconds)
    for (size, unit), (small, small_unit) in zip(_UNITS, (*_UNITS[1:], (1, "s")), strict=True):
        if whole >= size:
            return f"{whole // size} {unit} {whole % size // small} {small_unit}"
    return f"{whole} s"  # unreachable: 60 s and more matched the last unit


def byte_size(count: int) -> str:
    """1536 -> "1.5 KiB"."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"  # unreachable: the loop returns at GiB


def plural(count: int, noun: str) -> str:
    """`1 batch`, `2 batches`, `0 files`: the count and its noun in the right number."""
    if count == 1:
        return f"{count} {noun}"
    suffix = "es" if noun.endswith(("s", "sh", "ch", "x", "z")) else "s"
    return f"{count} {noun}{suffix}"
