"""Adapter: what Linux's /proc says about a running server (memory of a process tree).

Used by ``verify`` to record what the served model costs in memory, which ``deploy`` turns into
the Deployment's requests and limits. Only reads /proc; where it cannot tell (another OS, the
process gone, a container engine whose processes are not on this host) the answer is None.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

PROC = Path("/proc")


def tree_memory_bytes(root_pid: int, proc: Path = PROC) -> int | None:
    """The proportional set size (PSS) of ``root_pid`` and every descendant, summed.

    PSS splits pages shared between processes among them, so the sum is what the tree costs
    together; it is close to what a cgroup memory limit counts for the same processes."""
    children: defaultdict[int, list[int]] = defaultdict(list)
    for stat in proc.glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            fields = stat.read_text(encoding="utf-8", errors="replace").rsplit(")", 1)[1].split()
            children[int(fields[1])].append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
    total, seen, pending = 0, set(), [root_pid]
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        size = _pss_bytes(proc / str(pid))
        if size is None and pid == root_pid:
            return None
        total += size or 0
        pending += children.get(pid, [])
    return total


def _pss_bytes(process: Path) -> int | None:
    """PSS from smaps_rollup (Linux 4.14+), else RSS from status; None when unreadable."""
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            text = (process / name).read_text(encoding="utf-8")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith(key):
                return int(line.split()[1]) * 1024  # reported in kB
    return None
