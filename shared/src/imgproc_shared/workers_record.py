"""What `imgproc up` records of its worker processes in `<home>/workers.json`.

The CLI's local scaler writes it (worker counts and the backlog behind its last decision, with
the supervisor's restarts); `imgproc workers` and the status API's queue report read it. On AWS
(ECS runs the workers) there is no such file and worker counts are unknown.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, Field

from imgproc_shared.resources import Stage


class ScalingDecision(BaseModel):
    """The scaler's last change to a service's worker count, and the reading behind it."""

    worker_service: str
    backlog: int
    in_flight: int
    workers: int
    desired: int
    reason: str
    at: str


class ServiceWorkers(BaseModel):
    """One worker service: its processes, scaling bounds, last reading and restart history."""

    stage: Stage
    workers: int
    pids: list[int] = Field(default_factory=list)
    retiring_pids: list[int] = Field(default_factory=list)
    min: int | None = None
    max: int | None = None
    target_backlog_per_worker: float | None = None
    backlog: int | None = None
    in_flight: int | None = None
    last_decision: ScalingDecision | None = None
    # From the supervisor: running, restarting (waiting out a back-off after an exit) or
    # stopped; how often it restarted, and its last exit.
    state: str | None = None
    restarts: int | None = None
    last_exit_code: int | None = None
    last_exit_at: str | None = None
    next_restart_at: str | None = None


class WorkersRecord(BaseModel):
    """The whole file: which `imgproc up` process wrote it, and each worker service."""

    pid: int
    updated_at: str | None = None
    services: dict[str, ServiceWorkers]

    @classmethod
    def read(cls, path: Path) -> WorkersRecord | None:
        """The record at `path`; None when there is none or it cannot be read."""
        try:
            return cls.model_validate_json(path.read_bytes())
        except (OSError, ValueError):  # a pydantic ValidationError is a ValueError
            return None

    def write(self, path: Path) -> None:
        """Replace the file at once, so a reader never sees half of it."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(self.model_dump_json(indent=2))
        tmp.replace(path)

    def writer_alive(self) -> bool:
        """Whether the process that wrote it still runs (a stopped stack's file says nothing)."""
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return True

    def workers_per_stage(self) -> dict[str, int]:
        return {service.stage.value: service.workers for service in self.services.values()}
