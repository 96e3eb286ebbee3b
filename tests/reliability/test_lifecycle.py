"""`imgproc up` as a service manager: Ctrl-C always stops everything, a killed service comes back.

Each test runs its own stack (it stops it, or makes it fail) and watches it from the outside:
the service processes and their process groups in /proc, `up`'s terminal output, and
`imgproc workers --json`. Every wait is a poll with a deadline.

- an idle stack stops within 3 s of SIGINT, every process gone, with the final snapshot's time;
- SIGINT during a 100-image load while workers are being killed: the stop completes within the
  services' stop timeout plus the final snapshot, and no process of the stack is left;
- a second SIGINT stops at once (services killed, no final snapshot) and says so;
- a service killed with SIGKILL right after it started is restarted after a back-off, visible
  in `imgproc workers --json` (state `restarting`, restart count, exit code -9), then running;
- a service that cannot be imported makes `up` exit non-zero with the reason. The broken
  install is made by a package of the same name earlier on PYTHONPATH, which shadows the real
  one (no test hook in the product).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from fault_stack import (
    FAST_RECOVERY_ENV,
    WORKER_MODULES,
    kill,
    photo,
    service_pids,
    serving,
    upload_files,
)
from stack_process import IMGPROC, REPO_ROOT, RunningStack, free_port, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

IDLE_STOP_S = 3.0
LOAD_IMAGES = 100
# `up`'s drain for its services (up.py `_SERVICE_STOP_TIMEOUT_S`).
SERVICE_STOP_TIMEOUT_S = 8.0
# Process exits and reaping on a loaded 2-core machine, past the drain and the snapshot.
SLACK_S = 3.0
FINAL_SNAPSHOT = re.compile(r"imgproc stopped in ([\d.]+) s; final snapshot took ([\d.]+) s")


def _start(tmp_path: Path, name: str) -> RunningStack:
    return start_stack(tmp_path / name, tagger="rekognition", extra_env=FAST_RECOVERY_ENV)


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _groups_alive(groups: set[int]) -> list[int]:
    """Live processes (not zombies) in any of these process groups."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields and fields[0] not in ("Z", "X") and int(fields[2]) in groups:
                found.append(int(entry.name))
    return found


def _service_groups(stack: RunningStack) -> set[int]:
    """Every service runs in its own process group, led by the service process."""
    return {pid for pids in service_pids(stack.process.pid).values() for pid in pids}


def _wait_all_serving(stack: RunningStack, timeout: float = 90) -> dict[str, list[int]]:
    deadline = time.monotonic() + timeout
    while True:
        pids = service_pids(stack.process.pid)
        if all(pids.values()) and all(serving(p) for ps in pids.values() for p in ps):
            return pids
        assert time.monotonic() < deadline, f"services not all serving: {pids}"
        time.sleep(0.1)  # polling /proc, bounded by the deadline


def _wait_stopped(stack: RunningStack, groups: set[int], timeout: float) -> float:
    """Poll until `up` and every process of the services' groups are gone; returns the time
    since the call. Fails at the deadline, naming what is left."""
    began = time.monotonic()
    while True:
        left = _groups_alive(groups)
        if stack.process.poll() is not None and not left:
            return time.monotonic() - began
        if time.monotonic() - began > timeout:
            stack.process.kill()
            for pid in left:
                kill(pid, signal.SIGKILL)
            raise AssertionError(
                f"not stopped {timeout}s after SIGINT: up exit={stack.process.poll()}, "
                f"left={left}\n{stack.log_path.read_text()[-3000:]}"
            )
        time.sleep(0.02)  # polling /proc, bounded by the deadline


def _workers_json(stack: RunningStack) -> dict[str, dict[str, Any]]:
    out = subprocess.run(
        [str(IMGPROC), "workers", "--json"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {s["service"]: s for s in json.loads(out.stdout)["services"]}


def _clean_stop_output(log: str) -> None:
    assert "thread(s) still running" not in log, log[-2000:]
    assert "Exception ignored" not in log, log[-2000:]
    assert "Traceback" not in log, log[-2000:]


def test_idle_stack_stops_within_3_seconds(tmp_path: Path) -> None:
    stack = _start(tmp_path, "idle")
    _wait_all_serving(stack)
    groups = _service_groups(stack)
    assert len(groups) >= 4, groups

    stack.process.send_signal(signal.SIGINT)
    took = _wait_stopped(stack, groups, timeout=IDLE_STOP_S)

    log = stack.log_path.read_text()
    assert stack.process.returncode == 0, log[-2000:]
    assert FINAL_SNAPSHOT.search(log), log[-2000:]
    _clean_stop_output(log)
    assert not (stack.home / "stack.json").exists()
    print(
        f"\nRELIABILITY idle-stop: sigint_to_last_process_gone_s={took:.2f} (limit {IDLE_STOP_S})"
    )


async def _kill_workers_until(stack: RunningStack, stop: asyncio.Event, every: float) -> int:
    """SIGKILL a random worker process every `every` seconds until told to stop."""
    chooser = random.Random(16)
    killed = 0
    while not stop.is_set():
        pids = [p for ps in service_pids(stack.process.pid, WORKER_MODULES).values() for p in ps]
        if pids and kill(chooser.choice(pids), signal.SIGKILL):
            killed += 1
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass
    return killed


async def _held_in_flight(stack: RunningStack) -> None:
    from fault_stack import queue_depths

    deadline = time.monotonic() + 60
    while not any(d.in_flight for d in (await queue_depths(stack.settings)).values()):
        assert time.monotonic() < deadline, "no message was ever in flight"
        await asyncio.sleep(0.05)


async def test_sigint_while_busy_and_while_workers_are_killed_stops_everything(
    tmp_path: Path,
) -> None:
    stack = _start(tmp_path, "busy")
    _wait_all_serving(stack)
    # The load: 100 images, so the drain and the final snapshot meet a full stack.
    photos = [(f"busy-{n}.jpg", photo(n, size=(1600, 1200))) for n in range(LOAD_IMAGES)]
    await upload_files(stack.settings, photos, album_name="Busy")
    await _held_in_flight(stack)
    # Every group that ever ran a service: killed workers' restarts included.
    groups = _service_groups(stack)
    stop_killing = asyncio.Event()
    killer = asyncio.create_task(_kill_workers_until(stack, stop_killing, every=0.4))
    await asyncio.sleep(1.5)  # let the killer work before the stop: kills overlap the stop
    groups |= _service_groups(stack)

    stack.process.send_signal(signal.SIGINT)
    signalled = time.monotonic()
    # Keep killing through the first part of the stop, as an OOM killer might.
    while time.monotonic() - signalled < 1.5 and stack.process.poll() is None:
        groups |= _service_groups(stack)
        await asyncio.sleep(0.05)
    stop_killing.set()
    killed = await killer

    # Bounded by the drain and the final snapshot, whose time `up` reports once it stopped.
    limit = SERVICE_STOP_TIMEOUT_S + 30 + SLACK_S
    took = (
        time.monotonic() - signalled + await asyncio.to_thread(_wait_stopped, stack, groups, limit)
    )
    log = stack.log_path.read_text()
    assert stack.process.returncode == 0, log[-3000:]
    match = FINAL_SNAPSHOT.search(log)
    assert match, log[-3000:]
    snapshot_s = float(match.group(2))
    assert took <= SERVICE_STOP_TIMEOUT_S + snapshot_s + SLACK_S, (took, snapshot_s)
    _clean_stop_output(log)
    assert killed >= 2, killed
    print(
        f"\nRELIABILITY busy-stop: images_uploaded={LOAD_IMAGES} workers_killed={killed} "
        f"sigint_to_last_process_gone_s={took:.1f} final_snapshot_s={snapshot_s:.2f} "
        f"(limit stop timeout {SERVICE_STOP_TIMEOUT_S:g} + snapshot + {SLACK_S:g})"
    )


async def test_second_sigint_stops_at_once(tmp_path: Path) -> None:
    stack = _start(tmp_path, "twice")
    _wait_all_serving(stack)
    photos = [(f"twice-{n}.jpg", photo(n, size=(1600, 1200))) for n in range(30)]
    await upload_files(stack.settings, photos, album_name="Twice")
    await _held_in_flight(stack)
    groups = _service_groups(stack)

    stack.process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + 10
    while "stopping imgproc" not in stack.log_path.read_text():
        assert time.monotonic() < deadline, "the first SIGINT was not acted on"
        await asyncio.sleep(0.02)
    stack.process.send_signal(signal.SIGINT)
    # At once: no drain, no final snapshot; only the kills and the endpoint's close.
    took = await asyncio.to_thread(_wait_stopped, stack, groups, 3.0)

    log = stack.log_path.read_text()
    assert stack.process.returncode == 130, log[-2000:]
    assert "imgproc stopped at once (second Ctrl-C)" in log, log[-2000:]
    assert "services killed" in log and "final snapshot took" not in log, log[-2000:]
    assert "Exception ignored" not in log, log[-2000:]
    print(f"\nRELIABILITY second-sigint: second_sigint_to_last_process_gone_s={took:.2f}")


async def test_service_killed_right_after_start_is_restarted_with_back_off(
    tmp_path: Path,
) -> None:
    stack = _start(tmp_path, "restart")
    try:
        seen: list[dict[str, Any]] = []
        # Kill each new tagger process as soon as it exists (before it serves), three times:
        # each restart waits out a longer back-off (1 s, 2 s, then 4 s).
        killed: list[int] = []
        deadline = time.monotonic() + 90
        while len(killed) < 3:
            pids = service_pids(stack.process.pid, WORKER_MODULES)["tagger"]
            fresh = [p for p in pids if p not in killed]
            if fresh and kill(fresh[0], signal.SIGKILL):
                killed.append(fresh[0])
            assert time.monotonic() < deadline, f"no new tagger to kill: {killed}"
            await asyncio.sleep(0.02)

        # The back-off is visible: restarting, with the count and the exit code.
        deadline = time.monotonic() + 30
        while True:
            tagger = (await asyncio.to_thread(_workers_json, stack))["tagger"]
            seen.append(tagger)
            if tagger["state"] == "restarting" and tagger["restarts"] >= 1:
                break
            assert time.monotonic() < deadline, f"never seen restarting: {seen}"
        assert tagger["last_exit_code"] == -signal.SIGKILL, tagger
        assert tagger["next_restart_at"], tagger

        # Then it is back, running and serving.
        deadline = time.monotonic() + 60
        while True:
            tagger = (await asyncio.to_thread(_workers_json, stack))["tagger"]
            if tagger["state"] == "running" and tagger["workers"] >= 1:
                pids = tagger["pids"]
                if all(serving(p) for p in pids):
                    break
            assert time.monotonic() < deadline, f"tagger not back: {tagger}"
            await asyncio.sleep(0.2)
        assert tagger["restarts"] >= 3 and not set(pids) & set(killed), tagger
        log = stack.log_path.read_text()
        assert "imgproc: the tagger service exited" in log and "restart 3 in 4 s" in log, log
        assert "cannot start" not in log, log
    finally:
        stack.stop(timeout=60)
    assert stack.process.returncode == 0
    print(
        f"\nRELIABILITY restart-after-kill: killed_at_start={len(killed)} "
        f"restarts={tagger['restarts']} states_seen={sorted({s['state'] for s in seen})}"
    )


def _shadowed_tagger(tmp_path: Path, broken_file: str) -> dict[str, str]:
    """An environment where `imgproc_tagger` resolves to a package whose `broken_file` imports
    a module that does not exist (a broken install), ahead of the real one."""
    package = tmp_path / "shadow" / "imgproc_tagger"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("")
    (package / broken_file).write_text("import imgproc_no_such_dependency  # noqa: F401\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPROC_")}
    env.update(
        {
            "PYTHONPATH": str(tmp_path / "shadow"),
            "IMGPROC_HOME": str(tmp_path / "home"),
            "IMGPROC_TAGGER_BACKEND": "rekognition",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.mark.parametrize(
    ("broken_file", "found_by"),
    [
        # The package itself fails: found by the check before anything starts.
        ("__init__.py", "cannot be imported"),
        # Only the service's entry point fails: found when the service process exits.
        ("__main__.py", "cannot start"),
    ],
)
def test_service_that_cannot_be_imported_fails_up_with_the_reason(
    tmp_path: Path, broken_file: str, found_by: str
) -> None:
    env = _shadowed_tagger(tmp_path, broken_file)
    result = subprocess.run(
        [
            str(IMGPROC),
            "up",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert f"the tagger service {found_by}" in output, output
    assert "No module named 'imgproc_no_such_dependency'" in output, output
    assert not (tmp_path / "home" / "stack.json").exists()
