"""The tagger against a real moto server over HTTP: Rekognition's answer mapped to our labels,
and the local model labelling real photos through the real workflow."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import FIXTURES, eventually
from PIL import Image

from imgproc_extractor.handler import RESULT_ATTRIBUTE
from imgproc_local.bootstrap import bootstrap
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import ImageMetadata, Rendition, StageTask, ThumbnailResult
from imgproc_shared.resources import ResourceNames, Stage, incoming_key
from imgproc_shared.settings import Settings
from imgproc_shared.worker import WorkContext, Worker
from imgproc_status_api.starter import Starter
from imgproc_tagger import handler as tagger
from imgproc_tagger.config import TaggerSettings, get_tagger_settings
from imgproc_tagger.rekognition import RekognitionBackend

PHOTOS = FIXTURES / "tagger"


@pytest.fixture(autouse=True, scope="module")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The model is built at most once for this module, in a temporary cache."""
    cache = tmp_path_factory.mktemp("tagger-model-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("IMGPROC_TAGGER_MODEL_CACHE_DIR", str(cache))
        get_tagger_settings.cache_clear()
        yield cache
    get_tagger_settings.cache_clear()


@asynccontextmanager
async def work_context(settings: Settings) -> AsyncIterator[WorkContext]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with AwsClients(settings) as aws:
            names = ResourceNames.from_settings(settings)
            await aws.s3.create_bucket(Bucket=names.bucket)
            yield WorkContext(settings, aws, names, pool)


def task_for(ctx: WorkContext, key: str, size: int | None = None) -> StageTask:
    metadata = None
    if size is not None:
        metadata = ImageMetadata(
            format="JPEG", width=1, height=1, mode="RGB", bytes=size, sha256="0"
        )
    return StageTask(
        task_token="unused",
        stage=Stage.TAG,
        image_id="img1",
        bucket=ctx.names.bucket,
        key=key,
        metadata=metadata,
    )


async def test_rekognition_labels_are_mapped_with_their_parents(
    settings_factory: Callable[..., Settings],
) -> None:
    async with work_context(settings_factory(tagger_backend="rekognition")) as ctx:
        key = "incoming/alice/a1/img1.jpg"
        body = (PHOTOS / "cat_chelsea.jpg").read_bytes()
        await ctx.aws.s3.put_object(Bucket=ctx.names.bucket, Key=key, Body=body)
        result = await tagger.handle(task_for(ctx, key, size=len(body)), ctx)
    # moto's canned DetectLabels answer, in our shape.
    assert result.backend == "rekognition"
    assert [(x.name, round(x.confidence, 2), x.parents) for x in result.labels] == [
        ("Mobile Phone", 99.94, ["Phone"])
    ]


async def test_rekognition_min_confidence_is_applied(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(tagger_backend="rekognition", tagger_min_confidence=99.99)
    async with work_context(settings) as ctx:
        key = "incoming/alice/a1/img1.jpg"
        await ctx.aws.s3.put_object(Bucket=ctx.names.bucket, Key=key, Body=b"x")
        labels = await RekognitionBackend().detect(task_for(ctx, key), ctx)
    assert labels == []


async def extract_with_pillow(task: StageTask, ctx: WorkContext) -> ImageMetadata:
    """A stand-in extractor (the extractor has its own tests): just enough metadata."""
    data = await ctx.read_object(task.bucket, task.key)
    with Image.open(io.BytesIO(data)) as image:
        return ImageMetadata(
            format=image.format or "JPEG",
            width=image.width,
            height=image.height,
            mode=image.mode,
            bytes=len(data),
            sha256="0" * 64,
        )


async def thumbnail_stub(task: StageTask, ctx: WorkContext) -> ThumbnailResult:
    key = f"thumbnails/{task.image_id}/thumbnail.jpg"
    return ThumbnailResult(
        renditions=[Rendition(name="thumbnail", key=key, width=4, height=3, format="JPEG", bytes=1)]
    )


async def test_local_model_labels_real_photos_through_the_workflow(
    settings_factory: Callable[..., Settings],
) -> None:
    settings = settings_factory(tagger_backend="local", worker_concurrency=4)
    async with AwsClients(settings) as aws:
        outputs = await bootstrap(aws, settings)
        settings = settings.model_copy(update={"state_machine_arn": outputs["state_machine_arn"]})
        names = ResourceNames.from_settings(settings)
        catalog = Catalog(aws, names)
        workers = [
            Worker(Stage.EXTRACT, extract_with_pillow, settings, result_attribute=RESULT_ATTRIBUTE),
            Worker(Stage.TAG, tagger.handle, settings, setup=tagger.setup),
            Worker(Stage.THUMBNAIL, thumbnail_stub, settings),
        ]
        stopping = asyncio.Event()
        tasks = [asyncio.create_task(worker.run()) for worker in workers]
        tasks.append(
            asyncio.create_task(Starter(aws, settings, outputs["state_machine_arn"]).run(stopping))
        )
        try:
            await asyncio.wait_for(asyncio.gather(*(w.ready.wait() for w in workers)), 60)
            # The starter processes an upload only into an album of the key's owner.
            await catalog.put_album(album_id="album1", owner="alice", name="album1")
            photos = {"cat": "cat_chelsea.jpg", "coffee": "coffee_cup.jpg"}
            for image_id, file_name in photos.items():
                key = incoming_key("alice", "album1", image_id, "jpg")
                await catalog.record_upload(
                    image_id=image_id,
                    owner="alice",
                    album_id="album1",
                    bucket=names.bucket,
                    key=key,
                    file_name=file_name,
                )
                body = (PHOTOS / file_name).read_bytes()
                await aws.s3.put_object(Bucket=names.bucket, Key=key, Body=body)

            async def processed(image_id: str) -> dict[str, Any] | None:
                record = await catalog.get_image(image_id)
                done = record and record.status in ("PROCESSED", "REJECTED", "FAILED")
                return (
                    record.model_dump(mode="json", exclude_unset=True) if record and done else None
                )

            cat = await eventually(lambda: processed("cat"), timeout=60, what="cat processed")
            coffee = await eventually(
                lambda: processed("coffee"), timeout=60, what="coffee processed"
            )
        finally:
            stopping.set()
            for worker in workers:
                worker.stop()
            await asyncio.wait_for(asyncio.gather(*tasks), 30)

    assert cat["status"] == "PROCESSED", cat
    assert cat["tags"]["backend"] == "local"
    cat_labels = {label["name"]: label for label in cat["tags"]["labels"]}
    top_cat = [label["name"] for label in cat["tags"]["labels"][:3]]
    assert "Cat" in top_cat, cat["tags"]
    assert cat_labels["Cat"]["parents"] == ["Mammal", "Animal"]
    assert cat_labels["Cat"]["confidence"] >= 80
    # The local models' own minimums (tuned on the labelled set) bound every label.
    local = TaggerSettings()
    floor = min(local.classifier_min_confidence, local.detector_min_confidence)
    assert all(label["confidence"] >= floor for label in cat["tags"]["labels"])

    assert coffee["status"] == "PROCESSED", coffee
    coffee_labels = {label["name"]: label for label in coffee["tags"]["labels"]}
    assert {"Coffee", "Beverage"} <= set(coffee_labels), coffee["tags"]
    assert coffee_labels["Coffee"]["parents"] == ["Beverage"]
