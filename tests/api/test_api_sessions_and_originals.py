"""Signing out revokes the token (in every task of the API), and an owner downloads a photo's
original through a short-lived link that saves it under its file name."""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import unquote

import httpx
import pytest
from helpers import eventually
from PIL import Image

from imgproc_shared.aws import AwsClients
from imgproc_shared.settings import Settings

from api_harness import ApiHarness, running_api

pytestmark = pytest.mark.asyncio(loop_scope="module")


def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((40, 30)).convert("RGB").save(buffer, "JPEG")
    return buffer.getvalue()


async def test_sign_out_revokes_the_token_in_every_task(
    api: ApiHarness, shared_stack: tuple[Settings, AwsClients, dict[str, Any]]
) -> None:
    signed_out = await api.sign_in("leaver")
    other_tab = await api.sign_in("leaver")  # another session of the same user
    assert (await api.client.get("/api/auth/me", headers=signed_out)).status_code == 200
    # A second API task reads the token as valid first (it caches "not revoked" a while) ...
    async with running_api(shared_stack) as second_task:
        assert (await second_task.client.get("/api/auth/me", headers=signed_out)).status_code == 200

        response = await api.client.post("/api/auth/sign-out", headers=signed_out)
        assert response.status_code == 204, response.text

        # At once through the task that signed it out ...
        refused = await api.client.get("/api/albums", headers=signed_out)
        assert refused.status_code == 401, refused.text
        assert refused.json()["code"] == "token_revoked"
        assert refused.headers["www-authenticate"] == "Bearer"

        # ... and within its recheck interval (2 s) through the other task.
        async def refused_by_second_task() -> bool:
            answer = await second_task.client.get("/api/albums", headers=signed_out)
            return answer.status_code == 401 and answer.json()["code"] == "token_revoked"

        await eventually(refused_by_second_task, timeout=5, interval=0.2, what="revoked there")
    # ... and a task started later (nothing cached) refuses it too.
    async with running_api(shared_stack) as third_task:
        refused = await third_task.client.get("/api/auth/me", headers=signed_out)
        assert refused.status_code == 401 and refused.json()["code"] == "token_revoked"
    # Only that token: the user's other session and a new sign-in work.
    assert (await api.client.get("/api/auth/me", headers=other_tab)).status_code == 200
    again = await api.sign_in("leaver")
    assert (await api.client.get("/api/auth/me", headers=again)).status_code == 200
    # Signing out again with the revoked token is refused like any other call with it.
    assert (await api.client.post("/api/auth/sign-out", headers=signed_out)).status_code == 401
    assert (await api.client.post("/api/auth/sign-out")).status_code == 401


async def test_the_owner_downloads_the_original_under_its_name(api: ApiHarness) -> None:
    owner = await api.sign_in("downloader")
    album = await api.create_album(owner, "Downloads")
    photo = jpeg_bytes()
    name = "Plage d'été; 2024.jpg"
    uploaded = await api.client.post(
        f"/api/albums/{album['album_id']}/images",
        files={"file": (name, photo, "image/jpeg")},
        headers=owner,
    )
    assert uploaded.status_code == 201, uploaded.text
    image_id = uploaded.json()["image_id"]

    answer = await api.client.get(f"/api/images/{image_id}/original", headers=owner)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["file_name"] == name and 0 < body["expires_in"] <= 600
    async with httpx.AsyncClient() as s3:
        download = await s3.get(body["url"])
    assert download.status_code == 200
    assert download.content == photo
    disposition = download.headers["content-disposition"]
    assert disposition.startswith("attachment;")
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == name
    assert 'filename="Plage d__t__ 2024.jpg"' in disposition  # the fallback: ASCII, no `;'`

    # A granted upload that never arrived has no original yet: said so, not a broken link.
    grant = await api.client.post(
        f"/api/albums/{album['album_id']}/uploads",
        json={"file_name": "later.jpg", "content_type": "image/jpeg", "size": 100},
        headers=owner,
    )
    waiting = await api.client.get(
        f"/api/images/{grant.json()['image_id']}/original", headers=owner
    )
    assert waiting.status_code == 409 and waiting.json()["code"] == "not_uploaded"

    # Someone else gets the ordinary 404, and no link.
    stranger = await api.sign_in("not-the-downloader")
    refused = await api.client.get(f"/api/images/{image_id}/original", headers=stranger)
    assert refused.status_code == 404 and refused.json()["code"] == "image_not_found"
    assert "http" not in refused.text
