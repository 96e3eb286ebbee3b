"""Retry: a FAILED image runs through the workflow again, by its owner or by an operator.

An image can fail without leaving a dead letter (a stage answered the task with a failure, or a
task timed out), so this, not a replay, is how any failed image is re-run. It reuses the re-run
of a dead-letter replay: a new execution `{image_id}-r{n}` after one conditional write FAILED →
PROCESSING, so two retries at once start one execution, and a retry of an image that is not
FAILED (any more) is refused with 409.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from imgproc_shared.aws import AwsClients
from imgproc_shared.dead_letters import DeadLetters
from imgproc_status_api.api.deps import CurrentOperator, ImageId, OperatorAws, OwnedImage, State
from imgproc_status_api.errors import (
    ERROR_RESPONSES,
    OPERATOR_RESPONSES,
    ApiError,
    ErrorBody,
    not_found,
)
from imgproc_status_api.schemas import ImageOut

_RETRY_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "The image is not FAILED, or is being re-run"},
    503: {"model": ErrorBody, "description": "The new execution could not be started"},
}

router = APIRouter(prefix="/api", tags=["images"], responses=ERROR_RESPONSES)
operator_router = APIRouter(
    prefix="/api/operators", tags=["operators"], responses=OPERATOR_RESPONSES
)


async def _retry(aws: AwsClients, state: State, image_id: str) -> ImageOut:
    """The re-run signed by `aws`: the API's own identity for an owner's retry, the operations
    role's for an operator's retry of anyone's image."""
    outcome = await DeadLetters(aws, state.settings).rerun(image_id)
    if outcome == "unknown image":
        raise not_found("image", image_id)
    if outcome.startswith("could not start"):
        raise ApiError(503, "retry_not_started", outcome)
    if not outcome.startswith("arn:"):
        raise ApiError(409, "not_retryable", f"the image cannot be retried: {outcome}")
    record = await state.catalog.get_image(image_id)
    if record is None:  # deleted in the meantime
        raise not_found("image", image_id)
    return await state.view(record)


@router.post(
    "/images/{image_id}/retry", status_code=status.HTTP_202_ACCEPTED, responses=_RETRY_RESPONSES
)
async def retry_image(record: OwnedImage, state: State) -> ImageOut:
    """Run a FAILED image through the workflow again (a new execution); 409 if not FAILED."""
    return await _retry(state.aws, state, str(record.image_id))


@operator_router.post(
    "/images/{image_id}/retry", status_code=status.HTTP_202_ACCEPTED, responses=_RETRY_RESPONSES
)
async def retry_any_image(
    image_id: ImageId, _: CurrentOperator, aws: OperatorAws, state: State
) -> ImageOut:
    """An operator's retry of any user's FAILED image; 409 if not FAILED."""
    return await _retry(aws, state, image_id)
