"""One probe per permission the stack grants: the call the real code makes for it.

A probe runs as one principal (its `AwsClients`, signing with that principal's IAM key on the
embedded endpoint) and raises the `ClientError` of a denial; any other outcome is the
permission at work. Each goes through the project's own code where that is cheap; where the
code swallows errors (a long-poll loop, a best-effort release) or needs a whole service running,
it makes the same boto call and names the code it mirrors.

`PROBES` maps each (principal, statement sid, action) of `imgproc_shared.permissions` to its
probe; the tests check that the two sets are equal.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError
from helpers import eventually

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog, now_iso, to_item
from imgproc_shared.dead_letters import DeadLetters, _Held
from imgproc_shared.duplicates import ExactDuplicates, content_claim_key, object_sha256
from imgproc_shared.long_poll import delete_batch
from imgproc_shared.models import ImageStatus, StageTask, WorkflowInput
from imgproc_shared.permissions import LocalArns, Principal, RoleArn
from imgproc_shared.records import AlbumRecord, ImageRecord
from imgproc_shared.resources import (
    Queue,
    ResourceNames,
    Stage,
    Table,
    Topic,
    execution_arn,
    incoming_key,
    thumbnail_key,
)
from imgproc_shared.retag import Retagger
from imgproc_shared.search import SearchFilter, SearchIndex
from imgproc_shared.settings import Settings
from imgproc_shared.worker.runtime import WorkContext
from imgproc_shared.worker.task_token import TaskToken
from imgproc_shared.workflow import retag_state_machine_arn
from imgproc_status_api.removal import remove_stored
from imgproc_tagger.rekognition import RekognitionBackend
from imgproc_thumbnailer.handler import _store
from imgproc_thumbnailer.renditions import EncodedRendition

NOT_A_RECEIPT = "not-a-receipt-handle"


class LiveTokens:
    """Task tokens of ImageProc executions waiting in Extract: one kept for probes that leave
    the task waiting (a heartbeat, a denied answer), a new one after an answer ends it."""

    def __init__(self, env: ProbeEnv) -> None:
        self._env = env
        self._current: StageTask | None = None

    async def live(self) -> StageTask:
        if self._current is None:
            self._current = await self._start()
        return self._current

    def spent(self) -> None:
        self._current = None

    async def _start(self) -> StageTask:
        env, admin = self._env, self._env.admin
        image_id = await env.start_image(admin, "tok")
        queue_url = env.queue_urls[Queue.EXTRACT]

        async def task() -> StageTask | None:
            answer = await admin.sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1)
            for message in answer.get("Messages", []):
                await admin.sqs.delete_message(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
                body = json.loads(message["Body"])
                if body.get("image_id") == image_id and "task_token" in body:
                    return StageTask.model_validate(body)
            return None

        found: StageTask = await eventually(task, timeout=30, what="an Extract task token")
        return found


@dataclass
class ProbeEnv:
    """The module's stack, as its administrator sees it, and what the probes work on."""

    settings: Settings
    admin: AwsClients
    executor: ThreadPoolExecutor
    owner: str
    album_id: str
    image_id: str  # a PROCESSING image whose original is under incoming/
    original_key: str
    queue_urls: dict[Queue, str] = field(default_factory=dict)
    dead_letter_urls: dict[Queue, str] = field(default_factory=dict)
    tokens: LiveTokens = field(init=False)

    def __post_init__(self) -> None:
        self.tokens = LiveTokens(self)

    @property
    def names(self) -> ResourceNames:
        return ResourceNames.from_settings(self.settings)

    @property
    def state_machine_arn(self) -> str:
        assert self.settings.state_machine_arn
        return self.settings.state_machine_arn

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.settings.region}:123456789012:{resource}"

    def work_context(self, aws: AwsClients) -> WorkContext:
        return WorkContext(aws.settings, aws, self.names, self.executor)

    async def start_image(self, aws: AwsClients, prefix: str) -> str:
        """An ImageProc execution, started by `aws`, for a new image id over the module's
        original; returns the image id (the execution's name)."""
        image_id = f"{prefix}{uuid.uuid4().hex[:12]}"
        await aws.stepfunctions.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=image_id,
            input=WorkflowInput(
                image_id=image_id,
                bucket=self.names.bucket,
                key=self.original_key,
                owner=self.owner,
                album_id=self.album_id,
            ).model_dump_json(),
        )
        return image_id

    def record(self, image_id: str, **values: Any) -> dict[str, Any]:
        """An image record of this stack's owner and album."""
        return {
            "image_id": image_id,
            "owner": self.owner,
            "album_id": self.album_id,
            "bucket": self.names.bucket,
            "key": self.original_key,
            "status": ImageStatus.PROCESSING.value,
            "uploaded_at": now_iso(),
            **values,
        }

    async def put_record(self, record: dict[str, Any]) -> None:
        await self.admin.dynamodb.put_item(
            TableName=self.names.table(Table.IMAGES), Item=to_item(record)
        )


def arns_of(env: ProbeEnv) -> LocalArns:
    return LocalArns(names=env.names, region=env.settings.region)


# (the stack, the clients signing as the principal, the principal)
Probe = Callable[[ProbeEnv, AwsClients, Principal], Awaitable[None]]
Grant = tuple[Principal, str, str]
PROBES: dict[Grant, Probe] = {}
WORKERS = (Principal.EXTRACTOR, Principal.TAGGER, Principal.THUMBNAILER)
WORKER_QUEUES = {
    Principal.EXTRACTOR: Queue.EXTRACT,
    Principal.TAGGER: Queue.TAG,
    Principal.THUMBNAILER: Queue.THUMBNAIL,
}
WORKER_STAGES = {
    Principal.EXTRACTOR: Stage.EXTRACT,
    Principal.TAGGER: Stage.TAG,
    Principal.THUMBNAILER: Stage.THUMBNAIL,
}


def probes(*grants: Grant) -> Callable[[Probe], Probe]:
    def register(probe: Probe) -> Probe:
        for grant in grants:
            assert grant not in PROBES, grant
            PROBES[grant] = probe
        return probe

    return register


def for_workers(sid: str, action: str) -> tuple[Grant, ...]:
    return tuple((worker, sid, action) for worker in WORKERS)


# -- The workers (imgproc_shared.worker.runtime) ---------------------------------------------


async def _own_queue_url(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """Worker.run looks its queue up (the same call)."""
    await aws.sqs.get_queue_url(QueueName=env.names.queue(WORKER_QUEUES[worker]))


async def _receive_own(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """long_poll.receive_batches' ReceiveMessage (the loop itself logs a denial and polls
    again later, so the probe makes the call)."""
    await aws.sqs.receive_message(
        QueueUrl=env.queue_urls[WORKER_QUEUES[worker]],
        MaxNumberOfMessages=1,
        WaitTimeSeconds=0,
        VisibilityTimeout=1,
        MessageSystemAttributeNames=["ApproximateReceiveCount"],
    )


async def _delete_own(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """long_poll.delete_batch, as the runtime's batched deletes call it."""
    await delete_batch(aws.sqs, env.queue_urls[WORKER_QUEUES[worker]], [NOT_A_RECEIPT])


async def _extend_own(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """Worker._keep_alive's visibility extension (the same call; an unknown receipt handle is
    the service's answer to a caller allowed to make it)."""
    try:
        await aws.sqs.change_message_visibility(
            QueueUrl=env.queue_urls[WORKER_QUEUES[worker]],
            ReceiptHandle=NOT_A_RECEIPT,
            VisibilityTimeout=10,
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ReceiptHandleIsInvalid":
            raise


async def _read_original(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """WorkContext.read_object of the original."""
    await env.work_context(aws).read_object(env.names.bucket, env.original_key, "bytes=0-15")


async def _record_stage(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """Catalog.record_stage, as the runtime records the stage's progress."""
    stage = WORKER_STAGES[worker].value
    assert await Catalog(aws, env.names).record_stage(
        env.image_id, stage, {"started_at": now_iso()}
    )


async def _note_give_up(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """DeadLetters.note_give_up, as Worker._note_give_up calls it."""
    await DeadLetters(aws, aws.settings).note_give_up(
        WORKER_QUEUES[worker], f"probe-{uuid.uuid4().hex}", {"code": "Malformed", "message": "x"}
    )


async def _answer_success(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """TaskToken.succeed on a live Extract token (accepted: the task ends)."""
    task = await env.tokens.live()
    answered = await TaskToken(aws.stepfunctions, task.task_token).succeed({"probe": True})
    env.tokens.spent()
    assert answered


async def _answer_failure(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """TaskToken.fail on a live Extract token (accepted: the task ends)."""
    task = await env.tokens.live()
    answered = await TaskToken(aws.stepfunctions, task.task_token).fail(
        "ImageProc.StageFailed", "a permission probe"
    )
    env.tokens.spent()
    assert answered


async def _heartbeat(env: ProbeEnv, aws: AwsClients, worker: Principal) -> None:
    """TaskToken.heartbeat on a live Extract token (the task goes on waiting)."""
    task = await env.tokens.live()
    assert await TaskToken(aws.stepfunctions, task.task_token).heartbeat()


for _sid, _action, _body in (
    ("OwnQueue", "sqs:GetQueueUrl", _own_queue_url),
    ("OwnQueue", "sqs:ReceiveMessage", _receive_own),
    ("OwnQueue", "sqs:DeleteMessage", _delete_own),
    ("OwnQueue", "sqs:ChangeMessageVisibility", _extend_own),
    ("ReadOriginals", "s3:GetObject", _read_original),
    ("RecordStage", "dynamodb:UpdateItem", _record_stage),
    ("NoteGiveUp", "dynamodb:UpdateItem", _note_give_up),
    ("AnswerTaskTokens", "states:SendTaskSuccess", _answer_success),
    ("AnswerTaskTokens", "states:SendTaskFailure", _answer_failure),
    ("AnswerTaskTokens", "states:SendTaskHeartbeat", _heartbeat),
):
    probes(*for_workers(_sid, _action))(_body)


@probes((Principal.EXTRACTOR, "TellMissingOriginals", "s3:ListBucket"))
async def _missing_original(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """WorkContext.read_object of an original that is gone: S3 says NoSuchKey (the extractor
    then rejects the image) only to a caller that may list the bucket; 403 otherwise."""
    missing = incoming_key(env.owner, env.album_id, f"gone{uuid.uuid4().hex[:8]}", "jpg")
    try:
        await env.work_context(aws).read_object(env.names.bucket, missing)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("NoSuchKey", "404"):
            raise
    else:
        raise AssertionError(f"{missing} should not exist")


@probes((Principal.TAGGER, "DetectLabels", "rekognition:DetectLabels"))
async def _detect_labels(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """RekognitionBackend.detect on the original (the S3 object form)."""
    task = StageTask(
        task_token="unused",
        stage=Stage.TAG,
        image_id=env.image_id,
        bucket=env.names.bucket,
        key=env.original_key,
    )
    await RekognitionBackend().detect(task, env.work_context(aws))


@probes((Principal.THUMBNAILER, "WriteThumbnails", "s3:PutObject"))
async def _store_rendition(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """imgproc_thumbnailer.handler._store of one rendition."""
    rendition = EncodedRendition(
        name="thumb",
        data=b"RIFF....WEBP",
        width=1,
        height=1,
        format="WEBP",
        content_type="image/webp",
        extension="webp",
    )
    key = thumbnail_key(env.image_id, "thumb", "webp")
    await _store(env.work_context(aws), env.names.bucket, key, rendition)


# -- The status API (and the starter, indexer, sweeper, operator views in its process) --------

S = Principal.STATUS_API
# The operations role, which the status API assumes for operator endpoints: its probes run with
# the role's temporary credentials (imgproc_status_api.operations).
OPS = Principal.OPERATIONS


@probes((S, "Images", "dynamodb:GetItem"), (OPS, "Images", "dynamodb:GetItem"))
async def _get_image(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.get_image."""
    assert await Catalog(aws, env.names).get_image(env.image_id)


@probes((S, "Images", "dynamodb:BatchGetItem"), (OPS, "Images", "dynamodb:BatchGetItem"))
async def _get_images(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.get_images (the album view's status polls; dead letters' image status)."""
    assert await Catalog(aws, env.names).get_images([env.image_id])


@probes((S, "Images", "dynamodb:PutItem"))
async def _record_upload(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.record_upload of a new image."""
    await Catalog(aws, env.names).record_upload(
        image_id=f"up{uuid.uuid4().hex[:12]}",
        owner=env.owner,
        album_id=env.album_id,
        bucket=env.names.bucket,
        key=incoming_key(env.owner, env.album_id, "never", "jpg"),
        file_name="probe.jpg",
    )


@probes((S, "Images", "dynamodb:UpdateItem"), (OPS, "Images", "dynamodb:UpdateItem"))
async def _clear_sweep(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.clear_sweep (a conditional update; the condition not holding is an answer): the
    same call as a re-run's Catalog.mark_rerun, also a conditional UpdateItem of the record."""
    await Catalog(aws, env.names).clear_sweep(env.image_id, "upload")


@probes((S, "Images", "dynamodb:DeleteItem"))
async def _purge_tombstone(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.purge_tombstone (conditional on a tombstone: this record is none)."""
    assert not await Catalog(aws, env.names).purge_tombstone(env.image_id)


@probes((OPS, "Images", "dynamodb:Scan"))
async def _scan_images(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.iter_images of the whole table (a re-tag of every image)."""
    assert [r async for r in Catalog(aws, env.names).iter_images(attributes=("status",))]


@probes((S, "ImagesIndexes", "dynamodb:Query"), (OPS, "ImagesIndexes", "dynamodb:Query"))
async def _album_images(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.list_album_images (by_album)."""
    await Catalog(aws, env.names).list_album_images(env.album_id, limit=5)


@probes((S, "Albums", "dynamodb:GetItem"))
async def _get_album(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.get_album."""
    assert await Catalog(aws, env.names).get_album(env.album_id)


@probes((S, "Albums", "dynamodb:PutItem"))
async def _put_album(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.put_album of a new album."""
    await Catalog(aws, env.names).put_album(
        album_id=uuid.uuid4().hex, owner=env.owner, name=f"probe {uuid.uuid4().hex[:6]}"
    )


@probes((S, "Albums", "dynamodb:UpdateItem"))
async def _update_claim(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """ExactDuplicates._update_claim, the conditional update of a content claim (held in the
    Albums table)."""
    claim = content_claim_key(env.owner, uuid.uuid4().hex * 2)
    assert not await ExactDuplicates(aws, env.names)._update_claim(
        claim, "SET guards = :me", "guards = :other", {":me": {"S": "a"}, ":other": {"S": "b"}}
    )


@probes((S, "Albums", "dynamodb:DeleteItem"))
async def _delete_album(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.delete_album (a transaction of two deletes: the album and its name guard)."""
    await Catalog(aws, env.names).delete_album(
        AlbumRecord(
            album_id=uuid.uuid4().hex, owner=env.owner, name="never made", created_at=now_iso()
        )
    )


@probes((S, "AlbumsIndexes", "dynamodb:Query"), (OPS, "AlbumsIndexes", "dynamodb:Query"))
async def _list_albums(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Catalog.list_albums (by_owner)."""
    assert await Catalog(aws, env.names).list_albums(env.owner)


def _processed(env: ProbeEnv) -> ImageRecord:
    """A new PROCESSED record, not indexed yet (its manifest and counters are new)."""
    image_id = f"ix{uuid.uuid4().hex[:12]}"
    metadata = {"format": "JPEG", "width": 4, "height": 3, "mode": "RGB", "bytes": 12}
    return ImageRecord.model_validate(
        env.record(
            image_id,
            status=ImageStatus.PROCESSED.value,
            metadata={**metadata, "sha256": "0", "taken_at": "2024-05-01T10:00:00"},
            tags={
                "labels": [{"name": f"probe{uuid.uuid4().hex[:6]}", "confidence": 0.9}],
                "backend": "probe",
            },
        )
    )


@probes(
    (S, "Search", "dynamodb:GetItem"),
    (S, "Search", "dynamodb:PutItem"),
    (S, "Search", "dynamodb:UpdateItem"),
    (S, "Search", "dynamodb:BatchWriteItem"),
)
async def _index_record(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """SearchIndex.index_record of a new image: reads its manifest (GetItem), writes its
    entries (BatchWriteItem), then the manifest (PutItem) and the counters (UpdateItem) in one
    transaction."""
    assert await SearchIndex(aws, env.names).index_record(_processed(env))


@probes((S, "Search", "dynamodb:DeleteItem"))
async def _unindex(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """SearchIndex.remove_image of an indexed image (its manifest's transactional delete)."""
    record = _processed(env)
    assert await SearchIndex(env.admin, env.names).index_record(record)
    await SearchIndex(aws, env.names).remove_image(env.owner, record.image_id)


@probes((S, "Search", "dynamodb:BatchGetItem"))
async def _plan_search(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """SearchIndex.plan reads the filter's counters (BatchGetItem)."""
    await SearchIndex(aws, env.names).plan(env.owner, SearchFilter(labels=("probe",)))


@probes((S, "Search", "dynamodb:Query"))
async def _label_counts(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """SearchIndex.label_counts, unfiltered: a Query of the owner's counters."""
    await SearchIndex(aws, env.names).label_counts(env.owner, SearchFilter())


@probes((OPS, "DeadLetterMirror", "dynamodb:GetItem"))
async def _show_dead_letter(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters.show."""
    assert await DeadLetters(aws, aws.settings).show(Queue.TAG, "no-such-message") is None


@probes((OPS, "DeadLetterMirror", "dynamodb:Query"))
async def _list_dead_letters(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters.messages (the mirror's Query)."""
    await DeadLetters(aws, aws.settings).messages(Queue.TAG)


@probes((S, "NoteGiveUp", "dynamodb:UpdateItem"), (OPS, "DeadLetterMirror", "dynamodb:UpdateItem"))
async def _starter_gives_up(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters.note_give_up, as the starter notes why an ingest message gave up (the same
    UpdateItem of the mirror as DeadLetters._mirror)."""
    await DeadLetters(aws, aws.settings).note_give_up(
        Queue.INGEST, f"probe-{uuid.uuid4().hex}", {"code": "UnknownImage", "message": "x"}
    )


@probes((OPS, "DeadLetterMirror", "dynamodb:DeleteItem"))
async def _forget_dead_letter(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters.delete of a message that is gone: the mirror forgets it (DeleteItem)."""
    report = await DeadLetters(aws, aws.settings).delete(Queue.TAG, ["no-such-message"])
    assert report.not_found == ["no-such-message"]


@probes((S, "WriteOriginals", "s3:PutObject"))
async def _upload_original(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """The upload route's PutObject of an original (routes/uploads.upload_image)."""
    key = incoming_key(env.owner, env.album_id, f"put{uuid.uuid4().hex[:8]}", "jpg")
    await aws.s3.put_object(Bucket=env.names.bucket, Key=key, Body=b"jpeg")


@probes((S, "ReadObjects", "s3:GetObject"))
async def _checksum_original(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """duplicates.object_sha256 of the original (HeadObject, authorized as s3:GetObject)."""
    assert await object_sha256(aws, env.names.bucket, env.original_key)


@probes((S, "DeleteObjects", "s3:DeleteObject"))
async def _refuse_original(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """The DeleteObject of a refused or duplicate original (Starter._refuse,
    ExactDuplicates); the same call."""
    key = incoming_key(env.owner, env.album_id, f"del{uuid.uuid4().hex[:8]}", "jpg")
    await env.admin.s3.put_object(Bucket=env.names.bucket, Key=key, Body=b"jpeg")
    await aws.s3.delete_object(Bucket=env.names.bucket, Key=key)


@probes((S, "ListBucket", "s3:ListBucket"))
async def _list_renditions(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """removal.remove_stored lists thumbnails/<image id>/ for renditions not yet recorded."""
    record = env.record(f"rm{uuid.uuid4().hex[:12]}", key=None, status="PROCESSED")
    assert await remove_stored(aws, ImageRecord.model_validate(record)) == 0


@probes((S, "ConsumeOwnQueues", "sqs:ReceiveMessage"))
async def _receive_status_events(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """long_poll.receive_batches' ReceiveMessage on status-events (the loop itself logs a
    denial and polls again later, so the probe makes the call)."""
    await aws.sqs.receive_message(
        QueueUrl=env.queue_urls[Queue.STATUS_EVENTS], MaxNumberOfMessages=1, WaitTimeSeconds=0
    )


@probes((S, "ConsumeOwnQueues", "sqs:DeleteMessage"))
async def _delete_ingest(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """long_poll.delete_batch on ingest, as the starter deletes what it handled."""
    await delete_batch(aws.sqs, env.queue_urls[Queue.INGEST], [NOT_A_RECEIPT])


@probes((S, "ReleaseIngest", "sqs:ChangeMessageVisibility"))
async def _release_ingest(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Starter._release's ChangeMessageVisibility (it logs failures; the same call)."""
    try:
        await aws.sqs.change_message_visibility(
            QueueUrl=env.queue_urls[Queue.INGEST], ReceiptHandle=NOT_A_RECEIPT, VisibilityTimeout=5
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ReceiptHandleIsInvalid":
            raise


@probes((S, "OwnQueueUrls", "sqs:GetQueueUrl"))
async def _ingest_url(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Starter.run looks the ingest queue up (the same call)."""
    await aws.sqs.get_queue_url(QueueName=env.names.queue(Queue.INGEST))


@probes((S, "AssumeOperations", "sts:AssumeRole"))
async def _assume_operations(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """operations.operations_session's AssumeRole of the operations role (the same call)."""
    sts = await aws.client("sts")
    await sts.assume_role(
        RoleArn=arns_of(env)(RoleArn(Principal.OPERATIONS)), RoleSessionName="probe"
    )


@probes((OPS, "QueueDepths", "sqs:GetQueueUrl"))
async def _dead_letter_url(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters.url of a dead-letter queue."""
    await DeadLetters(aws, aws.settings).url(env.names.dead_letter_queue(Queue.EXTRACT))


@probes((OPS, "QueueDepths", "sqs:GetQueueAttributes"))
async def _queue_depth(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters.depth (a queue's and its DLQ's counts)."""
    await DeadLetters(aws, aws.settings).depth(Queue.EXTRACT)


@probes((OPS, "HandleDeadLetters", "sqs:ReceiveMessage"))
async def _hold_dead_letters(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """_Held.receive_all, as DeadLetters reads a DLQ."""
    await _Held(aws, env.dead_letter_urls[Queue.TAG]).receive_all(1, long_poll=False)


@probes((OPS, "HandleDeadLetters", "sqs:DeleteMessage"))
async def _delete_dead_letter(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """_Held.delete (DeleteMessageBatch on a DLQ)."""
    held = _Held(aws, env.dead_letter_urls[Queue.TAG])
    await held.delete([{"MessageId": "m", "ReceiptHandle": NOT_A_RECEIPT}])


@probes((OPS, "HandleDeadLetters", "sqs:ChangeMessageVisibility"))
async def _release_dead_letters(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """_Held.release_all's ChangeMessageVisibilityBatch (it logs failures; the same call)."""
    await aws.sqs.change_message_visibility_batch(
        QueueUrl=env.dead_letter_urls[Queue.TAG],
        Entries=[{"Id": "0", "ReceiptHandle": NOT_A_RECEIPT, "VisibilityTimeout": 0}],
    )


@probes((OPS, "HandleDeadLetters", "sqs:PurgeQueue"))
async def _purge_dead_letters(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters.purge of a DLQ."""
    await DeadLetters(aws, aws.settings).purge(Queue.TAG)


@probes((OPS, "HandleDeadLetters", "sqs:StartMessageMoveTask"))
async def _move_dead_letters(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters._replay_with_move_task's StartMessageMoveTask (AWS only: locally a replay
    moves messages one by one). moto 5.2.5 does not implement the operation: its answer past
    the permission check is an error that is not a denial."""
    try:
        await aws.sqs.start_message_move_task(
            SourceArn=env.arn("sqs", env.names.dead_letter_queue(Queue.TAG)),
            DestinationArn=env.arn("sqs", env.names.queue(Queue.TAG)),
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in MOVE_TASK_UNSUPPORTED:
            raise


# What moto answers an allowed StartMessageMoveTask (it has no such operation).
MOVE_TASK_UNSUPPORTED = frozenset({"InvalidAction", "InvalidParameterValue", "NotImplemented"})


@probes((OPS, "ReplayToSource", "sqs:SendMessage"))
async def _replay_send(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters._send returns a dead letter to its source queue (tag: nothing reads it
    here)."""
    message = {"MessageId": "m", "ReceiptHandle": NOT_A_RECEIPT, "Body": "{}"}
    assert await DeadLetters(aws, aws.settings)._send(env.queue_urls[Queue.TAG], [message])


@probes(
    (S, "StartImageProc", "states:StartExecution"),
    (OPS, "StartExecutions", "states:StartExecution"),
)
async def _start_execution(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Starter._start_execution's StartExecution of ImageProc (the same call: the method first
    looks for an exact duplicate). The new execution's Extract task becomes the next live
    token."""
    image_id = await env.start_image(aws, "st")
    # Stopped by the administrator: the operations role may not stop executions.
    await env.admin.stepfunctions.stop_execution(
        executionArn=execution_arn(env.state_machine_arn, image_id)
    )


@probes((OPS, "ListRetagExecutions", "states:ListExecutions"))
async def _retag_executions(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Retagger._executions (a request's ImageRetag executions)."""
    assert await Retagger(aws, aws.settings)._executions("probe") == []


@probes(
    (S, "ImageExecutions", "states:DescribeExecution"),
    (OPS, "ImageExecutions", "states:DescribeExecution"),
)
async def _image_running(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """DeadLetters._running (a re-run checks whether the image's execution still runs)."""
    task = await env.tokens.live()
    arn = execution_arn(env.state_machine_arn, task.image_id)
    assert await DeadLetters(aws, aws.settings)._running(arn)


@probes((S, "ImageExecutions", "states:GetExecutionHistory"))
async def _image_history(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """routes/executions.get_execution's GetExecutionHistory (the same call)."""
    task = await env.tokens.live()
    arn = execution_arn(env.state_machine_arn, task.image_id)
    await aws.stepfunctions.get_execution_history(executionArn=arn, maxResults=10)


@probes((S, "ImageExecutions", "states:StopExecution"))
async def _stop_execution(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """removal.remove_stored's StopExecution (it suppresses every error, a denial included;
    the same call, on an execution that never ran: ExecutionDoesNotExist is the answer)."""
    arn = execution_arn(env.state_machine_arn, f"never{uuid.uuid4().hex[:8]}")
    try:
        await aws.stepfunctions.stop_execution(
            executionArn=arn, error="ImageDeleted", cause="deleted by owner"
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise


@probes((OPS, "RetagExecutions", "states:DescribeExecution"))
async def _retag_progress(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """Retagger's DescribeExecution of an ImageRetag execution (retag.Retagger._failure; the
    same call, on an execution that never ran)."""
    retag = retag_state_machine_arn(env.state_machine_arn, env.names.prefix)
    arn = execution_arn(retag, f"never{uuid.uuid4().hex[:8]}")
    try:
        await aws.stepfunctions.describe_execution(executionArn=arn)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ExecutionDoesNotExist":
            raise


# -- The state machines' role: their service tasks, made directly --------------------------

W = Principal.WORKFLOW


@probes((W, "SendExtract", "sqs:SendMessage"))
async def _send_extract(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """ImageProc's Extract task (sqs:sendMessage.waitForTaskToken): the same SendMessage.
    Not a task: LiveTokens skips it."""
    await aws.sqs.send_message(QueueUrl=env.queue_urls[Queue.EXTRACT], MessageBody="{}")


@probes((W, "PublishStages", "sns:Publish"))
async def _publish_stage(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """The Tag/Thumbnail tasks' and Announce's Publish (the same call, on `stored`)."""
    await aws.sns.publish(
        TopicArn=env.arn("sns", env.names.topic(Topic.STORED)), Message=json.dumps({})
    )


@probes((W, "UpdateImages", "dynamodb:UpdateItem"))
async def _store_results(env: ProbeEnv, aws: AwsClients, caller: Principal) -> None:
    """StoreResults' dynamodb:updateItem (the same call)."""
    await aws.dynamodb.update_item(
        TableName=env.names.table(Table.IMAGES),
        Key={"image_id": {"S": env.image_id}},
        UpdateExpression="SET probed_at = :at",
        ExpressionAttributeValues={":at": {"S": now_iso()}},
    )
