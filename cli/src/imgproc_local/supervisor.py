"""Runs the services of the local stack as separate processes, restarts them, stops them.

A service process that exits for any reason (a crash, SIGKILL from the OOM killer, a bug) is
started again after a back-off: 1 s, doubling to 60 s, and back to 1 s once a process of that
slot has run healthy for 60 s. Each exit is reported on the terminal (exit code, next attempt;
the last log lines when it failed at start) and kept in `history` for `imgproc workers`.

The one failure that is not retried is a configuration error: a service that cannot even be
imported (its package or a dependency missing), or that exits with `EXIT_UNRECOVERABLE` ("fix
the installation"). Restarting cannot mend those; `configuration_error` says why, and `imgproc
up` stops with a non-zero exit.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from imgproc_shared.catalog import now_iso
from imgproc_shared.errors import EXIT_UNRECOVERABLE
from imgproc_shared.logging import get_logger

log = get_logger(stage="up")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
# A process that ran this long was healthy: the next exit of its slot starts the back-off over.
HEALTHY_AFTER_S = 60.0
# An exit this soon after starting is a failure at start: the report shows the log's last lines.
_FAILED_AT_START_S = 10.0
_LOG_TAIL_LINES = 6
# The last line Python prints when an import fails.
_IMPORT_FAILURE = re.compile(r"^(ModuleNotFoundError|ImportError): ")

# Run in a fresh interpreter before any service starts: imports each service's package (not its
# modules' heavy dependencies) and finds its `__main__`, so a missing or broken package is a
# clear error at once instead of a restart loop. Prints `module<TAB>reason` per failure.
_IMPORT_CHECK = """
import importlib.util, sys
for module in sys.argv[1:]:
    try:
        found = importlib.util.find_spec(module + ".__main__")
    except Exception as exc:
        print(module, f"{type(exc).__name__}: {exc}", sep="\\t")
    else:
        if found is None:
            missing = module + ".__main__"
            print(module, f"ModuleNotFoundError: No module named {missing!r}", sep="\\t")
"""


def _die_with_parent() -> None:
    """In the child: get SIGTERM when `up` dies, even by SIGKILL, so no service is orphaned."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    argv: tuple[str, ...]
    # Set for this service's processes on top of the supervisor's environment (its own
    # credentials for the embedded endpoint).
    env: tuple[tuple[str, str], ...] = ()

    @property
    def module(self) -> str | None:
        """The module run with `python -m`, if that is how the service starts."""
        if "-m" in self.argv[:-1]:
            return self.argv[self.argv.index("-m") + 1]
        return None


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


def import_problems(specs: list[ServiceSpec], env: dict[str, str]) -> dict[str, str]:
    """Services whose module cannot be imported in `env`, with the reason (empty: all fine)."""
    modules = {spec.module: spec.name for spec in specs if spec.module}
    if not modules:
        return {}
    result = subprocess.run(
        [sys.executable, "-c", _IMPORT_CHECK, *modules],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    problems: dict[str, str] = {}
    for line in result.stdout.splitlines():
        module, _, reason = line.partition("\t")
        if module in modules:
            problems[modules[module]] = reason
    if result.returncode != 0 and not problems:
        last = (result.stderr.strip().splitlines() or [f"exit code {result.returncode}"])[-1]
        problems["(every service)"] = f"the import check failed: {last}"
    return problems


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"exit code {code}, killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"exit code {code}"
    return f"exit code {code}"


def log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> list[str]:
    """The last non-empty lines of a log file (read from its end only)."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - 8192))
            text = file.read().decode("utf-8", "replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


@dataclass
class ServiceProcess:
    spec: ServiceSpec
    process: subprocess.Popen[bytes]
    log_file: IO[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    # Which of the service's processes this is (1, 2, ...): names its log file.
    slot: int = 1
    # Set when the scaler stopped it on purpose: it drains and exits, and is not restarted.
    retiring_since: float | None = None


@dataclass
class PendingRestart:
    spec: ServiceSpec
    slot: int
    at: float  # monotonic
    at_iso: str


@dataclass
class ServiceHistory:
    """What `imgproc workers` shows of a service's exits and restarts."""

    restarts: int = 0
    last_exit_code: int | None = None
    last_exit_at: str | None = None

    def as_record(self) -> dict[str, Any]:
        return {
            "restarts": self.restarts,
            "last_exit_code": self.last_exit_code,
            "last_exit_at": self.last_exit_at,
        }


class Supervisor:
    """Starts each service, restarts one that exits (with back-off), and stops them all.

    A service may run as several processes (the local scaler adds and retires workers).
    """

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        retire_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.env = env
        self.log_dir = log_dir
        self.clock = clock
        self.processes: list[ServiceProcess] = []
        self.pending: list[PendingRestart] = []
        self.history: dict[str, ServiceHistory] = {}
        # Exits in a row of each (service, slot) without a healthy run between: the back-off.
        self._failures: dict[tuple[str, int], int] = {}
        # Counts exits and starts: a record of the services that is older is stale.
        self.changes = 0
        # Why the stack cannot run (a service that cannot be imported); None while it can.
        self.configuration_error: str | None = None
        # A retiring worker drains within its stop timeout; past this it is killed.
        self.retire_timeout = retire_timeout
        self._report = report or (lambda text: print(text, file=sys.stderr, flush=True))

    @property
    def restarts(self) -> int:
        return sum(h.restarts for h in self.history.values())

    def running(self, name: str) -> list[ServiceProcess]:
        """The service's processes that are not retiring, oldest first."""
        return [p for p in self.processes if p.spec.name == name and p.retiring_since is None]

    def restarting(self, name: str) -> list[PendingRestart]:
        """The service's processes waiting out their back-off before starting again."""
        return [p for p in self.pending if p.spec.name == name]

    def state(self, name: str) -> str:
        """`restarting` while any process of the service waits to start again."""
        if self.restarting(name):
            return "restarting"
        return "running" if self.running(name) else "stopped"

    def record(self, name: str) -> dict[str, Any]:
        """The service's state and history, as `imgproc workers` shows them."""
        pending = self.restarting(name)
        return {
            "state": self.state(name),
            **self.history.get(name, ServiceHistory()).as_record(),
            "next_restart_at": min((p.at_iso for p in pending), default=None),
        }

    def retire(self, name: str, count: int) -> list[ServiceProcess]:
        """Retire `count` processes: pending restarts first, then SIGTERM to the newest running
        ones (they drain and exit on their own)."""
        for pending in self.restarting(name)[::-1][:count]:
            self.pending.remove(pending)
            count -= 1
        retired = self.running(name)[::-1][:count]
        for running in retired:
            running.retiring_since = self.clock()
            if running.process.poll() is None:
                os.killpg(running.process.pid, signal.SIGTERM)
            log.info("service retiring", service=name, pid=running.process.pid)
        return retired

    def start(self, spec: ServiceSpec, slot: int | None = None) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if slot is None:
            taken = {p.slot for p in self.processes if p.spec.name == spec.name} | {
                p.slot for p in self.restarting(spec.name)
            }
            slot = next(n for n in range(1, len(taken) + 2) if n not in taken)
        log_name = spec.name if slot == 1 else f"{spec.name}-{slot}"
        log_path = self.log_dir / f"{log_name}.log"
        log_file = open(log_path, "ab")
        process = subprocess.Popen(
            spec.argv,
            env={**self.env, **dict(spec.env)},
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: a terminal Ctrl-C reaches only `up`, which stops the services
            # in order (workers drain while the embedded endpoint still serves them).
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        running = ServiceProcess(spec, process, log_file, log_path, self.clock(), slot=slot)
        self.processes.append(running)
        self.changes += 1
        log.info("service started", service=spec.name, pid=process.pid, slot=slot)
        return running

    def check(self) -> list[ServiceProcess]:
        """Schedule restarts of services that exited, start those whose back-off is over;
        returns the processes started.

        Retired processes that have exited are let go; one that outlives its drain is killed.
        """
        now = self.clock()
        for running in list(self.processes):
            code = running.process.poll()
            if code is None:
                if (
                    running.retiring_since is not None
                    and now - running.retiring_since > self.retire_timeout
                ):
                    log.warning("retiring service did not stop; killing", service=running.spec.name)
                    _kill_group(running.process.pid)
                continue
            self.processes.remove(running)
            running.log_file.close()
            if running.retiring_since is not None:
                log.info("service retired", service=running.spec.name, code=code)
                continue
            self._exited(running, code, now)
        started = []
        for pending in [p for p in self.pending if p.at <= now]:
            self.pending.remove(pending)
            if self.configuration_error is None:
                started.append(self.start(pending.spec, pending.slot))
        return started

    def _exited(self, running: ServiceProcess, code: int, now: float) -> None:
        name, slot = running.spec.name, running.slot
        self.changes += 1
        ran = now - running.started
        tail = log_tail(running.log_path)
        history = self.history.setdefault(name, ServiceHistory())
        history.last_exit_code, history.last_exit_at = code, now_iso()
        import_failure = code == 1 and bool(tail) and bool(_IMPORT_FAILURE.match(tail[-1]))
        if import_failure or code == EXIT_UNRECOVERABLE:
            reason = tail[-1] if import_failure else f"{describe_exit(code)}: fix the installation"
            self.configuration_error = f"the {name} service cannot start: {reason}"
            log.error(
                "service cannot start",
                service=name,
                code=code,
                reason=reason,
                log_file=str(running.log_path),
            )
            self._report(
                f"imgproc: the {name} service cannot start ({describe_exit(code)}): {reason}\n"
                + _indented(tail)
                + f"  see {running.log_path}"
            )
            return
        failures = 0 if ran >= HEALTHY_AFTER_S else self._failures.get((name, slot), 0)
        delay = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2**failures)
        self._failures[(name, slot)] = failures + 1
        history.restarts += 1
        at_iso = now_iso_after(delay)
        self.pending.append(PendingRestart(running.spec, slot, now + delay, at_iso))
        log.warning(
            "service exited; restarting",
            service=name,
            code=code,
            ran_s=round(ran, 1),
            restart_in_s=delay,
            restarts=history.restarts,
        )
        line = (
            f"imgproc: the {name} service exited after {ran:.1f} s ({describe_exit(code)}); "
            f"restart {history.restarts} in {delay:g} s, at {at_iso}"
        )
        if ran < _FAILED_AT_START_S and tail:
            # Failing at start, perhaps again and again: show why.
            line += f" ({failures + 1} quick exits in a row); its last lines:\n" + _indented(tail)
        self._report(line.rstrip("\n"))

    def stop(
        self,
        timeout: float,
        *,
        wait: Callable[[float], object] = time.sleep,
        force: Callable[[], bool] = lambda: False,
    ) -> bool:
        """SIGTERM every service, wait up to `timeout`, then SIGKILL what is left.

        `wait` pauses between checks (it may return early, e.g. on a signal) and `force()`
        true kills what is left at once. Returns whether every process stopped on its own.
        """
        self.pending.clear()
        for running in self.processes:
            if running.process.poll() is None and running.retiring_since is None:
                _signal_group(running.process.pid, signal.SIGTERM)
        deadline = self.clock() + timeout
        while any(p.process.poll() is None for p in self.processes):
            if force() or self.clock() >= deadline:
                break
            wait(0.05)
        clean = True
        for running in self.processes:
            if running.process.poll() is None:
                clean = False
                log.warning("service did not stop; killing", service=running.spec.name)
            # The whole group: whatever the service started goes with it.
            _kill_group(running.process.pid)
            running.process.wait()
            running.log_file.close()
        self.processes.clear()
        return clean


def now_iso_after(seconds: float) -> str:
    """The wall-clock time `seconds` from now, written as the catalog writes times."""
    return (
        (datetime.now(UTC) + timedelta(seconds=seconds))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _indented(lines: list[str]) -> str:
    return "".join(f"  | {line}\n" for line in lines)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _kill_group(pid: int) -> None:
    _signal_group(pid, signal.SIGKILL)
