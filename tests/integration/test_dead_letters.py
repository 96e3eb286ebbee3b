"""Dead letters against a real moto server: list without losing, replay intact, re-run images.

The failing stage is the real worker runtime with the test-only fault switch
(`IMGPROC_FAULT_FILE`): the handler raises until the file is deleted.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from helpers import eventually

from imgproc_local.bootstrap import bootstrap
from imgproc_shared import errors
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.dead_letters import DeadLetters, parse_queue
from imgproc_shared.resources import Queue, ResourceNames, Stage, incoming_key
from imgproc_shared.settings import Settings

from workflow_harness import pipeline, upload


@asynccontextmanager
async def fresh_stack(
    settings_factory: Callable[..., Settings], **overrides: Any
) -> AsyncIterator[tuple[Settings, AwsClients]]:
    settings = settings_factory(**overrides)
    async with AwsClients(settings) as aws:
        outputs = await bootstrap(aws, settings)
        yield settings.model_copy(update={"state_machine_arn": outputs["state_machine_arn"]}), aws


async def status_of(settings: Settings, aws: AwsClients, image_id: str, wanted: str) -> Any:
    catalog = Catalog(aws, ResourceNames.from_settings(settings))

    async def check() -> Any:
        record = await catalog.get_image(image_id)
        return (
            record.model_dump(mode="json", exclude_unset=True)
            if record and record.status == wanted
            else None
        )

    return await eventually(check, timeout=40, what=f"{image_id} {wanted}")


async def test_failed_image_lands_in_the_dlq_and_replay_brings_it_to_processed(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    fault = tmp_path / "fault"
    fault.write_text("thumbnail\n")
    async with fresh_stack(settings_factory, max_receive_count=2, fault_file=fault) as (
        settings,
        aws,
    ):
        dead = DeadLetters(aws, settings)
        async with pipeline(settings, aws) as workers:
            await upload(settings, aws, "img-dlq")
            failed = await status_of(settings, aws, "img-dlq", "FAILED")
            assert failed["failed_stage"] == "thumbnail"
            await eventually(
                lambda: _dead_letters(dead, Queue.THUMBNAIL, 1), timeout=20, what="one DLQ message"
            )

            letters = await dead.messages(Queue.THUMBNAIL)
            assert len(letters) == 1
            letter = letters[0]
            assert (letter.image_id, letter.stage, letter.image_status) == (
                "img-dlq",
                "thumbnail",
                "FAILED",
            )
            assert letter.receive_count >= 2
            assert letter.first_receive_at and letter.sent_at and letter.last_receive_at
            assert letter.last_error is not None
            assert letter.last_error["code"] == errors.STAGE_FAILED
            assert "injected fault" in letter.last_error["message"]
            assert letter.message_attributes["stage"]["StringValue"] == "thumbnail"
            # Looking loses nothing: the message is back and visible.
            assert (await dead.depth(Queue.THUMBNAIL)).dead_letters == 1
            shown = await dead.show(Queue.THUMBNAIL, letter.message_id)
            assert shown is not None and json.loads(shown.body)["image_id"] == "img-dlq"

            dry = await dead.replay(Queue.THUMBNAIL, dry_run=True)
            assert (dry.selected, dry.moved, dry.image_ids) == (1, 0, ["img-dlq"])
            assert (await dead.depth(Queue.THUMBNAIL)).dead_letters == 1

            fault.unlink()  # the fault is cleared
            report = await dead.replay(Queue.THUMBNAIL)
            assert (report.moved, report.failed) == (1, 0)
            assert set(report.reran) == {"img-dlq"}
            assert report.reran["img-dlq"].endswith(":img-dlq-r1")

            done = await status_of(settings, aws, "img-dlq", "PROCESSED")
            assert done["execution_arn"] == report.reran["img-dlq"]
            assert done["reruns"] == 1
            assert "error_code" not in done and "failed_stage" not in done
            assert done["thumbnails"]["renditions"][0]["name"] == "thumbnail"

            # PROCESSED is recorded by StoreResults; the execution ends after Announce.
            async def succeeded() -> bool:
                described = await aws.stepfunctions.describe_execution(
                    executionArn=done["execution_arn"]
                )
                return bool(described["status"] == "SUCCEEDED")

            await eventually(succeeded, timeout=20, what="the re-run execution to succeed")
            # The replayed message itself is done again and dropped (its token is over).
            await eventually(
                lambda: workers[Stage.THUMBNAIL].counters["stale_token"] >= 1,
                timeout=20,
                what="the replayed message dropped as stale",
            )
            depth = await dead.depth(Queue.THUMBNAIL)
            assert (depth.visible, depth.dead_letters) == (0, 0)

        # A second replay of the same image does not re-run a PROCESSED image.
        assert await dead.rerun("img-dlq") == "image is PROCESSED, not FAILED"


async def _dead_letters(dead: DeadLetters, queue: Queue, count: int) -> bool:
    return (await dead.depth(queue)).dead_letters == count


def _task(image_id: str, bucket: str) -> str:
    return json.dumps(
        {
            "task_token": f"token-{image_id}",
            "stage": "tag",
            "image_id": image_id,
            "bucket": bucket,
            "key": f"incoming/alice/album1/{image_id}.jpg",
        }
    )


async def test_replay_keeps_body_and_attributes_and_honours_filters(
    settings_factory: Callable[..., Settings],
) -> None:
    async with fresh_stack(settings_factory) as (settings, aws):
        names = ResourceNames.from_settings(settings)
        dead = DeadLetters(aws, settings)
        dlq_url = await dead.url(names.dead_letter_queue(Queue.TAG))
        bodies = {}
        for image_id in ("img-a", "img-b", "img-c", "img-d"):
            bodies[image_id] = _task(image_id, names.bucket)
            await aws.sqs.send_message(
                QueueUrl=dlq_url,
                MessageBody=bodies[image_id],
                MessageAttributes={
                    "stage": {"DataType": "String", "StringValue": "tag"},
                    "attempt": {"DataType": "Number", "StringValue": "3"},
                },
            )
        assert [d.dead_letters for d in await dead.depths() if d.queue == "tag"] == [4]

        only_b = await dead.replay(Queue.TAG, image_id="img-b")
        assert (only_b.selected, only_b.moved, only_b.image_ids) == (1, 1, ["img-b"])
        assert only_b.not_rerun == {"img-b": "unknown image"}
        source_url = await dead.url(names.queue(Queue.TAG))
        received = await aws.sqs.receive_message(
            QueueUrl=source_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
        )
        [moved] = received["Messages"]
        assert moved["Body"] == bodies["img-b"]
        attributes = {
            k: (v["DataType"], v["StringValue"]) for k, v in moved["MessageAttributes"].items()
        }
        assert attributes == {"stage": ("String", "tag"), "attempt": ("Number", "3")}
        assert (await dead.depth(Queue.TAG)).dead_letters == 3

        two = await dead.replay(Queue.TAG, max_messages=2)
        assert (two.selected, two.moved) == (2, 2)
        remaining = await dead.messages(Queue.TAG)
        assert len(remaining) == 1 and remaining[0].image_id not in two.image_ids

        purged = await dead.purge(parse_queue(f"{names.prefix}-tag-dlq"))
        assert purged == 1
        assert (await dead.depth(Queue.TAG)).dead_letters == 0


async def test_rerun_starts_one_execution_even_when_two_replays_race(
    settings_factory: Callable[..., Settings],
) -> None:
    async with fresh_stack(settings_factory) as (settings, aws):
        names = ResourceNames.from_settings(settings)
        catalog = Catalog(aws, names)
        await catalog.record_upload(
            image_id="img-race",
            owner="alice",
            album_id="album1",
            bucket=names.bucket,
            key=incoming_key("alice", "album1", "img-race", "jpg"),
            file_name="x.jpg",
        )
        await aws.dynamodb.update_item(
            TableName=catalog.images_table,
            Key={"image_id": {"S": "img-race"}},
            UpdateExpression="SET #s = :failed, error_code = :code",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":failed": {"S": "FAILED"}, ":code": {"S": "X"}},
        )
        first, second = await asyncio.gather(
            DeadLetters(aws, settings).rerun("img-race"),
            DeadLetters(aws, settings).rerun("img-race"),
        )
        # On AWS the conditional write lets one through; moto's server does not lock its
        # tables, so both may pass it, and then the shared execution name starts one execution.
        started = {o for o in (first, second) if o.startswith("arn:")}
        assert len(started) == 1, (first, second)
        executions = await aws.stepfunctions.list_executions(
            stateMachineArn=settings.state_machine_arn
        )
        assert [e["name"] for e in executions["executions"]] == ["img-race-r1"]
        record = await catalog.get_image("img-race")
        assert record is not None
        assert record.status == "PROCESSING" and record.execution_arn in started
        assert record.reruns == 1 and record.error_code is None
        again = await DeadLetters(aws, settings).rerun("img-race")
        assert again == "image is PROCESSING, not FAILED"


class _MoveTaskRecorder:
    """The SQS client, except `StartMessageMoveTask` (moto answers 500): it is recorded."""

    def __init__(self, sqs: Any) -> None:
        self._sqs = sqs
        self.move_tasks: list[dict[str, str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sqs, name)

    async def start_message_move_task(self, **kwargs: str) -> dict[str, str]:
        self.move_tasks.append(kwargs)
        return {"TaskHandle": "handle-1"}


class _Clients:
    def __init__(self, aws: AwsClients, sqs: _MoveTaskRecorder) -> None:
        self.sqs = sqs
        self.dynamodb = aws.dynamodb
        self.stepfunctions = aws.stepfunctions


async def test_whole_queue_replay_on_aws_starts_a_move_task(
    settings_factory: Callable[..., Settings],
) -> None:
    async with fresh_stack(settings_factory) as (settings, aws):
        names = ResourceNames.from_settings(settings)
        url = (await aws.sqs.get_queue_url(QueueName=names.dead_letter_queue(Queue.TAG)))[
            "QueueUrl"
        ]
        await aws.sqs.send_message(QueueUrl=url, MessageBody=_task("img-aws", names.bucket))
        recorder = _MoveTaskRecorder(aws.sqs)
        # The AWS path is chosen by the settings (no endpoint), not by trying and failing.
        on_aws = settings.model_copy(update={"endpoint_url": None})
        dead = DeadLetters(_Clients(aws, recorder), on_aws)  # type: ignore[arg-type]

        filtered = await dead.replay(Queue.TAG, max_messages=5, dry_run=True)
        assert filtered.method == "moved here" and recorder.move_tasks == []

        report = await dead.replay(Queue.TAG)
        assert report.method == "move task" and report.move_task_handle == "handle-1"
        assert (report.selected, report.image_ids) == (1, ["img-aws"])
        [task] = recorder.move_tasks
        assert task["SourceArn"].endswith(f":{names.dead_letter_queue(Queue.TAG)}")
        assert task["DestinationArn"].endswith(f":{names.queue(Queue.TAG)}")
        # Looking at the messages first released them (visible again) for the move task.
        attributes = await aws.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )
        assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "1"
        assert report.not_rerun == {"img-aws": "unknown image"}


async def test_looking_is_not_a_receive_and_single_messages_are_replayed_or_deleted(
    settings_factory: Callable[..., Settings],
) -> None:
    async with fresh_stack(settings_factory) as (settings, aws):
        names = ResourceNames.from_settings(settings)
        dead = DeadLetters(aws, settings)
        dlq_url = await dead.url(names.dead_letter_queue(Queue.TAG))
        for image_id in ("img-a", "img-b", "img-c"):
            await aws.sqs.send_message(QueueUrl=dlq_url, MessageBody=_task(image_id, names.bucket))
        await aws.sqs.send_message(QueueUrl=dlq_url, MessageBody="{not json")

        first = await dead.messages(Queue.TAG)
        assert len(first) == 4
        seen = {letter.message_id: letter.summary() for letter in first}
        for _ in range(3):  # looking again, listing and one by one, changes nothing
            assert {x.message_id: x.summary() for x in await dead.messages(Queue.TAG)} == seen
            for message_id in seen:
                shown = await dead.show(Queue.TAG, message_id)
                assert shown is not None and shown.summary() == seen[message_id]
        # SQS itself counted one receive per message: the one that filled the mirror.
        raw = await aws.sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=0,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        assert [m["Attributes"]["ApproximateReceiveCount"] for m in raw["Messages"]] == ["2"] * 4

        by_image = {letter.image_id: letter for letter in first}
        malformed = by_image[None]
        assert malformed.last_error is not None and malformed.last_error["code"] == "Malformed"
        assert "not a tag task" in malformed.last_error["message"]
        assert by_image["img-a"].last_error == {
            "code": "Malformed",
            "message": "unknown image img-a",
        }
        assert json.loads(by_image["img-a"].summary()["body_preview"])["image_id"] == "img-a"

        deleted = await dead.delete(Queue.TAG, [by_image["img-a"].message_id, "no-such-id"])
        assert (deleted.deleted, deleted.not_found) == (
            [by_image["img-a"].message_id],
            ["no-such-id"],
        )
        replayed = await dead.replay(Queue.TAG, message_ids=[by_image["img-b"].message_id])
        assert (replayed.moved, replayed.image_ids) == (1, ["img-b"])
        left = {x.image_id for x in await dead.messages(Queue.TAG)}
        assert left == {"img-c", None}
        assert (await dead.depth(Queue.TAG)).dead_letters == 2
        await dead.purge(Queue.TAG)
        assert await dead.messages(Queue.TAG) == []


async def test_a_malformed_worker_message_is_dead_lettered_with_its_last_try_and_reason(
    settings_factory: Callable[..., Settings],
) -> None:
    async with fresh_stack(settings_factory, max_receive_count=2) as (settings, aws):
        dead = DeadLetters(aws, settings)
        names = ResourceNames.from_settings(settings)
        async with pipeline(settings, aws):
            url = (await aws.sqs.get_queue_url(QueueName=names.queue(Queue.TAG)))["QueueUrl"]
            sent = await aws.sqs.send_message(QueueUrl=url, MessageBody='{"not": "a task"}')
            await eventually(
                lambda: _dead_letters(dead, Queue.TAG, 1), timeout=30, what="one DLQ message"
            )
        [letter] = await dead.messages(Queue.TAG)
        assert letter.message_id == sent["MessageId"]
        assert letter.first_receive_at and letter.last_receive_at
        assert letter.last_receive_at >= letter.first_receive_at
        assert letter.last_error is not None and letter.last_error["code"] == "Malformed"
        assert "task_token" in letter.last_error["message"]  # what the body lacks
