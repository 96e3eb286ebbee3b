"""Poison messages: logged with their reason, dead-lettered after the redrive count, and the
consumer keeps serving everything else meanwhile.

Three kinds go into every queue (ingest, extract, tag, thumbnail, status-events): a body that is
not JSON, JSON of the wrong shape, and a well-formed message about an image that does not exist.
A real photo is uploaded while they cycle and must come through PROCESSED.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imgproc_shared.aws import AwsClients
from imgproc_shared.resources import Queue, ResourceNames
from imgproc_shared.settings import Settings

from fault_stack import (
    log_lines,
    photo,
    records,
    upload_files,
    wait_queues_empty,
    wait_terminal,
)
from stack_process import RunningStack

pytestmark = pytest.mark.e2e

KINDS = ("not-json", "wrong-schema", "unknown-image")
# Which log event each consumer writes for a message it cannot use.
MALFORMED_EVENTS = {
    Queue.INGEST: "malformed message",
    Queue.EXTRACT: "malformed message",
    Queue.TAG: "malformed message",
    Queue.THUMBNAIL: "malformed message",
    Queue.STATUS_EVENTS: "malformed status event",
}


@dataclass(frozen=True)
class Poison:
    queue: Queue
    kind: str
    body: str
    message_id: str = ""


def _bodies(queue: Queue, bucket: str, marker: str) -> dict[str, str]:
    unknown = f"poison{uuid.uuid4().hex[:12]}"
    key = f"incoming/reliability/poisonalbum/{unknown}.jpg"
    if queue is Queue.INGEST:
        well_formed: dict[str, Any] = {
            "Records": [
                {
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10}},
                }
            ]
        }
    elif queue is Queue.STATUS_EVENTS:
        well_formed = {"image_id": unknown, "status": "PROCESSED", "album_id": "poisonalbum"}
    else:
        well_formed = {
            "task_token": f"token-{marker}",
            "stage": queue.value,
            "image_id": unknown,
            "bucket": bucket,
            "key": key,
        }
    well_formed["poison"] = marker
    return {
        "not-json": '{"poison": "' + marker + '", "truncated": ',
        "wrong-schema": json.dumps({"poison": marker, "hello": ["world"]}),
        "unknown-image": json.dumps(well_formed),
    }


async def _send_all(settings: Settings, marker: str) -> list[Poison]:
    names = ResourceNames.from_settings(settings)
    sent: list[Poison] = []
    async with AwsClients(settings) as aws:
        for queue in Queue:
            url = (await aws.sqs.get_queue_url(QueueName=names.queue(queue)))["QueueUrl"]
            for kind, body in _bodies(queue, names.bucket, marker).items():
                response = await aws.sqs.send_message(QueueUrl=url, MessageBody=body)
                sent.append(Poison(queue, kind, body, response["MessageId"]))
    return sent


async def _drain_dead_letters(settings: Settings, marker: str) -> dict[Queue, list[str]]:
    """Take every poison message out of the dead-letter queues (and leave them empty)."""
    names = ResourceNames.from_settings(settings)
    found: dict[Queue, list[str]] = {}
    async with AwsClients(settings) as aws:
        for queue in Queue:
            url = (await aws.sqs.get_queue_url(QueueName=names.dead_letter_queue(queue)))[
                "QueueUrl"
            ]
            bodies: list[str] = []
            while True:
                response = await aws.sqs.receive_message(
                    QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0
                )
                messages = response.get("Messages", [])
                if not messages:
                    break
                for message in messages:
                    bodies.append(message["Body"])
                    await aws.sqs.delete_message(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                    )
            found[queue] = [b for b in bodies if marker in b]
            assert len(found[queue]) == len(bodies), f"strangers in {queue} DLQ: {bodies}"
    return found


async def _dead_letter_counts(settings: Settings) -> dict[Queue, int]:
    names = ResourceNames.from_settings(settings)
    counts: dict[Queue, int] = {}
    async with AwsClients(settings) as aws:
        for queue in Queue:
            url = (await aws.sqs.get_queue_url(QueueName=names.dead_letter_queue(queue)))[
                "QueueUrl"
            ]
            attributes = (
                await aws.sqs.get_queue_attributes(
                    QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
                )
            )["Attributes"]
            counts[queue] = int(attributes["ApproximateNumberOfMessages"])
    return counts


async def test_poison_in_every_queue_is_dead_lettered_while_good_work_goes_on(
    fault_stack: RunningStack, log_dir: Path
) -> None:
    settings = fault_stack.settings
    marker = f"poison-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    sent = await _send_all(settings, marker)
    expected = {queue: sum(1 for p in sent if p.queue is queue) for queue in Queue}

    # Good work flows while the poison cycles through its receives.
    [good] = await upload_files(settings, [("good.jpg", photo(7))])
    found = await wait_terminal(settings, [good.image_id], timeout=60)
    assert found[good.image_id]["status"] == "PROCESSED", found

    deadline = time.monotonic() + 90
    while (counts := await _dead_letter_counts(settings)) != expected:
        assert time.monotonic() < deadline, f"dead letters {counts}, expected {expected}"
        await asyncio.sleep(1)
    dead_after = time.monotonic() - started
    dead = await _drain_dead_letters(settings, marker)
    for poison in sent:
        assert poison.body in dead[poison.queue], (poison.queue, poison.kind)

    # Each one was logged with its reason; worker lines carry the SQS message id.
    logged = [e for e in log_lines(log_dir) if e.get("event") in MALFORMED_EVENTS.values()]
    assert all(e.get("reason") for e in logged), [e for e in logged if not e.get("reason")]
    for poison in sent:
        if poison.queue in (Queue.EXTRACT, Queue.TAG, Queue.THUMBNAIL):
            lines = [e for e in logged if e.get("message_id") == poison.message_id]
            assert lines, f"no log line for {poison.queue} {poison.kind}"
        elif poison.queue is Queue.INGEST:
            lines = [e for e in logged if marker in e.get("body", "")]
            assert len(lines) >= 3, lines
        else:
            lines = [e for e in logged if e["event"] == MALFORMED_EVENTS[Queue.STATUS_EVENTS]]
            assert len(lines) >= 2 * settings.max_receive_count, lines

    # No image was invented for the unknown ids.
    unknown_ids = [
        json.loads(p.body).get("image_id")
        for p in sent
        if p.kind == "unknown-image" and p.queue is not Queue.INGEST
    ]
    assert await records(settings, [i for i in unknown_ids if i]) == {}
    await wait_queues_empty(settings, timeout=30)
    reasons = sorted({str(e["reason"])[:50] for e in logged})
    print(
        f"\nRELIABILITY poison: sent={len(sent)} dead_lettered={sum(expected.values())} "
        f"in_seconds={dead_after:.0f} "
        f"good_image=PROCESSED reasons={reasons}"
    )
