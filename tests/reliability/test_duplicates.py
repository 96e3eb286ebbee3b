"""Duplicates are harmless: one execution, one result, no error storm.

The copies are real ones: a test queue subscribed to the `upload` and `validated` topics keeps
the S3 notification and the tag/thumbnail task messages the stack sent, and the test delivers
them again, both while the image is being processed and after it is done; then it answers a
task token whose task is already over.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from imgproc_shared.aws import AwsClients
from imgproc_shared.resources import Queue, ResourceNames, Topic
from imgproc_shared.settings import Settings
from imgproc_shared.worker.task_token import TaskToken

from fault_stack import (
    duplicate_problems,
    error_lines,
    executions_per_image,
    log_lines,
    photo,
    records,
    upload_files,
    wait_queues_empty,
    wait_terminal,
)
from stack_process import RunningStack

pytestmark = pytest.mark.e2e


@asynccontextmanager
async def captured(
    aws: AwsClients, settings: Settings, topic: Topic, filter_policy: dict[str, Any] | None
) -> AsyncIterator[str]:
    """A test queue subscribed to `topic` (raw delivery, as the stack's own queues are)."""
    names = ResourceNames.from_settings(settings)
    url = (await aws.sqs.create_queue(QueueName=f"{names.prefix}-capture-{uuid.uuid4().hex[:8]}"))[
        "QueueUrl"
    ]
    arn = (await aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    topic_arn = (await aws.sns.create_topic(Name=names.topic(topic)))["TopicArn"]
    attributes = {"RawMessageDelivery": "true"}
    if filter_policy:
        attributes["FilterPolicy"] = json.dumps(filter_policy)
    subscription = await aws.sns.subscribe(
        TopicArn=topic_arn, Protocol="sqs", Endpoint=arn, Attributes=attributes
    )
    try:
        yield url
    finally:
        await aws.sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
        await aws.sqs.delete_queue(QueueUrl=url)


async def take(aws: AwsClients, url: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """Receive (and delete) `count` messages from a capture queue."""
    taken: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while len(taken) < count:
        assert time.monotonic() < deadline, f"captured {len(taken)} of {count} messages"
        response = await aws.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        )
        for message in response.get("Messages", []):
            taken.append(message)
            await aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return taken


async def redeliver(aws: AwsClients, settings: Settings, queue: Queue, body: str) -> None:
    names = ResourceNames.from_settings(settings)
    url = (await aws.sqs.get_queue_url(QueueName=names.queue(queue)))["QueueUrl"]
    await aws.sqs.send_message(QueueUrl=url, MessageBody=body)


def _stage_messages(messages: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """(image id, stage) → body of each captured task message."""
    by_task: dict[tuple[str, str], str] = {}
    for message in messages:
        body = json.loads(message["Body"])
        by_task[(body["image_id"], body["stage"])] = message["Body"]
    return by_task


def _s3_events(messages: list[dict[str, Any]]) -> dict[str, str]:
    """image id → body of its S3 notification (moto also sends an `s3:TestEvent`: skipped)."""
    by_image: dict[str, str] = {}
    for message in messages:
        for record in json.loads(message["Body"]).get("Records", []):
            key = record["s3"]["object"]["key"].replace("%2F", "/")
            by_image[key.rsplit("/", 1)[-1].split(".", 1)[0]] = message["Body"]
    return by_image


async def test_duplicate_events_messages_and_answers_change_nothing(
    fault_stack: RunningStack, log_dir: Path
) -> None:
    settings = fault_stack.settings
    errors_before = len(error_lines(log_dir))
    async with (
        AwsClients(settings) as aws,
        captured(aws, settings, Topic.UPLOAD, None) as uploads,
        captured(aws, settings, Topic.VALIDATED, {"stage": ["tag", "thumbnail"]}) as tasks,
    ):
        # Image A: every copy is delivered after A is PROCESSED.
        [done] = await upload_files(settings, [("done.jpg", photo(1))])
        await wait_terminal(settings, [done.image_id], timeout=60)
        before = (await records(settings, [done.image_id]))[done.image_id]
        events = _s3_events(await take(aws, uploads, 1))
        stage_bodies = _stage_messages(await take(aws, tasks, 2))
        for _ in range(2):
            await redeliver(aws, settings, Queue.INGEST, events[done.image_id])
        await redeliver(aws, settings, Queue.TAG, stage_bodies[(done.image_id, "tag")])
        await redeliver(aws, settings, Queue.THUMBNAIL, stage_bodies[(done.image_id, "thumbnail")])

        # Image B: each copy is delivered as soon as the original exists (B still in flight).
        [busy] = await upload_files(settings, [("busy.jpg", photo(2))])
        busy_event = _s3_events(await take(aws, uploads, 1))[busy.image_id]
        await redeliver(aws, settings, Queue.INGEST, busy_event)
        busy_tasks = _stage_messages(await take(aws, tasks, 2))
        await redeliver(aws, settings, Queue.TAG, busy_tasks[(busy.image_id, "tag")])
        await redeliver(aws, settings, Queue.THUMBNAIL, busy_tasks[(busy.image_id, "thumbnail")])

        # A token answered after its task is over: refused by Step Functions, dropped quietly
        # (moto 5.2.5 refuses a late success but accepts a late failure or heartbeat, which AWS
        # refuses with TaskTimedOut; either way nothing may change, as checked below).
        token = json.loads(stage_bodies[(done.image_id, "thumbnail")])["task_token"]
        late = TaskToken(aws.stepfunctions, token)
        assert await late.succeed({"renditions": []}) is False
        await late.fail("ImageProc.StageFailed", "a late failure")
        await late.heartbeat()

    ids = [done.image_id, busy.image_id]
    await wait_terminal(settings, ids, timeout=60)
    await wait_queues_empty(settings, timeout=45)
    after = await records(settings, ids)
    assert {r["status"] for r in after.values()} == {"PROCESSED"}, after
    # A's results are exactly what they were before its copies arrived.
    for field in ("status", "metadata", "tags", "thumbnails", "execution_arn", "finished_at"):
        assert after[done.image_id].get(field) == before.get(field), field
    executions = await executions_per_image(settings)
    assert not await duplicate_problems(settings, after, executions)

    logged = log_lines(log_dir)
    ignored = [e for e in logged if e.get("image_id") in ids and "duplicate" in e["event"]]
    dropped = [e for e in logged if e.get("image_id") in ids and "already over" in e["event"]]
    # A's two copies are ignored by the starter. B's copy, while B runs, may instead reach
    # StartExecution, which (on AWS and moto alike) returns the running execution with the same
    # name and input: the starter then logs "execution started" again, but nothing new runs.
    assert len([e for e in ignored if e["image_id"] == done.image_id]) == 2, ignored
    assert len(dropped) >= 2, "each duplicate task message is logged as dropped"
    errors = error_lines(log_dir)[errors_before:]
    assert errors == [], errors[:5]
    print(
        f"\nRELIABILITY duplicates: s3_events_redelivered=3 task_messages_redelivered=4 "
        f"late_answers=3 executions_per_image=1 results_changed=0 error_log_lines={len(errors)} "
        f"logged_ignored={len(ignored)} logged_dropped={len(dropped)}"
    )
