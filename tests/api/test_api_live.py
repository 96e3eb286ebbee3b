"""Live updates and executions, with a real execution on the embedded Step Functions: the test
plays the extractor (answers the Extract task's token by hand), so the workflow runs for real
while no worker process is needed."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from helpers import eventually

from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.catalog import Catalog
from imgproc_shared.resources import ResourceNames

from api_harness import ApiHarness, bootstrapped_stack, running_api

pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(embedded_aws: EmbeddedAws) -> AsyncIterator[ApiHarness]:
    async with (
        bootstrapped_stack(embedded_aws.endpoint_url) as stack,
        running_api(stack, run_starter=True) as harness,
    ):
        yield harness


class EventStream:
    """Reads an album's SSE stream in the background and keeps every event."""

    def __init__(self, api: ApiHarness, album_id: str, headers: dict[str, str]) -> None:
        self.api = api
        self.album_id = album_id
        self.headers = headers
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        url = f"/api/albums/{self.album_id}/events"
        async with self.api.client.stream("GET", url, headers=self.headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            kind, data = "message", ""
            async for line in response.aiter_lines():
                if line.startswith("event:"):
                    kind = line.split(":", 1)[1].strip()
                elif line.startswith("data:"):
                    data = line.split(":", 1)[1].strip()
                elif line == "" and data:
                    if kind == "ready":
                        self.ready.set()
                    else:
                        self.events.append((kind, json.loads(data)))
                    kind, data = "message", ""

    async def __aenter__(self) -> EventStream:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self.ready.wait(), timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def statuses(self, image_id: str) -> list[str]:
        return [d["status"] for k, d in self.events if k == "image" and d["image_id"] == image_id]

    def latest(self, image_id: str) -> dict[str, Any] | None:
        found = [d for k, d in self.events if k == "image" and d["image_id"] == image_id]
        return found[-1] if found else None


async def answer_extract_with_failure(
    api: ApiHarness, image_id: str, error: str, cause: str
) -> None:
    """Play the extractor: take this image's Extract task and fail it with a named error."""
    queue_url = (
        await api.aws.sqs.get_queue_url(QueueName=f"{api.settings.resource_prefix}-extract")
    )["QueueUrl"]

    async def take() -> dict[str, Any] | None:
        response = await api.aws.sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        )
        for message in response.get("Messages", []):
            body = json.loads(message["Body"])
            await api.aws.sqs.delete_message(
                QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
            if body["image_id"] == image_id:
                return dict(body)
        return None

    task = await eventually(take, timeout=30, what="the Extract task")
    await api.aws.stepfunctions.send_task_failure(
        taskToken=task["task_token"], error=error, cause=cause
    )


async def test_album_stream_pushes_upload_stages_and_terminal_status(api: ApiHarness) -> None:
    headers = await api.sign_in("viewer")
    album = await api.create_album(headers, "Live")
    async with EventStream(api, album["album_id"], headers) as stream:
        response = await api.client.post(
            f"/api/albums/{album['album_id']}/images",
            files={"file": ("notes.jpg", io.BytesIO(b"plain text, not a photo"), "image/jpeg")},
            headers=headers,
        )
        assert response.status_code == 201
        image_id = response.json()["image_id"]
        # Uploaded, then the starter's PROCESSING with the execution ARN.
        await eventually(lambda: "UPLOADING" in stream.statuses(image_id), what="upload event")
        await eventually(lambda: "PROCESSING" in stream.statuses(image_id), what="processing")
        processing = stream.latest(image_id)
        assert processing is not None and processing["execution_arn"].endswith(f":{image_id}")

        # A stage's progress, as a worker records it, is pushed without any request.
        catalog = Catalog(api.aws, ResourceNames.from_settings(api.settings))
        started = datetime.now(UTC).isoformat()
        await catalog.record_stage(image_id, "extract", {"started_at": started})

        def extract_started() -> bool:
            latest = stream.latest(image_id)
            return bool(latest and latest["stages"].get("extract", {}).get("started_at"))

        await eventually(extract_started, what="stage progress event")

        await answer_extract_with_failure(
            api, image_id, "ImageProc.CorruptImage", "the file is not an image (text)"
        )
        await eventually(lambda: "REJECTED" in stream.statuses(image_id), what="REJECTED event")
        rejected = stream.latest(image_id)
        assert rejected is not None
        assert rejected["error"]["code"] == "ImageProc.CorruptImage"
        assert rejected["error"]["message"] == "the file is not an image (text)"
        # Each change is pushed once.
        statuses = stream.statuses(image_id)
        assert statuses.count("UPLOADING") == 1 and statuses.count("REJECTED") == 1

        # The execution's history, state by state.
        async def execution_done() -> dict[str, Any] | None:
            response = await api.client.get(f"/api/images/{image_id}/execution", headers=headers)
            body: dict[str, Any] = response.json()
            return body if body.get("status") == "FAILED" else None

        execution = await eventually(execution_done, timeout=20, what="execution end")
        states = {s["name"]: s for s in execution["states"]}
        assert execution["error"] == "NotSupportedImageType"
        assert states["Extract"]["outcome"] == "caught"
        assert states["Extract"]["error"] == "ImageProc.CorruptImage"
        assert states["Extract"]["attempts"] == 1
        assert states["Reject"]["outcome"] == "succeeded"
        assert states["Reject"]["duration_ms"] is not None
        assert states["NotSupportedImageType"]["outcome"] == "failed"
        assert "Validate" not in states
        for state in execution["states"]:
            assert state["entered_at"]

        # Deleting the image is pushed too.
        await api.client.delete(f"/api/images/{image_id}", headers=headers)
        await eventually(
            lambda: ("deleted", {"image_id": image_id}) in stream.events, what="deleted event"
        )


async def test_images_that_bypass_the_api_are_discovered_by_the_stream(api: ApiHarness) -> None:
    """An object put straight into S3 (as `imgproc upload` may) still shows up live."""
    headers = await api.sign_in("cli_user")
    album = await api.create_album(headers, "From CLI")
    async with EventStream(api, album["album_id"], headers) as stream:
        key = f"incoming/cli_user/{album['album_id']}/cliimage1.png"
        await api.aws.s3.put_object(
            Bucket=f"{api.settings.resource_prefix}-images", Key=key, Body=b"\x89PNG"
        )
        await eventually(lambda: stream.latest("cliimage1"), timeout=20, what="discovery")
        seen = stream.latest("cliimage1")
        assert seen is not None and seen["status"] == "PROCESSING"
        assert seen["file_name"] == "cliimage1.png"
