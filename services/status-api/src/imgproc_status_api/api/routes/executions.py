"""The Step Functions execution behind an image: each state's start, end and outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from botocore.exceptions import ClientError
from fastapi import APIRouter

from imgproc_shared.aws import as_dict
from imgproc_shared.errors import error_code
from imgproc_status_api.api.deps import OwnedImage, State
from imgproc_status_api.errors import ERROR_RESPONSES, not_found
from imgproc_status_api.schemas import ExecutionOut, ExecutionStateOut

router = APIRouter(prefix="/api", tags=["executions"], responses=ERROR_RESPONSES)

_FAILURES = {
    "TaskFailed": "taskFailedEventDetails",
    "TaskTimedOut": "taskTimedOutEventDetails",
    "TaskSubmitFailed": "taskSubmitFailedEventDetails",
    "TaskStartFailed": "taskStartFailedEventDetails",
    "ExecutionFailed": "executionFailedEventDetails",
    "ExecutionTimedOut": "executionTimedOutEventDetails",
}


def _iso(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat(timespec="milliseconds")
    return str(value) if value is not None else None


def summarize_history(
    events: list[dict[str, Any]], execution_status: str
) -> list[ExecutionStateOut]:
    """One entry per state entered, in order, from a GetExecutionHistory event list.

    Task events are attributed to their state by following `previousEventId` back to the
    state's `StateEntered` event (branches of a Parallel interleave).
    """
    by_id = {event["id"]: event for event in events}
    entered: dict[int, dict[str, Any]] = {}  # StateEntered event id -> summary
    open_by_name: dict[str, int] = {}

    def owner_of(event: dict[str, Any]) -> int | None:
        seen = 0
        current: dict[str, Any] | None = event
        while current is not None and seen < len(events):
            if current["type"].endswith("StateEntered"):
                return int(current["id"])
            current = by_id.get(current.get("previousEventId", -1))
            seen += 1
        return None

    for event in events:
        kind = event["type"]
        if kind.endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            entered[event["id"]] = {
                "name": name,
                "type": kind.removesuffix("StateEntered") or None,
                "entered": event["timestamp"],
                "exited": None,
                "attempts": 0,
                "error": None,
                "cause": None,
                "failed": False,
            }
            open_by_name[name] = event["id"]
        elif kind.endswith("StateExited"):
            name = event["stateExitedEventDetails"]["name"]
            start = open_by_name.pop(name, None)
            if start is not None:
                entered[start]["exited"] = event["timestamp"]
        elif kind == "TaskScheduled":
            start = owner_of(event)
            if start is not None:
                entered[start]["attempts"] += 1
        elif kind == "TaskSucceeded":
            start = owner_of(event)
            if start is not None:
                entered[start]["failed"] = False
        elif kind in _FAILURES:
            details = event.get(_FAILURES[kind]) or {}
            start = owner_of(event)
            if start is None and kind.startswith("Execution"):
                # A Fail state: the execution's failure belongs to the last state entered.
                start = max(entered) if entered else None
            if start is not None:
                entered[start].update(
                    failed=True, error=details.get("error"), cause=details.get("cause")
                )

    states = []
    for summary in entered.values():
        outcome: Literal["succeeded", "failed", "running", "caught", "aborted"]
        if summary["failed"]:
            outcome = "caught" if summary["exited"] is not None else "failed"
        elif summary["exited"] is not None:
            outcome = "succeeded"
        elif execution_status == "RUNNING":
            outcome = "running"
        elif summary["type"] == "Fail":
            outcome = "failed"
        else:
            outcome = "aborted"
        duration = None
        if summary["exited"] is not None:
            duration = int((summary["exited"] - summary["entered"]).total_seconds() * 1000)
        states.append(
            ExecutionStateOut(
                name=summary["name"],
                type=summary["type"],
                entered_at=_iso(summary["entered"]),
                exited_at=_iso(summary["exited"]),
                duration_ms=duration,
                outcome=outcome,
                attempts=summary["attempts"],
                error=summary["error"],
                cause=summary["cause"],
            )
        )
    return states


@router.get("/images/{image_id}/execution")
async def get_execution(record: OwnedImage, state: State) -> ExecutionOut:
    """The image's execution (DescribeExecution) and its states (GetExecutionHistory)."""
    arn = record.execution_arn
    if not arn:
        raise not_found("execution", str(record.image_id))
    sfn = state.aws.stepfunctions
    try:
        described = await sfn.describe_execution(executionArn=arn)
        events: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = await sfn.get_execution_history(executionArn=arn, maxResults=1000, **kwargs)
            events.extend(as_dict(event) for event in page.get("events", []))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    except ClientError as exc:
        if error_code(exc) == "ExecutionDoesNotExist":
            raise not_found("execution", str(record.image_id)) from exc
        raise
    status = str(described.get("status", "UNKNOWN"))
    return ExecutionOut(
        execution_arn=arn,
        status=status,
        started_at=_iso(described.get("startDate")),
        stopped_at=_iso(described.get("stopDate")),
        error=described.get("error"),
        cause=described.get("cause"),
        states=summarize_history(events, status),
    )
