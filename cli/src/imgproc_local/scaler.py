"""The local scaler: worker processes follow their queue's backlog, as ECS tasks do on AWS.

A background thread reads each worker queue's visible and in-flight counts every ~1.5 s
(GetQueueAttributes); `imgproc up`'s main loop calls `LocalScaler.step()`, which applies
`ScalingPolicy.decide` (the policy `infra/` renders for ECS) to each reading, starts worker
processes or retires them with SIGTERM (the worker runtime drains: no message is lost), logs
every decision as a JSON line with the backlog behind it, and records the worker counts (and
the supervisor's restarts: state, restart count, last exit) in `<home>/workers.json` for
`imgproc workers`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from imgproc_local.supervisor import ServiceSpec, Supervisor
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import now_iso
from imgproc_shared.queues import queue_depth
from imgproc_shared.resources import STAGE_QUEUES, ResourceNames, Stage
from imgproc_shared.scaling import ScalingPolicy
from imgproc_shared.settings import Settings
from imgproc_shared.workers_record import ScalingDecision, ServiceWorkers, WorkersRecord

READ_INTERVAL_S = 1.5
# A reading older than this is not acted on (the endpoint is not answering).
_STALE_AFTER_S = 10.0

# The worker services the scaler runs, and the stage each one serves.
WORKER_SERVICES: dict[str, Stage] = {
    "extractor": Stage.EXTRACT,
    "tagger": Stage.TAG,
    "thumbnailer": Stage.THUMBNAIL,
}


@dataclass(frozen=True)
class QueueReading:
    backlog: int
    in_flight: int
    at: float  # monotonic


class QueueWatcher:
    """Reads the worker queues' counts on its own thread and event loop."""

    def __init__(
        self,
        settings: Settings,
        stages: list[Stage],
        interval: float = READ_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.stages = stages
        self.interval = interval
        self.clock = clock
        self.latest: dict[Stage, QueueReading] = {}
        self.errors = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="queue-watcher", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        self._thread.join(timeout)

    def reading(self, stage: Stage) -> QueueReading | None:
        with self._lock:
            return self.latest.get(stage)

    def _run(self) -> None:
        asyncio.run(self._watch())

    async def _watch(self) -> None:
        names = ResourceNames.from_settings(self.settings)
        async with AwsClients(self.settings) as aws:
            urls: dict[Stage, str] = {}
            while not self._stopping.is_set():
                try:
                    for stage in self.stages:
                        if stage not in urls:
                            name = names.queue(STAGE_QUEUES[stage])
                            urls[stage] = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
                    depths = await asyncio.gather(
                        *(queue_depth(aws.sqs, urls[stage]) for stage in self.stages)
                    )
                    now = self.clock()
                    with self._lock:
                        for stage, depth in zip(self.stages, depths, strict=True):
                            self.latest[stage] = QueueReading(
                                backlog=depth.visible, in_flight=depth.in_flight, at=now
                            )
                except Exception:  # the endpoint may be restarting: keep trying, never die
                    self.errors += 1
                await asyncio.to_thread(self._stopping.wait, self.interval)


def decision_logger(path: Path) -> tuple[Any, IO[str]]:
    """A structlog logger writing JSON lines to `path` (the scaler's decision log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = path.open("a", buffering=1)
    logger = structlog.wrap_logger(
        structlog.PrintLogger(stream),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.JSONRenderer(),
        ],
    )
    return logger.bind(service="scaler"), stream


@dataclass
class _ServiceState:
    spec: ServiceSpec
    stage: Stage
    policy: ScalingPolicy
    last_change: float | None = None
    last_reading_at: float | None = None
    last_reason_kind: str | None = None
    last_decision: ScalingDecision | None = None


class LocalScaler:
    """Applies each worker service's scaling policy to its processes."""

    def __init__(
        self,
        supervisor: Supervisor,
        specs: list[ServiceSpec],
        policies: dict[str, ScalingPolicy],
        watcher: QueueWatcher,
        state_file: Path,
        decision_log: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.supervisor = supervisor
        self.watcher = watcher
        self.state_file = state_file
        self.log = decision_log
        self.clock = clock
        self.services = {
            spec.name: _ServiceState(spec, WORKER_SERVICES[spec.name], policies[spec.name])
            for spec in specs
        }
        self._written_at = 0.0
        self._written_changes = -1

    def start(self) -> None:
        """Start each service's minimum (the policies' lower bounds) and the queue watcher."""
        now = self.clock()
        for name, state in self.services.items():
            for _ in range(state.policy.min_workers):
                self.supervisor.start(state.spec)
            state.last_change = now
            self.log.info(
                "workers started",
                worker_service=name,
                workers=state.policy.min_workers,
                min=state.policy.min_workers,
                max=state.policy.max_workers,
                target_backlog_per_worker=state.policy.target_backlog_per_worker,
            )
        self.watcher.start()
        self.write_state()

    def stop(self) -> None:
        self.watcher.stop()
        self.state_file.unlink(missing_ok=True)

    def step(self) -> None:
        """Act on fresh readings (call often; it decides once per new reading)."""
        changed = False
        now = self.clock()
        for name, state in self.services.items():
            reading = self.watcher.reading(state.stage)
            if reading is None or reading.at == state.last_reading_at:
                continue
            state.last_reading_at = reading.at
            if now - reading.at > _STALE_AFTER_S:
                continue
            # A process waiting out its restart back-off still counts: it is coming back.
            current = len(self.supervisor.running(name)) + len(self.supervisor.restarting(name))
            decision = state.policy.decide(
                now, reading.backlog, reading.in_flight, current, state.last_change
            )
            kind = decision.reason.split(":", 1)[0]
            record = {
                "worker_service": name,
                "backlog": reading.backlog,
                "in_flight": reading.in_flight,
                "workers": current,
                "desired": decision.desired,
                "reason": decision.reason,
            }
            if decision.desired != current:
                if decision.desired > current:
                    for _ in range(decision.desired - current):
                        self.supervisor.start(state.spec)
                else:
                    self.supervisor.retire(name, current - decision.desired)
                state.last_change = now
                state.last_decision = ScalingDecision.model_validate({**record, "at": now_iso()})
                self.log.info("scaling decision", **record)
                changed = True
            elif kind != state.last_reason_kind:
                # Holds and steady states are logged when they begin, not on every reading.
                self.log.info("scaling decision", **record)
            state.last_reason_kind = kind
        # At once when a process exited or started (a restart's back-off is seen while it runs).
        changed = changed or self.supervisor.changes != self._written_changes
        if changed or self.clock() - self._written_at >= READ_INTERVAL_S:
            self.write_state()

    def snapshot(self) -> WorkersRecord:
        services = {}
        for name, state in self.services.items():
            reading = self.watcher.reading(state.stage)
            running = self.supervisor.running(name)
            services[name] = ServiceWorkers(
                stage=state.stage,
                workers=len(running),
                pids=[p.process.pid for p in running],
                retiring_pids=[
                    p.process.pid
                    for p in self.supervisor.processes
                    if p.spec.name == name and p.retiring_since is not None
                ],
                min=state.policy.min_workers,
                max=state.policy.max_workers,
                target_backlog_per_worker=state.policy.target_backlog_per_worker,
                backlog=reading.backlog if reading else None,
                in_flight=reading.in_flight if reading else None,
                last_decision=state.last_decision,
                # running / restarting (waiting out a back-off) / stopped; restarts, last exit.
                **self.supervisor.record(name),
            )
        return WorkersRecord(pid=os.getpid(), updated_at=now_iso(), services=services)

    def write_state(self) -> None:
        self._written_at = self.clock()
        self._written_changes = self.supervisor.changes
        self.snapshot().write(self.state_file)


def workers_file(settings: Settings) -> Path:
    """Where a running `imgproc up` records its worker processes (beside `stack.json`)."""
    return settings.workers_file


def read_workers_file(settings: Settings) -> WorkersRecord | None:
    return WorkersRecord.read(workers_file(settings))
