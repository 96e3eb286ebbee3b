"""What the reliability tests do to, and read from, a running local stack (`imgproc up`).

Uploads go the way `imgproc upload` sends them (an UPLOADING record, then a PUT under
`incoming/` with a stored SHA-256), only concurrently. Everything else reads the stack from the
outside, as an operator would: DynamoDB records, Step Functions executions, queue depths, the
service processes in /proc and their log files.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import ImageStatus
from imgproc_shared.queues import Depth, queue_depth
from imgproc_shared.resources import Queue, ResourceNames, incoming_key
from imgproc_shared.settings import Settings

# Short timeouts so a killed worker's messages come back within seconds (defaults: 60 s
# visibility, 20 s keep-alive). The keep-alive must beat the visibility timeout. The task
# heartbeat is NOT shortened: Step Functions starts its clock when the task message is sent, so
# it also counts the time a message waits in a backlogged queue (100 images on a loaded 2-core
# machine wait longer than 20 s, and would fail after the retries); the visibility timeout, not
# the heartbeat, is what brings a killed worker's message back.
FAST_RECOVERY_ENV = {
    "IMGPROC_VISIBILITY_TIMEOUT_S": "5",
    "IMGPROC_HEARTBEAT_INTERVAL_S": "2",
    "IMGPROC_STOP_TIMEOUT_S": "4",
}

# Small, so a file over the limit is cheap to make; the generated photos are ~30 KB.
MAX_UPLOAD_BYTES = 1024 * 1024

WORKER_MODULES = {
    "imgproc_extractor": "extractor",
    "imgproc_tagger": "tagger",
    "imgproc_thumbnailer": "thumbnailer",
}
SERVICE_MODULES = {**WORKER_MODULES, "imgproc_status_api": "status-api"}
OWNER = "reliability"


_photos_made = itertools.count()


def photo(seed: int, size: tuple[int, int] = (640, 480)) -> bytes:
    """A small JPEG: a gradient tinted by the seed, with bytes of its own on every call (a
    comment counts the calls), so that the tests sharing a stack never upload the same bytes
    twice: the stack records those as a duplicate and processes nothing."""
    gradient = Image.linear_gradient("L").resize(size)
    tint = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed * 13) % 256))
    image = Image.merge("RGB", (gradient, tint.getchannel(1), tint.getchannel(2)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85, comment=f"photo {seed}, call {next(_photos_made)}")
    return buffer.getvalue()


@dataclass(frozen=True)
class Uploaded:
    name: str
    image_id: str
    key: str
    data: bytes


async def upload_files(
    settings: Settings,
    files: Iterable[tuple[str, bytes]],
    *,
    album_id: str | None = None,
    album_name: str = "Reliability",
    concurrency: int = 16,
) -> list[Uploaded]:
    """Upload files concurrently into one album (created here unless given)."""
    names = ResourceNames.from_settings(settings)
    gate = asyncio.Semaphore(concurrency)
    async with AwsClients(settings) as aws:
        catalog = Catalog(aws, names)
        if album_id is None:
            album_id = uuid.uuid4().hex
            await catalog.put_album(album_id=album_id, owner=OWNER, name=album_name)

        async def one(name: str, data: bytes) -> Uploaded:
            image_id = uuid.uuid4().hex
            extension = name.rsplit(".", 1)[-1] if "." in name else "bin"
            key = incoming_key(OWNER, album_id, image_id, extension)
            async with gate:
                await catalog.record_upload(
                    image_id=image_id,
                    owner=OWNER,
                    album_id=album_id,
                    bucket=names.bucket,
                    key=key,
                    file_name=name,
                    size=len(data),
                )
                await aws.s3.put_object(
                    Bucket=names.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256"
                )
            return Uploaded(name, image_id, key, data)

        return list(await asyncio.gather(*(one(name, data) for name, data in files)))


async def records(settings: Settings, image_ids: list[str]) -> dict[str, dict[str, Any]]:
    async with AwsClients(settings) as aws:
        catalog = Catalog(aws, ResourceNames.from_settings(settings))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(image_ids), 100):
            for record in await catalog.get_images(image_ids[start : start + 100]):
                found[record.image_id] = record.model_dump(mode="json", exclude_unset=True)
        return found


async def wait_terminal(
    settings: Settings, image_ids: list[str], timeout: float
) -> dict[str, dict[str, Any]]:
    """Poll until every image has a terminal status; fail at the deadline with the stragglers."""
    deadline = time.monotonic() + timeout
    while True:
        found = await records(settings, image_ids)
        pending = [
            i
            for i in image_ids
            if not ImageStatus(found.get(i, {}).get("status", "UPLOADING")).terminal
        ]
        if not pending:
            return found
        if time.monotonic() >= deadline:
            sample = {i: found.get(i, {}).get("status") for i in pending[:10]}
            raise AssertionError(
                f"{len(pending)} of {len(image_ids)} images not terminal after {timeout}s: {sample}"
            )
        await asyncio.sleep(0.5)


async def executions_per_image(settings: Settings) -> Counter[str]:
    """How many executions the state machine has for each name (= image id)."""
    assert settings.state_machine_arn
    counts: Counter[str] = Counter()
    async with AwsClients(settings) as aws:
        kwargs: dict[str, Any] = {"stateMachineArn": settings.state_machine_arn, "maxResults": 1000}
        while True:
            page = await aws.stepfunctions.list_executions(**kwargs)
            counts.update(e["name"] for e in page["executions"])
            if not page.get("nextToken"):
                return counts
            kwargs["nextToken"] = page["nextToken"]


async def queue_depths(settings: Settings) -> dict[str, Depth]:
    """Every queue and dead-letter queue of the stack, by name (`extract`, `extract-dlq`, ...)."""
    names = ResourceNames.from_settings(settings)
    depths: dict[str, Depth] = {}
    async with AwsClients(settings) as aws:
        for queue in Queue:
            for label, name in (
                (queue.value, names.queue(queue)),
                (f"{queue.value}-dlq", names.dead_letter_queue(queue)),
            ):
                url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
                depths[label] = await queue_depth(aws.sqs, url)
    return depths


async def wait_queues_empty(settings: Settings, timeout: float) -> dict[str, Depth]:
    deadline = time.monotonic() + timeout
    while True:
        depths = await queue_depths(settings)
        busy = {name: depth for name, depth in depths.items() if depth.held + depth.delayed}
        if not busy:
            return depths
        if time.monotonic() >= deadline:
            raise AssertionError(f"queues not empty after {timeout}s: {busy}")
        await asyncio.sleep(0.5)


async def thumbnail_keys(settings: Settings) -> dict[str, set[str]]:
    """Every object under `thumbnails/`, by image id."""
    names = ResourceNames.from_settings(settings)
    keys: dict[str, set[str]] = {}
    async with AwsClients(settings) as aws:
        kwargs: dict[str, Any] = {"Bucket": names.bucket, "Prefix": "thumbnails/"}
        while True:
            page = await aws.s3.list_objects_v2(**kwargs)
            for obj in page.get("Contents", []):
                keys.setdefault(obj["Key"].split("/")[1], set()).add(obj["Key"])
            if not page.get("IsTruncated"):
                return keys
            kwargs["ContinuationToken"] = page["NextContinuationToken"]


# --- processes -------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def alive(pid: int) -> bool:
    """Running (a zombie waiting for `up` to reap it counts as gone)."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def service_pids(up_pid: int, modules: dict[str, str] = SERVICE_MODULES) -> dict[str, list[int]]:
    """The live service processes `up` started, by service name."""
    found: dict[str, list[int]] = {name: [] for name in modules.values()}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is None or int(fields[1]) != up_pid or fields[0] in ("Z", "X"):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        for module, service in modules.items():
            if module.encode() in argv:
                found[service].append(int(entry.name))
    return found


def serving(pid: int) -> bool:
    """The process has a socket open: it is past its imports and talking to the endpoint
    (a worker takes ~3-10 s to start on a loaded 2-core machine)."""
    try:
        return any(
            os.readlink(fd).startswith("socket:") for fd in Path(f"/proc/{pid}/fd").iterdir()
        )
    except OSError:
        return False


def vm_hwm_mib(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmHWM for pid {pid}")


def kill(pid: int, sig: signal.Signals) -> bool:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


async def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll a sync check until it is truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last={last!r}")


# --- logs ------------------------------------------------------------------------------------


def log_lines(log_dir: Path) -> list[dict[str, Any]]:
    """Every structured (JSON) line of every service log."""
    lines: list[dict[str, Any]] = []
    for path in sorted(log_dir.glob("*.log")):
        for raw in path.read_text(errors="replace").splitlines():
            if raw.startswith("{"):
                try:
                    entry = json.loads(raw)
                except ValueError:
                    continue
                entry["_file"] = path.stem
                lines.append(entry)
    return lines


def error_lines(log_dir: Path) -> list[dict[str, Any]]:
    return [e for e in log_lines(log_dir) if e.get("level") in ("error", "critical", "exception")]


def tracebacks(log_dir: Path) -> int:
    """Unstructured tracebacks a service printed (a crash, or an exception nobody handled)."""
    return sum(
        path.read_text(errors="replace").count("Traceback (most recent call last)")
        for path in log_dir.glob("*.log")
    )


# --- outcome checks --------------------------------------------------------------------------

RENDITIONS = {"thumbnail", "preview"}


async def duplicate_problems(
    settings: Settings, found: dict[str, dict[str, Any]], executions: Counter[str]
) -> list[str]:
    """What is duplicated or missing for processed images: executions, labels, renditions.

    Each image must have exactly one execution, unique labels, exactly one thumbnail and one
    preview, and nothing else under its `thumbnails/{id}/` prefix.
    """
    problems: list[str] = []
    stored_keys = await thumbnail_keys(settings)
    for image_id, record in found.items():
        if executions[image_id] != 1:
            problems.append(f"{image_id}: {executions[image_id]} executions")
        if record.get("status") != ImageStatus.PROCESSED.value:
            continue
        labels = [label["name"] for label in (record.get("tags") or {}).get("labels", [])]
        if len(labels) != len(set(labels)):
            problems.append(f"{image_id}: duplicate labels {labels}")
        renditions = (record.get("thumbnails") or {}).get("renditions", [])
        names = sorted(r["name"] for r in renditions)
        if names != sorted(RENDITIONS):
            problems.append(f"{image_id}: renditions {names}")
        stored = stored_keys.get(image_id, set())
        if stored != {r["key"] for r in renditions}:
            problems.append(f"{image_id}: objects {sorted(stored)} for renditions {renditions}")
    return problems
