"""A stand-in worker process for the scaler test: the real runtime with a handler that takes a
fixed time, so a flooded queue needs several processes to drain quickly."""

from __future__ import annotations

import asyncio

from imgproc_shared.models import Label, StageTask, TagResult
from imgproc_shared.resources import Stage
from imgproc_shared.worker import WorkContext, run_worker

WORK_S = 0.4


async def handle(task: StageTask, ctx: WorkContext) -> TagResult:
    await asyncio.sleep(WORK_S)  # the work's duration, not a wait for a condition
    return TagResult(labels=[Label(name="Cat", confidence=90.0)], backend="stand-in")


if __name__ == "__main__":
    run_worker("tagger", Stage.TAG, handle)
