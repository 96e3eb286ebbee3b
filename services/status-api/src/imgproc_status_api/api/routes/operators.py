"""Operators' view: how much work waits, runs and died in each queue."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from imgproc_shared.aws import AwsClients
from imgproc_shared.queues import Depth, queue_depth
from imgproc_shared.resources import Queue
from imgproc_shared.workers_record import WorkersRecord
from imgproc_status_api.api.deps import ApiState, CurrentOperator, OperatorAws, State
from imgproc_status_api.errors import OPERATOR_RESPONSES
from imgproc_status_api.schemas import QueueCounts, QueueReport

router = APIRouter(prefix="/api/operators", tags=["operators"], responses=OPERATOR_RESPONSES)


async def _depth(aws: AwsClients, name: str) -> Depth:
    url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
    return await queue_depth(aws.sqs, url)


def _local_workers(state: ApiState) -> dict[str, int]:
    """Worker processes per stage, as the local scaler of `imgproc up` records them; on AWS
    (ECS counts its tasks) there is no such file and counts stay unknown."""
    recorded = WorkersRecord.read(state.settings.workers_file)
    # A file left by a stopped stack says nothing.
    if recorded is None or not recorded.writer_alive():
        return {}
    return recorded.workers_per_stage()


async def _counts(
    aws: AwsClients, state: ApiState, queue: Queue, workers: dict[str, int]
) -> QueueCounts:
    main, dead = await asyncio.gather(
        _depth(aws, state.names.queue(queue)),
        _depth(aws, state.names.dead_letter_queue(queue)),
    )
    return QueueCounts(
        queue=queue.value,
        name=state.names.queue(queue),
        visible=main.visible,
        in_flight=main.in_flight,
        delayed=main.delayed,
        dead_letter=dead.held,
        workers=workers.get(queue.value),
    )


@router.get("/queues")
async def queue_report(_: CurrentOperator, aws: OperatorAws, state: State) -> QueueReport:
    """Visible, in-flight, delayed and dead-letter counts for every queue."""
    workers = _local_workers(state)
    counts = await asyncio.gather(*(_counts(aws, state, queue, workers) for queue in Queue))
    return QueueReport(queues=list(counts))
