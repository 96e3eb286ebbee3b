"""Runs the services of the local stack as separate processes and stops them cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from imgproc_shared.errors import EXIT_UNRECOVERABLE
from imgproc_shared.logging import get_logger

log = get_logger(stage="up")

# A service that exits this soon after starting, this many times in a row, is not restarted.
_QUICK_EXIT_S = 10.0
_MAX_QUICK_EXITS = 3


def _die_with_parent() -> None:
    """In the child: get SIGTERM when `up` dies, even by SIGKILL, so no service is orphaned."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: tuple[str, ...]


def service_specs(api_host: str, api_port: int) -> list[ServiceSpec]:
    python = sys.executable
    return [
        ServiceSpec(
            "status-api",
            (python, "-m", "imgproc_status_api", "--host", api_host, "--port", str(api_port)),
        ),
        ServiceSpec("extractor", (python, "-m", "imgproc_extractor")),
        ServiceSpec("tagger", (python, "-m", "imgproc_tagger")),
        ServiceSpec("thumbnailer", (python, "-m", "imgproc_thumbnailer")),
    ]


@dataclass
class ServiceProcess:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]
    started: float = field(default_factory=time.monotonic)
    # Which of the service's processes this is (1, 2, ...): names its log file.
    slot: int = 1
    # Set when the scaler stopped it on purpose: it drains and exits, and is not restarted.
    retiring_since: float | None = None


class Supervisor:
    """Starts each service, restarts one that dies, and stops them all within a deadline.

    A service may run as several processes (the local scaler adds and retires workers).
    """

    def __init__(self, env: dict[str, str], log_dir: Path, retire_timeout: float = 10.0) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[ServiceProcess] = []
        self.restarts = 0
        self._quick_exits: dict[str, int] = {}
        # Services that could not start and were left stopped, with their exit codes.
        self.failed: dict[str, int] = {}
        # A retiring worker drains within its stop timeout; past this it is killed.
        self.retire_timeout = retire_timeout

    def running(self, name: str) -> list[ServiceProcess]:
        """The service's processes that are not retiring, oldest first."""
        return [p for p in self.processes if p.spec.name == name and p.retiring_since is None]

    def retire(self, name: str, count: int) -> list[ServiceProcess]:
        """SIGTERM the newest `count` processes of a service; they drain and exit on their own."""
        retired = self.running(name)[::-1][:count]
        for running in retired:
            running.retiring_since = time.monotonic()
            if running.process.poll() is None:
                os.killpg(running.process.pid, signal.SIGTERM)
            log.info("service retiring", service=name, pid=running.process.pid)
        return retired

    def start(self, spec: ServiceSpec, slot: int | None = None) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if slot is None:
            taken = {p.slot for p in self.processes if p.spec.name == spec.name}
            slot = next(n for n in range(1, len(taken) + 2) if n not in taken)
        log_name = spec.name if slot == 1 else f"{spec.name}-{slot}"
        log_file = open(self.log_dir / f"{log_name}.log", "ab")
        process = subprocess.Popen(
            spec.argv,
            env=self.env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: a terminal Ctrl-C reaches only `up`, which stops the services
            # in order (workers drain while the embedded endpoint still serves them).
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        running = ServiceProcess(spec, process, log_file, slot=slot)
        self.processes.append(running)
        log.info("service started", service=spec.name, pid=process.pid)
        return running

    def check(self) -> list[ServiceProcess]:
        """Restart services that exited on their own; returns the ones restarted.

        Retired processes that have exited are let go; one that outlives its drain is killed.
        """
        restarted = []
        for running in list(self.processes):
            code = running.process.poll()
            if code is None:
                if (
                    running.retiring_since is not None
                    and time.monotonic() - running.retiring_since > self.retire_timeout
                ):
                    log.warning("retiring service did not stop; killing", service=running.spec.name)
                    os.killpg(running.process.pid, signal.SIGKILL)
                continue
            self.processes.remove(running)
            running.log_file.close()
            if running.retiring_since is not None:
                log.info("service retired", service=running.spec.name, code=code)
                continue
            name = running.spec.name
            quick = time.monotonic() - running.started < _QUICK_EXIT_S
            self._quick_exits[name] = self._quick_exits.get(name, 0) + 1 if quick else 0
            if code == EXIT_UNRECOVERABLE or self._quick_exits[name] >= _MAX_QUICK_EXITS:
                # Restarting would only loop: say so once, keep the rest of the stack up.
                self.failed[name] = code
                log.error(
                    "service cannot start; not restarting it",
                    service=name,
                    code=code,
                    log_file=str(self.log_dir / f"{name}.log"),
                )
                print(
                    f"imgproc: the {name} service cannot start (exit code {code}); see "
                    f"{self.log_dir / (name + '.log')}",
                    file=sys.stderr,
                    flush=True,
                )
                continue
            log.warning("service exited; restarting", service=name, code=code)
            self.restarts += 1
            restarted.append(self.start(running.spec, running.slot))
        return restarted

    def stop(self, timeout: float) -> None:
        """SIGTERM every service, wait up to `timeout`, then SIGKILL what is left."""
        for running in self.processes:
            if running.process.poll() is None and running.retiring_since is None:
                os.killpg(running.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for running in self.processes:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                running.process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                log.warning("service did not stop in time; killing", service=running.spec.name)
                os.killpg(running.process.pid, signal.SIGKILL)
                running.process.wait()
            running.log_file.close()
        self.processes.clear()
