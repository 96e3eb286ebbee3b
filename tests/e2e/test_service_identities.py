"""`imgproc up` runs each service as its own IAM user, with the policy `infra/` deploys, and the
embedded endpoint checks every call; with enforcement off the stack works as before."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from imgproc_shared.resources import ResourceNames
from imgproc_shared.settings import EMBEDDED_ADMIN_ACCESS_KEY_ID

from stack_process import IMGPROC, RunningStack, start_stack

pytestmark = pytest.mark.e2e

PHOTO = Path(__file__).parents[1] / "fixtures" / "tagger" / "cat_chelsea.jpg"
SERVICE_MODULES = {
    "imgproc_status_api": "status-api",
    "imgproc_extractor": "extractor",
    "imgproc_tagger": "tagger",
    "imgproc_thumbnailer": "thumbnailer",
}
_KEY_ID = "IMGPROC_ENDPOINT_ACCESS_KEY_ID"
_SECRET = "IMGPROC_ENDPOINT_SECRET_ACCESS_KEY"


def _service_environments(up_pid: int) -> dict[str, list[dict[str, str]]]:
    """Each service's processes (children of `up`), by service: their environments."""
    found: dict[str, list[dict[str, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) != up_pid:
                continue
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            raw = (entry / "environ").read_bytes().split(b"\0")
        except OSError:  # exited meanwhile
            continue
        module = next((arg.decode() for arg in argv if arg.decode() in SERVICE_MODULES), None)
        if module is None:
            continue
        env = dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)
        found.setdefault(SERVICE_MODULES[module], []).append(env)
    return found


def _upload(stack: RunningStack, path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [str(IMGPROC), "upload", str(path), "--wait", "--json", "--timeout", "90"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    record: dict[str, Any] = json.loads(result.stdout.splitlines()[-1])
    return record


def _s3_as(stack: RunningStack, env: dict[str, str]) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=stack.endpoint_url,
        region_name=stack.settings.region,
        aws_access_key_id=env[_KEY_ID],
        aws_secret_access_key=env[_SECRET],
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
    )


def test_each_service_runs_as_itself_and_an_upload_is_processed(local_stack: RunningStack) -> None:
    log = local_stack.log_path.read_text()
    assert "IAM enforcement on" in log, log
    services = _service_environments(local_stack.process.pid)
    assert set(services) == set(SERVICE_MODULES.values()), services
    keys: dict[str, str] = {}
    for name, environments in services.items():
        # Every process of a service (the scaler's extra workers too) has the service's key.
        assert len({env.get(_KEY_ID) for env in environments}) == 1, (name, environments)
        keys[name] = environments[0].get(_KEY_ID, "")
    assert len(set(keys.values())) == len(keys), keys
    assert EMBEDDED_ADMIN_ACCESS_KEY_ID not in keys.values() and "" not in keys.values(), keys

    # The endpoint does check: the extractor writes nothing to S3.
    bucket = ResourceNames.from_settings(local_stack.settings).bucket
    extractor = _s3_as(local_stack, services["extractor"][0])
    with pytest.raises(ClientError) as denied:
        extractor.put_object(Bucket=bucket, Key="thumbnails/x/thumbnail.jpg", Body=b"x")
    assert denied.value.response["Error"]["Code"] == "AccessDenied"

    record = _upload(local_stack, PHOTO)
    assert record["status"] == "PROCESSED", record
    assert record["tags"] and record["thumbnails"], record


def test_with_enforcement_off_the_stack_works_as_the_administrator(tmp_path: Path) -> None:
    stack = start_stack(
        tmp_path / "home", tagger="rekognition", extra_env={"IMGPROC_IAM_ENFORCEMENT": "false"}
    )
    try:
        assert "IAM enforcement off" in stack.log_path.read_text()
        services = _service_environments(stack.process.pid)
        assert set(services) == set(SERVICE_MODULES.values()), services
        for environments in services.values():
            assert all(_KEY_ID not in env for env in environments), environments
        record = _upload(stack, PHOTO)
        assert record["status"] == "PROCESSED", record
    finally:
        stack.stop()
