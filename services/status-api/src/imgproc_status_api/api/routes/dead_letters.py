"""Operators' dead letters: counts, messages (looking is not a receive), replay or delete one
message, a selection or a whole queue, and purge.

Thin wrappers over `imgproc_shared.dead_letters`, the same operations `imgproc dlq` runs.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from botocore.exceptions import ClientError
from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from imgproc_shared.aws import AwsClients
from imgproc_shared.dead_letters import DeadLetters, UnknownQueue, parse_queue
from imgproc_shared.errors import error_code
from imgproc_shared.models import IMAGE_ID_PATTERN
from imgproc_shared.resources import Queue
from imgproc_status_api.api.deps import CurrentOperator, OperatorAws, State
from imgproc_status_api.errors import OPERATOR_RESPONSES, ApiError, ErrorBody, not_found
from imgproc_status_api.schemas import RequestBody

router = APIRouter(
    prefix="/api/operators/dead-letters", tags=["operators"], responses=OPERATOR_RESPONSES
)

QueueName = Annotated[str, Path(description="a queue: " + ", ".join(q.value for q in Queue))]
# SQS message ids are UUIDs; the pattern only keeps paths and bodies sane.
MESSAGE_ID_PATTERN = r"^[A-Za-z0-9-]{1,100}$"
MessageId = Annotated[str, Path(pattern=MESSAGE_ID_PATTERN, description="an SQS message id")]
SelectedIds = Annotated[
    list[Annotated[str, Field(pattern=MESSAGE_ID_PATTERN)]],
    Field(min_length=1, max_length=100),
]


class DeadLetterCounts(BaseModel):
    queue: str
    name: str
    visible: int
    in_flight: int
    delayed: int
    dead_letters: int


class DeadLetterReport(BaseModel):
    queues: list[DeadLetterCounts]


class DeadLetterOut(BaseModel):
    queue: str
    message_id: str
    image_id: str | None
    stage: str | None
    receive_count: int = Field(description="receives before it was dead-lettered")
    sent_at: str | None
    first_receive_at: str | None
    last_receive_at: str | None = Field(description="its last failed try, when recorded")
    last_error: dict[str, Any] | None
    image_status: str | None
    body_size: int = Field(description="the body's size in bytes")
    body_preview: str = Field(description="the body, pretty-printed JSON, cut to 4096 characters")
    body_truncated: bool


class DeadLetterDetail(DeadLetterOut):
    body: str
    message_attributes: dict[str, Any]


class DeadLetterList(BaseModel):
    queue: str
    messages: list[DeadLetterOut]


class ReplayIn(RequestBody):
    max: int | None = Field(default=None, ge=1, description="replay at most this many")
    image_id: str | None = Field(default=None, pattern=IMAGE_ID_PATTERN)
    message_ids: SelectedIds | None = Field(default=None, description="replay only these")
    dry_run: bool = False


class ReplayOut(BaseModel):
    queue: str
    dry_run: bool
    method: str
    selected: int
    moved: int
    failed: int
    image_ids: list[str]
    reran: dict[str, str]
    not_rerun: dict[str, str]
    move_task_handle: str | None


class DeleteIn(RequestBody):
    message_ids: SelectedIds


class DeleteOut(BaseModel):
    queue: str
    deleted: list[str]
    not_found: list[str] = Field(description="not in the queue (already replayed or deleted)")


class PurgeIn(RequestBody):
    # `const` documents that only `true` is accepted; `false` is answered 400
    # `confirmation_required`, which tells the caller why.
    confirm: bool = Field(
        description="must be true: purging cannot be undone", json_schema_extra={"const": True}
    )


class PurgeOut(BaseModel):
    queue: str
    purged: int


def _queue(name: str) -> Queue:
    try:
        return parse_queue(name)
    except UnknownQueue as exc:
        raise not_found("queue", name) from exc


def _dead_letters(aws: AwsClients, state: State) -> DeadLetters:
    return DeadLetters(aws, state.settings)


@router.get("")
async def dead_letter_counts(
    _: CurrentOperator, aws: OperatorAws, state: State
) -> DeadLetterReport:
    """Every queue's waiting, in-flight and dead-letter counts."""
    depths = await _dead_letters(aws, state).depths()
    return DeadLetterReport(queues=[DeadLetterCounts(**asdict(d)) for d in depths])


@router.get("/{queue}")
async def dead_letter_messages(
    queue: QueueName, _: CurrentOperator, aws: OperatorAws, state: State
) -> DeadLetterList:
    """A queue's dead letters, each with its image's last recorded error."""
    chosen = _queue(queue)
    letters = await _dead_letters(aws, state).messages(chosen)
    return DeadLetterList(
        queue=chosen.value, messages=[DeadLetterOut(**x.summary()) for x in letters]
    )


@router.get("/{queue}/{message_id}")
async def dead_letter(
    queue: QueueName, message_id: MessageId, _: CurrentOperator, aws: OperatorAws, state: State
) -> DeadLetterDetail:
    """One dead letter, with its whole body and message attributes."""
    letter = await _dead_letters(aws, state).show(_queue(queue), message_id)
    if letter is None:
        raise not_found("message", message_id)
    return DeadLetterDetail(**letter.detail())


@router.post("/{queue}/replay")
async def replay(
    queue: QueueName, body: ReplayIn, _: CurrentOperator, aws: OperatorAws, state: State
) -> ReplayOut:
    """Return dead letters (all, `max`, one image's or the `message_ids` named) to their
    queue; FAILED images among them get a new execution."""
    report = await _dead_letters(aws, state).replay(
        _queue(queue),
        max_messages=body.max,
        image_id=body.image_id,
        message_ids=body.message_ids,
        dry_run=body.dry_run,
    )
    return ReplayOut(**report.as_dict())


@router.post("/{queue}/delete")
async def delete(
    queue: QueueName, body: DeleteIn, _: CurrentOperator, aws: OperatorAws, state: State
) -> DeleteOut:
    """Delete the dead letters named, for good."""
    report = await _dead_letters(aws, state).delete(_queue(queue), body.message_ids)
    return DeleteOut(**report.as_dict())


@router.post(
    "/{queue}/purge",
    responses={429: {"model": ErrorBody, "description": "Purged less than 60 seconds ago"}},
)
async def purge(
    queue: QueueName, body: PurgeIn, _: CurrentOperator, aws: OperatorAws, state: State
) -> PurgeOut:
    """Delete every dead letter of a queue."""
    if not body.confirm:
        raise ApiError(400, "confirmation_required", "purging cannot be undone: send confirm=true")
    chosen = _queue(queue)
    try:
        purged = await _dead_letters(aws, state).purge(chosen)
    except ClientError as exc:
        # SQS allows one purge of a queue per 60 s: a second one is the caller's to retry later
        # (429), not a server error.
        if not (error_code(exc) or "").endswith("PurgeQueueInProgress"):
            raise
        raise ApiError(
            429, "purge_in_progress", "this queue was purged less than 60 seconds ago; try later"
        ) from exc
    return PurgeOut(queue=chosen.value, purged=purged)
