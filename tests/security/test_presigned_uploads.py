"""Uploads grant exactly what they should.

These tests read the policy we sign: one key, one image content type, the size limit, a short
expiry, and a signature over exactly that policy (the embedded S3 enforces it as AWS does:
tests/security/test_upload_ownership.py). Names and ids that come from users (file names, album and
image ids, usernames) never move a key out of `incoming/{owner}/{album}/`, through the API or
the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from helpers import make_settings

from imgproc_cli import uploads as cli_uploads
from imgproc_local.embedded_aws import EmbeddedAws

from security_harness import ThreadedApi, UserData, small_jpeg, threaded_api

EMBEDDED_SECRET_KEY = "testing"  # what AwsClients signs with on the embedded endpoint
KEY = re.compile(
    r"^incoming/(?P<owner>[^/]+)/(?P<album>[0-9a-f]{32})/[0-9a-f]{32}\.[a-z0-9]{1,10}$"
)

ODD_FILE_NAMES = [
    "../../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "a/b/c.jpg",
    "photo.jpg/../../../x",
    "photo.JPEG",
    "фото 📷 été.jpg",
    "name.with.many.dots.png",
    ".jpg",
    "x." + "a" * 40,
    "x.jp g",
    "x.<svg>",
    "%2e%2e%2fescape.jpg",
    "n" * 251 + ".jpg",
    "<img src=x onerror=alert(1)>.jpg",
]


@pytest.fixture(scope="module")
def api(embedded_aws: EmbeddedAws) -> Iterator[ThreadedApi]:
    with threaded_api(make_settings(embedded_aws.endpoint_url), upload_url_ttl_s=600) as served:
        yield served


@pytest.fixture(scope="module")
def uploader(api: ThreadedApi) -> UserData:
    return api.seed_user("uploader")


def grant(
    api: ThreadedApi, user: UserData, file_name: str = "p.jpg", content_type: str = "image/jpeg"
) -> Any:
    return api.client.post(
        f"/api/albums/{user.album_id}/uploads",
        json={"file_name": file_name, "content_type": content_type, "size": 1234},
        headers=user.headers,
    )


def decode_policy(fields: dict[str, str]) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads(base64.b64decode(fields["policy"]))
    return policy


def sigv4_post_signature(secret: str, date: str, region: str, policy_b64: str) -> str:
    key = f"AWS4{secret}".encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, policy_b64.encode(), hashlib.sha256).hexdigest()


def key_of(api: ThreadedApi, image_id: str) -> str:
    record = api.on_api_loop(api.app.state.api.catalog.get_image(image_id))
    assert record is not None
    return str(record.key)


def object_keys(api: ThreadedApi) -> list[str]:
    async def listing() -> list[str]:
        s3 = api.app.state.api.aws.s3
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=api.app.state.api.names.bucket)
        return [item["Key"] async for page in pages for item in page.get("Contents", [])]

    return api.on_api_loop(listing())


# ---------- the signed policy ----------


def test_the_policy_allows_one_key_one_image_type_and_the_size_limit(
    api: ThreadedApi, uploader: UserData
) -> None:
    before = datetime.now(UTC)
    response = grant(api, uploader, "holiday.png", "image/PNG")
    assert response.status_code == 201, response.text
    granted = response.json()
    fields = granted["upload"]["fields"]
    policy = decode_policy(fields)
    limit = api.settings.max_upload_bytes

    assert granted["key"] == fields["key"]
    match = KEY.match(granted["key"])
    assert match and match["owner"] == uploader.name and match["album"] == uploader.album_id
    assert granted["key"].startswith(f"incoming/{uploader.name}/{uploader.album_id}/")
    assert granted["max_bytes"] == limit

    conditions: dict[str, Any] = {}
    for condition in policy["conditions"]:
        if isinstance(condition, dict):
            ((name, value),) = condition.items()
            conditions[name.lower()] = value
        else:
            # Only the size range is a list; a "starts-with" would let the uploader pick values.
            assert condition[0] == "content-length-range", condition
            conditions["content-length-range"] = condition[1:]
    assert conditions["key"] == granted["key"]  # exactly this key, not a prefix
    assert conditions["bucket"] == api.app.state.api.names.bucket
    assert conditions["content-type"] == "image/png" == fields["Content-Type"]
    assert conditions["content-length-range"] == [1, limit]
    assert set(conditions) == {
        "key",
        "bucket",
        "content-type",
        "content-length-range",
        "x-amz-algorithm",
        "x-amz-credential",
        "x-amz-date",
    }, conditions

    expires = datetime.strptime(policy["expiration"], "%Y-%m-%dT%H:%M:%S%z")
    ttl = api.api_settings.upload_url_ttl_s
    assert granted["expires_in"] == ttl
    assert before + timedelta(seconds=ttl - 5) <= expires <= before + timedelta(seconds=ttl + 60)

    # The signature covers exactly this policy: changing any condition invalidates it.
    date = fields["x-amz-date"][:8]
    expected = sigv4_post_signature(
        EMBEDDED_SECRET_KEY, date, api.settings.region, fields["policy"]
    )
    assert hmac.compare_digest(fields["x-amz-signature"], expected)


@pytest.mark.parametrize(
    "content_type",
    [
        "text/html",
        "application/octet-stream",
        "image/",
        "image",
        "imagex/jpeg",
        "image/jpeg; charset=utf-8",
        "image/jpeg\r\nx-amz-acl: public-read",
        "image/*",
        " image/jpeg",
        "image/" + "a" * 64,
    ],
)
def test_only_image_content_types_are_granted(
    api: ThreadedApi, uploader: UserData, content_type: str
) -> None:
    response = grant(api, uploader, content_type=content_type)
    assert response.status_code == 422, (content_type, response.text)
    assert response.json()["code"] == "validation_error"


def test_uploads_over_the_limit_are_refused(api: ThreadedApi, uploader: UserData) -> None:
    limit = api.settings.max_upload_bytes
    over = api.client.post(
        f"/api/albums/{uploader.album_id}/uploads",
        json={"file_name": "big.jpg", "content_type": "image/jpeg", "size": limit + 1},
        headers=uploader.headers,
    )
    assert over.status_code == 413 and over.json()["code"] == "too_large"
    at = api.client.post(
        f"/api/albums/{uploader.album_id}/uploads",
        json={"file_name": "big.jpg", "content_type": "image/jpeg", "size": limit},
        headers=uploader.headers,
    )
    assert at.status_code == 201
    # A client that claims a small size still gets the limit, not more, in its policy.
    assert ["content-length-range", 1, limit] in decode_policy(at.json()["upload"]["fields"])[
        "conditions"
    ]


def test_tokens_and_read_urls_expire(api: ThreadedApi, uploader: UserData) -> None:
    claims = jwt.decode(uploader.token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == api.api_settings.token_ttl_s
    signed_in = api.client.post("/api/auth/sign-in", json={"username": uploader.name}).json()
    assert signed_in["expires_in"] == api.api_settings.token_ttl_s

    # Rendition URLs are presigned GETs for one key, with the configured lifetime.
    url = api.on_api_loop(api.app.state.api.rendition_url("", "thumbnails/x/thumbnail.jpg"))
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert parts.path.endswith("/thumbnails/x/thumbnail.jpg")
    assert query["X-Amz-Expires"] == [str(api.api_settings.presigned_url_ttl_s)]
    assert query["X-Amz-SignedHeaders"] == ["host"]


# ---------- names and ids from users ----------


def test_file_names_never_shape_the_key(api: ThreadedApi, uploader: UserData) -> None:
    for name in ODD_FILE_NAMES:
        response = grant(api, uploader, name)
        assert response.status_code == 201, (name, response.text)
        granted = response.json()
        assert KEY.match(granted["key"]), (name, granted["key"])
        assert granted["key"].startswith(f"incoming/{uploader.name}/{uploader.album_id}/")
        assert ".." not in granted["key"]
        # The name is kept only as the photo's display name.
        assert granted["image"]["file_name"] == name.strip()


@pytest.mark.parametrize(
    "name",
    ["bad\x00name.jpg", "new\nline.jpg", "tab\there.jpg", "del\x7f.jpg", "", "   ", "n" * 256],
)
def test_unusable_file_names_are_refused(api: ThreadedApi, uploader: UserData, name: str) -> None:
    response = grant(api, uploader, name)
    assert response.status_code == 422, (repr(name), response.text)


def test_direct_uploads_keep_names_out_of_keys(api: ThreadedApi, uploader: UserData) -> None:
    names = [*ODD_FILE_NAMES, "ctrl\x01\x1b[31mred.jpg", "n" * 300 + ".jpg"]
    for name in names:
        response = api.client.post(
            f"/api/albums/{uploader.album_id}/images",
            files={"file": (name, small_jpeg(), "image/jpeg")},
            headers=uploader.headers,
        )
        assert response.status_code == 201, (name, response.text)
        image = response.json()
        key = key_of(api, image["image_id"])
        assert KEY.match(key), (name, key)
        assert key.startswith(f"incoming/{uploader.name}/{uploader.album_id}/")
        shown = image["file_name"]
        # The display name: the last path segment, no control characters, at most 255.
        assert "/" not in shown and "\\" not in shown and len(shown) <= 255, shown
        assert not re.search(r"[\x00-\x1f\x7f]", shown), repr(shown)
    stray = [k for k in object_keys(api) if not KEY.match(k)]
    assert stray == []


@pytest.mark.parametrize(
    "album_id",
    [
        "..",
        "%2E%2E",
        "..%2F..%2Fx",
        "a%2Fb",
        "a%00b",
        "a%0Ab",
        "%C3%A9t%C3%A9",
        "x" * 65,
        "-leading-dash",
        "a.b",
        "a%5Cb",
    ],
)
def test_ids_with_path_characters_are_refused(
    api: ThreadedApi, uploader: UserData, album_id: str
) -> None:
    attempts: list[tuple[str, str, dict[str, Any]]] = [
        (
            "POST",
            f"/api/albums/{album_id}/uploads",
            {"json": {"file_name": "x.jpg", "content_type": "image/jpeg"}},
        ),
        (
            "POST",
            f"/api/albums/{album_id}/images",
            {"files": {"file": ("x.jpg", small_jpeg(), "image/jpeg")}},
        ),
        ("GET", f"/api/albums/{album_id}", {}),
        ("GET", f"/api/images/{album_id}", {}),
        ("DELETE", f"/api/images/{album_id}", {}),
    ]
    for method, path, kwargs in attempts:
        # Sent as written (percent-escapes included), as a hostile client would.
        request = api.client.build_request(method, path, headers=uploader.headers, **kwargs)
        request.url = request.url.copy_with(raw_path=path.encode())
        response = api.client.send(request)
        # 405: ".." resolved the path to another route (GET /api/images, the search), which
        # takes no POST: no handler ran with the id either way.
        assert response.status_code in (404, 405, 422), (method, path, response.text)
        body = response.json()
        assert set(body) == {"code", "message"}
    assert [k for k in object_keys(api) if not KEY.match(k)] == []


@pytest.mark.parametrize("username", ["../admin", "a/b", "a\\b", "", "é", "x" * 65, "a b", ".."])
def test_usernames_that_are_not_key_segments_are_refused(api: ThreadedApi, username: str) -> None:
    response = api.client.post("/api/auth/sign-in", json={"username": username})
    assert response.status_code == 422, (username, response.text)


# ---------- the CLI ----------


def test_cli_uploads_with_odd_file_names_stay_in_their_prefix(
    api: ThreadedApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    names = [
        "<img src=x onerror=alert(1)>.jpg",
        "new\nline.jpg",
        "esc\x1b[2Jape.jpg",
        "фото 📷.JPG",
        "..jpg",
        "x.tar.gz",
        "noext",
        "page.html",
        "drawing.svg",
        "n" * 240 + ".jpeg",
    ]
    paths = []
    for name in names:
        path = tmp_path / name
        path.write_bytes(small_jpeg())
        paths.append(path)
    args = argparse.Namespace(
        paths=paths, user="cli-odd", album="odd names", wait=False, timeout=10.0, json=True
    )
    assert asyncio.run(cli_uploads.upload(args, api.settings)) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(printed) == len(names)
    for line in printed:
        record = api.on_api_loop(api.app.state.api.catalog.get_image(line["image_id"]))
        assert record is not None
        match = KEY.match(str(record.key))
        assert match and match["owner"] == "cli-odd", record.key
        # Stored as an image type or as opaque bytes (as the API would), never as a page.
        content_type = str(record.content_type)
        assert content_type.startswith("image/") or content_type == "application/octet-stream", (
            record.file_name,
            content_type,
        )
        assert not re.search(r"[\x00-\x1f\x7f]", str(record.file_name)), repr(str(record.file_name))
