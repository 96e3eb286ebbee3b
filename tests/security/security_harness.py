"""The status API on its own thread and event loop, for the security tests.

Schemathesis, the authorization matrix and the upload checks call the API with synchronous
clients; serving it on a separate loop lets them block without stalling the server. The API
talks to the session's moto server, on a stack bootstrapped for the module.

(No `conftest.py` here on purpose: `tests/*/` conftests share the module name `conftest`, and
`tests/api` imports helpers from the top-level one.)
"""

from __future__ import annotations

import asyncio
import io
import socket
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import uvicorn
from PIL import Image

from imgproc_local.bootstrap import bootstrap
from imgproc_shared.aws import AwsClients
from imgproc_shared.settings import Settings
from imgproc_status_api.app import create_app
from imgproc_status_api.config import ApiSettings

AUTH_SECRET = "security-suite-signing-secret-0123456789abcdef"
T = TypeVar("T")


def wait_for(check: Callable[[], T], *, timeout: float = 20.0, what: str = "") -> T:
    """Poll `check` until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")
        time.sleep(0.05)
        last = check()
    return last


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def small_jpeg(exif: Image.Exif | None = None, *, unique: bool = False) -> bytes:
    """A valid 64×48 JPEG, optionally with EXIF; `unique` bytes (a random comment) where the
    same owner's second copy would be recorded as an exact duplicate and start nothing."""
    buffer = io.BytesIO()
    image = Image.linear_gradient("L").resize((64, 48)).convert("RGB")
    options: dict[str, Any] = {"exif": exif} if exif is not None else {}
    if unique:
        options["comment"] = uuid.uuid4().hex.encode()
    image.save(buffer, "JPEG", quality=80, **options)
    return buffer.getvalue()


@dataclass
class UserData:
    """A signed-in user and one of each thing they own."""

    name: str
    token: str
    album_id: str = ""
    image_id: str = ""  # uploaded through the API (an object exists under incoming/)
    upload_id: str = ""  # granted a presigned upload, never uploaded
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ThreadedApi:
    base_url: str
    settings: Settings
    api_settings: ApiSettings
    client: httpx.Client
    app: Any
    loop: asyncio.AbstractEventLoop

    def on_api_loop(self, coroutine: Coroutine[Any, Any, T], timeout: float = 20) -> T:
        """Run `coroutine` on the API's event loop (where its AWS clients live)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def sign_in(self, username: str) -> str:
        response = self.client.post("/api/auth/sign-in", json={"username": username})
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def seed_user(self, username: str, album_name: str = "") -> UserData:
        """Sign `username` in and give them an album, an uploaded image and a granted upload."""
        token = self.sign_in(username)
        user = UserData(username, token, headers={"Authorization": f"Bearer {token}"})
        album = self.client.post(
            "/api/albums", json={"name": album_name or f"{username} album"}, headers=user.headers
        )
        assert album.status_code == 201, album.text
        user.album_id = album.json()["album_id"]
        image = self.client.post(
            f"/api/albums/{user.album_id}/images",
            files={"file": ("seed.jpg", small_jpeg(unique=True), "image/jpeg")},
            headers=user.headers,
        )
        assert image.status_code == 201, image.text
        user.image_id = image.json()["image_id"]
        grant = self.client.post(
            f"/api/albums/{user.album_id}/uploads",
            json={"file_name": "later.jpg", "content_type": "image/jpeg", "size": 1000},
            headers=user.headers,
        )
        assert grant.status_code == 201, grant.text
        user.upload_id = grant.json()["image_id"]
        return user


@contextmanager
def threaded_api(
    settings: Settings, *, run_starter: bool = False, **api_overrides: Any
) -> Iterator[ThreadedApi]:
    """Bootstrap a stack for `settings` and serve the status API on it from a thread."""
    api_settings = ApiSettings(
        **{
            "auth_secret": AUTH_SECRET,
            "events_poll_interval_s": 0.2,
            "events_discovery_interval_s": 0.5,
            "events_keepalive_s": 1.0,
            **api_overrides,
        }
    )
    port = free_port()
    failure: list[BaseException] = []
    holder: dict[str, Any] = {}

    async def serve() -> None:
        async with AwsClients(settings) as aws:
            outputs = await bootstrap(aws, settings)
        ready_settings = settings.model_copy(
            update={"state_machine_arn": outputs["state_machine_arn"]}
        )
        holder["settings"] = ready_settings
        app = create_app(ready_settings, run_starter=run_starter, api_settings=api_settings)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
        )
        holder["server"] = server
        holder["app"] = app
        holder["loop"] = asyncio.get_running_loop()
        await server.serve()

    def run() -> None:
        try:
            asyncio.run(serve())
        except BaseException as exc:  # reported to the test thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="status-api", daemon=True)
    thread.start()

    def started() -> bool:
        if failure or not thread.is_alive():
            raise RuntimeError("the status API failed to start") from (
                failure[0] if failure else None
            )
        return "server" in holder and bool(holder["server"].started)

    wait_for(started, timeout=60, what="the status API to start")
    base_url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            yield ThreadedApi(
                base_url, holder["settings"], api_settings, client, holder["app"], holder["loop"]
            )
    finally:
        # Open event streams end when the hub closes (on the API's loop); then uvicorn stops.
        events = holder["app"].state.api.events
        holder["loop"].call_soon_threadsafe(events.close)
        holder["server"].should_exit = True
        thread.join(20)
