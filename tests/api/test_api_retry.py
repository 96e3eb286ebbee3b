"""Failures an owner or operator can act on, over HTTP against the real moto server: Retry of a
FAILED image that left no dead letter, and a malformed S3 event that reaches its dead-letter
queue within seconds, listed with its reason and detail, then deleted."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from helpers import eventually, make_settings

from imgproc_local.bootstrap import bootstrap
from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import ImageStatus
from imgproc_shared.resources import Queue, ResourceNames, incoming_key
from imgproc_shared.s3_events import ObjectCreated
from imgproc_status_api.starter import Starter

from api_harness import ApiHarness, running_api


@pytest_asyncio.fixture
async def api(embedded_aws: EmbeddedAws) -> AsyncIterator[ApiHarness]:
    # The queues' own visibility timeout (60 s, the default) is what a malformed event used to
    # wait between receives: 5 receives took minutes.
    settings = make_settings(embedded_aws.endpoint_url, visibility_timeout_s=60)
    async with AwsClients(settings) as aws:
        outputs = await bootstrap(aws, settings)
        settings = settings.model_copy(update={"state_machine_arn": outputs["state_machine_arn"]})
        async with running_api((settings, aws, outputs), run_starter=True) as harness:
            yield harness


async def _failed_image(api: ApiHarness, owner: str, album_id: str, image_id: str) -> None:
    """An image FAILED by a task failure: the stage answered with an error, so its message was
    deleted and no dead letter exists."""
    key = incoming_key(owner, album_id, image_id, "jpg")
    catalog = Catalog(api.aws, ResourceNames.from_settings(api.settings))
    await catalog.record_upload(
        image_id=image_id,
        owner=owner,
        album_id=album_id,
        bucket=api.settings.resource_prefix + "-images",
        key=key,
        file_name="x.jpg",
    )
    await api.aws.dynamodb.update_item(
        TableName=catalog.images_table,
        Key={"image_id": {"S": image_id}},
        UpdateExpression="SET #s = :failed, error_code = :code, error_message = :message, "
        "failed_stage = :stage REMOVE sweep, sweep_at",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={
            ":failed": {"S": ImageStatus.FAILED.value},
            ":code": {"S": "ImageProc.StageFailed"},
            ":message": {"S": "States.Timeout"},
            ":stage": {"S": "tag"},
        },
    )
    # The original arrives only now: the starter (running) ignores its event for a FAILED
    # image, where before the record was FAILED it could start an execution of its own.
    await api.aws.s3.put_object(Bucket=api.settings.resource_prefix + "-images", Key=key, Body=b"x")


async def test_a_failed_image_without_a_dead_letter_is_retried_once(api: ApiHarness) -> None:
    owner = await api.sign_in("retry-owner")
    other = await api.sign_in("retry-other")
    album = await api.create_album(owner, "retries")
    await _failed_image(api, "retry-owner", album["album_id"], "retryimg1")

    refused = await api.client.post("/api/images/retryimg1/retry", headers=other)
    assert refused.status_code == 404, refused.text
    retried = await api.client.post("/api/images/retryimg1/retry", headers=owner)
    assert retried.status_code == 202, retried.text
    body: dict[str, Any] = retried.json()
    assert body["status"] == "PROCESSING" and body["execution_arn"].endswith(":retryimg1-r1")
    described = await api.aws.stepfunctions.describe_execution(executionArn=body["execution_arn"])
    assert described["status"] == "RUNNING"
    # Idempotent: not FAILED any more, so a second retry starts nothing.
    again = await api.client.post("/api/images/retryimg1/retry", headers=owner)
    assert again.status_code == 409 and again.json()["code"] == "not_retryable"

    # An operator may retry anyone's FAILED image (every user operates a one-machine stack).
    await _failed_image(api, "retry-owner", album["album_id"], "retryimg2")
    by_operator = await api.client.post("/api/operators/images/retryimg2/retry", headers=other)
    assert by_operator.status_code == 202, by_operator.text
    assert by_operator.json()["execution_arn"].endswith(":retryimg2-r1")


async def test_a_late_upload_event_for_a_retried_image_starts_no_second_execution(
    api: ApiHarness,
) -> None:
    # Found in a fresh-clone run once the starter polled sooner: the original's event, handled
    # after the Retry had marked the image PROCESSING for its re-run, started a second execution
    # (or, for the same bytes as another image, recorded the re-run image as a duplicate).
    owner = await api.sign_in("late-owner")
    album = await api.create_album(owner, "late")
    await _failed_image(api, "late-owner", album["album_id"], "lateimg1")
    retried = await api.client.post("/api/images/lateimg1/retry", headers=owner)
    assert retried.status_code == 202, retried.text
    rerun_arn = retried.json()["execution_arn"]

    names = ResourceNames.from_settings(api.settings)
    record = await Catalog(api.aws, names).get_image("lateimg1")
    assert record is not None and record.key is not None
    # The event delivered (again) now, to a second starter: as a late or redelivered message.
    starter = Starter(api.aws, api.settings, api.outputs["state_machine_arn"])
    started = await starter.start_image(ObjectCreated(str(record.bucket), record.key, None, None))

    assert started is False
    executions = await api.aws.stepfunctions.list_executions(
        stateMachineArn=api.outputs["state_machine_arn"]
    )
    ours = [e["executionArn"] for e in executions["executions"] if "lateimg1" in e["name"]]
    assert ours == [rerun_arn]
    after = await Catalog(api.aws, names).get_image("lateimg1")
    assert after is not None and after.status == "PROCESSING" and after.execution_arn == rerun_arn


async def test_a_malformed_s3_event_is_dead_lettered_within_seconds_with_its_reason(
    api: ApiHarness,
) -> None:
    headers = await api.sign_in("dlq-operator")
    names = api.settings.resource_prefix
    ingest = (await api.aws.sqs.get_queue_url(QueueName=f"{names}-ingest"))["QueueUrl"]
    sent = time.monotonic()
    await api.aws.sqs.send_message(QueueUrl=ingest, MessageBody='{"Records": "nonsense"}')

    async def dead_lettered() -> list[dict[str, Any]]:
        listed = await api.client.get("/api/operators/dead-letters/ingest", headers=headers)
        messages: list[dict[str, Any]] = listed.json()["messages"]
        return messages

    [letter] = await eventually(dead_lettered, timeout=40, interval=1, what="the dead letter")
    took = time.monotonic() - sent
    assert took < 30, took  # 5 receives; the queue's 60 s visibility timeout would be minutes
    assert letter["receive_count"] == api.settings.max_receive_count
    assert letter["last_error"]["code"] == "Malformed"
    assert "Records" in letter["last_error"]["message"]
    assert letter["first_receive_at"] and letter["last_receive_at"]
    assert letter["body_preview"] == '{\n  "Records": "nonsense"\n}'

    one = f"/api/operators/dead-letters/ingest/{letter['message_id']}"
    detail = await api.client.get(one, headers=headers)
    assert detail.status_code == 200 and detail.json()["body"] == '{"Records": "nonsense"}'
    assert (await api.client.get(one, headers=headers)).json()["receive_count"] == letter[
        "receive_count"
    ]  # looking is not a receive

    deleted = await api.client.post(
        "/api/operators/dead-letters/ingest/delete",
        json={"message_ids": [letter["message_id"]]},
        headers=headers,
    )
    assert deleted.json() == {
        "queue": Queue.INGEST.value,
        "deleted": [letter["message_id"]],
        "not_found": [],
    }
    assert (await api.client.get(one, headers=headers)).status_code == 404
