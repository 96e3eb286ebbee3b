"""Stand-in handlers and a running starter + workers, for tests of the runtime and of what
builds on it (dead-letter replay). The services have their own tests; these stand-ins keep the
workflow fast and deterministic."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from botocore.exceptions import ClientError
from helpers import as_service, eventually

from imgproc_extractor.handler import RESULT_ATTRIBUTE
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import (
    ImageMetadata,
    Label,
    Rendition,
    StageTask,
    TagResult,
    ThumbnailResult,
)
from imgproc_shared.permissions import Principal
from imgproc_shared.resources import ResourceNames, Stage, incoming_key
from imgproc_shared.settings import Settings
from imgproc_shared.worker import WorkContext, Worker
from imgproc_shared.worker.runtime import Handler
from imgproc_status_api.starter import Starter

# The service that works each stage: a stage's worker runs as that service's IAM user.
STAGE_PRINCIPALS = {
    Stage.EXTRACT: Principal.EXTRACTOR,
    Stage.TAG: Principal.TAGGER,
    Stage.THUMBNAIL: Principal.THUMBNAILER,
}


async def extract_ok(task: StageTask, ctx: WorkContext) -> ImageMetadata:
    data = await ctx.read_object(task.bucket, task.key)
    return ImageMetadata(
        format="JPEG", width=4, height=3, mode="RGB", bytes=len(data), sha256="0" * 64
    )


async def tag_ok(task: StageTask, ctx: WorkContext) -> TagResult:
    return TagResult(
        labels=[Label(name="Cat", confidence=97.5, parents=["Animal"])], backend="stub"
    )


async def thumbnail_ok(task: StageTask, ctx: WorkContext) -> ThumbnailResult:
    key = f"thumbnails/{task.image_id}/thumbnail.jpg"
    return ThumbnailResult(
        renditions=[Rendition(name="thumbnail", key=key, width=4, height=3, format="JPEG", bytes=1)]
    )


@asynccontextmanager
async def pipeline(
    settings: Settings,
    aws: AwsClients,
    handlers: dict[Stage, Handler] | None = None,
) -> AsyncIterator[dict[Stage, Worker]]:
    """The starter (as the status API) and one worker per stage (as its service), running
    until the block ends; `aws` stays the test's own (administrator) clients."""
    chosen: dict[Stage, Handler] = {
        Stage.EXTRACT: extract_ok,
        Stage.TAG: tag_ok,
        Stage.THUMBNAIL: thumbnail_ok,
    }
    chosen.update(handlers or {})
    workers = {
        stage: Worker(
            stage,
            handler,
            as_service(settings, STAGE_PRINCIPALS[stage]),
            result_attribute=RESULT_ATTRIBUTE if stage is Stage.EXTRACT else None,
        )
        for stage, handler in chosen.items()
    }
    stopping = asyncio.Event()
    assert settings.state_machine_arn
    async with AwsClients(as_service(settings, Principal.STATUS_API)) as starter_aws:
        tasks = [asyncio.create_task(w.run()) for w in workers.values()]
        starter = Starter(starter_aws, settings, settings.state_machine_arn)
        tasks.append(asyncio.create_task(starter.run(stopping)))
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in workers.values())), 10)
            yield workers
        finally:
            stopping.set()
            for worker in workers.values():
                worker.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)


async def record(settings: Settings, aws: AwsClients, image_id: str) -> str:
    """Alice's upload of image_id into album1, recorded but not yet put: returns its S3 key."""
    names = ResourceNames.from_settings(settings)
    key = incoming_key("alice", "album1", image_id, "jpg")
    catalog = Catalog(aws, names)
    # The starter processes an object only in an album of the owner its key names.
    if await catalog.get_album("album1") is None:
        with contextlib.suppress(ClientError):  # another upload created it first
            await catalog.put_album(album_id="album1", owner="alice", name="album1")
    await catalog.record_upload(
        image_id=image_id,
        owner="alice",
        album_id="album1",
        bucket=names.bucket,
        key=key,
        file_name=f"{image_id}.jpg",
    )
    return key


async def upload(
    settings: Settings, aws: AwsClients, image_id: str, body: bytes | None = None
) -> None:
    """Record the upload and put the object, which starts its execution. The default body is
    the image's own, so the starter never takes two uploads for the same bytes (a duplicate)."""
    key = await record(settings, aws, image_id)
    data = body if body is not None else f"image {image_id}".encode()
    await aws.s3.put_object(Bucket=ResourceNames.from_settings(settings).bucket, Key=key, Body=data)


async def terminal(settings: Settings, aws: AwsClients, image_id: str, timeout: float = 30) -> Any:
    catalog = Catalog(aws, ResourceNames.from_settings(settings))

    async def check() -> Any:
        record = await catalog.get_image(image_id)
        if record is None or record.status not in ("PROCESSED", "REJECTED", "FAILED"):
            return None
        # As stored: the workflow tests assert on the attributes the record holds.
        return record.model_dump(mode="json", exclude_unset=True)

    return await eventually(check, timeout=timeout, what=f"{image_id} terminal")


async def queue_depth(settings: Settings, aws: AwsClients, name: str) -> int:
    url = (await aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
    attrs = (
        await aws.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )


class SwappableModel:
    """A tagger whose one label is whatever the test sets: a model swapped between runs."""

    def __init__(self, label: str) -> None:
        self.label = label

    async def tag(self, task: StageTask, ctx: WorkContext) -> TagResult:
        return TagResult(labels=[Label(name=self.label, confidence=90.0)], backend=self.label)


async def stored_record(catalog: Catalog, image_id: str) -> dict[str, Any] | None:
    """The image's record as stored (only the attributes it holds), to compare as JSON."""
    record = await catalog.get_image(image_id)
    return record.model_dump(mode="json", exclude_unset=True) if record else None
