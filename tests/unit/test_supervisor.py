"""The local supervisor restarts a service that exits, with back-off, and never gives up on it
silently; only a service that cannot be imported stops the stack (a configuration error)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

from imgproc_local.supervisor import ServiceSpec, Supervisor, import_problems
from imgproc_shared.errors import EXIT_UNRECOVERABLE

SLEEPER = (sys.executable, "-c", "import time; time.sleep(60)")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _supervisor(tmp_path: Path, clock: Callable[[], float] = time.monotonic) -> Supervisor:
    reports: list[str] = []
    supervisor = Supervisor(dict(os.environ), tmp_path, clock=clock, report=reports.append)
    supervisor.reports = reports  # type: ignore[attr-defined]
    return supervisor


def _settle(supervisor: Supervisor, done: Callable[[], object], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        supervisor.check()
        if done():
            return
        time.sleep(0.02)  # polling the child processes, bounded by the deadline
    raise AssertionError("supervisor did not settle in time")


def test_exits_are_restarted_with_doubling_back_off_up_to_60_s(tmp_path: Path) -> None:
    clock = Clock()
    supervisor = _supervisor(tmp_path, clock)
    supervisor.start(ServiceSpec("extractor", (sys.executable, "-c", "raise SystemExit(1)")))
    delays = []
    for _ in range(8):
        _settle(supervisor, lambda: supervisor.pending)
        assert supervisor.state("extractor") == "restarting"
        pending = supervisor.pending[0]
        delays.append(pending.at - clock.now)
        clock.now = pending.at - 0.01
        assert supervisor.check() == [], "started before its back-off was over"
        clock.now = pending.at
        assert len(supervisor.check()) == 1
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    record = supervisor.record("extractor")
    assert record["restarts"] == 8 and record["last_exit_code"] == 1
    assert supervisor.configuration_error is None
    assert "restart 8 in 60 s" in supervisor.reports[-1]  # type: ignore[attr-defined]
    supervisor.stop(timeout=5)


def test_back_off_starts_over_after_60_s_of_healthy_running(tmp_path: Path) -> None:
    clock = Clock()
    supervisor = _supervisor(tmp_path, clock)
    running = supervisor.start(ServiceSpec("tagger", SLEEPER))
    try:
        supervisor._failures[("tagger", 1)] = 5  # it had failed often before
        clock.now += 61
        os.kill(running.process.pid, signal.SIGKILL)
        _settle(supervisor, lambda: supervisor.pending)
        assert supervisor.pending[0].at - clock.now == 1
    finally:
        supervisor.stop(timeout=5)


def test_sigkill_soon_after_start_is_restarted_and_reported(tmp_path: Path) -> None:
    supervisor = _supervisor(tmp_path)
    running = supervisor.start(ServiceSpec("tagger", SLEEPER))
    try:
        os.kill(running.process.pid, signal.SIGKILL)
        _settle(supervisor, lambda: supervisor.pending)
        record = supervisor.record("tagger")
        assert record["state"] == "restarting" and record["next_restart_at"]
        assert record["restarts"] == 1 and record["last_exit_code"] == -signal.SIGKILL
        report = supervisor.reports[-1]  # type: ignore[attr-defined]
        assert "killed by SIGKILL" in report and "restart 1 in 1 s" in report
        _settle(supervisor, lambda: supervisor.running("tagger"))
        assert supervisor.state("tagger") == "running"
        assert supervisor.configuration_error is None
    finally:
        supervisor.stop(timeout=5)


def test_a_service_that_cannot_be_imported_is_a_configuration_error(tmp_path: Path) -> None:
    supervisor = _supervisor(tmp_path)
    spec = ServiceSpec("thumbnailer", (sys.executable, "-c", "import imgproc_no_such_module"))
    supervisor.start(spec)
    _settle(supervisor, lambda: supervisor.configuration_error)
    assert "No module named 'imgproc_no_such_module'" in str(supervisor.configuration_error)
    assert supervisor.pending == [] and supervisor.processes == []


def test_unrecoverable_exit_is_a_configuration_error(tmp_path: Path) -> None:
    supervisor = _supervisor(tmp_path)
    spec = ServiceSpec("tagger", (sys.executable, "-c", f"raise SystemExit({EXIT_UNRECOVERABLE})"))
    supervisor.start(spec)
    _settle(supervisor, lambda: supervisor.configuration_error)
    assert "fix the installation" in str(supervisor.configuration_error)
    assert supervisor.restarts == 0 and supervisor.processes == []


def test_import_check_names_the_service_and_the_reason(tmp_path: Path) -> None:
    specs = [
        ServiceSpec("extractor", (sys.executable, "-m", "imgproc_extractor")),
        ServiceSpec("ghost", (sys.executable, "-m", "imgproc_no_such_service")),
    ]
    problems = import_problems(specs, dict(os.environ))
    assert list(problems) == ["ghost"]
    assert problems["ghost"].startswith("ModuleNotFoundError")


def _ignores_sigterm(pid: int) -> bool:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_forced_stop_kills_at_once(tmp_path: Path) -> None:
    supervisor = _supervisor(tmp_path)
    # Ignores SIGTERM: only a kill ends it.
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    running = supervisor.start(ServiceSpec("extractor", (sys.executable, "-c", stubborn)))
    _settle(supervisor, lambda: _ignores_sigterm(running.process.pid))
    began = time.monotonic()
    assert supervisor.stop(timeout=30, force=lambda: True) is False
    assert time.monotonic() - began < 5
    assert running.process.returncode == -signal.SIGKILL
