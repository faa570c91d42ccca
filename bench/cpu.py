"""CPU time from /proc (Linux), in clock ticks: the machine's, a process's, a tree's."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def machine_busy_ticks() -> int:
    """Non-idle ticks of all CPUs together since boot."""
    with open("/proc/stat") as stat:
        # cpu user nice system idle iowait irq softirq steal (guest time is within user)
        values = [int(v) for v in stat.readline().split()[1:9]]
    return sum(values) - values[3] - values[4]


def process_ticks(pid: int) -> int:
    """User + system ticks of all threads of ``pid``."""
    return _stat(pid)[1]


def tree_ticks(root_pid: int) -> int:
    """Ticks of ``root_pid`` and its children: a PostgreSQL server and its backends.

    A child that exits inside a window takes its ticks with it; pooled connections keep
    their backends for the whole run, so that loses next to nothing.
    """
    total = process_ticks(root_pid)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):  # gone meanwhile
                parent, ticks = _stat(int(entry.name))
                if parent == root_pid:
                    total += ticks
    return total


def _stat(pid: int) -> tuple[int, int]:
    """(parent pid, utime + stime) of ``pid``."""
    with open(f"/proc/{pid}/stat") as stat:
        # The command name may contain spaces; the fields after it start with the state.
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[1]), int(fields[11]) + int(fields[12])
