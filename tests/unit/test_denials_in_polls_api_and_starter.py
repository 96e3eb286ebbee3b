"""Denials outside a stage's task are loud and do not spin: a denied queue poll is logged with
the action and resource and retried after a growing pause (asking again grants nothing); the
status API answers a denial with a 500 naming what is missing; the starter names it and sends
the upload on to the dead-letter queue (replayable once the permission is granted)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from fastapi import FastAPI
from structlog.testing import capture_logs

from imgproc_shared import long_poll
from imgproc_shared.settings import Settings
from imgproc_status_api.errors import install_error_handlers
from imgproc_status_api.starter import Starter

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:imgproc-tag"


def _denied(action: str, resource: str, operation: str) -> ClientError:
    message = f"User: arn:aws:iam::123456789012:user/x is not authorized to perform: {action}"
    return ClientError(
        {"Error": {"Code": "AccessDenied", "Message": f"{message} on resource: {resource}"}},
        operation,
    )


class DeniedSqs:
    def __init__(self) -> None:
        self.receives = 0

    async def receive_message(self, **_: Any) -> Any:
        self.receives += 1
        raise _denied("sqs:ReceiveMessage", QUEUE_ARN, "ReceiveMessage")


async def test_denied_receive_backs_off_doubling_up_to_a_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stopping = asyncio.Event()
    pauses: list[float] = []

    async def recorded_pause(_: asyncio.Event, seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 8:
            stopping.set()

    monkeypatch.setattr(long_poll, "pause", recorded_pause)
    sqs = DeniedSqs()
    with capture_logs() as logs:
        batches = [b async for b in long_poll.receive_batches(sqs, "url", stopping, wait_time_s=1)]
    assert batches == []
    assert pauses == [1, 2, 4, 8, 16, 32, 60, 60]
    assert sqs.receives == 8
    denied = [entry for entry in logs if entry["event"] == "access denied; polling again later"]
    assert len(denied) == 8 and denied[0]["log_level"] == "error"
    assert (denied[0]["action"], denied[0]["resource"]) == ("sqs:ReceiveMessage", QUEUE_ARN)


async def test_api_answers_a_denial_with_500_naming_the_action_and_resource() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/denied")
    async def denied() -> None:
        raise _denied("dynamodb:Query", "arn:aws:dynamodb:us-east-1:1:table/t", "Query")

    @app.get("/other")
    async def other() -> None:
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow"}}, "Query")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    client = httpx.AsyncClient(transport=transport, base_url="http://api")
    with capture_logs() as logs:
        response = await client.get("/denied")
    assert response.status_code == 500
    assert response.json() == {
        "code": "access_denied",
        "message": "the server is not allowed to dynamodb:Query on "
        "arn:aws:dynamodb:us-east-1:1:table/t",
    }
    assert [e["action"] for e in logs if e["event"] == "access denied"] == ["dynamodb:Query"]
    # Any other AWS error is still the plain internal error.
    response = await client.get("/other")
    assert response.status_code == 500
    assert response.json() == {"code": "internal_error", "message": "internal error"}
    await client.aclose()


class RecordingSqs:
    def __init__(self) -> None:
        self.releases: list[int] = []

    async def change_message_visibility(self, **params: Any) -> None:
        self.releases.append(params["VisibilityTimeout"])


@pytest.mark.parametrize("receive_count", [1, 5])
async def test_starter_names_a_denial_and_sends_the_upload_on_to_the_dead_letter_queue(
    monkeypatch: pytest.MonkeyPatch, receive_count: int
) -> None:
    sqs = RecordingSqs()
    aws: Any = type("Aws", (), {"sqs": sqs})()
    starter = Starter(aws, Settings(max_receive_count=5), "arn:aws:states:::stateMachine:x")
    notes: list[tuple[str, str]] = []

    async def denied_start(body: str) -> None:
        raise _denied("states:StartExecution", "arn:aws:states:::stateMachine:x", "StartExecution")

    async def note_give_up(message: Any, code: str, reason: str) -> None:
        notes.append((code, reason))

    monkeypatch.setattr(starter, "handle", denied_start)
    monkeypatch.setattr(starter, "_note_give_up", note_give_up)
    message = {
        "Body": "{}",
        "ReceiptHandle": "r",
        "Attributes": {"ApproximateReceiveCount": str(receive_count)},
    }
    with capture_logs() as logs:
        done = await starter._handle_message(message, "url")
    assert done is False
    denied = [e for e in logs if e["event"] == "access denied; upload not started"]
    assert [(e["log_level"], e["action"]) for e in denied] == [("error", "states:StartExecution")]
    # Back in 2 s (not the queue's 5-minute visibility timeout) until the redrive moves it; on
    # the last receive the dead letter records why.
    assert sqs.releases == ([2] if receive_count == 1 else [0])
    expected = (
        []
        if receive_count == 1
        else [
            (
                "ImageProc.AccessDenied",
                "the starter was denied states:StartExecution on arn:aws:states:::stateMachine:x",
            )
        ]
    )
    assert notes == expected
