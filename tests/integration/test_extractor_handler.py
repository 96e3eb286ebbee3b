"""The extract handler against the real moto server over HTTP: what it reads from S3 (ranges,
stored checksums, streaming) and what it answers."""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from helpers import FIXTURES
from PIL import ExifTags, Image, TiffImagePlugin

from imgproc_extractor.handler import HEAD_BYTES, TAIL_BYTES, handle
from imgproc_shared.aws import AwsClients
from imgproc_shared.errors import CorruptImage, TaskError, TooLarge
from imgproc_shared.models import Gps, ImageMetadata, StageTask
from imgproc_shared.resources import ResourceNames, Stage
from imgproc_shared.settings import Settings
from imgproc_shared.worker import WorkContext

from phone_photos import EXTENSIONS, FORMATS, phone_exif, photo, with_ispe

R = TiffImagePlugin.IFDRational
Stack = tuple[Settings, AwsClients, dict[str, Any]]


@dataclass
class Get:
    range: str | None
    bytes: int


@dataclass
class CountingS3:
    """The real S3 client, with every GetObject recorded (its range and the bytes it returned)."""

    inner: Any
    gets: list[Get] = field(default_factory=list)

    async def get_object(self, **kwargs: Any) -> Any:
        response = await self.inner.get_object(**kwargs)
        self.gets.append(Get(kwargs.get("Range"), int(response["ContentLength"])))
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def fetched(self) -> int:
        return sum(get.bytes for get in self.gets)


class CountingAws:
    def __init__(self, aws: AwsClients) -> None:
        self._aws = aws
        self.s3 = CountingS3(aws.s3)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._aws, name)


@pytest.fixture(scope="module")
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


@dataclass
class Harness:
    settings: Settings
    aws: AwsClients
    bucket: str
    executor: ThreadPoolExecutor

    def context(self, **overrides: Any) -> tuple[WorkContext, CountingS3]:
        settings = self.settings.model_copy(update=overrides)
        counting = CountingAws(self.aws)
        aws = cast(AwsClients, counting)  # the real clients, with S3 reads counted
        ctx = WorkContext(settings, aws, ResourceNames.from_settings(settings), self.executor)
        return ctx, counting.s3

    async def put(self, key: str, data: bytes, *, checksum: bool = True) -> None:
        extra = {"ChecksumAlgorithm": "SHA256"} if checksum else {}
        await self.aws.s3.put_object(Bucket=self.bucket, Key=key, Body=data, **extra)

    def task(self, key: str) -> StageTask:
        return StageTask(
            task_token="token", stage=Stage.EXTRACT, image_id="img1", bucket=self.bucket, key=key
        )


@pytest.fixture
async def stack_harness(stack: Stack, executor: ThreadPoolExecutor) -> AsyncIterator[Harness]:
    """The handler against a fully bootstrapped stack's bucket."""
    settings, aws, outputs = stack
    yield Harness(settings, aws, outputs["bucket"], executor)


@pytest.fixture
async def harness(
    settings_factory: Callable[..., Settings], executor: ThreadPoolExecutor
) -> AsyncIterator[Harness]:
    """Only the bucket: the handler needs nothing else, and a whole stack takes seconds."""
    settings = settings_factory()
    aws = AwsClients(settings)
    try:
        await aws.client("s3")  # the only client the handler uses
        bucket = ResourceNames.from_settings(settings).bucket
        await aws.s3.create_bucket(Bucket=bucket)
        yield Harness(settings, aws, bucket, executor)
    finally:
        await aws.__aexit__(None, None, None)


def camera_jpeg(size: tuple[int, int]) -> bytes:
    """A photo-sized JPEG with camera EXIF and GPS; noise keeps it from compressing to nothing."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "EOS R5"
    exif[ExifTags.Base.Orientation] = 6
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = "2021:06:01 12:30:45"
    sub[ExifTags.Base.OffsetTimeOriginal] = "+02:00"
    sub[ExifTags.Base.ISOSpeedRatings] = 200
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (R(48, 1), R(51, 1), R(2952, 100))
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (R(2, 1), R(17, 1), R(4008, 100))
    gps[ExifTags.GPS.GPSAltitudeRef] = b"\x00"
    gps[ExifTags.GPS.GPSAltitude] = R(35, 1)
    image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def large_jpeg() -> bytes:
    data = camera_jpeg((1600, 1200))
    assert len(data) > 4 * (HEAD_BYTES + TAIL_BYTES)
    return data


def expected_large(data: bytes) -> ImageMetadata:
    return ImageMetadata.model_validate(
        {
            "format": "JPEG",
            "width": 1600,
            "height": 1200,
            "mode": "RGB",
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "exif": {
                "make": "Canon",
                "model": "EOS R5",
                "datetime_original": "2021-06-01T12:30:45",
                "offset_time_original": "+02:00",
                "iso": 200,
                "orientation": 6,
            },
            "gps": Gps(latitude=48.8582, longitude=2.2944667, altitude=35.0),
            "taken_at": "2021-06-01T12:30:45+02:00",
        }
    )


async def test_large_jpeg_with_stored_checksum_reads_only_head_and_tail(
    stack_harness: Harness, large_jpeg: bytes
) -> None:
    harness = stack_harness
    await harness.put("incoming/u/a/big.jpg", large_jpeg)
    ctx, s3 = harness.context()
    result = await handle(harness.task("incoming/u/a/big.jpg"), ctx)
    assert result == expected_large(large_jpeg)
    assert sorted(get.range or "" for get in s3.gets) == [
        f"bytes=-{TAIL_BYTES}",
        f"bytes=0-{HEAD_BYTES - 1}",
    ]
    assert s3.fetched == HEAD_BYTES + TAIL_BYTES < len(large_jpeg) / 4


async def test_without_stored_checksum_the_object_is_streamed_once(
    harness: Harness, large_jpeg: bytes
) -> None:
    await harness.put("incoming/u/a/plain.jpg", large_jpeg, checksum=False)
    ctx, s3 = harness.context()
    result = await handle(harness.task("incoming/u/a/plain.jpg"), ctx)
    assert result == expected_large(large_jpeg)
    assert [(get.range, get.bytes) for get in s3.gets] == [(None, len(large_jpeg))]


async def test_multipart_checksum_is_not_taken_for_the_file_hash(harness: Harness) -> None:
    # A multipart object's stored SHA-256 is a checksum of the part checksums.
    part_size = 5 * 1024 * 1024
    data = camera_jpeg((1600, 1200))
    data += b"\x00" * (part_size + 100 - len(data))  # padding after the image: still a JPEG
    key = "incoming/u/a/multi.jpg"
    s3 = harness.aws.s3
    upload = await s3.create_multipart_upload(
        Bucket=harness.bucket, Key=key, ChecksumAlgorithm="SHA256"
    )
    parts = []
    for number, start in enumerate(range(0, len(data), part_size), start=1):
        part = await s3.upload_part(
            Bucket=harness.bucket,
            Key=key,
            UploadId=upload["UploadId"],
            PartNumber=number,
            Body=data[start : start + part_size],
            ChecksumAlgorithm="SHA256",
        )
        parts.append(
            {"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]}
        )
    await s3.complete_multipart_upload(
        Bucket=harness.bucket,
        Key=key,
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": parts},
    )
    head = await s3.head_object(Bucket=harness.bucket, Key=key, ChecksumMode="ENABLED")
    stored = base64.b64decode(head["ChecksumSHA256"]).hex()
    assert stored != hashlib.sha256(data).hexdigest()  # the trap this test is about

    ctx, _ = harness.context()
    result = await handle(harness.task(key), ctx)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert (result.format, result.width, result.height) == ("JPEG", 1600, 1200)


async def test_png_named_jpg_small_object_is_one_whole_read(harness: Harness) -> None:
    data = (FIXTURES / "images" / "interlaced_rgba.png").read_bytes()
    await harness.put("incoming/u/a/really_a_png.jpg", data)
    ctx, s3 = harness.context()
    result = await handle(harness.task("incoming/u/a/really_a_png.jpg"), ctx)
    assert (result.format, result.width, result.height, result.mode) == ("PNG", 162, 150, "RGBA")
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert [(get.range, get.bytes) for get in s3.gets] == [(None, len(data))]


async def test_header_longer_than_the_head_falls_back_to_a_whole_read(harness: Harness) -> None:
    data = (FIXTURES / "images" / "progressive_icc_big.jpg").read_bytes()
    await harness.put("incoming/u/a/icc.jpg", data)
    ctx, s3 = harness.context()
    result = await handle(harness.task("incoming/u/a/icc.jpg"), ctx)
    assert (result.format, result.width, result.height) == ("JPEG", 425, 250)
    assert [get.range for get in s3.gets][-1] is None
    assert s3.gets[-1].bytes == len(data)


async def test_truncated_large_jpeg_is_corrupt(harness: Harness, large_jpeg: bytes) -> None:
    await harness.put("incoming/u/a/cut.jpg", large_jpeg[: len(large_jpeg) * 2 // 3])
    ctx, _ = harness.context()
    with pytest.raises(CorruptImage, match="the JPEG is truncated"):
        await handle(harness.task("incoming/u/a/cut.jpg"), ctx)


async def test_file_over_the_byte_limit_is_rejected_unread(
    harness: Harness, large_jpeg: bytes
) -> None:
    await harness.put("incoming/u/a/huge.jpg", large_jpeg)
    ctx, s3 = harness.context(max_upload_bytes=1024 * 1024)
    with pytest.raises(TooLarge) as caught:
        await handle(harness.task("incoming/u/a/huge.jpg"), ctx)
    size_mib = len(large_jpeg) / (1024 * 1024)
    assert caught.value.cause == f"the file is {size_mib:.1f} MiB; the limit is 1 MiB"
    assert s3.gets == []


async def test_pixel_limit_from_settings(harness: Harness, large_jpeg: bytes) -> None:
    await harness.put("incoming/u/a/many_pixels.jpg", large_jpeg)
    ctx, _ = harness.context(max_pixels=1_000_000)
    with pytest.raises(TooLarge, match="1600×1200"):
        await handle(harness.task("incoming/u/a/many_pixels.jpg"), ctx)


async def test_empty_and_text_objects_are_corrupt(harness: Harness) -> None:
    await harness.put("incoming/u/a/empty.jpg", b"")
    await harness.put("incoming/u/a/note.jpg", b"just some text, not a photo\n")
    ctx, s3 = harness.context()
    with pytest.raises(CorruptImage, match=r"^the file is empty$"):
        await handle(harness.task("incoming/u/a/empty.jpg"), ctx)
    assert s3.gets == []
    with pytest.raises(CorruptImage, match=r"not an image \(looks like text\)"):
        await handle(harness.task("incoming/u/a/note.jpg"), ctx)


async def test_missing_object_fails_with_a_readable_cause(harness: Harness) -> None:
    ctx, _ = harness.context()
    with pytest.raises(TaskError, match="no longer exists"):
        await handle(harness.task("incoming/u/a/gone.jpg"), ctx)


# --- the formats phones and websites make -----------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
async def test_phone_formats_are_described_with_their_exif(harness: Harness, fmt: str) -> None:
    data = photo(fmt, size=(300, 200), orientation=6, alpha=True)
    key = f"incoming/u/a/photo.{EXTENSIONS[fmt]}"
    await harness.put(key, data)
    ctx, s3 = harness.context()
    result = await handle(harness.task(key), ctx)
    # A HEIF's `irot` is applied by its decoder: upright size, orientation 1 (see metadata.py).
    upright = fmt == "HEIF"
    assert (result.format, result.mode) == (fmt, "RGBA")
    assert (result.width, result.height) == ((300, 200) if upright else (200, 300))
    assert result.exif.orientation == (1 if upright else 6)
    assert (result.exif.make, result.exif.model) == ("Apple", "iPhone 15 Pro")
    assert result.taken_at == "2024-07-14T18:05:09+02:00"
    assert result.gps == Gps(latitude=48.8581667, longitude=2.2945, altitude=35.0)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    assert [(get.range, get.bytes) for get in s3.gets] == [(None, len(data))]


def _noisy_heic() -> bytes:
    """A HEIC larger than the head and tail reads (noise does not compress)."""
    image = Image.frombytes("RGB", (640, 480), os.urandom(640 * 480 * 3))
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", quality=95, exif=phone_exif().tobytes())
    return buffer.getvalue()


async def test_large_heic_is_read_whole_after_its_head_passes(harness: Harness) -> None:
    data = _noisy_heic()
    assert len(data) > HEAD_BYTES + TAIL_BYTES
    await harness.put("incoming/u/a/big.heic", data)
    ctx, s3 = harness.context()
    result = await handle(harness.task("incoming/u/a/big.heic"), ctx)
    assert (result.format, result.width, result.height) == ("HEIF", 640, 480)
    assert result.taken_at == "2024-07-14T18:05:09+02:00"
    assert [get.range for get in s3.gets][-1] is None


async def test_large_heic_bomb_is_rejected_from_its_head(harness: Harness) -> None:
    bomb = with_ispe(_noisy_heic(), 40000, 30000)
    await harness.put("incoming/u/a/bomb.heic", bomb)
    ctx, s3 = harness.context()
    with pytest.raises(TooLarge, match="40000×30000"):
        await handle(harness.task("incoming/u/a/bomb.heic"), ctx)
    assert s3.fetched == HEAD_BYTES + TAIL_BYTES < len(bomb)
