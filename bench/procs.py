"""What the benches read from /proc about a stack's processes. Each process of the local
stack leads its own process group (functions-framework forks its worker into it)."""

from __future__ import annotations

import os
from pathlib import Path


def _stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat after the command name (which may hold spaces): field 3 is first."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def group_pids(leader: int) -> list[int]:
    """The processes of `leader`'s group that are alive now, the leader first."""
    pids = [leader]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == leader:
            continue
        try:
            if int(_stat_fields(int(entry.name))[2]) == leader:
                pids.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue  # exited meanwhile
    return pids


def serves_functions(pid: int) -> bool:
    """Whether `pid` is a functions-framework process (the group's leader or the worker it
    forked), not a helper the worker started (a compaction child); False once it exited."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return argv[1:3] == [b"-m", b"functions_framework"]


def _status_kib(pid: int, key: str) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    line = next((x for x in status.splitlines() if x.startswith(f"{key}:")), f"{key}: 0 kB")
    return int(line.split()[1])


def peak_rss_kib(pid: int) -> int:
    """VmHWM, the peak resident set of `pid`, in KiB; 0 if it has exited."""
    return _status_kib(pid, "VmHWM")


def functions_peak_rss_mb(leader: int) -> float:
    """The highest VmHWM (peak resident set), in MB, among the functions-framework processes
    of `leader`'s group: its worker, not a helper child (one still running would be taken
    for it)."""
    pids = [pid for pid in group_pids(leader) if serves_functions(pid)]
    return round(max(peak_rss_kib(pid) for pid in pids) / 1024, 1)


def rss_kib(pid: int) -> int:
    """VmRSS, the resident set of `pid` now, in KiB; 0 if it has exited."""
    return _status_kib(pid, "VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU `pid` has used."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
