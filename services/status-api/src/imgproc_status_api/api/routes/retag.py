"""Operators' re-tagging: give PROCESSED images the current model's labels.

The same operation `imgproc retag` runs (`imgproc_shared.retag`): the request is planned while
the caller waits (which images, which are skipped and why), and its executions are started by
a task of this process at a bounded rate, so a large library does not hold the request open.
Its progress is read back from the executions; the images' galleries update live from the
workflow's `stored` announcements. If this process stops while starting, posting the same
`request_id` again starts only what that request has not done.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from imgproc_shared.logging import get_logger
from imgproc_shared.models import IMAGE_ID_PATTERN
from imgproc_shared.retag import (
    DEFAULT_RATE_PER_S,
    REQUEST_ID_PATTERN,
    Retagger,
    RetagPlan,
    RetagScope,
    new_request_id,
)
from imgproc_status_api.api.deps import CurrentOperator, OperatorAws, State
from imgproc_status_api.errors import OPERATOR_RESPONSES, not_found
from imgproc_status_api.schemas import RequestBody

router = APIRouter(prefix="/api/operators/retag", tags=["operators"], responses=OPERATOR_RESPONSES)
log = get_logger(component="retag")

# Requests whose executions this process is still starting (one task per request id).
_starting: dict[str, asyncio.Task[None]] = {}


class RetagIn(RequestBody):
    album_id: str | None = Field(
        default=None,
        pattern=IMAGE_ID_PATTERN,
        description="this album's images; without it, every image (of `user`, if given)",
    )
    user: str | None = Field(default=None, pattern=IMAGE_ID_PATTERN, description="one owner's")
    request_id: str | None = Field(
        default=None,
        pattern=REQUEST_ID_PATTERN,
        description="an earlier request's id: only what that request has not done is started",
    )
    dry_run: bool = Field(default=False, description="only say what would be started")


class RetagOut(BaseModel):
    request_id: str
    scope: str
    dry_run: bool
    selected: int = Field(description="PROCESSED images in the scope")
    to_start: int = Field(description="executions this request starts now")
    already_started: int = Field(description="executions of this request that exist already")
    already_done: int = Field(description="images whose tags this request already stored")
    skipped_count: int = Field(description="images in the scope that are not PROCESSED")
    skipped: dict[str, str] = Field(description="some of those, with why (at most 100)")
    progress: str = Field(description="where to follow the request")


class RetagProgressOut(BaseModel):
    request_id: str
    starting: bool = Field(description="this API process is still starting its executions")
    executions: int
    running: int
    finished: int
    retagged: int
    skipped_count: int = Field(description="deleted or not PROCESSED any more when stored")
    failed_count: int = Field(description="the tag stage failed; the image keeps its tags")
    skipped: dict[str, str]
    failed: dict[str, str]


@router.post("", status_code=202)
async def retag(body: RetagIn, _: CurrentOperator, aws: OperatorAws, state: State) -> RetagOut:
    """Re-run the tag stage of an album's (or every) PROCESSED image; only `tags` change."""
    if body.album_id is not None:
        album = await state.catalog.get_album(body.album_id)
        if album is None or (body.user is not None and album.owner != body.user):
            raise not_found("album", body.album_id)
    scope = RetagScope(album_id=body.album_id, owner=body.user)
    request_id = body.request_id or new_request_id()
    retagger = Retagger(aws, state.settings)
    plan = await retagger.plan(scope, request_id)
    running = _starting.get(request_id)
    if not body.dry_run and plan.to_start and (running is None or running.done()):
        task = asyncio.create_task(_start(retagger, plan), name=f"retag-{request_id}")
        _starting[request_id] = task
        task.add_done_callback(lambda done: _finished(request_id, done))
    report = plan.report
    return RetagOut(
        request_id=request_id,
        scope=report.scope,
        dry_run=body.dry_run,
        selected=report.selected,
        to_start=len(plan.to_start),
        already_started=report.already_started,
        already_done=report.already_done,
        skipped_count=report.skipped_count,
        skipped=report.skipped,
        progress=f"/api/operators/retag?request_id={request_id}",
    )


async def _start(retagger: Retagger, plan: RetagPlan) -> None:
    await retagger.start(plan, rate_per_s=DEFAULT_RATE_PER_S)


def _finished(request_id: str, task: asyncio.Task[None]) -> None:
    if _starting.get(request_id) is task:
        del _starting[request_id]
    if not task.cancelled() and task.exception() is not None:
        # What was not started is started by the same request again.
        log.warning("retag start stopped", request_id=request_id, error=str(task.exception()))


@router.get("")
async def retag_progress(
    request_id: Annotated[str, Query(pattern=REQUEST_ID_PATTERN)],
    _: CurrentOperator,
    aws: OperatorAws,
    state: State,
) -> RetagProgressOut:
    """How a re-tag request's executions are doing: running, re-tagged, skipped, failed."""
    progress = await Retagger(aws, state.settings).progress(request_id)
    running = _starting.get(request_id)
    return RetagProgressOut(
        **progress.as_dict(), starting=running is not None and not running.done()
    )
