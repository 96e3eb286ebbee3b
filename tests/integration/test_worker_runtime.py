"""The worker runtime against a real moto server over HTTP, with the real workflow.

Handlers here are stand-ins (the services have their own tests); what is under test is the
runtime: visibility extension, heartbeats, answering the token, deleting only after the answer,
draining on stop, and malformed messages reaching the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from helpers import eventually

from imgproc_extractor.handler import RESULT_ATTRIBUTE
from imgproc_local.bootstrap import bootstrap
from imgproc_shared import errors
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import (
    ImageMetadata,
    StageTask,
    TagResult,
    ThumbnailResult,
)
from imgproc_shared.resources import Queue, ResourceNames, Stage
from imgproc_shared.settings import Settings
from imgproc_shared.worker import WorkContext, Worker
from imgproc_status_api.starter import Starter

from workflow_harness import (
    extract_ok,
    pipeline,
    queue_depth,
    tag_ok,
    terminal,
    thumbnail_ok,
    upload,
)


async def test_image_is_processed_and_every_message_is_deleted(stack: Any) -> None:
    settings, aws, _ = stack
    async with pipeline(settings, aws) as workers:
        await upload(settings, aws, "img-ok")
        record = await terminal(settings, aws, "img-ok")
    assert record["status"] == "PROCESSED"
    assert record["tags"]["labels"][0]["name"] == "Cat"
    assert record["metadata"]["format"] == "JPEG"
    assert set(record) >= {"stage_extract", "stage_tag", "stage_thumbnail"}
    assert all(workers[s].counters["succeeded"] == 1 for s in Stage)
    names = ResourceNames.from_settings(settings)
    for queue in (Queue.EXTRACT, Queue.TAG, Queue.THUMBNAIL, Queue.INGEST):
        assert await queue_depth(settings, aws, names.queue(queue)) == 0, queue


async def test_metadata_is_on_the_record_while_the_other_stages_run(stack: Any) -> None:
    settings, aws, _ = stack
    catalog = Catalog(aws, ResourceNames.from_settings(settings))
    release = asyncio.Event()

    async def held_tag(task: StageTask, ctx: WorkContext) -> TagResult:
        await release.wait()  # the tag stage runs until the test has looked
        return await tag_ok(task, ctx)

    async def with_metadata() -> Any:
        record = await catalog.get_image("img-early")
        return (
            record.model_dump(mode="json", exclude_unset=True)
            if record and record.metadata
            else None
        )

    async with pipeline(settings, aws, {Stage.TAG: held_tag}):
        await upload(settings, aws, "img-early")
        early = await eventually(with_metadata, timeout=30, what="metadata before the tags")
        release.set()
        record = await terminal(settings, aws, "img-early")
    assert early["status"] == "PROCESSING" and "tags" not in early
    assert early["metadata"] == record["metadata"]
    assert record["metadata"]["format"] == "JPEG" and record["status"] == "PROCESSED"


async def test_long_work_keeps_its_message_and_its_task_alive(
    settings_factory: Callable[..., Settings],
) -> None:
    # Visibility 2 s and a task heartbeat of 3 s, but the work takes 5 s: without visibility
    # extension the message would be delivered again; without heartbeats the task would time out.
    settings = settings_factory(
        visibility_timeout_s=2, task_heartbeat_s=3, heartbeat_interval_s=0.5
    )
    calls: Counter[str] = Counter()

    async def slow_tag(task: StageTask, ctx: WorkContext) -> TagResult:
        calls[task.image_id] += 1
        await asyncio.sleep(5)  # the slow work under test, not a wait for a condition
        return await tag_ok(task, ctx)

    async with AwsClients(settings) as aws:
        outputs = await bootstrap(aws, settings)
        settings = settings.model_copy(update={"state_machine_arn": outputs["state_machine_arn"]})
        async with pipeline(settings, aws, {Stage.TAG: slow_tag}):
            await upload(settings, aws, "img-slow")
            record = await terminal(settings, aws, "img-slow")
    assert record["status"] == "PROCESSED", record
    assert calls["img-slow"] == 1, "the message was delivered again while being worked on"


async def test_named_failure_is_answered_and_recorded(stack: Any) -> None:
    settings, aws, _ = stack

    async def corrupt(task: StageTask, ctx: WorkContext) -> ImageMetadata:
        raise errors.CorruptImage("the file is not an image (it looks like text)")

    async with pipeline(settings, aws, {Stage.EXTRACT: corrupt}) as workers:
        await upload(settings, aws, "img-bad")
        record = await terminal(settings, aws, "img-bad")
    assert record["status"] == "REJECTED"
    assert record["error_code"] == "ImageProc.CorruptImage"
    assert record["error_message"] == "the file is not an image (it looks like text)"
    assert record["stage_extract"]["error"]["code"] == "ImageProc.CorruptImage"
    assert workers[Stage.EXTRACT].counters["rejected"] == 1
    names = ResourceNames.from_settings(settings)
    assert await queue_depth(settings, aws, names.queue(Queue.EXTRACT)) == 0


async def test_stage_that_keeps_failing_makes_the_image_failed_with_its_stage(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(max_receive_count=2)

    async def broken(task: StageTask, ctx: WorkContext) -> ThumbnailResult:
        raise RuntimeError("disk full")

    async with AwsClients(settings) as aws:
        outputs = await bootstrap(aws, settings)
        settings = settings.model_copy(update={"state_machine_arn": outputs["state_machine_arn"]})
        async with pipeline(settings, aws, {Stage.THUMBNAIL: broken}):
            await upload(settings, aws, "img-fail")
            record = await terminal(settings, aws, "img-fail", timeout=40)
            names = ResourceNames.from_settings(settings)
            dlq = names.dead_letter_queue(Queue.THUMBNAIL)
            # The message that kept failing ends in the thumbnail DLQ for an operator to replay.
            await eventually(
                lambda: queue_depth(settings, aws, dlq), timeout=20, what="message in the DLQ"
            )
    assert record["status"] == "FAILED"
    assert record["failed_stage"] == "thumbnail"
    assert "disk full" in record["error_message"]


async def test_malformed_messages_reach_the_dlq_while_the_worker_keeps_going(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(max_receive_count=2)
    async with AwsClients(settings) as aws:
        outputs = await bootstrap(aws, settings)
        settings = settings.model_copy(update={"state_machine_arn": outputs["state_machine_arn"]})
        names = ResourceNames.from_settings(settings)
        queue_url = outputs["queues"]["extract"]
        poison = [
            "this is not json",
            json.dumps({"stage": "extract", "image_id": "x"}),  # wrong schema: no token, bucket
            json.dumps(
                {
                    "task_token": "t",
                    "stage": "extract",
                    "image_id": "unknown-image",
                    "bucket": names.bucket,
                    "key": "incoming/a/b/c.jpg",
                }
            ),
        ]
        for body in poison:
            await aws.sqs.send_message(QueueUrl=queue_url, MessageBody=body)
        async with pipeline(settings, aws) as workers:
            await upload(settings, aws, "img-after-poison")
            record = await terminal(settings, aws, "img-after-poison")
            dlq = names.dead_letter_queue(Queue.EXTRACT)
            await eventually(
                lambda: _equals(queue_depth(settings, aws, dlq), 3),
                timeout=30,
                what="three poison messages in the extract DLQ",
            )
    assert record["status"] == "PROCESSED"
    assert workers[Stage.EXTRACT].counters["malformed"] >= 2
    assert workers[Stage.EXTRACT].counters["unknown_image"] >= 1


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


async def test_stop_drains_in_flight_work_and_loses_nothing(stack: Any) -> None:
    settings, aws, _ = stack
    started = asyncio.Event()

    async def slowish_tag(task: StageTask, ctx: WorkContext) -> TagResult:
        started.set()
        await asyncio.sleep(1.5)  # in-flight work that must finish during the drain
        return await tag_ok(task, ctx)

    worker = Worker(Stage.TAG, slowish_tag, settings)
    others = {
        Stage.EXTRACT: Worker(
            Stage.EXTRACT, extract_ok, settings, result_attribute=RESULT_ATTRIBUTE
        ),
        Stage.THUMBNAIL: Worker(Stage.THUMBNAIL, thumbnail_ok, settings),
    }
    stopping = asyncio.Event()
    assert settings.state_machine_arn
    background = [asyncio.create_task(w.run()) for w in others.values()]
    background.append(
        asyncio.create_task(Starter(aws, settings, settings.state_machine_arn).run(stopping))
    )
    run = asyncio.create_task(worker.run())
    for image_id in ("drain-1", "drain-2", "drain-3"):
        await upload(settings, aws, image_id)
    await asyncio.wait_for(started.wait(), 30)
    worker.stop()
    await asyncio.wait_for(run, settings.stop_timeout_s + 5)
    drained = worker.counters["succeeded"]
    assert drained >= 1, "in-flight work was not finished on stop"
    # A fresh worker picks up whatever the stopped one had not taken: nothing is lost.
    second = Worker(Stage.TAG, tag_ok, settings)
    rerun = asyncio.create_task(second.run())
    try:
        for image_id in ("drain-1", "drain-2", "drain-3"):
            record = await terminal(settings, aws, image_id)
            assert record["status"] == "PROCESSED", record
    finally:
        second.stop()
        stopping.set()
        for w in others.values():
            w.stop()
        await asyncio.gather(rerun, *background)
    # At least once, not exactly once: a long poll cut short by the stop may already have
    # taken a message, which returns only after its visibility timeout; on a loaded machine the
    # task's heartbeat (10 s here) can run out first and the workflow retries it with a new
    # message. AWS then refuses the late answer to the old one; moto 5.2.5 accepts it.
    assert drained + second.counters["succeeded"] >= 3


async def test_a_transient_failure_is_retried_with_a_fresh_token(stack: Any) -> None:
    settings, aws, _ = stack
    tokens: list[str] = []

    async def flaky_tag(task: StageTask, ctx: WorkContext) -> TagResult:
        tokens.append(task.task_token)
        if len(tokens) == 1:
            raise errors.TransientError("the label service is busy")
        return await tag_ok(task, ctx)

    async with pipeline(settings, aws, {Stage.TAG: flaky_tag}):
        await upload(settings, aws, "img-flaky")
        record = await terminal(settings, aws, "img-flaky")
    assert record["status"] == "PROCESSED", record
    assert len(tokens) == 2 and tokens[0] != tokens[1], "a retry must carry its own task token"
