"""When even failing a denied task is denied, the worker cannot tell anyone: it says so, with
the action and resource, and keeps the message away for a while instead of spinning on it."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from imgproc_shared import errors
from imgproc_shared.resources import Stage
from imgproc_shared.settings import Settings
from imgproc_shared.worker.runtime import DENIED_RETRY_DELAY_S, Worker


def _denied(action: str, resource: str) -> ClientError:
    message = f"User: arn:aws:iam::1:user/x is not authorized to perform: {action} on resource: "
    return ClientError({"Error": {"Code": "AccessDenied", "Message": message + resource}}, "Op")


class RecordingSqs:
    def __init__(self) -> None:
        self.releases: list[int] = []

    async def change_message_visibility(self, **params: Any) -> None:
        self.releases.append(params["VisibilityTimeout"])


class DeniedToken:
    async def fail(self, error: str, cause: str) -> bool:
        raise _denied("states:SendTaskFailure", "arn:aws:states:us-east-1:1:stateMachine:m")


async def test_a_task_that_cannot_be_answered_is_released_for_a_while() -> None:
    worker = Worker(Stage.TAG, handler=None, settings=Settings(), service="tagger")  # type: ignore[arg-type]
    sqs = RecordingSqs()
    ctx: Any = type("Ctx", (), {"aws": type("Aws", (), {"sqs": sqs})()})()
    recorded: list[dict[str, str] | None] = []

    async def finished(error: dict[str, str] | None) -> bool:
        recorded.append(error)
        return True

    denial = errors.access_denial(_denied("rekognition:DetectLabels", "*"))
    assert denial is not None
    with capture_logs() as logs:
        await worker._fail_denied(ctx, "url", "r", DeniedToken(), denial, finished, worker._log)  # type: ignore[arg-type]
    cause = "tagger was denied rekognition:DetectLabels on *"
    assert recorded == [{"code": errors.ACCESS_DENIED, "message": cause}]
    assert sqs.releases == [DENIED_RETRY_DELAY_S]
    assert worker.counters["denied"] == 1
    errors_logged = [(e["event"], e.get("action")) for e in logs if e["log_level"] == "error"]
    assert errors_logged == [
        ("access denied", "rekognition:DetectLabels"),
        ("task not answered; the message comes back later", "states:SendTaskFailure"),
    ]
