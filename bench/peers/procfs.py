"""CPU and memory of a gateway's whole process tree, read from /proc.

The gateways compared are built differently: Tollway and LiteLLM are one Python process with one
worker, Portkey one Node process, and any of them may start helpers (a worker, a query engine).
Counting the process a benchmark started *and its descendants* keeps the figures comparable
whatever each one does inside. Linux only; elsewhere every figure reads as 0.
"""

from __future__ import annotations

import os
from pathlib import Path

from run import CpuMeter

PROC = Path("/proc")
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces and parens)."""
    try:
        return (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def process_tree(pid: int) -> list[int]:
    """`pid` and every live descendant, found from each process's parent id.

    A scan of /proc rather than /proc/<pid>/task/*/children: the latter needs a kernel option and
    misses children of threads other than the listed ones."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and len(fields) > 1:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [pid]
    while todo:  # bounded: every pid is visited once, and pids form a tree
        current = todo.pop()
        tree.append(current)
        todo.extend(children.get(current, ()))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of the tree so far, including children it has already reaped."""
    total = 0.0
    for i, member in enumerate(process_tree(pid)):
        fields = _stat_fields(member)
        if not fields or len(fields) < 15:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
        if i == 0:
            total += int(fields[13]) + int(fields[14])  # cutime, cstime: children that exited
    return total / _TICK


def rss_bytes(pid: int) -> int:
    """Resident set size of one process (VmRSS), 0 if it is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_rss_bytes(pid: int) -> int:
    """Sum of the RSS of the tree's processes (pages shared between them count once per process)."""
    return sum(rss_bytes(member) for member in process_tree(pid))


class TreeCpuMeter(CpuMeter):
    """run.py's CpuMeter over a whole process tree: the same start / per-request interface, so
    run.py's load generators (python_load, wrk_load) can drive it unchanged."""

    def start(self) -> None:
        if self.pid:
            self._start = tree_cpu_seconds(self.pid)

    def per_request_us(self, requests: int) -> float | None:
        if not self.pid or not requests:
            return None
        return (tree_cpu_seconds(self.pid) - self._start) * 1e6 / requests
