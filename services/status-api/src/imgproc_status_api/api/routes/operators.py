"""Operators' view: how much work waits, runs and died in each queue."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

from fastapi import APIRouter

from imgproc_shared.resources import Queue
from imgproc_status_api.api.deps import ApiState, CurrentOperator, State
from imgproc_status_api.errors import OPERATOR_RESPONSES
from imgproc_status_api.schemas import QueueCounts, QueueReport

router = APIRouter(prefix="/api/operators", tags=["operators"], responses=OPERATOR_RESPONSES)

_COUNTS = [
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]


async def _attributes(state: ApiState, name: str) -> dict[str, str]:
    url = (await state.aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
    response = await state.aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=_COUNTS)
    attributes: dict[str, str] = response.get("Attributes", {})
    return attributes


def _local_workers(state: ApiState) -> dict[str, int]:
    """Worker processes per stage, as the local scaler of `imgproc up` records them; on AWS
    (ECS counts its tasks) there is no such file and counts stay unknown."""
    try:
        recorded = json.loads(state.settings.workers_file.read_text())
        os.kill(int(recorded["pid"]), 0)  # a file left by a stopped stack says nothing
        return {
            str(service["stage"]): int(service["workers"])
            for service in recorded["services"].values()
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


async def _counts(state: ApiState, queue: Queue, workers: dict[str, int]) -> QueueCounts:
    main, dead = await asyncio.gather(
        _attributes(state, state.names.queue(queue)),
        _attributes(state, state.names.dead_letter_queue(queue)),
    )

    def number(attributes: dict[str, Any], name: str) -> int:
        return int(attributes.get(name, 0))

    return QueueCounts(
        queue=queue.value,
        name=state.names.queue(queue),
        visible=number(main, "ApproximateNumberOfMessages"),
        in_flight=number(main, "ApproximateNumberOfMessagesNotVisible"),
        delayed=number(main, "ApproximateNumberOfMessagesDelayed"),
        dead_letter=number(dead, "ApproximateNumberOfMessages"),
        workers=workers.get(queue.value),
    )


@router.get("/queues")
async def queue_report(_: CurrentOperator, state: State) -> QueueReport:
    """Visible, in-flight, delayed and dead-letter counts for every queue."""
    workers = _local_workers(state)
    counts = await asyncio.gather(*(_counts(state, queue, workers) for queue in Queue))
    return QueueReport(queues=list(counts))
