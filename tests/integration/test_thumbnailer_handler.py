"""The thumbnail stage's handler against the real moto server: objects written where the
result says, with the right type and size, and a redelivery overwrites them."""

from __future__ import annotations

import io
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgproc_extractor.metadata import ObjectBytes, describe
from imgproc_shared.errors import CorruptImage
from imgproc_shared.models import Exif, ImageMetadata, StageTask
from imgproc_shared.resources import ResourceNames, Stage, incoming_key, thumbnail_key
from imgproc_shared.worker.runtime import WorkContext
from imgproc_thumbnailer.handler import handle
from imgproc_thumbnailer.thumbhash import decode_placeholder

from phone_photos import EXTENSIONS, FORMATS, photo

IMAGES = Path(__file__).parents[1] / "fixtures" / "images"


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def _metadata(fmt: str, width: int, height: int, *, orientation: int | None) -> ImageMetadata:
    """The extractor's answer, as far as the thumbnailer reads it."""
    return ImageMetadata(
        format=fmt,
        width=width,
        height=height,
        mode="RGB",
        bytes=1,
        sha256="0",
        exif=Exif(orientation=orientation),
    )


async def _put(aws: Any, bucket: str, image_id: str, body: bytes) -> str:
    key = incoming_key("alice", "album1", image_id, "jpg")
    await aws.s3.put_object(Bucket=bucket, Key=key, Body=body)
    return key


def _photo() -> bytes:
    """A 2400x1600 JPEG stored sideways (orientation 6), with EXIF that must not leak."""
    image = Image.linear_gradient("L").resize((2400, 1600)).convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "SecretCam"
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


async def test_handle_writes_both_renditions_and_a_placeholder(
    stack: Any, executor: ThreadPoolExecutor
) -> None:
    settings, aws, _ = stack
    names = ResourceNames.from_settings(settings)
    image_id = "img0001"
    key = await _put(aws, names.bucket, image_id, _photo())
    task = StageTask(
        task_token="token",
        stage=Stage.THUMBNAIL,
        image_id=image_id,
        bucket=names.bucket,
        key=key,
        metadata=_metadata("JPEG", 2400, 1600, orientation=6),
    )
    ctx = WorkContext(settings, aws, names, executor)

    result = await handle(task, ctx)

    sizes = {r.name: (r.width, r.height) for r in result.renditions}
    assert sizes == {"thumbnail": (171, 256), "preview": (853, 1280)}  # turned upright
    for rendition in result.renditions:
        assert rendition.key == thumbnail_key(image_id, rendition.name, "jpg")
        head = await aws.s3.head_object(Bucket=names.bucket, Key=rendition.key)
        assert head["ContentType"] == "image/jpeg"
        assert head["ContentLength"] == rendition.bytes
        body = await (await aws.s3.get_object(Bucket=names.bucket, Key=rendition.key))[
            "Body"
        ].read()
        stored = Image.open(io.BytesIO(body))
        assert stored.size == (rendition.width, rendition.height)
        assert not stored.getexif()
        assert b"SecretCam" not in body
    assert result.placeholder
    assert decode_placeholder(result.placeholder).height == 32  # portrait, like the thumbnail

    # A redelivered message writes the same keys again: still exactly two objects.
    again = await handle(task, ctx)
    assert [r.key for r in again.renditions] == [r.key for r in result.renditions]
    listed = await aws.s3.list_objects_v2(Bucket=names.bucket, Prefix=f"thumbnails/{image_id}/")
    assert sorted(o["Key"] for o in listed["Contents"]) == sorted(r.key for r in result.renditions)


async def test_handle_names_a_damaged_file(stack: Any, executor: ThreadPoolExecutor) -> None:
    settings, aws, _ = stack
    names = ResourceNames.from_settings(settings)
    body = (IMAGES / "truncated_progressive.jpg").read_bytes()
    key = await _put(aws, names.bucket, "img0002", body)
    task = StageTask(
        task_token="token", stage=Stage.THUMBNAIL, image_id="img0002", bucket=names.bucket, key=key
    )
    with pytest.raises(CorruptImage):
        await handle(task, WorkContext(settings, aws, names, executor))


@pytest.mark.parametrize("fmt", FORMATS)
async def test_phone_formats_make_upright_renditions(
    stack: Any, executor: ThreadPoolExecutor, fmt: str
) -> None:
    """A HEIC, AVIF or WebP stored sideways, given the metadata the extractor reported for it."""
    settings, aws, _ = stack
    names = ResourceNames.from_settings(settings)
    image_id = f"phone{fmt.lower()}"
    data = photo(fmt, size=(1600, 1200), orientation=6)
    key = incoming_key("alice", "album1", image_id, EXTENSIONS[fmt])
    await aws.s3.put_object(Bucket=names.bucket, Key=key, Body=data)
    facts = describe(ObjectBytes.whole(data), settings.max_pixels)
    task = StageTask(
        task_token="token",
        stage=Stage.THUMBNAIL,
        image_id=image_id,
        bucket=names.bucket,
        key=key,
        metadata=_metadata(
            facts.format, facts.width, facts.height, orientation=facts.fields.exif.orientation
        ),
    )
    result = await handle(task, WorkContext(settings, aws, names, executor))
    sizes = {r.name: (r.width, r.height) for r in result.renditions}
    assert sizes == {"thumbnail": (256, 192), "preview": (1280, 960)}
    thumbnail = next(r for r in result.renditions if r.name == "thumbnail")
    body = await (await aws.s3.get_object(Bucket=names.bucket, Key=thumbnail.key))["Body"].read()
    shown = Image.open(io.BytesIO(body)).convert("RGB")
    red, green, blue = shown.getpixel((64, 48))  # type: ignore[misc]
    assert red > 180 and green < 60 and blue < 60, (red, green, blue)  # the red quarter, top left
