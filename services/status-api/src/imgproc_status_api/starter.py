"""The starter: consumes `ingest` (S3 uploads via the `upload` topic) and starts one execution
per image, named by the image id, so a duplicate S3 event starts nothing new.

Ownership at ingest: an object in our own layout, `incoming/{owner}/{album}/{image_id}.{ext}`,
is processed only if the album exists and belongs to that owner and the image's record, if it
has one, names the same owner, album and key. Anything else (a grant's key edited into another
user's album, a foreign owner id, an album that does not exist) is refused with a logged reason
and the object deleted: nothing is recorded or shown. So is an upload that arrives after its
image was deleted. Keys in other shapes are objects put straight into the bucket (below).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import re
from typing import Any

from botocore.exceptions import ClientError

from imgproc_shared.aws import AwsClients, as_dict
from imgproc_shared.catalog import DELETED, Catalog, is_conditional_failure
from imgproc_shared.dead_letters import DeadLetters
from imgproc_shared.duplicates import ExactDuplicates
from imgproc_shared.errors import ACCESS_DENIED, access_denial, error_code
from imgproc_shared.logging import get_logger
from imgproc_shared.long_poll import delete_batch, receive_batches
from imgproc_shared.models import (
    ALBUM_NAME_MAX,
    WorkflowInput,
    clean_file_name,
    is_valid_display_name,
    is_valid_id,
)
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import INCOMING_PREFIX, Queue, ResourceNames, execution_arn
from imgproc_shared.s3_events import MalformedEvent, ObjectCreated, parse_s3_event
from imgproc_shared.settings import Settings

log = get_logger(stage="start")


class UnexpectedKey(ValueError):
    pass


class UnknownImage(UnexpectedKey):
    """An event for an image with neither a record nor an object: nothing to process."""


# The album of an object put straight into `incoming/` (no folder, no album metadata).
TOP_LEVEL_ALBUM = "Imported"
# User metadata naming the owner and the album (`x-amz-meta-owner`, `x-amz-meta-album`); the
# seed's web app wrote `userid` and `albumid`, still read.
OWNER_METADATA = ("owner", "userid")
ALBUM_METADATA = ("album", "albumid")
# The ids this API and the CLI make (uuid4 hex): a key in our layout with both is ours even when
# its album does not exist, never a person's folders.
_GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")


def parse_incoming_key(key: str) -> tuple[str, str, str] | None:
    """`incoming/{owner}/{album}/{image_id}.{ext}` → (owner, album, image_id); None for any
    other key (an object put straight into the bucket, in a layout of its own)."""
    if not key.startswith(INCOMING_PREFIX):
        return None
    parts = key[len(INCOMING_PREFIX) :].split("/")
    if len(parts) != 3:
        return None
    owner, album_id, file_name = parts
    image_id = file_name.split(".", 1)[0]
    if not (is_valid_id(owner) and is_valid_id(album_id) and is_valid_id(image_id)):
        return None
    return owner, album_id, image_id


def is_processable_key(key: str) -> bool:
    """An object under `incoming/` (a "folder" marker, ending in `/`, is not an object)."""
    return key.startswith(INCOMING_PREFIX) and len(key) > len(INCOMING_PREFIX) and key[-1] != "/"


def folder_album_name(key: str) -> str:
    """The album of an object put straight into the bucket: its folder under `incoming/`
    (`incoming/trip/photo.jpg` → "trip", `incoming/2024/rome/x.jpg` → "2024/rome"), or
    TOP_LEVEL_ALBUM for an object directly under `incoming/`."""
    folders = [p for p in key[len(INCOMING_PREFIX) :].split("/")[:-1] if p.strip()]
    for name in ("/".join(folders).strip(), (folders[-1].strip() if folders else "")):
        if name and is_valid_display_name(name, ALBUM_NAME_MAX):
            return name
    if folders:
        # A folder name too long or with control characters: its readable start.
        cleaned = clean_file_name(folders[-1])[:ALBUM_NAME_MAX].strip()
        if cleaned and is_valid_display_name(cleaned, ALBUM_NAME_MAX):
            return cleaned
    return TOP_LEVEL_ALBUM


def direct_image_id(bucket: str, key: str, etag: str, version_id: str | None) -> str:
    """The image id of an object put straight into the bucket: the same for every event about
    the same version of the object (so a duplicate event starts nothing new), new when the
    object is replaced."""
    identity = "\n".join((bucket, key, etag.strip('"'), version_id or ""))
    return hashlib.sha256(identity.encode()).hexdigest()[:32]


def _metadata(head: dict[str, Any], names: tuple[str, ...]) -> str | None:
    metadata = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    for name in names:
        value = metadata.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _ours_to_start(status: str | None, recorded_arn: str | None, our_arn: str) -> bool:
    """Whether an upload event may start (or start again) the image's execution: it is still
    UPLOADING, or PROCESSING for the execution this event starts (a redelivered event whose
    start was interrupted). PROCESSING for another execution is a re-run (Retry, a dead-letter
    replay) that owns the image: a late event for the same object must not start a second."""
    if status == "UPLOADING":
        return True
    return status == "PROCESSING" and recorded_arn in (None, our_arn)


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
        if not is_processable_key(created.key):
            # The bucket notification only sends `incoming/`; anything else is not an upload.
            log.info("object outside incoming/ ignored", key=created.key)
            return False
        layout = parse_incoming_key(created.key)
        if layout is None:
            return await self._start_direct(created, await self._head(created))
        owner, album_id, image_id = layout
        arn = execution_arn(self.state_machine_arn, image_id)
        bound = log.bind(image_id=image_id)
        album = await self.catalog.get_album(album_id)
        album_is_owners = album is not None and album.owner == owner
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
        # The usual case, one conditional write: the record agrees with the key (the condition
        # checks owner, album and key) and the album is the owner's.
        fresh = album_is_owners and await mark(recorded_only=True)
        if not fresh:
            record = await self.catalog.get_image(image_id)
            if record is None:
                # An event naming an image that has neither a record nor an object must not
                # create a record and an execution that would only FAIL ("no longer exists"):
                # such an event is poison, left for the dead-letter queue (tests/reliability,
                # poison messages).
                head = await self._head(created)
                if _metadata(head, OWNER_METADATA) or _metadata(head, ALBUM_METADATA):
                    # Put straight into S3 naming its owner and album: those govern.
                    return await self._start_direct(created, head)
                if album is None and not (
                    _GENERATED_ID.match(album_id) and _GENERATED_ID.match(image_id)
                ):
                    # e.g. `incoming/trip/2024/photo.jpg`, put by a person: not our layout.
                    return await self._start_direct(created, head)
                if not album_is_owners:
                    reason = "no such album" if album is None else "the album is another owner's"
                    return await self._refuse(created, reason, owner=owner, album_id=album_id)
                # An object put straight into S3 in our layout gets its record here.
                fresh = await mark()
                if not fresh:
                    record = await self.catalog.get_image(image_id)
            if not fresh and record is not None:
                refusal = self._refusal(record, created, owner, album_id, album_is_owners)
                if refusal is not None:
                    if record.status == "UPLOADING" and record.key == created.key:
                        # Its own upload, into an album gone meanwhile: the grant ends too.
                        await self.catalog.tombstone_image(record, only_if_uploading=True)
                    return await self._refuse(created, refusal, owner=owner, album_id=album_id)
                if not _ours_to_start(record.status, record.execution_arn, arn):
                    bound.info(
                        "duplicate upload event ignored",
                        status=record.status,
                        execution_arn=record.execution_arn,
                    )
                    return False
        return await self._start_execution(image_id, created.bucket, created.key, owner, album_id)

    @staticmethod
    def _refusal(
        record: ImageRecord,
        created: ObjectCreated,
        owner: str,
        album_id: str,
        album_is_owners: bool,
    ) -> str | None:
        """Why an object in our layout whose image has a record may not be processed."""
        if record.status == DELETED:
            return "the image was deleted"
        if record.owner != owner or record.album_id != album_id:
            return "the image's record names another owner or album"
        if record.key != created.key:
            return "the image's record names another key"
        if not album_is_owners:
            return "the album does not exist or is another owner's"
        return None

    async def _refuse(
        self, created: ObjectCreated, reason: str, *, owner: str, album_id: str
    ) -> bool:
        """Delete an object that may not be processed and say why (nothing else is written)."""
        log.warning(
            "upload refused; object deleted",
            reason=reason,
            key=created.key,
            owner=owner,
            album_id=album_id,
            size=created.size,
        )
        await self.aws.s3.delete_object(Bucket=created.bucket, Key=created.key)
        return False

    async def _start_direct(self, created: ObjectCreated, head: dict[str, Any]) -> bool:
        """An object put straight into `incoming/` with a key of its own: a fresh image id (from
        the object's identity), the owner and album from its metadata or the defaults."""
        image_id = direct_image_id(
            created.bucket, created.key, str(head.get("ETag", "")), head.get("VersionId")
        )
        bound = log.bind(image_id=image_id, key=created.key)
        record = await self.catalog.get_image(image_id, ("owner", "album_id", "status"))
        if record is None:
            owner, album_id = await self._owner_and_album(created.key, head)
            try:
                await self.catalog.record_upload(
                    image_id=image_id,
                    owner=owner,
                    album_id=album_id,
                    bucket=created.bucket,
                    key=created.key,
                    file_name=clean_file_name(created.key),
                    content_type=head.get("ContentType"),
                    size=head.get("ContentLength"),
                )
            except ClientError as exc:
                if not is_conditional_failure(exc):
                    raise
            record = await self.catalog.get_image(image_id, ("owner", "album_id", "status"))
            assert record is not None  # recorded just now, by this event or a duplicate
        owner, album_id = str(record.owner), str(record.album_id)
        fresh = await self.catalog.mark_processing(
            image_id=image_id,
            owner=owner,
            album_id=album_id,
            bucket=created.bucket,
            key=created.key,
            execution_arn=execution_arn(self.state_machine_arn, image_id),
            recorded_only=True,
        )
        if not fresh:
            current = await self.catalog.get_image(image_id, ("status", "execution_arn"))
            status = current.status if current else None
            started = current.execution_arn if current else None
            if not _ours_to_start(status, started, execution_arn(self.state_machine_arn, image_id)):
                bound.info("duplicate upload event ignored", status=status, execution_arn=started)
                return False
        return await self._start_execution(image_id, created.bucket, created.key, owner, album_id)

    async def _owner_and_album(self, key: str, head: dict[str, Any]) -> tuple[str, str]:
        owner = _metadata(head, OWNER_METADATA)
        if owner is None or not is_valid_id(owner):
            if owner is not None:
                log.warning("invalid owner metadata: default owner used", key=key)
            owner = self.settings.default_owner
        album = _metadata(head, ALBUM_METADATA)
        if album is not None and is_valid_id(album):
            existing = await self.catalog.get_album(album)
            if existing is not None and existing.owner == owner:
                return owner, album
        if album is None or not is_valid_display_name(album, ALBUM_NAME_MAX):
            album = folder_album_name(key)
        return owner, await self.catalog.album_named(owner, album.strip())

    async def _start_execution(
        self, image_id: str, bucket: str, key: str, owner: str, album_id: str
    ) -> bool:
        duplicates = ExactDuplicates(self.aws, self.names)
        if await duplicates.recorded_as_duplicate(
            image_id=image_id, bucket=bucket, key=key, owner=owner
        ):
            return False  # the same bytes as an image the owner has: nothing to process
        bound = log.bind(image_id=image_id)
        workflow_input = WorkflowInput(
            image_id=image_id, bucket=bucket, key=key, owner=owner, album_id=album_id
        )
        try:
            await self.aws.stepfunctions.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=image_id,
                input=workflow_input.model_dump_json(),
            )
        except ClientError as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                bound.info("duplicate upload event: execution exists")
                return False
            raise
        self.started += 1
        bound.info(
            "execution started", execution_arn=execution_arn(self.state_machine_arn, image_id)
        )
        return True

    async def _head(self, created: ObjectCreated) -> dict[str, Any]:
        """The object's head; an event for an object that is not there is poison
        (`UnknownImage`, left for the dead-letter queue)."""
        try:
            head = as_dict(await self.aws.s3.head_object(Bucket=created.bucket, Key=created.key))
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                raise UnknownImage(f"no object s3://{created.bucket}/{created.key}") from exc
            raise
        return head

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
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ):
            # The images of one batch are independent: start them concurrently.
            handled = await asyncio.gather(*(self._handle_message(m, queue_url) for m in messages))
            done = [message for message, ok in zip(messages, handled, strict=True) if ok]
            await delete_batch(self.aws.sqs, queue_url, [m["ReceiptHandle"] for m in done])

    async def _handle_message(self, message: dict[str, Any], queue_url: str = "") -> bool:
        """True when the message is done with (to be deleted)."""
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        last_try = receive_count >= self.settings.max_receive_count
        bound = log.bind(message_id=message.get("MessageId"), receive_count=receive_count)
        try:
            await self.handle(message["Body"])
            return True
        except (MalformedEvent, UnexpectedKey) as exc:
            bound.warning("malformed message", reason=str(exc), body=message["Body"][:200])
            if last_try:
                await self._note_give_up(message, "Malformed", str(exc))
            # Left for the dead-letter queue: back after a short delay (not the queue's
            # visibility timeout, 5 × 60 s) until the redrive moves it on the next receive.
            if queue_url:
                delay = 0 if last_try else min(2 * receive_count, 30)
                await self._release(queue_url, message, delay=delay)
        except Exception as exc:
            if (denial := access_denial(exc)) is not None:
                # A permission missing from the policy: asking again cannot grant it, so the
                # message goes on to the dead-letter queue (replayed once it is granted).
                bound.error("access denied; upload not started", **denial.log_fields())
                if last_try:
                    await self._note_give_up(message, ACCESS_DENIED, denial.cause("the starter"))
                if queue_url:
                    await self._release(queue_url, message, delay=0 if last_try else 2)
                return False
            # Perhaps passing (the endpoint, throttling): retried after the visibility timeout.
            bound.exception("start failed; the message will be retried")
            if last_try:
                await self._note_give_up(message, "StartFailed", f"{type(exc).__name__}: {exc}")
        return False

    async def _note_give_up(self, message: dict[str, Any], code: str, reason: str) -> None:
        """The dead letter this message becomes shows why (imgproc_shared.dead_letters)."""
        try:
            await DeadLetters(self.aws, self.settings).note_give_up(
                Queue.INGEST, str(message.get("MessageId")), {"code": code, "message": reason}
            )
        except ClientError as exc:
            log.warning("give-up note not written", error=str(exc))

    async def _release(self, queue_url: str, message: dict[str, Any], *, delay: int) -> None:
        try:
            await self.aws.sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=delay
            )
        except ClientError as exc:
            log.warning("release failed", error=str(exc))
