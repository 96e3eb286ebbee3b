"""Re-tagging images that are already PROCESSED (a library tagged by an older model gets the
current labels). Used by `imgproc retag` and the operators' API.

Design:

- Each image is re-tagged by an execution of `ImageRetag`, a second small state machine built
  by `imgproc_shared.workflow` (Tag, StoreTags, Announce: 3 transitions). So task tokens,
  heartbeats, retries, the tag queue's dead-letter queue and the stage's progress record apply
  as for new images, while `ImageProc` keeps its 7 transitions: no state is added in front of
  every new image to route re-tags.
- StoreTags writes only `tags` (plus `retag_request` and `retagged_at`), conditional on the
  image still being PROCESSED. Metadata, renditions and status are never touched; an image
  deleted or re-run meanwhile ends its execution as `ImageRetag.Skipped`. It then announces on
  `stored`, so open galleries update live as for a new image.
- A request has an id (12 hex characters, or one the caller gives to repeat a request); each
  image's execution is named `{image_id}-t{request_id}`. Repeating a request therefore starts
  nothing new for an image whose execution exists (Step Functions refuses a second execution
  of a name; we also list the request's executions first so that the report says so), nor
  for one whose record already carries `retag_request` = the id (its tags were stored: this
  also holds on a local stack restarted from its data directory, whose fresh endpoint has no
  executions).
- Executions are started at a bounded rate (`rate_per_s`), in the caller: the CLI, or a task
  of the status API process. If that stops half way, nothing is lost: images not yet reached
  keep their old tags and stay PROCESSED, and the same request (same id) run again starts
  exactly the rest.
- Progress is read from the request's executions (`ListExecutions` of `ImageRetag`, newest
  first; the listing stops a minute past the request's oldest execution, so older requests'
  are not read; a request resumed much later is followed from its resumption): running,
  re-tagged, skipped and failed, with the reason of each that stored nothing. Images that are
  not PROCESSED when the request is made are skipped at once with their status as the reason.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from imgproc_shared.aws import AwsClients, as_dict
from imgproc_shared.catalog import Catalog
from imgproc_shared.errors import error_code
from imgproc_shared.logging import get_logger
from imgproc_shared.models import ImageStatus
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import ResourceNames
from imgproc_shared.settings import Settings
from imgproc_shared.workflow import RETAG_SKIPPED, image_retag_arn

log = get_logger(stage="retag")

# Execution names are at most 80 characters: a 64-character image id, "-t" and 14 more.
REQUEST_ID_PATTERN = r"^[a-z0-9]{1,14}$"
_REQUEST_ID_RE = re.compile(REQUEST_ID_PATTERN)
DEFAULT_RATE_PER_S = 10.0
# How many per-image reasons a report lists (the counts are always whole).
_REASONS_LISTED = 100
_FINISHED_BADLY = ("FAILED", "TIMED_OUT", "ABORTED")
_RECORD_ATTRIBUTES = (
    "image_id",
    "status",
    "owner",
    "album_id",
    "bucket",
    "key",
    "metadata",
    "retag_request",
)


def new_request_id() -> str:
    return uuid.uuid4().hex[:12]


def is_valid_request_id(value: str) -> bool:
    return _REQUEST_ID_RE.match(value) is not None


def execution_name(image_id: str, request_id: str) -> str:
    return f"{image_id}-t{request_id}"


@dataclass(frozen=True)
class RetagScope:
    """Which images: one album, all of one owner, or every image (neither given)."""

    album_id: str | None = None
    owner: str | None = None

    def describe(self) -> str:
        where = f"album {self.album_id}" if self.album_id else "all images"
        return where + (f" of {self.owner}" if self.owner else "")


@dataclass
class RetagStart:
    """What one request started: counts, and why any image was left out."""

    request_id: str
    scope: str
    selected: int = 0  # PROCESSED images in scope
    started: int = 0
    already_started: int = 0  # its execution for this request exists
    already_done: int = 0  # its record says this request stored its tags
    skipped: dict[str, str] = field(default_factory=dict)  # not PROCESSED, with why
    skipped_count: int = 0
    not_started: dict[str, str] = field(default_factory=dict)  # StartExecution refused

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RetagProgress:
    """The request's executions so far, by outcome."""

    request_id: str
    executions: int = 0
    running: int = 0
    retagged: int = 0
    skipped_count: int = 0  # the image was deleted or left PROCESSED meanwhile
    failed_count: int = 0  # the tag stage failed after its retries (or the execution stopped)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.executions - self.running

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "finished": self.finished}


@dataclass
class RetagPlan:
    """A request's selection: its report so far, and the records whose executions to start."""

    report: RetagStart
    to_start: list[ImageRecord]


class Retagger:
    def __init__(self, aws: AwsClients, settings: Settings) -> None:
        self.aws = aws
        self.settings = settings
        self.names = ResourceNames.from_settings(settings)
        self.catalog = Catalog(aws, self.names)
        self._arn: str | None = None

    async def state_machine_arn(self) -> str:
        if self._arn is None:
            self._arn = await image_retag_arn(self.aws.stepfunctions, self.settings)
        return self._arn

    async def request(
        self,
        scope: RetagScope,
        request_id: str | None = None,
        *,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        on_started: Callable[[RetagStart], None] | None = None,
    ) -> RetagStart:
        """Select the scope's images and start their executions (see the module's notes)."""
        plan = await self.plan(scope, request_id or new_request_id())
        await self.start(plan, rate_per_s=rate_per_s, on_started=on_started)
        return plan.report

    async def plan(self, scope: RetagScope, request_id: str) -> RetagPlan:
        if not is_valid_request_id(request_id):
            raise ValueError(f"{request_id!r} is not a request id (1-14 of a-z, 0-9)")
        report = RetagStart(request_id=request_id, scope=scope.describe())
        existing = await self._execution_names(request_id)
        to_start: list[ImageRecord] = []
        async for record in self.catalog.iter_images(
            album_id=scope.album_id, owner=scope.owner, attributes=_RECORD_ATTRIBUTES
        ):
            image_id = record.image_id
            status = record.status
            if status != ImageStatus.PROCESSED.value:
                report.skipped_count += 1
                if len(report.skipped) < _REASONS_LISTED:
                    report.skipped[image_id] = f"image is {status}, not PROCESSED"
                continue
            report.selected += 1
            if record.retag_request == request_id:
                report.already_done += 1
            elif execution_name(image_id, request_id) in existing:
                report.already_started += 1
            else:
                to_start.append(record)
        return RetagPlan(report, to_start)

    async def start(
        self,
        plan: RetagPlan,
        *,
        rate_per_s: float = DEFAULT_RATE_PER_S,
        on_started: Callable[[RetagStart], None] | None = None,
    ) -> RetagStart:
        """Start the planned executions, at most `rate_per_s` a second."""
        report = plan.report
        arn = await self.state_machine_arn()
        interval = 1.0 / rate_per_s if rate_per_s > 0 else 0.0
        next_start = time.monotonic()
        for record in plan.to_start:
            delay = next_start - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            next_start = max(next_start, time.monotonic()) + interval
            await self._start_one(arn, report, record)
            if on_started is not None:
                on_started(report)
        log.info(
            "retag request started",
            request_id=report.request_id,
            scope=report.scope,
            selected=report.selected,
            started=report.started,
            already_started=report.already_started,
            already_done=report.already_done,
            skipped=report.skipped_count,
            not_started=len(report.not_started),
        )
        return report

    async def _start_one(self, arn: str, report: RetagStart, record: ImageRecord) -> None:
        image_id = record.image_id
        # The same request always sends the same input, so that a start repeated while the
        # execution runs is answered with that execution rather than refused.
        execution_input = {
            "image_id": image_id,
            "bucket": record.bucket,
            "key": record.key,
            "owner": record.owner,
            "album_id": record.album_id,
            "metadata": record.metadata.model_dump(mode="json") if record.metadata else {},
            "request_id": report.request_id,
        }
        try:
            await self.aws.stepfunctions.start_execution(
                stateMachineArn=arn,
                name=execution_name(image_id, report.request_id),
                input=json.dumps(execution_input, sort_keys=True),
            )
            report.started += 1
        except ClientError as exc:
            if error_code(exc) == "ExecutionAlreadyExists":
                report.already_started += 1
                return
            log.warning("retag not started", image_id=image_id, error=str(exc))
            if len(report.not_started) < _REASONS_LISTED:
                report.not_started[image_id] = f"could not start: {exc}"

    async def _execution_names(self, request_id: str) -> set[str]:
        return {e["name"] for e in await self._executions(request_id)}

    async def _executions(self, request_id: str) -> list[dict[str, Any]]:
        """The request's executions, from a listing of `ImageRetag`'s, newest first; it stops at
        the first execution started before the request's oldest (requests do not interleave
        much, and executions of older requests are not read)."""
        suffix = f"-t{request_id}"
        arn = await self.state_machine_arn()
        found: list[dict[str, Any]] = []
        oldest: datetime | None = None
        kwargs: dict[str, Any] = {"stateMachineArn": arn, "maxResults": 1000}
        while True:
            try:
                page = await self.aws.stepfunctions.list_executions(**kwargs)
            except ClientError as exc:
                if error_code(exc) == "StateMachineDoesNotExist":
                    raise RuntimeError(f"state machine {arn} not found") from exc
                raise
            for execution in page.get("executions", []):
                started = execution.get("startDate")
                if execution["name"].endswith(suffix):
                    found.append(as_dict(execution))
                    if isinstance(started, datetime):
                        oldest = started if oldest is None else min(oldest, started)
                elif (
                    found
                    and oldest is not None
                    and isinstance(started, datetime)
                    # A minute's slack: starts at a bounded rate interleave with other requests'.
                    and (oldest - started).total_seconds() > 60
                ):
                    return found
            if not page.get("nextToken"):
                return found
            kwargs["nextToken"] = page["nextToken"]

    async def progress(self, request_id: str) -> RetagProgress:
        """How the request's executions are doing; why each that stored nothing did not."""
        if not is_valid_request_id(request_id):
            raise ValueError(f"{request_id!r} is not a request id (1-14 of a-z, 0-9)")
        progress = RetagProgress(request_id=request_id)
        badly: list[dict[str, Any]] = []
        for execution in await self._executions(request_id):
            progress.executions += 1
            status = execution.get("status")
            if status == "RUNNING":
                progress.running += 1
            elif status == "SUCCEEDED":
                progress.retagged += 1
            elif status in _FINISHED_BADLY:
                badly.append(execution)
        # Only those that stored nothing are described (one call each), for their reason.
        for execution in badly:
            image_id = str(execution["name"]).removesuffix(f"-t{request_id}")
            error, cause = await self._failure(execution)
            if error == RETAG_SKIPPED:
                progress.skipped_count += 1
                reasons = progress.skipped
            else:
                progress.failed_count += 1
                reasons = progress.failed
            if len(reasons) < _REASONS_LISTED:
                reasons[image_id] = f"{error}: {cause}" if cause else error
        return progress

    async def _failure(self, execution: dict[str, Any]) -> tuple[str, str]:
        status = str(execution.get("status"))
        try:
            described = await self.aws.stepfunctions.describe_execution(
                executionArn=execution["executionArn"]
            )
        except ClientError as exc:
            return status, str(exc)
        return str(described.get("error") or status), str(described.get("cause") or "")

    async def wait(
        self,
        request_id: str,
        expected: int,
        *,
        timeout_s: float,
        poll_s: float = 1.0,
        on_progress: Callable[[RetagProgress], None] | None = None,
    ) -> RetagProgress:
        """Poll until `expected` executions of the request have finished, or the timeout."""
        deadline = time.monotonic() + timeout_s
        while True:
            progress = await self.progress(request_id)
            if on_progress is not None:
                on_progress(progress)
            done = progress.executions >= expected and progress.running == 0
            if done or time.monotonic() >= deadline:
                return progress
            await asyncio.sleep(poll_s)
