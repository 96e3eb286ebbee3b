"""Nobody places a photo in an album that is not theirs.

Two layers, each tested against the real embedded endpoint and the real starter: the local S3
refuses a presigned POST that breaks its signed policy (key, size, content type, extra fields,
signature, expiry) as AWS does; and the starter processes an object under `incoming/{owner}/
{album}/{image}` only when the album exists and is that owner's and the image's record (if
any) agrees, deleting anything else without recording or showing it (a principal that may
write `incoming/` directly can still try).
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from helpers import make_settings
from PIL import Image

from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.resources import incoming_key

from security_harness import ThreadedApi, UserData, small_jpeg, threaded_api, wait_for


def photo() -> bytes:
    """A JPEG no other upload has (the same bytes again would be an exact duplicate)."""
    exif = Image.Exif()
    exif[0x010E] = uuid.uuid4().hex  # ImageDescription
    return small_jpeg(exif)


LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def api(embedded_aws: EmbeddedAws) -> Iterator[ThreadedApi]:
    settings = make_settings(embedded_aws.endpoint_url, max_upload_bytes=LIMIT)
    with threaded_api(settings, run_starter=True) as served:
        yield served


@pytest.fixture(scope="module")
def alice(api: ThreadedApi) -> UserData:
    return api.seed_user("alice")


@pytest.fixture(scope="module")
def bob(api: ThreadedApi) -> UserData:
    return api.seed_user("bob")


def grant(api: ThreadedApi, user: UserData, content_type: str = "image/jpeg") -> dict[str, Any]:
    response = api.client.post(
        f"/api/albums/{user.album_id}/uploads",
        json={"file_name": "p.jpg", "content_type": content_type},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    granted: dict[str, Any] = response.json()
    return granted


def post_upload(granted: dict[str, Any], data: bytes, **changed: str) -> httpx.Response:
    fields = {**granted["upload"]["fields"], **changed}
    return httpx.post(
        granted["upload"]["url"],
        data=fields,
        files={"file": ("p.jpg", data, "image/jpeg")},
        timeout=30,
    )


def exists(api: ThreadedApi, key: str) -> bool:
    async def head() -> bool:
        s3 = api.app.state.api.aws.s3
        listing = await s3.list_objects_v2(Bucket=api.app.state.api.names.bucket, Prefix=key)
        return any(item["Key"] == key for item in listing.get("Contents", []))

    return api.on_api_loop(head())


def record(api: ThreadedApi, image_id: str) -> dict[str, Any] | None:
    """The image's record as stored (only the attributes it holds)."""
    found = api.on_api_loop(api.app.state.api.catalog.get_image(image_id))
    return found.model_dump(mode="json", exclude_unset=True) if found else None


def gallery(api: ThreadedApi, user: UserData) -> set[str]:
    response = api.client.get(f"/api/albums/{user.album_id}/images", headers=user.headers)
    assert response.status_code == 200, response.text
    return {item["image_id"] for item in response.json()["items"]}


def put_directly(api: ThreadedApi, key: str) -> None:
    """What a principal allowed to write `incoming/` could do, bypassing the API's grants."""

    async def put() -> None:
        await api.app.state.api.aws.s3.put_object(
            Bucket=api.app.state.api.names.bucket, Key=key, Body=photo()
        )

    api.on_api_loop(put())


def s3_error(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/xml"), response.text
    return response.text


def test_a_granted_upload_is_stored_and_started(api: ThreadedApi, alice: UserData) -> None:
    granted = grant(api, alice)
    response = post_upload(granted, photo())
    assert response.status_code == 204, response.text
    wait_for(
        lambda: (record(api, granted["image_id"]) or {}).get("status") == "PROCESSING",
        what="the starter to start the granted upload",
    )


def test_the_local_s3_enforces_the_signed_policy(
    api: ThreadedApi, alice: UserData, bob: UserData
) -> None:
    granted = grant(api, bob)
    into_alices_album = incoming_key("alice", alice.album_id, uuid.uuid4().hex, "jpg")
    policy = json.loads(base64.b64decode(granted["upload"]["fields"]["policy"]))
    policy["conditions"].append(["starts-with", "$key", "incoming/"])
    forged_policy = base64.b64encode(json.dumps(policy).encode()).decode()

    attempts: list[tuple[str, httpx.Response, int, str]] = [
        ("key edited into another user's album",
         post_upload(granted, small_jpeg(), key=into_alices_album), 403, "AccessDenied"),
        ("larger than the grant's content-length-range",
         post_upload(granted, b"\xff" * (LIMIT + 1)), 400, "EntityTooLarge"),
        ("another content type",
         post_upload(granted, small_jpeg(), **{"Content-Type": "text/html"}), 403, "AccessDenied"),
        ("a field the policy does not cover",
         post_upload(granted, small_jpeg(), **{"x-amz-meta-owner": "alice"}), 403,
         "AccessDenied"),
        ("a policy edited after signing",
         post_upload(granted, small_jpeg(), policy=forged_policy), 403, "SignatureDoesNotMatch"),
    ]  # fmt: skip
    for what, response, status, code in attempts:
        assert response.status_code == status, (what, response.text)
        assert f"<Code>{code}</Code>" in s3_error(response), (what, response.text)
    assert "Policy Condition failed" in attempts[0][1].text
    assert not exists(api, into_alices_album)
    assert not exists(api, granted["key"])
    # Without any policy the POST is anonymous, and the bucket takes no anonymous writes.
    bare = httpx.post(
        granted["upload"]["url"],
        data={"key": granted["key"]},
        files={"file": ("p.jpg", photo(), "image/jpeg")},
    )
    assert bare.status_code == 403 and "<Code>AccessDenied</Code>" in s3_error(bare)
    assert not exists(api, granted["key"])


def test_the_starter_refuses_objects_outside_their_owners_albums(
    api: ThreadedApi, alice: UserData, bob: UserData
) -> None:
    before = gallery(api, alice)
    bobs_grant = grant(api, bob)
    fresh = uuid.uuid4().hex
    attempts = {
        # Bob's granted image id, written under Alice's album (the tampered grant key).
        "tampered grant key": incoming_key("bob", alice.album_id, bobs_grant["image_id"], "jpg"),
        # The same under Alice's own owner id: the record still names Bob and his album.
        "record disagrees": incoming_key("alice", alice.album_id, bobs_grant["image_id"], "jpg"),
        "foreign owner id": incoming_key("mallory", alice.album_id, fresh, "jpg"),
        "missing album": incoming_key("alice", uuid.uuid4().hex, uuid.uuid4().hex, "jpg"),
    }
    for key in attempts.values():
        put_directly(api, key)
    for what, key in attempts.items():
        wait_for(lambda key=key: not exists(api, key), what=f"the starter to delete ({what})")

    assert record(api, fresh) is None
    assert record(api, attempts["missing album"].rsplit("/", 1)[1].split(".")[0]) is None
    # Bob's own grant is untouched (his upload may still come), and Alice sees nothing new.
    bobs = record(api, bobs_grant["image_id"])
    assert bobs is not None and bobs["owner"] == "bob" and bobs["status"] == "UPLOADING"
    assert gallery(api, alice) == before
    albums = api.client.get("/api/albums", headers=alice.headers).json()["items"]
    assert [a["album_id"] for a in albums] == [alice.album_id]
    # Bob's real upload into his own album still goes through.
    assert post_upload(bobs_grant, photo()).status_code == 204
    wait_for(
        lambda: (record(api, bobs_grant["image_id"]) or {}).get("status") == "PROCESSING",
        what="bob's own upload to start",
    )


def test_a_persons_own_folders_under_incoming_are_still_imported(api: ThreadedApi) -> None:
    """Keys in other shapes are objects put straight into the bucket, not our layout."""
    key = "incoming/trip/2024/photo.jpg"
    put_directly(api, key)

    def imported() -> list[dict[str, Any]]:
        async def scan() -> list[dict[str, Any]]:
            return [
                r.model_dump(mode="json", exclude_unset=True)
                async for r in api.app.state.api.catalog.iter_images(attributes=("key", "status"))
                if r.key == key
            ]

        return api.on_api_loop(scan())

    found = wait_for(imported, what="the direct put to be recorded")
    assert found[0]["owner"] == "default" and exists(api, key)
