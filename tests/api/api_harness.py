"""Runs the status API in this test's event loop on a real socket (uvicorn), against the moto
server of the `stack` fixture, and signs users in."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from helpers import as_service, eventually, make_settings

from imgproc_local.bootstrap import bootstrap
from imgproc_shared.aws import AwsClients
from imgproc_shared.permissions import Principal
from imgproc_shared.settings import Settings
from imgproc_status_api.app import create_app
from imgproc_status_api.config import ApiSettings

TEST_SECRET = "test-secret-for-status-api-tests"


@dataclass
class ApiHarness:
    client: httpx.AsyncClient
    base_url: str
    settings: Settings
    api_settings: ApiSettings
    aws: AwsClients
    outputs: dict[str, Any]

    async def sign_in(self, username: str) -> dict[str, str]:
        """Bearer headers for `username`."""
        response = await self.client.post("/api/auth/sign-in", json={"username": username})
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    async def create_album(self, headers: dict[str, str], name: str) -> dict[str, Any]:
        response = await self.client.post("/api/albums", json={"name": name}, headers=headers)
        assert response.status_code == 201, response.text
        album: dict[str, Any] = response.json()
        return album


@asynccontextmanager
async def bootstrapped_stack(
    endpoint_url: str,
) -> AsyncIterator[tuple[Settings, AwsClients, dict[str, Any]]]:
    """Like the `stack` fixture, for sharing one stack across a module's tests (bootstrapping
    costs seconds; tests keep apart by signing in as different users)."""
    settings = make_settings(endpoint_url)
    async with AwsClients(settings) as aws:
        outputs = await bootstrap(aws, settings)
        settings = settings.model_copy(update={"state_machine_arn": outputs["state_machine_arn"]})
        yield settings, aws, outputs


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def running_api(
    stack: tuple[Settings, AwsClients, dict[str, Any]],
    *,
    run_starter: bool = False,
    **api_overrides: Any,
) -> AsyncIterator[ApiHarness]:
    settings, aws, outputs = stack
    values: dict[str, Any] = {
        "auth_secret": TEST_SECRET,
        "events_poll_interval_s": 0.2,
        "events_discovery_interval_s": 0.5,
        "events_keepalive_s": 1.0,
    }
    values.update(api_overrides)
    api_settings = ApiSettings(**values)
    # The API signs as the status API's IAM user; the harness's `aws` stays the administrator.
    app = create_app(
        as_service(settings, Principal.STATUS_API),
        run_starter=run_starter,
        api_settings=api_settings,
    )
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or serving.done(), timeout=20, what="API start")
    if serving.done():
        serving.result()
    base_url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=base_url, timeout=20) as client:
            yield ApiHarness(client, base_url, settings, api_settings, aws, outputs)
    finally:
        app.state.api.events.close()
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=15)
