"""CPU time of the local stack's processes, read from /proc: the endpoint's own and each
service's, by the module it runs."""

from __future__ import annotations

import os
from pathlib import Path


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a live process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks


def _service_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid-{pid}"
    for i, arg in enumerate(argv):
        if arg == b"-m" and i + 1 < len(argv):
            return argv[i + 1].decode(errors="replace").removeprefix("imgproc_")
    return Path(argv[0].decode(errors="replace")).name or f"pid-{pid}"


def process_cpu(root_pid: int) -> tuple[float | None, dict[int, tuple[str, float]]]:
    """CPU seconds of `root_pid` itself and of each of its descendants (pid → name, seconds)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = stat
    descendants: dict[int, tuple[str, float]] = {}
    frontier = [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in descendants:
                descendants[pid] = (_service_name(pid), cpu[pid])
                frontier.append(pid)
    return cpu.get(root_pid), descendants


def cpu_delta(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds each service used between two snapshots (a restarted process counts whole)."""
    used: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        start = before.get(pid, (name, 0.0))[1]
        used[name] = used.get(name, 0.0) + max(0.0, seconds - start)
    return used
