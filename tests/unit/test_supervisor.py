"""The local supervisor restarts a service that dies, but never loops on one that cannot start."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from imgproc_cli.supervisor import ServiceSpec, Supervisor
from imgproc_shared.errors import EXIT_UNRECOVERABLE


def _settle(supervisor: Supervisor, done: object, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        if callable(done) and done():
            return
        time.sleep(0.05)  # polling the child processes, bounded by the deadline
    raise AssertionError("supervisor did not settle in time")


def test_unrecoverable_exit_is_not_restarted(tmp_path: Path) -> None:
    supervisor = Supervisor(dict(os.environ), tmp_path)
    spec = ServiceSpec("tagger", (sys.executable, "-c", f"raise SystemExit({EXIT_UNRECOVERABLE})"))
    supervisor.start(spec)
    _settle(supervisor, lambda: "tagger" in supervisor.failed)
    assert supervisor.failed == {"tagger": EXIT_UNRECOVERABLE}
    assert supervisor.restarts == 0 and supervisor.processes == []


def test_a_crash_loop_stops_after_three_quick_exits(tmp_path: Path) -> None:
    supervisor = Supervisor(dict(os.environ), tmp_path)
    supervisor.start(ServiceSpec("extractor", (sys.executable, "-c", "raise SystemExit(1)")))
    _settle(supervisor, lambda: "extractor" in supervisor.failed)
    assert supervisor.restarts == 2, "restarted twice, then left stopped on the third quick exit"


def test_a_service_that_dies_is_restarted(tmp_path: Path) -> None:
    supervisor = Supervisor(dict(os.environ), tmp_path)
    marker = tmp_path / "started-once"
    # Exits at once the first time, then stays up: a crash followed by a healthy restart.
    code = (
        "import pathlib, sys, time\n"
        f"p = pathlib.Path({str(marker)!r})\n"
        "if not p.exists():\n    p.touch(); sys.exit(1)\n"
        "time.sleep(60)\n"
    )
    supervisor.start(ServiceSpec("thumbnailer", (sys.executable, "-c", code)))
    try:
        _settle(supervisor, lambda: supervisor.restarts == 1)
        assert supervisor.failed == {}
        assert [p.process.poll() for p in supervisor.processes] == [None]
    finally:
        supervisor.stop(timeout=5)
