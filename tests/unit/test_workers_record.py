"""`<home>/workers.json`: the scaler's record, as its writer and both readers see it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from imgproc_shared.resources import Stage
from imgproc_shared.workers_record import ScalingDecision, ServiceWorkers, WorkersRecord


def test_the_record_round_trips_through_its_file(tmp_path: Path) -> None:
    path = tmp_path / "home" / "workers.json"
    decision = ScalingDecision(
        worker_service="tagger",
        backlog=30,
        in_flight=4,
        workers=1,
        desired=3,
        reason="scale out: backlog 30 over target 10",
        at="2026-01-01T00:00:00Z",
    )
    record = WorkersRecord(
        pid=os.getpid(),
        updated_at="2026-01-01T00:00:01Z",
        services={
            "tagger": ServiceWorkers(
                stage=Stage.TAG,
                workers=3,
                pids=[11, 12, 13],
                min=1,
                max=3,
                target_backlog_per_worker=10.0,
                last_decision=decision,
                state="running",
                restarts=0,
            )
        },
    )
    record.write(path)
    assert not path.with_suffix(".tmp").exists()
    assert WorkersRecord.read(path) == record
    # The file is plain JSON with the stage by its name (other tools read it too).
    raw = json.loads(path.read_text())
    assert raw["services"]["tagger"]["stage"] == "tag"
    assert raw["services"]["tagger"]["last_decision"]["desired"] == 3
    assert record.workers_per_stage() == {"tag": 3}
    assert record.writer_alive()


def test_a_missing_damaged_or_foreign_file_reads_as_none(tmp_path: Path) -> None:
    path = tmp_path / "workers.json"
    assert WorkersRecord.read(path) is None
    path.write_text("{not json")
    assert WorkersRecord.read(path) is None
    path.write_text(json.dumps({"pid": 1, "services": {"tagger": {"stage": "nope"}}}))
    assert WorkersRecord.read(path) is None


def test_a_record_left_by_a_stopped_stack_says_its_writer_is_gone() -> None:
    exited = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    record = WorkersRecord(pid=int(exited.stdout), services={})
    assert not record.writer_alive()
