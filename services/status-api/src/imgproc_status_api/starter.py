"""The starter: consumes `ingest` (S3 uploads via the `upload` topic) and starts one execution
per image, named by the image id, so a duplicate S3 event starts nothing new."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from botocore.exceptions import ClientError

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.logging import get_logger
from imgproc_shared.long_poll import delete_batch, receive_batches
from imgproc_shared.models import WorkflowInput, is_valid_id
from imgproc_shared.resources import INCOMING_PREFIX, Queue, ResourceNames, execution_arn
from imgproc_shared.s3_events import MalformedEvent, ObjectCreated, parse_s3_event
from imgproc_shared.settings import Settings

log = get_logger(stage="start")


class UnexpectedKey(ValueError):
    pass


class UnknownImage(UnexpectedKey):
    """An event for an image with neither a record nor an object: nothing to process."""


def parse_incoming_key(key: str) -> tuple[str, str, str]:
    """`incoming/{owner}/{album}/{image_id}.{ext}` → (owner, album, image_id)."""
    if not key.startswith(INCOMING_PREFIX):
        raise UnexpectedKey(f"not under {INCOMING_PREFIX}: {key!r}")
    parts = key[len(INCOMING_PREFIX) :].split("/")
    if len(parts) != 3:
        raise UnexpectedKey(f"expected incoming/OWNER/ALBUM/IMAGE.EXT, got {key!r}")
    owner, album_id, file_name = parts
    image_id = file_name.split(".", 1)[0]
    if not (is_valid_id(owner) and is_valid_id(album_id) and is_valid_id(image_id)):
        raise UnexpectedKey(f"invalid owner, album or image id in {key!r}")
    return owner, album_id, image_id


class Starter:
    def __init__(self, aws: AwsClients, settings: Settings, state_machine_arn: str) -> None:
        self.aws = aws
        self.settings = settings
        self.names = ResourceNames.from_settings(settings)
        self.catalog = Catalog(aws, self.names)
        self.state_machine_arn = state_machine_arn
        self.started = 0

    async def start_image(self, created: ObjectCreated) -> bool:
        """Start the execution for one uploaded object; False when it already ran or runs."""
        owner, album_id, image_id = parse_incoming_key(created.key)
        arn = execution_arn(self.state_machine_arn, image_id)
        bound = log.bind(image_id=image_id)
        # Record PROCESSING before starting, so the execution's own writes always come later.
        # The usual case (the API or the CLI recorded the upload) is this one write.
        mark = functools.partial(
            self.catalog.mark_processing,
            image_id=image_id,
            owner=owner,
            album_id=album_id,
            bucket=created.bucket,
            key=created.key,
            execution_arn=arn,
        )
        fresh = await mark(recorded_only=True)
        if not fresh:
            record = await self.catalog.get_image(image_id)
            if record is None:
                # Found by the reliability tests (poison messages): an event naming an image
                # that has no record and no object used to create a record and an execution
                # that then FAILED ("no longer exists"). Such an event is poison: left for the
                # dead-letter queue. An object put straight into S3 gets its record here.
                if not await self._object_exists(created.bucket, created.key):
                    raise UnknownImage(
                        f"no image {image_id} and no object s3://{created.bucket}/{created.key}"
                    )
                fresh = await mark()
                if not fresh:
                    record = await self.catalog.get_image(image_id)
            if not fresh and record and record.get("status") not in ("UPLOADING", "PROCESSING"):
                bound.info("duplicate upload event ignored", status=record.get("status"))
                return False
        workflow_input = WorkflowInput(
            image_id=image_id,
            bucket=created.bucket,
            key=created.key,
            owner=owner,
            album_id=album_id,
        )
        try:
            await self.aws.stepfunctions.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=image_id,
                input=workflow_input.model_dump_json(),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ExecutionAlreadyExists":
                bound.info("duplicate upload event: execution exists")
                return False
            raise
        self.started += 1
        bound.info("execution started", execution_arn=arn)
        return True

    async def _object_exists(self, bucket: str, key: str) -> bool:
        try:
            await self.aws.s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    async def handle(self, body: str) -> None:
        for created in parse_s3_event(body):
            await self.start_image(created)

    async def run(self, stopping: asyncio.Event) -> None:
        queue_url = (await self.aws.sqs.get_queue_url(QueueName=self.names.queue(Queue.INGEST)))[
            "QueueUrl"
        ]
        async for messages in receive_batches(
            self.aws.sqs,
            queue_url,
            stopping,
            wait_time_s=self.settings.wait_time_s,
            pause_s=self.settings.receive_pause_s,
        ):
            # The images of one batch are independent: start them concurrently.
            handled = await asyncio.gather(*(self._handle_message(m) for m in messages))
            done = [message for message, ok in zip(messages, handled, strict=True) if ok]
            await delete_batch(self.aws.sqs, queue_url, [m["ReceiptHandle"] for m in done])

    async def _handle_message(self, message: dict[str, Any]) -> bool:
        """True when the message is done with (to be deleted)."""
        try:
            await self.handle(message["Body"])
            return True
        except (MalformedEvent, UnexpectedKey) as exc:
            # Left for the dead-letter queue after the redrive count.
            log.warning("malformed message", reason=str(exc), body=message["Body"][:200])
        except Exception:
            log.exception("start failed; the message will be retried")
        return False


async def resolve_state_machine_arn(aws: AwsClients, settings: Settings) -> str:
    if settings.state_machine_arn:
        return settings.state_machine_arn
    name = ResourceNames.from_settings(settings).state_machine
    paginator_kwargs: dict[str, Any] = {}
    while True:
        page = await aws.stepfunctions.list_state_machines(**paginator_kwargs)
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
        if not page.get("nextToken"):
            raise RuntimeError(f"state machine {name} not found; is the stack bootstrapped?")
        paginator_kwargs["nextToken"] = page["nextToken"]
