"""The status API's endpoints against the real moto server: identity, albums, uploads, images,
operators, errors, and the ownership rule (someone else's ids answer 404, never data)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from imgproc_shared.aws import AwsClients
from imgproc_shared.resources import Queue
from imgproc_shared.settings import Settings
from imgproc_status_api.auth import LocalTokens

from api_harness import TEST_SECRET, ApiHarness, running_api

JPEG_BYTES = b"\xff\xd8\xff\xe0" + b"not really a jpeg, the extractor decides" + b"\xff\xd9"


# One stack and one API for the module: tests keep apart by using their own users.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module")
async def small_limit_api(
    shared_stack: tuple[Settings, AwsClients, dict[str, Any]],
) -> AsyncIterator[ApiHarness]:
    settings, aws, outputs = shared_stack
    limited = settings.model_copy(update={"max_upload_bytes": 1000})
    async with running_api((limited, aws, outputs)) as harness:
        yield harness


def assert_error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]


async def upload_direct(
    api: ApiHarness, headers: dict[str, str], album_id: str, name: str = "photo.jpg"
) -> dict[str, Any]:
    response = await api.client.post(
        f"/api/albums/{album_id}/images",
        files={"file": (name, io.BytesIO(JPEG_BYTES), "image/jpeg")},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    image: dict[str, Any] = response.json()
    return image


# ---------- health, OpenAPI, errors ----------


async def test_health_and_openapi_need_no_token(api: ApiHarness) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    spec = (await api.client.get("/openapi.json")).json()
    paths = set(spec["paths"])
    assert {
        "/healthz",
        "/api/auth/sign-in",
        "/api/auth/me",
        "/api/albums",
        "/api/albums/{album_id}",
        "/api/albums/{album_id}/uploads",
        "/api/albums/{album_id}/images",
        "/api/albums/{album_id}/events",
        "/api/images/{image_id}",
        "/api/images/{image_id}/execution",
        "/api/operators/queues",
    } <= paths
    # Validation errors are documented with the API's own error body, not FastAPI's default.
    create = spec["paths"]["/api/albums"]["post"]["responses"]["422"]
    assert create["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    # Labels document their instances' boxes, as fractions of the upright image.
    schemas = spec["components"]["schemas"]
    instance_ref = schemas["Label"]["properties"]["instances"]["items"]["$ref"]
    instance = schemas[instance_ref.rsplit("/", 1)[-1]]
    box = schemas[instance["properties"]["bounding_box"]["$ref"].rsplit("/", 1)[-1]]
    assert set(box["required"]) == {"left", "top", "width", "height"}
    assert all(box["properties"][side]["maximum"] == 1 for side in box["required"])
    assert instance["properties"]["confidence"]["maximum"] == 100


async def test_unknown_routes_and_methods_answer_json_errors(api: ApiHarness) -> None:
    assert_error(await api.client.get("/api/nothing-here"), 404, "not_found")
    assert_error(await api.client.get("/no/such/page"), 404, "not_found")
    assert_error(await api.client.put("/api/albums"), 405, "method_not_allowed")


async def test_web_client_is_served_with_a_strict_content_security_policy(api: ApiHarness) -> None:
    page = await api.client.get("/")
    assert page.status_code == 200
    assert 'src="/web/app.js"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    script = await api.client.get("/web/app.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]
    # The client never parses data as HTML.
    for name in ("app.js", "api.js", "thumbhash.js"):
        source = (await api.client.get(f"/web/{name}")).text
        assert "innerHTML" not in source and "insertAdjacentHTML" not in source


# ---------- identity ----------


async def test_sign_in_issues_a_token_that_identifies_the_user(api: ApiHarness) -> None:
    response = await api.client.post("/api/auth/sign-in", json={"username": "alice4"})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer" and body["expires_in"] > 0
    me = await api.client.get(
        "/api/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.json() == {"id": "alice4", "name": "alice4", "operator": True}


@pytest.mark.parametrize(
    "username", ["", "../etc", "a/b", "x" * 65, "-leading-dash", "<script>", "al ice"]
)
async def test_sign_in_rejects_usernames_that_could_escape_a_key(
    api: ApiHarness, username: str
) -> None:
    response = await api.client.post("/api/auth/sign-in", json={"username": username})
    assert_error(response, 422, "validation_error")


async def test_every_endpoint_but_health_and_sign_in_needs_a_token(api: ApiHarness) -> None:
    headers = await api.sign_in("owner16")
    album = await api.create_album(headers, "Trip")
    image = await upload_direct(api, headers, album["album_id"])
    album_id, image_id = album["album_id"], image["image_id"]
    calls = [
        ("GET", "/api/auth/me"),
        ("GET", "/api/albums"),
        ("POST", "/api/albums"),
        ("GET", f"/api/albums/{album_id}"),
        ("DELETE", f"/api/albums/{album_id}"),
        ("POST", f"/api/albums/{album_id}/uploads"),
        ("POST", f"/api/albums/{album_id}/images"),
        ("GET", f"/api/albums/{album_id}/images"),
        ("GET", f"/api/albums/{album_id}/events"),
        ("GET", f"/api/images/{image_id}"),
        ("DELETE", f"/api/images/{image_id}"),
        ("GET", f"/api/images/{image_id}/execution"),
        ("GET", "/api/operators/queues"),
    ]
    expired = LocalTokens(TEST_SECRET, 60).issue("owner16", now=time.time() - 3600)
    forged = LocalTokens("another-secret-that-is-32-bytes-long", 3600).issue("owner16")
    for method, path in calls:
        assert_error(await api.client.request(method, path), 401, "unauthorized")
        bearer = {"Authorization": f"Bearer {expired}"}
        assert_error(await api.client.request(method, path, headers=bearer), 401, "token_expired")
        bearer = {"Authorization": f"Bearer {forged}"}
        assert_error(await api.client.request(method, path, headers=bearer), 401, "unauthorized")
        bearer = {"Authorization": "Bearer not.a.jwt"}
        assert_error(await api.client.request(method, path, headers=bearer), 401, "unauthorized")
    # Nothing was changed by the refused calls.
    assert (await api.client.get(f"/api/images/{image_id}", headers=headers)).status_code == 200


# ---------- albums ----------


async def test_albums_are_created_listed_newest_first_and_fetched(api: ApiHarness) -> None:
    headers = await api.sign_in("alice7")
    names = ["First", "Second", "<b>Third</b> & 'quotes'"]
    created = [await api.create_album(headers, name) for name in names]
    assert all(a["owner"] == "alice7" for a in created)
    listed = (await api.client.get("/api/albums", headers=headers)).json()["items"]
    assert [a["name"] for a in listed] == list(reversed(names))
    one = await api.client.get(f"/api/albums/{created[2]['album_id']}", headers=headers)
    assert one.json()["name"] == "<b>Third</b> & 'quotes'"  # stored verbatim; the client escapes


async def test_album_names_are_validated_and_unique_per_owner(api: ApiHarness) -> None:
    alice = await api.sign_in("alice8")
    bob = await api.sign_in("bob8")
    await api.create_album(alice, "Holidays")
    response = await api.client.post("/api/albums", json={"name": "holidays"}, headers=alice)
    assert_error(response, 409, "album_name_taken")
    # Another owner may use the same name.
    await api.create_album(bob, "Holidays")
    # Spaces of every kind strip to nothing; C0 and C1 controls are refused anywhere.
    for bad in ["", "   ", "x" * 101, "tab\there", "\u0085", "\u3000\u00a0", "x\x85y"]:
        response = await api.client.post("/api/albums", json={"name": bad}, headers=alice)
        assert_error(response, 422, "validation_error")
    # The published document agrees with the server, name by name.
    spec = (await api.client.get("/openapi.json")).json()
    documented = re.compile(
        spec["components"]["schemas"]["AlbumCreate"]["properties"]["name"]["pattern"]
    )
    for name in ["\u0085", "\u3000\u00a0", "x\x85y", " \ufeff", "a\u3000b", "\u00a0é ", "abc\n"]:
        response = await api.client.post("/api/albums", json={"name": name}, headers=alice)
        assert (response.status_code == 201) == bool(documented.fullmatch(name)), (
            name,
            response.text,
        )
    assert (await api.create_album(alice, "y" * 100))["name"] == "y" * 100
    response = await api.client.post("/api/albums", json={"title": "x"}, headers=alice)
    assert_error(response, 422, "validation_error")
    response = await api.client.post(
        "/api/albums", content=b"{not json", headers={**alice, "Content-Type": "application/json"}
    )
    assert_error(response, 422, "validation_error")


async def test_deleting_an_album_deletes_its_images_and_objects(api: ApiHarness) -> None:
    headers = await api.sign_in("alice9")
    album = await api.create_album(headers, "Doomed")
    images = [await upload_direct(api, headers, album["album_id"]) for _ in range(2)]
    bucket = api.outputs.get("bucket") or f"{api.settings.resource_prefix}-images"
    thumb_key = f"thumbnails/{images[0]['image_id']}/thumbnail.jpg"
    await api.aws.s3.put_object(Bucket=bucket, Key=thumb_key, Body=b"thumb")

    response = await api.client.delete(f"/api/albums/{album['album_id']}", headers=headers)
    assert response.status_code == 204
    assert_error(
        await api.client.get(f"/api/albums/{album['album_id']}", headers=headers),
        404,
        "album_not_found",
    )
    for image in images:
        assert_error(
            await api.client.get(f"/api/images/{image['image_id']}", headers=headers),
            404,
            "image_not_found",
        )
    listing = await api.aws.s3.list_objects_v2(Bucket=bucket, Prefix="")
    keys = {obj["Key"] for obj in listing.get("Contents", [])}
    assert not any(image["image_id"] in key for image in images for key in keys), keys
    # The name is free again.
    await api.create_album(headers, "Doomed")


# ---------- uploads ----------


async def test_presigned_upload_allows_only_that_key_type_and_size(api: ApiHarness) -> None:
    headers = await api.sign_in("alice10")
    album = await api.create_album(headers, "Uploads")
    response = await api.client.post(
        f"/api/albums/{album['album_id']}/uploads",
        json={"file_name": "IMG_0001.JPG", "content_type": "image/jpeg", "size": len(JPEG_BYTES)},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    grant = response.json()
    image_id = grant["image_id"]
    assert grant["key"] == f"incoming/alice10/{album['album_id']}/{image_id}.jpg"
    assert grant["image"]["status"] == "UPLOADING"
    assert grant["image"]["file_name"] == "IMG_0001.JPG"

    fields = grant["upload"]["fields"]
    policy = json.loads(base64.b64decode(fields["policy"]))
    conditions = policy["conditions"]
    assert {"key": grant["key"]} in conditions
    assert {"Content-Type": "image/jpeg"} in conditions
    assert ["content-length-range", 1, api.settings.max_upload_bytes] in conditions
    assert {"bucket": f"{api.settings.resource_prefix}-images"} in conditions
    assert not any(isinstance(c, list) and c[0] == "starts-with" for c in conditions)
    assert fields["key"] == grant["key"]

    # The image exists as UPLOADING at once, before any byte arrives.
    shown = (await api.client.get(f"/api/images/{image_id}", headers=headers)).json()
    assert shown["status"] == "UPLOADING" and shown["album_id"] == album["album_id"]

    # The grant works: POST the form to S3 as a browser would.
    import httpx

    async with httpx.AsyncClient() as s3:
        posted = await s3.post(
            grant["upload"]["url"],
            data=fields,
            files={"file": ("IMG_0001.JPG", JPEG_BYTES, "image/jpeg")},
        )
    assert posted.status_code in (200, 201, 204), posted.text
    head = await api.aws.s3.head_object(
        Bucket=f"{api.settings.resource_prefix}-images", Key=grant["key"]
    )
    assert head["ContentLength"] == len(JPEG_BYTES)


async def test_upload_requests_are_validated(api: ApiHarness) -> None:
    headers = await api.sign_in("alice11")
    album = await api.create_album(headers, "Bad input")
    path = f"/api/albums/{album['album_id']}/uploads"
    for body in [
        {"file_name": "notes.txt", "content_type": "text/plain"},
        {"file_name": "page.jpg", "content_type": "text/html"},
        {"file_name": "x.jpg", "content_type": "image/"},
        {"file_name": "", "content_type": "image/jpeg"},
        {"file_name": "a\nb.jpg", "content_type": "image/jpeg"},
        {"file_name": "x" * 256, "content_type": "image/jpeg"},
        {"file_name": "x.jpg", "content_type": "image/jpeg", "size": 0},
        {"file_name": "x.jpg"},
    ]:
        assert_error(
            await api.client.post(path, json=body, headers=headers), 422, "validation_error"
        )
    too_big = {
        "file_name": "huge.jpg",
        "content_type": "image/jpeg",
        "size": api.settings.max_upload_bytes + 1,
    }
    assert_error(await api.client.post(path, json=too_big, headers=headers), 413, "too_large")
    # A path-like file name stays a display name: the key is built from ids only.
    response = await api.client.post(
        path,
        json={"file_name": "../../etc/passwd.png", "content_type": "image/png"},
        headers=headers,
    )
    grant = response.json()
    assert grant["key"] == f"incoming/alice11/{album['album_id']}/{grant['image_id']}.png"


async def test_direct_multipart_upload_stores_the_object_with_its_checksum(
    api: ApiHarness,
) -> None:
    headers = await api.sign_in("alice12")
    album = await api.create_album(headers, "Direct")
    image = await upload_direct(api, headers, album["album_id"], name="C:\\photos\\beach.jpg")
    assert image["status"] == "UPLOADING"
    assert image["file_name"] == "beach.jpg"
    assert image["size"] == len(JPEG_BYTES)
    record = (await api.client.get(f"/api/images/{image['image_id']}", headers=headers)).json()
    assert record["status"] == "UPLOADING"
    key = f"incoming/alice12/{album['album_id']}/{image['image_id']}.jpg"
    head = await api.aws.s3.head_object(
        Bucket=f"{api.settings.resource_prefix}-images", Key=key, ChecksumMode="ENABLED"
    )
    assert head["ContentType"] == "image/jpeg"
    import hashlib

    expected = base64.b64encode(hashlib.sha256(JPEG_BYTES).digest()).decode()
    assert head.get("ChecksumSHA256") == expected


async def test_direct_upload_refuses_non_images_empty_and_oversized_files(
    small_limit_api: ApiHarness,
) -> None:
    api = small_limit_api
    headers = await api.sign_in("alice13")
    album = await api.create_album(headers, "Limits")
    path = f"/api/albums/{album['album_id']}/images"

    def part(data: bytes, content_type: str) -> dict[str, Any]:
        return {"file": ("f.jpg", io.BytesIO(data), content_type)}

    response = await api.client.post(path, files=part(b"hello", "text/plain"), headers=headers)
    assert_error(response, 415, "unsupported_content_type")
    response = await api.client.post(path, files=part(b"x" * 1001, "image/jpeg"), headers=headers)
    assert_error(response, 413, "too_large")
    response = await api.client.post(path, files=part(b"", "image/jpeg"), headers=headers)
    assert_error(response, 422, "empty_file")
    response = await api.client.post(path, headers=headers)
    assert_error(response, 422, "validation_error")
    # A body far beyond the limit is refused before it is read.
    response = await api.client.post(
        path, files=part(b"x" * (2 * 1024 * 1024), "image/jpeg"), headers=headers
    )
    assert_error(response, 413, "too_large")
    listed = await api.client.get(f"/api/albums/{album['album_id']}/images", headers=headers)
    assert listed.json()["items"] == []


# ---------- images ----------


async def test_images_are_listed_newest_first_with_a_cursor(api: ApiHarness) -> None:
    headers = await api.sign_in("alice14")
    album = await api.create_album(headers, "Paged")
    uploaded = [
        (await upload_direct(api, headers, album["album_id"], name=f"p{i}.jpg"))["image_id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (
            await api.client.get(
                f"/api/albums/{album['album_id']}/images", params=params, headers=headers
            )
        ).json()
        assert len(page["items"]) <= 2
        seen.extend(item["image_id"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(uploaded))
    assert pages >= 3
    path = f"/api/albums/{album['album_id']}/images"
    for bad in ["garbage!!", base64.urlsafe_b64encode(b'["x", "../../x"]').decode(), "e30"]:
        response = await api.client.get(path, params={"cursor": bad}, headers=headers)
        assert_error(response, 400, "invalid_cursor")
    for limit in (0, 101, "many"):
        response = await api.client.get(path, params={"limit": limit}, headers=headers)
        assert_error(response, 422, "validation_error")


async def test_image_delete_removes_the_original_and_renditions(api: ApiHarness) -> None:
    headers = await api.sign_in("alice15")
    album = await api.create_album(headers, "Delete one")
    keep = await upload_direct(api, headers, album["album_id"], name="keep.jpg")
    image = await upload_direct(api, headers, album["album_id"], name="gone.jpg")
    bucket = f"{api.settings.resource_prefix}-images"
    await api.aws.s3.put_object(
        Bucket=bucket, Key=f"thumbnails/{image['image_id']}/thumbnail.jpg", Body=b"t"
    )
    response = await api.client.delete(f"/api/images/{image['image_id']}", headers=headers)
    assert response.status_code == 204
    assert_error(
        await api.client.get(f"/api/images/{image['image_id']}", headers=headers),
        404,
        "image_not_found",
    )
    keys = {
        obj["Key"] for obj in (await api.aws.s3.list_objects_v2(Bucket=bucket)).get("Contents", [])
    }
    assert not any(image["image_id"] in key for key in keys)
    assert any(keep["image_id"] in key for key in keys)
    listed = await api.client.get(f"/api/albums/{album['album_id']}/images", headers=headers)
    assert [i["image_id"] for i in listed.json()["items"]] == [keep["image_id"]]


async def test_unknown_and_malformed_ids(api: ApiHarness) -> None:
    headers = await api.sign_in("alice16")
    unknown = "0123456789abcdef0123456789abcdef"
    for path, code in [
        (f"/api/albums/{unknown}", "album_not_found"),
        (f"/api/albums/{unknown}/images", "album_not_found"),
        (f"/api/images/{unknown}", "image_not_found"),
        (f"/api/images/{unknown}/execution", "image_not_found"),
    ]:
        assert_error(await api.client.get(path, headers=headers), 404, code)
    response = await api.client.post(
        f"/api/albums/{unknown}/uploads",
        json={"file_name": "a.jpg", "content_type": "image/jpeg"},
        headers=headers,
    )
    assert_error(response, 404, "album_not_found")
    for bad in ["bad%20id", "-x", "x" * 65, "name%23guard"]:
        assert_error(
            await api.client.get(f"/api/albums/{bad}", headers=headers), 422, "validation_error"
        )
        assert_error(
            await api.client.get(f"/api/images/{bad}", headers=headers), 422, "validation_error"
        )


async def test_execution_of_an_image_not_yet_started_is_not_found(api: ApiHarness) -> None:
    headers = await api.sign_in("alice17")
    album = await api.create_album(headers, "Pending")
    image = await upload_direct(api, headers, album["album_id"])
    response = await api.client.get(f"/api/images/{image['image_id']}/execution", headers=headers)
    assert_error(response, 404, "execution_not_found")


# ---------- ownership ----------


async def test_another_user_gets_404_for_every_id_of_mine_and_changes_nothing(
    api: ApiHarness,
) -> None:
    alice = await api.sign_in("alice18")
    mallory = await api.sign_in("mallory18")
    album = await api.create_album(alice, "Private")
    image = await upload_direct(api, alice, album["album_id"])
    album_id, image_id = album["album_id"], image["image_id"]

    refused = [
        ("GET", f"/api/albums/{album_id}", None, "album_not_found"),
        ("DELETE", f"/api/albums/{album_id}", None, "album_not_found"),
        ("GET", f"/api/albums/{album_id}/images", None, "album_not_found"),
        ("GET", f"/api/albums/{album_id}/events", None, "album_not_found"),
        (
            "POST",
            f"/api/albums/{album_id}/uploads",
            {"file_name": "a.jpg", "content_type": "image/jpeg"},
            "album_not_found",
        ),
        ("GET", f"/api/images/{image_id}", None, "image_not_found"),
        ("DELETE", f"/api/images/{image_id}", None, "image_not_found"),
        ("GET", f"/api/images/{image_id}/execution", None, "image_not_found"),
    ]
    for method, path, body, code in refused:
        response = await api.client.request(method, path, json=body, headers=mallory)
        assert_error(response, 404, code)
        assert "Private" not in response.text and "alice18" not in response.text
    response = await api.client.post(
        f"/api/albums/{album_id}/images",
        files={"file": ("x.jpg", io.BytesIO(JPEG_BYTES), "image/jpeg")},
        headers=mallory,
    )
    assert_error(response, 404, "album_not_found")
    assert (await api.client.get("/api/albums", headers=mallory)).json()["items"] == []

    # Alice still has everything, and nothing was added to her album.
    assert (await api.client.get(f"/api/albums/{album_id}", headers=alice)).status_code == 200
    listed = (await api.client.get(f"/api/albums/{album_id}/images", headers=alice)).json()
    assert [i["image_id"] for i in listed["items"]] == [image_id]


# ---------- operators ----------


async def test_queue_report_counts_visible_in_flight_and_dead_letters(api: ApiHarness) -> None:
    headers = await api.sign_in("operator19")
    sqs = api.aws.sqs
    prefix = api.settings.resource_prefix
    extract_url = (await sqs.get_queue_url(QueueName=f"{prefix}-extract"))["QueueUrl"]
    dlq_url = (await sqs.get_queue_url(QueueName=f"{prefix}-tag-dlq"))["QueueUrl"]
    for body in ("a", "b"):
        await sqs.send_message(QueueUrl=extract_url, MessageBody=body)
    await sqs.receive_message(QueueUrl=extract_url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    await sqs.send_message(QueueUrl=dlq_url, MessageBody="dead")

    report = (await api.client.get("/api/operators/queues", headers=headers)).json()
    by_queue = {q["queue"]: q for q in report["queues"]}
    assert set(by_queue) == {q.value for q in Queue}
    assert by_queue["extract"]["visible"] == 1
    assert by_queue["extract"]["in_flight"] == 1
    assert by_queue["tag"]["dead_letter"] == 1
    assert by_queue["thumbnail"] == {
        "queue": "thumbnail",
        "name": f"{prefix}-thumbnail",
        "visible": 0,
        "in_flight": 0,
        "delayed": 0,
        "dead_letter": 0,
        "workers": None,
    }

    # With `imgproc up`'s scaler recording its workers, the view shows their counts.
    workers_file = api.settings.workers_file
    workers_file.parent.mkdir(parents=True, exist_ok=True)
    workers_file.write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "services": {
                    "extractor": {"stage": "extract", "workers": 2},
                    "thumbnailer": {"stage": "thumbnail", "workers": 1},
                },
            }
        )
    )
    try:
        report = (await api.client.get("/api/operators/queues", headers=headers)).json()
    finally:
        workers_file.unlink()
    workers = {q["queue"]: q["workers"] for q in report["queues"]}
    assert (workers["extract"], workers["thumbnail"], workers["tag"]) == (2, 1, None)
