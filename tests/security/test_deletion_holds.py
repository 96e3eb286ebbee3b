"""Deleted photos stay deleted, and abandoned uploads do not linger.

Against the real embedded endpoint, the real status API and its starter; the test itself plays
the workers (it takes their task messages and answers them, and writes their stage progress
through the same `Catalog` call they use), so each race is placed exactly: an upload that
finishes after its delete, stage answers after a delete, the workflow reaching StoreResults or
a failure for a deleted image, an album deleted with images in every state, a replayed S3
event and a re-run after a delete. Then the sweep: a grant never used ends after the grant's
lifetime plus the margin, and a deleted image's late rendition goes with its tombstone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from helpers import make_settings
from PIL import Image

from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.catalog import DELETED
from imgproc_shared.dead_letters import DeadLetters
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import Queue, execution_arn, thumbnail_key

from security_harness import ThreadedApi, UserData, small_jpeg, threaded_api, wait_for


def photo() -> bytes:
    """A JPEG no other upload has (the same bytes again would be an exact duplicate)."""
    exif = Image.Exif()
    exif[0x010E] = uuid.uuid4().hex  # ImageDescription
    return small_jpeg(exif)


@pytest.fixture(scope="module")
def api(embedded_aws: EmbeddedAws) -> Iterator[ThreadedApi]:
    with threaded_api(make_settings(embedded_aws.endpoint_url), run_starter=True) as served:
        yield served


@pytest.fixture(scope="module")
def owner(api: ThreadedApi) -> UserData:
    return api.seed_user("deleter")


# ---------- helpers ----------


def grant(api: ThreadedApi, user: UserData, album_id: str | None = None) -> dict[str, Any]:
    response = api.client.post(
        f"/api/albums/{album_id or user.album_id}/uploads",
        json={"file_name": "p.jpg", "content_type": "image/jpeg"},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    granted: dict[str, Any] = response.json()
    return granted


def upload(granted: dict[str, Any]) -> None:
    response = httpx.post(
        granted["upload"]["url"],
        data=granted["upload"]["fields"],
        files={"file": ("p.jpg", photo(), "image/jpeg")},
        timeout=30,
    )
    assert response.status_code == 204, response.text


def record(api: ThreadedApi, image_id: str) -> dict[str, Any] | None:
    """The image's record as stored (only the attributes it holds)."""
    found = api.on_api_loop(api.app.state.api.catalog.get_image(image_id))
    return found.model_dump(mode="json", exclude_unset=True) if found else None


def status(api: ThreadedApi, image_id: str) -> str | None:
    return (record(api, image_id) or {}).get("status")


def started(api: ThreadedApi, granted: dict[str, Any]) -> str:
    upload(granted)
    image_id = str(granted["image_id"])
    wait_for(lambda: status(api, image_id) == "PROCESSING", what=f"{image_id} to start")
    return image_id


def keys_under(api: ThreadedApi, prefix: str) -> list[str]:
    async def listing() -> list[str]:
        page = await api.app.state.api.aws.s3.list_objects_v2(
            Bucket=api.app.state.api.names.bucket, Prefix=prefix
        )
        return [item["Key"] for item in page.get("Contents", [])]

    return api.on_api_loop(listing())


def put_object(api: ThreadedApi, key: str) -> None:
    async def put() -> None:
        await api.app.state.api.aws.s3.put_object(
            Bucket=api.app.state.api.names.bucket, Key=key, Body=photo()
        )

    api.on_api_loop(put())


def execution_status(api: ThreadedApi, image_id: str) -> str:
    async def describe() -> str:
        arn = execution_arn(api.settings.state_machine_arn or "", image_id)
        response = await api.app.state.api.aws.stepfunctions.describe_execution(executionArn=arn)
        return str(response["status"])

    return api.on_api_loop(describe())


def take_task(api: ThreadedApi, queue: Queue, image_id: str) -> dict[str, Any]:
    """The task message of `queue` for `image_id`, taken as its worker would take it."""

    async def receive() -> dict[str, Any] | None:
        sqs = api.app.state.api.aws.sqs
        url = (await sqs.get_queue_url(QueueName=api.app.state.api.names.queue(queue)))["QueueUrl"]
        response = await sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=1
        )
        for message in response.get("Messages", []):
            body = json.loads(message["Body"])
            if body.get("image_id") == image_id:
                await sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                return dict(body)
        return None

    found: dict[str, Any] = wait_for(
        lambda: api.on_api_loop(receive()), what=f"the {queue.value} task of {image_id}"
    )
    return found


def answer(api: ThreadedApi, token: str, output: Any = None, *, error: str = "") -> None:
    async def send() -> None:
        sfn = api.app.state.api.aws.stepfunctions
        if error:
            await sfn.send_task_failure(taskToken=token, error=error, cause="late")
        else:
            await sfn.send_task_success(taskToken=token, output=json.dumps(output))

    api.on_api_loop(send())


def delete_image(api: ThreadedApi, user: UserData, image_id: str) -> None:
    response = api.client.delete(f"/api/images/{image_id}", headers=user.headers)
    assert response.status_code == 204, response.text


def gone_for_the_owner(api: ThreadedApi, user: UserData, image_id: str) -> None:
    """Not shown anywhere: 404 by id, in no album listing."""
    assert api.client.get(f"/api/images/{image_id}", headers=user.headers).status_code == 404
    listing = api.client.get(f"/api/albums/{user.album_id}/images", headers=user.headers)
    assert image_id not in {item["image_id"] for item in listing.json()["items"]}
    assert status(api, image_id) in (None, DELETED)


# ---------- the races ----------


def test_an_upload_finishing_after_its_delete_is_removed(api: ThreadedApi, owner: UserData) -> None:
    granted = grant(api, owner)
    delete_image(api, owner, granted["image_id"])
    upload(granted)  # the browser's upload, still running when the photo was deleted
    wait_for(lambda: not keys_under(api, granted["key"]), what="the late upload to be removed")
    gone_for_the_owner(api, owner, granted["image_id"])
    with pytest.raises(ClientError, match="ExecutionDoesNotExist"):
        execution_status(api, granted["image_id"])


def test_stage_answers_after_a_delete_write_nothing(api: ThreadedApi, owner: UserData) -> None:
    image_id = started(api, grant(api, owner))
    extract = take_task(api, Queue.EXTRACT, image_id)
    delete_image(api, owner, image_id)

    # The extractor finishes anyway: its progress-and-metadata write is dropped (and reads as
    # done, so its message goes instead of dead-lettering), its answer is refused.
    catalog = api.app.state.api.catalog
    written = api.on_api_loop(
        catalog.record_stage(
            image_id,
            "extract",
            {"started_at": "x", "finished_at": "x"},
            {"metadata": {"format": "JPEG"}},
        )
    )
    assert written is True
    # Its answer: refused where the stop has landed (AWS); moto 5.2.5 only stops an execution
    # waiting on a task token once the wait ends, and then the workflow's writes are refused.
    with contextlib.suppress(ClientError):
        answer(api, extract["task_token"], {"format": "JPEG", "width": 64, "height": 48})
    tombstone = record(api, image_id)
    assert tombstone is not None and tombstone["status"] == DELETED
    assert "metadata" not in tombstone and "stage_extract" not in tombstone
    assert keys_under(api, f"incoming/{owner.name}/{owner.album_id}/{image_id}") == []
    gone_for_the_owner(api, owner, image_id)


def test_the_workflow_stores_nothing_for_an_image_deleted_while_it_ran(
    api: ThreadedApi, owner: UserData
) -> None:
    """The narrowest race: the execution starts after the delete tried to stop it. Its
    StoreResults (and its failure path) are conditional on the record not being a tombstone."""
    catalog = api.app.state.api.catalog
    to_store, to_fail = started(api, grant(api, owner)), started(api, grant(api, owner))
    for image_id in (to_store, to_fail):
        api.on_api_loop(catalog.tombstone_image(ImageRecord(image_id=image_id, owner=owner.name)))

    metadata = {"format": "JPEG", "width": 64, "height": 48}
    answer(api, take_task(api, Queue.EXTRACT, to_store)["task_token"], metadata)
    answer(api, take_task(api, Queue.TAG, to_store)["task_token"], [{"name": "Dog"}])
    answer(api, take_task(api, Queue.THUMBNAIL, to_store)["task_token"], {"renditions": []})
    answer(api, take_task(api, Queue.EXTRACT, to_fail)["task_token"], error="ImageProc.Broken")
    for image_id in (to_store, to_fail):
        wait_for(
            lambda image_id=image_id: execution_status(api, image_id) == "SUCCEEDED",
            what="the execution to end at ImageDeleted",
        )
        tombstone = record(api, image_id)
        assert tombstone is not None and tombstone["status"] == DELETED, tombstone
        assert not {"tags", "thumbnails", "error_code", "album_id"} & set(tombstone)


def test_deleting_an_album_takes_every_image_in_every_state(api: ThreadedApi) -> None:
    user = api.seed_user("album-deleter")  # one PROCESSING image (seeded) and one UPLOADING
    catalog = api.app.state.api.catalog
    uploading = grant(api, user)
    processing = started(api, grant(api, user))
    finished: dict[str, str] = {}
    for final in ("PROCESSED", "REJECTED", "FAILED"):
        image_id = started(api, grant(api, user))
        rendition = thumbnail_key(image_id, "thumbnail", "jpg")
        put_object(api, rendition)

        async def finish(image_id: str = image_id, final: str = final) -> None:
            await catalog.aws.dynamodb.update_item(
                TableName=catalog.images_table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET #s = :s",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":s": {"S": final}},
            )

        api.on_api_loop(finish())
        finished[final] = image_id
    every = [user.image_id, user.upload_id, uploading["image_id"], processing, *finished.values()]

    response = api.client.delete(f"/api/albums/{user.album_id}", headers=user.headers)
    assert response.status_code == 204, response.text
    upload(uploading)  # an upload still running finishes after the album is gone
    wait_for(
        lambda: not keys_under(api, f"incoming/{user.name}/{user.album_id}/"),
        what="every original of the album to be gone",
    )
    assert api.client.get(f"/api/albums/{user.album_id}", headers=user.headers).status_code == 404
    for image_id in every:
        assert status(api, image_id) in (None, DELETED), image_id
        assert keys_under(api, f"thumbnails/{image_id}/") == [], image_id
        assert api.client.get(f"/api/images/{image_id}", headers=user.headers).status_code == 404


def test_a_replayed_event_or_a_rerun_after_a_delete_brings_nothing_back(
    api: ThreadedApi, owner: UserData
) -> None:
    granted = grant(api, owner)
    image_id = started(api, granted)
    delete_image(api, owner, image_id)
    bucket = api.app.state.api.names.bucket
    event = {
        "Records": [
            {
                "eventName": "ObjectCreated:Post",
                "s3": {"bucket": {"name": bucket}, "object": {"key": granted["key"], "size": 9}},
            }
        ]
    }

    async def replay_and_drain() -> dict[str, str]:
        sqs = api.app.state.api.aws.sqs
        url = (await sqs.get_queue_url(QueueName=api.app.state.api.names.queue(Queue.INGEST)))[
            "QueueUrl"
        ]
        await sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            attributes = (
                await sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=[
                        "ApproximateNumberOfMessages",
                        "ApproximateNumberOfMessagesNotVisible",
                    ],
                )
            )["Attributes"]
            if set(attributes.values()) == {"0"}:
                return dict(attributes)
            await asyncio.sleep(0.1)
        raise AssertionError("the replayed event was not handled")

    # Handled and done with (not left to dead-letter), and nothing recreated.
    api.on_api_loop(replay_and_drain(), timeout=30)
    gone_for_the_owner(api, owner, image_id)
    outcome = api.on_api_loop(DeadLetters(api.app.state.api.aws, api.settings).rerun(image_id))
    assert not outcome.startswith("arn:"), outcome
    gone_for_the_owner(api, owner, image_id)


# ---------- the sweep ----------


@pytest.fixture
def swept_api(embedded_aws: EmbeddedAws) -> Iterator[ThreadedApi]:
    """Grants that live 2 s, a 1 s margin, a sweep every 0.3 s."""
    with threaded_api(
        make_settings(embedded_aws.endpoint_url),
        run_starter=True,
        upload_url_ttl_s=2,
        upload_sweep_margin_s=1,
        sweep_interval_s=0.3,
    ) as served:
        yield served


def test_the_sweep_ends_abandoned_uploads_and_purges_tombstones(swept_api: ThreadedApi) -> None:
    api = swept_api
    user = api.seed_user("abandoner")  # its granted upload is never used
    abandoned = grant(api, user)
    kept = started(api, grant(api, user))
    deleted = started(api, grant(api, user))
    delete_image(api, user, deleted)
    late_rendition = thumbnail_key(deleted, "preview", "jpg")
    put_object(api, late_rendition)  # a thumbnailer that finished after the delete

    for image_id in (user.upload_id, abandoned["image_id"]):
        wait_for(
            lambda image_id=image_id: status(api, image_id) in (None, DELETED),
            timeout=15,
            what="the abandoned upload to be ended",
        )
        gone_for_the_owner(api, user, image_id)
    wait_for(lambda: record(api, deleted) is None, timeout=15, what="the tombstone to be purged")
    assert keys_under(api, f"thumbnails/{deleted}/") == []
    # The grant has expired: S3 refuses it now, as AWS does.
    late = httpx.post(
        abandoned["upload"]["url"],
        data=abandoned["upload"]["fields"],
        files={"file": ("p.jpg", photo(), "image/jpeg")},
    )
    assert late.status_code == 403 and "Policy expired" in late.text
    # What did arrive is not swept.
    assert status(api, kept) == "PROCESSING" and status(api, user.image_id) == "PROCESSING"
