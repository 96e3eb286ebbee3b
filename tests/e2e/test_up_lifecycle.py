"""`imgproc up` stops everything on Ctrl-C within 15 s and leaves no process behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stack_process import start_stack

pytestmark = pytest.mark.e2e


def _children(pid: int) -> set[int]:
    """Every live process whose parent is `pid` (the services `up` started)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").exists() and " Z " not in Path(f"/proc/{pid}/stat").read_text()


def test_ctrl_c_stops_everything_within_15_seconds(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "home")
    services = _children(stack.process.pid)
    assert len(services) >= 4, f"expected the four services as processes, saw {services}"

    took = stack.stop(timeout=20)

    assert took < 15, f"stopping took {took:.1f}s"
    assert stack.process.returncode == 0
    assert not [pid for pid in services if _alive(pid)], "service processes left behind"
    assert not (tmp_path / "home" / "stack.json").exists()
    log = stack.log_path.read_text()
    assert "imgproc stopped in" in log and "final snapshot took" in log, log[-2000:]
    assert "thread(s) still running" not in log and "Exception ignored" not in log, log[-2000:]
