"""Dead letters: what failed, why, and how to run it again. Used by `imgproc dlq` and the API.

Looking is not a receive. What operators see of a dead letter (message id, body, attributes,
receive count, first and last receive, last error) is a mirror in the `DeadLetters` table,
written the first time the message is read from its dead-letter queue and answered from there
afterwards: a dead-letter queue is received from only when it holds messages the mirror lacks,
and the counts shown are those of the message when it was dead-lettered. The last error comes
from the image's record (the stage's error), from the note its consumer left when it gave up
(`note_give_up`: the starter), or from the body itself (why it is malformed). The messages stay
in their queue (its counts and alarm keep meaning "dead letters"); replaying or deleting one
removes it from both.

Acting on a dead-letter queue never loses a message: messages are received with a visibility
timeout, held while we act, and released (or, when replayed, deleted only after they were sent
to their source queue: a crash mid-replay leaves at most a duplicate, which workers tolerate).

A replayed stage message carries the task token of an execution that already failed, so
answering it is refused. Replay therefore also re-runs the image: an image that is FAILED gets
a new execution named `{image_id}-r{n}` (execution names are unique, and the first one, named by
the image id, is what makes a duplicate S3 event start nothing). The image goes from FAILED back
to PROCESSING with the new execution ARN in one conditional write, so two replays at once start
one re-run, and `execution_arn` always names the latest execution. The redundant replayed
message is then done once more and dropped by the worker as stale: harmless, since every stage
writes idempotently.

On AWS, replaying a whole queue uses SQS `StartMessageMoveTask`; the embedded endpoint (moto)
lacks it, so locally, and whenever a filter applies, messages are moved here.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

from imgproc_shared.aws import AwsClients, as_dict
from imgproc_shared.catalog import Catalog, from_item, is_conditional_failure, now_iso, to_item
from imgproc_shared.errors import error_code
from imgproc_shared.logging import get_logger
from imgproc_shared.models import ImageStatus, StageTask, WorkflowInput
from imgproc_shared.queues import Depth, queue_arn, queue_depth
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import STAGE_QUEUES, Queue, ResourceNames, Table, execution_arn
from imgproc_shared.s3_events import MalformedEvent, parse_s3_event
from imgproc_shared.settings import Settings
from imgproc_shared.workflow import image_proc_arn

if TYPE_CHECKING:
    from types_aiobotocore_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = get_logger(stage="dlq")

# How long messages stay hidden from others while we look at them; released sooner.
_HOLD_S = 60
_BATCH = 10  # SQS batch limit
# The body as listed: pretty-printed JSON (when it is JSON) up to this many characters.
PREVIEW_CHARS = 4096
_STAGE_OF_QUEUE = {queue: stage for stage, queue in STAGE_QUEUES.items()}


class UnknownQueue(ValueError):
    """The name is none of the stack's queues."""


def parse_queue(name: str) -> Queue:
    """A queue from its short name (`thumbnail`), its DLQ's (`thumbnail-dlq`) or a full name."""
    text = name.strip().removesuffix("-dlq")
    for queue in Queue:
        if text == queue.value or text.endswith(f"-{queue.value}"):
            return queue
    raise UnknownQueue(f"no queue {name!r} (queues: {', '.join(q.value for q in Queue)})")


@dataclass(frozen=True)
class QueueDepth:
    """One queue's counts: waiting, being worked on, delayed, and dead letters."""

    queue: str
    name: str
    visible: int
    in_flight: int
    delayed: int
    dead_letters: int


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter as mirrored, with its image's current status."""

    queue: str
    message_id: str
    image_id: str | None
    stage: str | None
    # How many times it was received before it was dead-lettered (looking adds nothing).
    receive_count: int
    sent_at: str | None
    first_receive_at: str | None
    # The last failed try, when its consumer recorded it (a stage error, a give-up note).
    last_receive_at: str | None
    last_error: dict[str, Any] | None
    image_status: str | None
    body: str = field(repr=False)
    message_attributes: dict[str, Any] = field(default_factory=dict, repr=False)

    def summary(self) -> dict[str, Any]:
        """The listing's fields: the body pretty-printed and cut to PREVIEW_CHARS."""
        pretty = pretty_body(self.body)
        return {
            "queue": self.queue,
            "message_id": self.message_id,
            "image_id": self.image_id,
            "stage": self.stage,
            "receive_count": self.receive_count,
            "sent_at": self.sent_at,
            "first_receive_at": self.first_receive_at,
            "last_receive_at": self.last_receive_at,
            "last_error": self.last_error,
            "image_status": self.image_status,
            "body_size": len(self.body.encode()),
            "body_preview": pretty[:PREVIEW_CHARS],
            "body_truncated": len(pretty) > PREVIEW_CHARS,
        }

    def detail(self) -> dict[str, Any]:
        """Everything, including the whole body and the message attributes."""
        return {**self.summary(), "body": self.body, "message_attributes": self.message_attributes}


@dataclass
class DeleteReport:
    queue: str
    deleted: list[str] = field(default_factory=list)
    # Asked for but not in the queue (already replayed or deleted, or unknown).
    not_found: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"queue": self.queue, "deleted": self.deleted, "not_found": self.not_found}


@dataclass
class ReplayReport:
    queue: str
    dry_run: bool
    # "moved here" (message by message) or "move task" (StartMessageMoveTask on AWS).
    method: str
    selected: int = 0
    moved: int = 0
    failed: int = 0
    image_ids: list[str] = field(default_factory=list)
    # Image id → new execution ARN, for FAILED images given a new execution.
    reran: dict[str, str] = field(default_factory=dict)
    # Image id → why it was not re-run (not FAILED, its execution still runs, ...).
    not_rerun: dict[str, str] = field(default_factory=dict)
    move_task_handle: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "dry_run": self.dry_run,
            "method": self.method,
            "selected": self.selected,
            "moved": self.moved,
            "failed": self.failed,
            "image_ids": self.image_ids,
            "reran": self.reran,
            "not_rerun": self.not_rerun,
            "move_task_handle": self.move_task_handle,
        }


class DeadLetters:
    """The dead-letter operations of one stack."""

    def __init__(self, aws: AwsClients, settings: Settings) -> None:
        self.aws = aws
        self.settings = settings
        self.names = ResourceNames.from_settings(settings)
        self.catalog = Catalog(aws, self.names)
        self.mirror_table = self.names.table(Table.DEAD_LETTERS)
        self._urls: dict[str, str] = {}

    # -- Counts ------------------------------------------------------------------------------------

    async def url(self, name: str) -> str:
        if name not in self._urls:
            self._urls[name] = (await self.aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        return self._urls[name]

    async def _counts(self, name: str) -> Depth:
        return await queue_depth(self.aws.sqs, await self.url(name))

    async def depth(self, queue: Queue) -> QueueDepth:
        main, dead = await asyncio.gather(
            self._counts(self.names.queue(queue)),
            self._counts(self.names.dead_letter_queue(queue)),
        )
        return QueueDepth(
            queue=queue.value,
            name=self.names.queue(queue),
            visible=main.visible,
            in_flight=main.in_flight,
            delayed=main.delayed,
            dead_letters=dead.held,
        )

    async def depths(self) -> list[QueueDepth]:
        """Every queue's counts, dead letters included."""
        return list(await asyncio.gather(*(self.depth(queue) for queue in Queue)))

    # -- Looking ----------------------------------------------------------------------------------

    @asynccontextmanager
    async def _held(self, queue: Queue, limit: int | None = None) -> AsyncIterator[_Held]:
        """Receive (up to `limit`) messages of a DLQ and hold them; release the rest at exit."""
        held = _Held(self.aws, await self.url(self.names.dead_letter_queue(queue)))
        try:
            await held.receive_all(limit, long_poll=self.settings.endpoint_url is None)
            yield held
        finally:
            await asyncio.shield(held.release_all())

    async def messages(self, queue: Queue, *, limit: int = 1000) -> list[DeadLetter]:
        """The dead letters of a queue (up to `limit`, oldest first), from the mirror."""
        await self._sync(queue)
        records = await self._mirrored(queue)
        records.sort(key=lambda r: (str(r.get("sent_at") or ""), str(r["message_id"])))
        return await self._describe_all(records[:limit])

    async def show(self, queue: Queue, message_id: str) -> DeadLetter | None:
        await self._sync(queue)
        response = await self.aws.dynamodb.get_item(
            TableName=self.mirror_table,
            Key=to_item({"queue": queue.value, "message_id": message_id}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        record = from_item(item) if item else None
        if record is None or "mirrored_at" not in record:
            return None
        return (await self._describe_all([record]))[0]

    async def _describe_all(self, records: list[dict[str, Any]]) -> list[DeadLetter]:
        ids = sorted({str(r["image_id"]) for r in records if r.get("image_id")})
        images = {r.image_id: r for r in await self.catalog.get_images(ids)} if ids else {}
        letters = []
        for record in records:
            image = images.get(record.get("image_id") or "")
            error = record.get("last_error")
            letters.append(
                DeadLetter(
                    queue=str(record["queue"]),
                    message_id=str(record["message_id"]),
                    image_id=record.get("image_id"),
                    stage=record.get("stage"),
                    receive_count=int(record.get("receive_count", 0)),
                    sent_at=record.get("sent_at"),
                    first_receive_at=record.get("first_receive_at"),
                    last_receive_at=record.get("last_receive_at"),
                    last_error=json.loads(error) if isinstance(error, str) else None,
                    image_status=image.status if image else None,
                    body=str(record.get("body", "")),
                    message_attributes=json.loads(record.get("message_attributes") or "{}"),
                )
            )
        return letters

    # -- The mirror -------------------------------------------------------------------------------

    async def _mirrored(self, queue: Queue) -> list[dict[str, Any]]:
        """The mirror's records of a queue (give-up notes without a message left out)."""
        records: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.mirror_table,
            "KeyConditionExpression": "#q = :q",
            "ExpressionAttributeNames": {"#q": "queue"},
            "ExpressionAttributeValues": to_item({":q": queue.value}),
            "ConsistentRead": True,
        }
        while True:
            page = await self.aws.dynamodb.query(**kwargs)
            records.extend(from_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return [r for r in records if "mirrored_at" in r]

    async def _sync(self, queue: Queue) -> None:
        """Mirror the messages of the DLQ the mirror lacks (the only receive a look makes), and
        forget those no longer in it."""
        counts = await self._counts(self.names.dead_letter_queue(queue))
        visible, in_queue = counts.visible, counts.held
        mirrored = {str(r["message_id"]) for r in await self._mirrored(queue)}
        if in_queue == 0:
            await self._forget(queue, mirrored)  # expired, or purged from outside
            return
        if visible == 0 or in_queue == len(mirrored):
            return
        async with self._held(queue) as held:
            for message in held.messages:
                if message["MessageId"] not in mirrored:
                    await self._mirror(queue, message)
            if len(held.messages) == in_queue:  # every message seen: the rest are gone
                await self._forget(queue, mirrored - {m["MessageId"] for m in held.messages})

    async def _mirror(self, queue: Queue, message: dict[str, Any]) -> None:
        body = message.get("Body", "")
        attributes = message.get("Attributes", {})
        image_id, stage = _image_and_stage(queue, body)
        record = await self.catalog.get_image(image_id) if image_id else None
        error, failed_at = _last_error(record, stage)
        if error is None:
            reason = await self._malformed_reason(queue, body, image_id, record)
            error = {"code": "Malformed", "message": reason} if reason else None
        values: dict[str, Any] = {
            ":now": now_iso(),
            ":body": body,
            ":attributes": json.dumps(_sendable_attributes(message)),
            # SQS counts the receive that reads it here too.
            ":count": max(int(attributes.get("ApproximateReceiveCount", 1)) - 1, 0),
            ":sent": _from_epoch_ms(attributes.get("SentTimestamp")),
            ":first": _from_epoch_ms(attributes.get("ApproximateFirstReceiveTimestamp")),
            ":image": image_id,
            ":stage": stage,
        }
        sets = [
            "mirrored_at = :now",
            "body = :body",
            "message_attributes = :attributes",
            "receive_count = :count",
        ]
        for name, placeholder in (
            ("sent_at", ":sent"),
            ("first_receive_at", ":first"),
            ("image_id", ":image"),
            ("stage", ":stage"),
        ):
            if values[placeholder] is not None:
                sets.append(f"{name} = {placeholder}")
        # A consumer's give-up note, written before, wins over what is known here.
        if error is not None:
            values[":error"] = json.dumps(error)
            sets.append("last_error = if_not_exists(last_error, :error)")
        if failed_at is not None:
            values[":last"] = failed_at
            sets.append("last_receive_at = if_not_exists(last_receive_at, :last)")
        try:
            await self.aws.dynamodb.update_item(
                TableName=self.mirror_table,
                Key=to_item({"queue": queue.value, "message_id": message["MessageId"]}),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_not_exists(mirrored_at)",
                ExpressionAttributeValues=to_item(
                    {k: v for k, v in values.items() if v is not None}
                ),
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):  # else another look mirrored it first
                raise

    async def _malformed_reason(
        self, queue: Queue, body: str, image_id: str | None, record: ImageRecord | None
    ) -> str | None:
        """Why a consumer could not use this body, as its consumer would say it (None: it
        looks fine)."""
        if queue in _STAGE_OF_QUEUE:
            try:
                StageTask.model_validate_json(body)
            except ValueError as exc:
                return f"not a {_STAGE_OF_QUEUE[queue].value} task: {str(exc).splitlines()[0]}"
        elif queue is Queue.INGEST:
            try:
                parse_s3_event(body)
            except MalformedEvent as exc:
                return f"not an S3 event: {exc}"
        else:
            try:
                data = json.loads(body)
            except ValueError:
                return "not JSON"
            if not isinstance(data, dict) or not isinstance(data.get("image_id"), str):
                return "no image_id"
        if image_id and record is None:
            return f"unknown image {image_id}"
        return None

    async def _forget(self, queue: Queue, message_ids: set[str] | list[str]) -> None:
        for message_id in message_ids:
            await self.aws.dynamodb.delete_item(
                TableName=self.mirror_table,
                Key=to_item({"queue": queue.value, "message_id": message_id}),
            )

    async def note_give_up(
        self, queue: Queue, message_id: str, error: dict[str, str], *, at: str | None = None
    ) -> None:
        """A consumer's last try of a message failed: keep the error and the time, shown with
        the dead letter once it is mirrored."""
        await self.aws.dynamodb.update_item(
            TableName=self.mirror_table,
            Key=to_item({"queue": queue.value, "message_id": message_id}),
            UpdateExpression="SET last_error = :error, last_receive_at = :at",
            ExpressionAttributeValues=to_item(
                {":error": json.dumps(error), ":at": at or now_iso()}
            ),
        )

    # -- Acting -----------------------------------------------------------------------------------

    async def replay(
        self,
        queue: Queue,
        *,
        max_messages: int | None = None,
        image_id: str | None = None,
        message_ids: list[str] | None = None,
        dry_run: bool = False,
    ) -> ReplayReport:
        """Return dead letters (all, the first `max_messages`, one image's, or the messages
        named) to their source queue and re-run the FAILED images among them."""
        whole_queue = max_messages is None and image_id is None and message_ids is None
        if whole_queue and not dry_run and self.settings.endpoint_url is None:
            return await self._replay_with_move_task(queue)
        report = ReplayReport(queue=queue.value, dry_run=dry_run, method="moved here")
        await self._sync(queue)
        named = set(message_ids) if message_ids is not None else None
        # Without a filter the first `max_messages` are enough; with one, look at all.
        scan_limit = max_messages if image_id is None and named is None else None
        source_url = await self.url(self.names.queue(queue))
        async with self._held(queue, scan_limit) as held:
            chosen = [
                m
                for m in held.messages
                if (image_id is None or _image_and_stage(queue, m.get("Body", ""))[0] == image_id)
                and (named is None or m["MessageId"] in named)
            ][:max_messages]
            report.selected = len(chosen)
            report.image_ids = _unique_images(queue, chosen)
            if dry_run:
                return report
            for start in range(0, len(chosen), _BATCH):
                batch = chosen[start : start + _BATCH]
                sent = await self._send(source_url, batch)
                await held.delete(sent)
                report.moved += len(sent)
                report.failed += len(batch) - len(sent)
            moved_ids = {m["MessageId"] for m in chosen} - {m["MessageId"] for m in held.messages}
            await self._forget(queue, moved_ids)
            report.image_ids = _unique_images(
                queue, [m for m in chosen if m["MessageId"] in moved_ids]
            )
        log.info(
            "dead letters replayed",
            queue=queue.value,
            moved=report.moved,
            failed=report.failed,
            images=len(report.image_ids),
        )
        await self._rerun_images(queue, report)
        return report

    async def delete(self, queue: Queue, message_ids: list[str]) -> DeleteReport:
        """Delete the dead letters named (from the queue and the mirror)."""
        report = DeleteReport(queue=queue.value)
        named = set(message_ids)
        async with self._held(queue) as held:
            chosen = [m for m in held.messages if m["MessageId"] in named]
            for start in range(0, len(chosen), _BATCH):
                await held.delete(chosen[start : start + _BATCH])
            left = {m["MessageId"] for m in held.messages}
            report.deleted = [m["MessageId"] for m in chosen if m["MessageId"] not in left]
        # Named but not in the queue: gone already; the mirror forgets them too.
        await self._forget(queue, named - left)
        report.not_found = sorted(named - set(report.deleted) - left)
        log.info("dead letters deleted", queue=queue.value, deleted=len(report.deleted))
        return report

    async def _send(self, url: str, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send copies (body and message attributes intact); returns the messages sent."""
        entries = []
        for index, message in enumerate(batch):
            entry: dict[str, Any] = {"Id": str(index), "MessageBody": message["Body"]}
            attributes = _sendable_attributes(message)
            if attributes:
                entry["MessageAttributes"] = attributes
            entries.append(entry)
        response = await self.aws.sqs.send_message_batch(
            QueueUrl=url, Entries=cast("list[SendMessageBatchRequestEntryTypeDef]", entries)
        )
        for failure in response.get("Failed", []):
            log.warning("replay send failed", queue_url=url, error=failure.get("Message"))
        return [batch[int(ok["Id"])] for ok in response.get("Successful", [])]

    async def _replay_with_move_task(self, queue: Queue) -> ReplayReport:
        """AWS: one server-side move task for the whole DLQ (after noting which images it holds)."""
        report = ReplayReport(queue=queue.value, dry_run=False, method="move task")
        async with self._held(queue) as held:
            report.selected = len(held.messages)
            report.image_ids = _unique_images(queue, held.messages)
        dlq_url = await self.url(self.names.dead_letter_queue(queue))
        source_url = await self.url(self.names.queue(queue))
        dlq_arn, source_arn = await asyncio.gather(
            queue_arn(self.aws.sqs, dlq_url), queue_arn(self.aws.sqs, source_url)
        )
        response = await self.aws.sqs.start_message_move_task(
            SourceArn=dlq_arn, DestinationArn=source_arn
        )
        report.move_task_handle = response.get("TaskHandle")
        report.moved = report.selected  # the task moves them all, asynchronously
        await self._forget(queue, {str(r["message_id"]) for r in await self._mirrored(queue)})
        log.info("dead-letter move task started", queue=queue.value, messages=report.selected)
        await self._rerun_images(queue, report)
        return report

    async def purge(self, queue: Queue) -> int:
        """Delete every message of a queue's DLQ; returns how many there were (approximately)."""
        name = self.names.dead_letter_queue(queue)
        counts = await self._counts(name)
        await self.aws.sqs.purge_queue(QueueUrl=await self.url(name))
        await self._forget(queue, {str(r["message_id"]) for r in await self._mirrored(queue)})
        purged = counts.held
        log.info("dead letters purged", queue=queue.value, messages=purged)
        return purged

    # -- Re-running images ------------------------------------------------------------------------

    async def _rerun_images(self, queue: Queue, report: ReplayReport) -> None:
        # Only stage messages stand for an image's unfinished work; a replayed S3 event goes to
        # the starter, and a replayed status event is only news.
        if queue not in _STAGE_OF_QUEUE:
            return
        for image_id in report.image_ids:
            outcome = await self.rerun(image_id)
            if outcome.startswith("arn:"):
                report.reran[image_id] = outcome
            else:
                report.not_rerun[image_id] = outcome

    async def rerun(self, image_id: str) -> str:
        """Give a FAILED image a new execution; returns its ARN, or why it was not re-run."""
        record = await self.catalog.get_image(image_id)
        if record is None:
            return "unknown image"
        if record.status != ImageStatus.FAILED:
            return f"image is {record.status}, not FAILED"
        previous = record.execution_arn
        if previous and await self._running(previous):
            return "its execution is still running"
        reruns = record.reruns or 0
        name = f"{image_id}-r{reruns + 1}"
        state_machine = await self._state_machine_arn()
        arn = execution_arn(state_machine, name)
        if not await self.catalog.mark_rerun(image_id, execution_arn=arn, previous_reruns=reruns):
            return "another replay re-ran it first"
        workflow_input = WorkflowInput(
            image_id=image_id,
            bucket=str(record.bucket),
            key=str(record.key),
            owner=str(record.owner),
            album_id=str(record.album_id),
        )
        try:
            await self.aws.stepfunctions.start_execution(
                stateMachineArn=state_machine, name=name, input=workflow_input.model_dump_json()
            )
        except ClientError as exc:
            # The image must not stay PROCESSING behind an execution that never started.
            await self.catalog.undo_rerun(image_id, execution_arn=arn, cause=str(exc))
            log.warning("re-run failed to start", image_id=image_id, error=str(exc))
            return f"could not start: {exc}"
        log.info("image re-run", image_id=image_id, execution_arn=arn, previous=previous)
        return arn

    async def _running(self, arn: str) -> bool:
        try:
            described = await self.aws.stepfunctions.describe_execution(executionArn=arn)
        except ClientError as exc:
            if error_code(exc) == "ExecutionDoesNotExist":
                return False
            raise
        return bool(described.get("status") == "RUNNING")

    async def _state_machine_arn(self) -> str:
        if not self.settings.state_machine_arn:  # found once, then kept with the settings
            arn = await image_proc_arn(self.aws.stepfunctions, self.settings)
            self.settings = self.settings.model_copy(update={"state_machine_arn": arn})
        return str(self.settings.state_machine_arn)


class _Held:
    """Messages received from one queue and kept invisible until deleted or released."""

    def __init__(self, aws: AwsClients, url: str) -> None:
        self.aws = aws
        self.url = url
        self.messages: list[dict[str, Any]] = []

    async def receive_all(self, limit: int | None, *, long_poll: bool) -> None:
        seen: set[str] = set()
        while limit is None or len(self.messages) < limit:
            want = _BATCH if limit is None else min(_BATCH, limit - len(self.messages))
            response = await self.aws.sqs.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=want,
                # AWS samples servers on a short poll and may answer empty while messages
                # remain; the embedded endpoint answers from one list.
                WaitTimeSeconds=1 if long_poll else 0,
                VisibilityTimeout=_HOLD_S,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            batch = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
            if not batch:
                return
            seen.update(m["MessageId"] for m in batch)
            self.messages.extend(as_dict(m) for m in batch)

    async def delete(self, messages: list[dict[str, Any]]) -> None:
        if not messages:
            return
        response = await self.aws.sqs.delete_message_batch(
            QueueUrl=self.url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)
            ],
        )
        # A failed delete leaves the message here, released with the rest: a duplicate at worst.
        deleted = {messages[int(ok["Id"])]["MessageId"] for ok in response.get("Successful", [])}
        self.messages = [m for m in self.messages if m["MessageId"] not in deleted]

    async def release_all(self) -> None:
        messages, self.messages = self.messages, []
        for start in range(0, len(messages), _BATCH):
            batch = messages[start : start + _BATCH]
            try:
                await self.aws.sqs.change_message_visibility_batch(
                    QueueUrl=self.url,
                    Entries=[
                        {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                        for i, m in enumerate(batch)
                    ],
                )
            except ClientError as exc:
                # They come back by themselves when the hold times out.
                log.warning("release failed", error=str(exc), messages=len(batch))


def _image_and_stage(queue: Queue, body: str) -> tuple[str | None, str | None]:
    """The image (and stage) a message is about, from its body; (None, None) if unreadable."""
    stage = _STAGE_OF_QUEUE.get(queue)
    try:
        data = json.loads(body)
    except ValueError:
        return None, stage.value if stage else None
    if isinstance(data, dict) and isinstance(data.get("image_id"), str):
        found = data.get("stage")
        return data["image_id"], str(found) if found else (stage.value if stage else None)
    if queue is Queue.INGEST:
        try:
            created = parse_s3_event(data)
        except MalformedEvent:
            return None, None
        if created:
            return created[0].key.rsplit("/", 1)[-1].split(".", 1)[0], None
    return None, stage.value if stage else None


def _unique_images(queue: Queue, messages: list[dict[str, Any]]) -> list[str]:
    ids = (_image_and_stage(queue, m.get("Body", ""))[0] for m in messages)
    return list(dict.fromkeys(i for i in ids if i))


def _last_error(
    record: ImageRecord | None, stage: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """The image's last recorded error for this stage (else the image's), and when it was."""
    if record is None:
        return None, None
    progress = record.stages().get(stage) if stage else None
    if progress is not None and progress.error is not None:
        return progress.error.model_dump(), progress.finished_at
    if record.error_code:
        error = {"code": record.error_code, "message": record.error_message or ""}
        return error, record.finished_at
    return None, None


def _sendable_attributes(message: dict[str, Any]) -> dict[str, Any]:
    """Message attributes as SendMessage takes them (receive adds empty list fields)."""
    attributes: dict[str, Any] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        kept = {k: v for k, v in value.items() if k in ("DataType", "StringValue", "BinaryValue")}
        attributes[name] = kept
    return attributes


def _from_epoch_ms(value: str | None) -> str | None:
    if not value:
        return None
    moment = datetime.fromtimestamp(int(value) / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def pretty_body(body: str) -> str:
    """A JSON body indented (an S3 event's SNS envelope opened too); any other body as is."""
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if isinstance(data, dict) and isinstance(data.get("Message"), str):
        try:  # an SNS notification: its message is JSON in a string
            data = {**data, "Message": json.loads(data["Message"])}
        except ValueError:
            pass
    return json.dumps(data, indent=2, ensure_ascii=False)
