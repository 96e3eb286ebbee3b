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

from imgproc_shared.logging import get_logger

log = get_logger(stage="up")


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


class Supervisor:
    """Starts each service, restarts one that dies, and stops them all within a deadline."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.processes: list[ServiceProcess] = []
        self.restarts = 0

    def start(self, spec: ServiceSpec) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(self.log_dir / f"{spec.name}.log", "ab")
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
        running = ServiceProcess(spec, process, log_file)
        self.processes.append(running)
        log.info("service started", service=spec.name, pid=process.pid)
        return running

    def check(self) -> list[ServiceProcess]:
        """Restart services that exited on their own; returns the ones restarted."""
        restarted = []
        for running in list(self.processes):
            code = running.process.poll()
            if code is None:
                continue
            self.processes.remove(running)
            running.log_file.close()
            log.warning("service exited; restarting", service=running.spec.name, code=code)
            self.restarts += 1
            restarted.append(self.start(running.spec))
        return restarted

    def stop(self, timeout: float) -> None:
        """SIGTERM every service, wait up to `timeout`, then SIGKILL what is left."""
        for running in self.processes:
            if running.process.poll() is None:
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
