"""No secret reaches the logs.

The status API and the three workers run as their own processes (as `imgproc up` and the
containers run them), at DEBUG, with a known signing secret and AWS credentials in their
environment. The test signs in, uploads through a presigned POST and through the API, sends
forged and expired tokens, reads images (presigned rendition URLs), and lets the workers
process a photo and reject a non-image. Then nothing any process wrote (its JSON log records,
and whatever else reached stdout or stderr) may contain the signing secret, the AWS secret key,
a bearer token, a presigned signature or a task token.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from helpers import make_settings
from PIL import Image

from imgproc_local.bootstrap import bootstrap
from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.aws import AwsClients
from imgproc_shared.settings import Settings
from imgproc_status_api.auth import LocalTokens

from security_harness import free_port, small_jpeg, wait_for

AUTH_SECRET = "log-test-signing-secret-7f3a9c1e5b2d4f6a8c0e"
AWS_SECRET = "logtestAWSsecretKEY/9b8c7d6e5f4a3b2c1d0e9f8a"
AWS_KEY_ID = "AKIALOGTEST000000001"
FORGED_MARKER = "forgedTOKENmarker0123456789"
SERVICES = {
    "status-api": ["-m", "imgproc_status_api"],
    "extractor": ["-m", "imgproc_extractor"],
    "tagger": ["-m", "imgproc_tagger"],
    "thumbnailer": ["-m", "imgproc_thumbnailer"],
}


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path


@dataclass
class LoggedStack:
    api_url: str
    settings: Settings
    services: list[Service]

    def stop(self) -> None:
        for service in self.services:
            if service.process.poll() is None:
                service.process.send_signal(signal.SIGTERM)
        for service in self.services:
            try:
                service.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                service.process.kill()
                service.process.wait()


async def _bootstrap(settings: Settings) -> str:
    async with AwsClients(settings) as aws:
        outputs = await bootstrap(aws, settings)
    return str(outputs["state_machine_arn"])


def service_env(settings: Settings, state_machine_arn: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMGPROC_", "AWS_"))}
    env.update(
        {
            "IMGPROC_ENDPOINT_URL": str(settings.endpoint_url),
            "IMGPROC_RESOURCE_PREFIX": settings.resource_prefix,
            "IMGPROC_STATE_MACHINE_ARN": state_machine_arn,
            "IMGPROC_AUTH_SECRET": AUTH_SECRET,
            "IMGPROC_LOG_LEVEL": "DEBUG",
            "IMGPROC_TAGGER_BACKEND": "rekognition",
            "IMGPROC_WAIT_TIME_S": "1",
            "IMGPROC_WORKER_CONCURRENCY": "2",
            "IMGPROC_WORKER_THREADS": "1",
            "AWS_ACCESS_KEY_ID": AWS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="module")
def logged_stack(
    embedded_aws: EmbeddedAws, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LoggedStack]:
    settings = make_settings(embedded_aws.endpoint_url)
    arn = asyncio.run(_bootstrap(settings))
    env = service_env(settings, arn)
    logs = tmp_path_factory.mktemp("service-logs")
    port = free_port()
    services = []
    for name, args in SERVICES.items():
        extra = ["--port", str(port)] if name == "status-api" else []
        stdout, stderr = logs / f"{name}.out", logs / f"{name}.err"
        with stdout.open("wb") as out, stderr.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, *args, *extra], env=env, stdout=out, stderr=err
            )
        services.append(Service(name, process, stdout, stderr))
    stack = LoggedStack(f"http://127.0.0.1:{port}", settings, services)
    try:

        def api_up() -> bool:
            for service in services:
                assert service.process.poll() is None, service.stderr.read_text()
            try:
                return httpx.get(f"{stack.api_url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(api_up, timeout=60, what="the status API")
        yield stack
    finally:
        stack.stop()


def exif_photo() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "LogCam"
    exif[0x0110] = "LogCam 1"
    return small_jpeg(exif)


def task_tokens(stack: LoggedStack, execution_arn: str) -> list[str]:
    """The task tokens the workflow handed to the workers, from the execution's history."""

    async def history() -> list[dict[str, Any]]:
        async with AwsClients(stack.settings) as aws:
            page = await aws.stepfunctions.get_execution_history(
                executionArn=execution_arn, maxResults=1000
            )
        return list(page["events"])

    tokens = []
    for event in asyncio.run(history()):
        parameters = (event.get("taskScheduledEventDetails") or {}).get("parameters", "")
        tokens += re.findall(r'task_token\\?"\s*:\s*\\?"([^"\\]+)', parameters)
    assert len(tokens) >= 3, tokens  # extract, tag, thumbnail
    return tokens


def test_no_secret_token_or_signature_in_any_log(logged_stack: LoggedStack) -> None:
    secrets: dict[str, str] = {"auth secret": AUTH_SECRET, "AWS secret key": AWS_SECRET}
    with httpx.Client(base_url=logged_stack.api_url, timeout=30) as client:
        signed_in = client.post("/api/auth/sign-in", json={"username": "log-watcher"}).json()
        token = signed_in["access_token"]
        secrets["bearer token"] = token
        secrets["bearer token signature"] = token.rsplit(".", 1)[1]
        auth = {"Authorization": f"Bearer {token}"}

        # Refused tokens: forged, expired, and one sent where tokens do not belong.
        expired = LocalTokens(AUTH_SECRET, 60).issue("log-watcher", now=time.time() - 3600)
        secrets["expired token"] = expired
        secrets["forged token"] = FORGED_MARKER
        for bad in (f"eyJhbGciOiJIUzI1NiJ9.{FORGED_MARKER}.x", expired, FORGED_MARKER):
            refused = client.get("/api/albums", headers={"Authorization": f"Bearer {bad}"})
            assert refused.status_code == 401
        assert client.get(f"/api/albums?access_token={token}").status_code == 401

        album = client.post("/api/albums", json={"name": "logged"}, headers=auth).json()
        albums = f"/api/albums/{album['album_id']}"

        # A presigned POST, used as the browser uses it.
        granted = client.post(
            f"{albums}/uploads",
            json={"file_name": "cam.jpg", "content_type": "image/jpeg"},
            headers=auth,
        ).json()
        fields = granted["upload"]["fields"]
        secrets["upload signature"] = fields["x-amz-signature"]
        posted = httpx.post(
            granted["upload"]["url"],
            data=fields,
            files={"file": ("cam.jpg", exif_photo(), "image/jpeg")},
            timeout=30,
        )
        assert posted.status_code in (200, 204), posted.text

        # A direct upload of something that is not an image: the extractor rejects it.
        rejected = client.post(
            f"{albums}/images",
            files={"file": ("notes.jpg", b"not an image at all\n" * 20, "image/jpeg")},
            headers=auth,
        ).json()

        def finished() -> dict[str, Any]:
            photo = client.get(f"/api/images/{granted['image_id']}", headers=auth).json()
            other = client.get(f"/api/images/{rejected['image_id']}", headers=auth).json()
            done = photo["status"] == "PROCESSED" and other["status"] == "REJECTED"
            photo_view: dict[str, Any] = photo if done else {}
            return photo_view

        photo = wait_for(finished, timeout=90, what="the photo processed and the text rejected")
        for rendition in photo["thumbnails"]:
            signature = parse_qs(urlsplit(rendition["url"]).query)["X-Amz-Signature"][0]
            secrets[f"{rendition['name']} URL signature"] = signature
        assert photo["thumbnails"], photo
        execution = client.get(f"/api/images/{granted['image_id']}/execution", headers=auth)
        assert execution.status_code == 200
        # Task tokens are capabilities too: whoever holds one can answer the task.
        for number, task_token in enumerate(task_tokens(logged_stack, photo["execution_arn"])):
            secrets[f"task token {number}"] = task_token

    logged_stack.stop()
    seen_images = set()
    for service in logged_stack.services:
        out = service.stdout.read_text(errors="replace")
        err = service.stderr.read_text(errors="replace")
        # Our own records are JSON; at DEBUG, libraries' stdlib records (asyncio, PIL) come
        # out as plain text through the root handler, so every line is searched below.
        records = []
        for line in filter(str.strip, out.splitlines()):
            if line.startswith("{"):
                records.append(json.loads(line))
        assert records, f"{service.name} logged nothing"
        for record in records:
            assert record.get("event") and record.get("level"), record
        seen_images |= {r.get("image_id") for r in records}
        for what, secret in secrets.items():
            assert secret not in out, f"{what} in {service.name}'s log"
            assert secret not in err, f"{what} in {service.name}'s stderr"
    # The logs really covered the work above.
    assert {granted["image_id"], rejected["image_id"]} <= seen_images
