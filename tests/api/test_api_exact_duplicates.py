"""Exact duplicates against the real embedded endpoint: the same bytes uploaded again by the same
owner (one after the other, or at the same moment) are recorded as DUPLICATE of the first with
no execution; deleting the original promotes its duplicate; another owner's bytes are their own.

Uploads go through the status API (multipart, which stores S3's SHA-256) and its starter; no
workers run, so originals stay PROCESSING: the starter's decision is what is tested.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from helpers import FIXTURES, eventually
from PIL import Image

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.checksums import stored_sha256
from imgproc_shared.duplicates import content_claim_key, object_sha256
from imgproc_shared.resources import ResourceNames, Table
from imgproc_shared.s3_events import ObjectCreated
from imgproc_shared.settings import Settings
from imgproc_status_api.starter import Starter

from api_harness import ApiHarness, running_api

pytestmark = pytest.mark.asyncio(loop_scope="module")

PHOTO = FIXTURES / "tagger" / "coffee_cup.jpg"


def unique_jpeg() -> bytes:
    """A small JPEG no other test uploads (its own noise), so claims never collide."""
    image = Image.frombytes("RGB", (64, 48), uuid.uuid4().bytes * (64 * 48 * 3 // 16))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(
    shared_stack: tuple[Settings, AwsClients, dict[str, Any]],
) -> AsyncIterator[ApiHarness]:
    async with running_api(shared_stack, run_starter=True) as harness:
        yield harness


async def _upload(api: ApiHarness, headers: dict[str, str], album_id: str, data: bytes) -> str:
    response = await api.client.post(
        f"/api/albums/{album_id}/images",
        files={"file": ("photo.jpg", data, "image/jpeg")},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return str(response.json()["image_id"])


async def _settled(api: ApiHarness, headers: dict[str, str], image_id: str) -> dict[str, Any]:
    """The image once the starter decided: DUPLICATE, or PROCESSING with its execution started
    (PROCESSING alone is recorded before the decision)."""

    async def decided() -> dict[str, Any] | None:
        response = await api.client.get(f"/api/images/{image_id}", headers=headers)
        body: dict[str, Any] = response.json()
        if body["status"] == "DUPLICATE":
            return body
        if body["status"] == "PROCESSING" and image_id in await _executions(api):
            return body
        return None

    settled: dict[str, Any] = await eventually(decided, timeout=30, what=f"{image_id} decided")
    return settled


async def _executions(api: ApiHarness) -> set[str]:
    page = await api.aws.stepfunctions.list_executions(
        stateMachineArn=api.outputs["state_machine_arn"], maxResults=1000
    )
    return {e["name"] for e in page["executions"]}


async def test_second_upload_of_the_same_bytes_is_a_duplicate_without_execution(
    api: ApiHarness,
) -> None:
    headers = await api.sign_in("dup-seq")
    trip_album = await api.create_album(headers, "Trip")
    other_album = await api.create_album(headers, "Other")
    data = PHOTO.read_bytes()
    first = await _upload(api, headers, trip_album["album_id"], data)
    assert (await _settled(api, headers, first))["status"] == "PROCESSING"
    second = await _upload(api, headers, other_album["album_id"], data)
    duplicate = await _settled(api, headers, second)

    assert duplicate["status"] == "DUPLICATE"
    assert duplicate["duplicate_of"] == first
    assert duplicate["album_id"] == other_album["album_id"]
    assert duplicate["execution_arn"] is None
    executions = await _executions(api)
    assert first in executions and second not in executions
    # One record: its object is gone (the original's bytes serve it).
    record = await Catalog(api.aws, ResourceNames.from_settings(api.settings)).get_image(second)
    assert record is not None
    with pytest.raises(Exception, match=r"404|Not Found"):
        await api.aws.s3.head_object(Bucket=str(record.bucket), Key=str(record.key))

    # The duplicate shows the original's results through it.
    table = ResourceNames.from_settings(api.settings).table(Table.IMAGES)
    await api.aws.dynamodb.update_item(
        TableName=table,
        Key={"image_id": {"S": first}},
        UpdateExpression="SET metadata = :m, tags = :t, thumbnails = :r",
        ExpressionAttributeValues={
            ":m": {
                "S": json.dumps(
                    {
                        "format": "JPEG",
                        "width": 451,
                        "height": 300,
                        "mode": "RGB",
                        "bytes": 1000,
                        "sha256": "0" * 64,
                    }
                )
            },
            ":t": {
                "S": json.dumps({"labels": [{"name": "Cup", "confidence": 90.0}], "backend": "t"})
            },
            ":r": {
                "S": json.dumps(
                    {
                        "renditions": [
                            {
                                "name": "thumbnail",
                                "key": f"thumbnails/{first}/thumbnail.jpg",
                                "width": 256,
                                "height": 170,
                                "format": "JPEG",
                                "bytes": 1000,
                            }
                        ],
                        "phash": "0123456789abcdef",
                    }
                )
            },
        },
    )
    shown = (await api.client.get(f"/api/images/{second}", headers=headers)).json()
    assert shown["metadata"]["width"] == 451
    assert [t["name"] for t in shown["tags"]] == ["Cup"]
    assert shown["thumbnails"][0]["key"] == f"thumbnails/{first}/thumbnail.jpg"

    groups = (await api.client.get("/api/duplicates", headers=headers)).json()["groups"]
    assert [(g["kind"], g["distance"], [i["image_id"] for i in g["images"]]) for g in groups] == [
        ("exact", 0, [first, second])
    ]
    # Another owner sees none of it, and the same bytes are theirs to process.
    stranger = await api.sign_in("dup-stranger")
    assert (await api.client.get("/api/duplicates", headers=stranger)).json() == {"groups": []}
    theirs = await api.create_album(stranger, "Mine")
    own = await _upload(api, stranger, theirs["album_id"], data)
    assert (await _settled(api, stranger, own))["status"] == "PROCESSING"


async def test_identical_uploads_at_the_same_moment_give_one_original(api: ApiHarness) -> None:
    headers = await api.sign_in("dup-race")
    album = await api.create_album(headers, "Race")
    data = unique_jpeg()
    ids = await asyncio.gather(*(_upload(api, headers, album["album_id"], data) for _ in range(2)))
    # The API's starter takes both events (usually in one batch, started concurrently); a second
    # starter handles the same events at the same moment, as a second API task would.
    settings = api.settings
    catalog = Catalog(api.aws, ResourceNames.from_settings(settings))
    records = [await catalog.get_image(i) for i in ids]
    starter = Starter(api.aws, settings, api.outputs["state_machine_arn"])
    events = [ObjectCreated(str(r.bucket), str(r.key), None, None) for r in records if r]
    await asyncio.gather(*(starter.start_image(e) for e in events), return_exceptions=True)

    settled = [await _settled(api, headers, i) for i in ids]
    statuses = sorted(s["status"] for s in settled)
    assert statuses == ["DUPLICATE", "PROCESSING"], settled
    original = next(s for s in settled if s["status"] == "PROCESSING")["image_id"]
    duplicate = next(s for s in settled if s["status"] == "DUPLICATE")
    assert duplicate["duplicate_of"] == original
    assert set(ids) & await _executions(api) == {original}


async def test_deleting_the_original_promotes_its_duplicate_and_then_releases_the_claim(
    api: ApiHarness,
) -> None:
    headers = await api.sign_in("dup-delete")
    first_album = await api.create_album(headers, "First")
    second_album = await api.create_album(headers, "Second")
    data = unique_jpeg()
    original = await _upload(api, headers, first_album["album_id"], data)
    await _settled(api, headers, original)
    duplicate = await _upload(api, headers, second_album["album_id"], data)
    assert (await _settled(api, headers, duplicate))["status"] == "DUPLICATE"

    response = await api.client.delete(f"/api/images/{original}", headers=headers)
    assert response.status_code == 204
    # The duplicate gets the original's bytes back and is processed as an upload of its own.
    promoted = await _settled(api, headers, duplicate)
    assert promoted["status"] == "PROCESSING" and promoted["duplicate_of"] is None
    assert duplicate in await _executions(api)

    names = ResourceNames.from_settings(api.settings)
    duplicate_record = await Catalog(api.aws, names).get_image(duplicate)
    assert duplicate_record is not None and duplicate_record.content_sha256 is not None
    sha256 = duplicate_record.content_sha256
    claim_key = content_claim_key("dup-delete", sha256)

    async def claim() -> dict[str, Any] | None:
        item = await api.aws.dynamodb.get_item(
            TableName=names.table(Table.ALBUMS),
            Key={"album_id": {"S": claim_key}},
            ConsistentRead=True,
        )
        found: dict[str, Any] | None = item.get("Item")
        return found

    assert (await claim() or {})["guards"]["S"] == duplicate
    # Deleting the last copy releases the claim: the same bytes again are processed.
    assert (await api.client.delete(f"/api/images/{duplicate}", headers=headers)).status_code == 204
    assert await claim() is None
    again = await _upload(api, headers, first_album["album_id"], data)
    assert (await _settled(api, headers, again))["status"] == "PROCESSING"


async def test_deleting_an_album_with_original_and_duplicate_leaves_no_claim(
    api: ApiHarness,
) -> None:
    headers = await api.sign_in("dup-album")
    album = await api.create_album(headers, "Both")
    data = unique_jpeg()
    original = await _upload(api, headers, album["album_id"], data)
    await _settled(api, headers, original)
    duplicate = await _upload(api, headers, album["album_id"], data)
    assert (await _settled(api, headers, duplicate))["status"] == "DUPLICATE"

    assert (
        await api.client.delete(f"/api/albums/{album['album_id']}", headers=headers)
    ).status_code == 204
    names = ResourceNames.from_settings(api.settings)
    scan = await api.aws.dynamodb.scan(TableName=names.table(Table.ALBUMS), ConsistentRead=True)
    assert not [i for i in scan["Items"] if "dup-album" in i["album_id"]["S"]]
    assert duplicate not in await _executions(api)


async def test_without_a_stored_checksum_the_object_is_streamed_and_hashed(
    api: ApiHarness,
) -> None:
    # A presigned POST from a browser stores no checksum: the starter hashes the bytes itself
    # (outside `incoming/`, so that no execution starts for it here).
    bucket = ResourceNames.from_settings(api.settings).bucket
    data = unique_jpeg() * 300  # over one read chunk
    await api.aws.s3.put_object(Bucket=bucket, Key="elsewhere/unhashed.jpg", Body=data)
    head = await api.aws.s3.head_object(
        Bucket=bucket, Key="elsewhere/unhashed.jpg", ChecksumMode="ENABLED"
    )
    assert stored_sha256(head) is None
    assert await object_sha256(api.aws, bucket, "elsewhere/unhashed.jpg") == (
        hashlib.sha256(data).hexdigest()
    )
    assert await object_sha256(api.aws, bucket, "elsewhere/missing.jpg") is None
