"""CPU time spent by a local stack's processes, from /proc (Linux): what a bench can compare on a busy machine.

Wall-clock rates swing with whatever else runs on the machine (other tests, a build); the CPU seconds a process
spends on the same work do not, or far less: they say whether *our* code costs more, which is what a bench that
compares two configurations asks. Used by bench/plugin_overhead.py next to its wall-clock ratio.
"""

from __future__ import annotations

import os
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0 when it is gone."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime (fields 14, 15 of proc(5))


def tree_cpu_s(parent: int) -> float:
    """CPU seconds of `parent`, its live children and the children it has already reaped (cutime, cstime):
    for PostgreSQL's postmaster, every backend of the cluster, including connections closed meanwhile."""
    fields = _stat_fields(parent)
    if fields is None:
        return 0.0
    total = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / TICKS_PER_S
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            child = _stat_fields(int(entry))
            if child is not None and child[1] == str(parent):
                total += process_cpu_s(int(entry))
    return total


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())
