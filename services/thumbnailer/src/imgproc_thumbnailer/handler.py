"""The thumbnail stage: read the original, make its renditions and placeholder, store them.

Keys depend only on the image id and rendition, so a redelivered message overwrites the same
objects: the stage is idempotent without any bookkeeping.
"""

from __future__ import annotations

import asyncio

from imgproc_shared.errors import CorruptImage
from imgproc_shared.logging import get_logger
from imgproc_shared.models import ImageMetadata, Rendition, StageTask, ThumbnailResult
from imgproc_shared.resources import thumbnail_key
from imgproc_shared.worker.runtime import WorkContext
from imgproc_thumbnailer import simd_resample
from imgproc_thumbnailer.config import get_thumbnail_settings
from imgproc_thumbnailer.phash import phash_of_encoded
from imgproc_thumbnailer.renditions import EncodedRendition, RenditionSpec, render

THUMBNAIL = "thumbnail"
PREVIEW = "preview"
# Renditions are derived from an immutable original: let browsers and CDNs keep them.
CACHE_CONTROL = "public, max-age=31536000, immutable"


async def setup(ctx: WorkContext) -> None:
    """Worker startup: probe the SIMD resampler against this Pillow now, not at the first
    photo, and say which one resamples (a disagreeing one has logged why it is not used)."""
    resampler = "simd" if simd_resample.available() else "pillow"
    get_logger().info("thumbnailer ready", resampler=resampler)


def orientation_from(metadata: ImageMetadata | None) -> int | None:
    """The EXIF orientation the extractor reported, if it is a valid one."""
    value = metadata.exif.orientation if metadata else None
    return value if value is not None and 1 <= value <= 8 else None


async def handle(task: StageTask, ctx: WorkContext) -> ThumbnailResult:
    """Make the thumbnail and preview of one image, write them to S3, return their keys."""
    options = get_thumbnail_settings()
    specs = [
        RenditionSpec(THUMBNAIL, ctx.settings.thumbnail_size),
        RenditionSpec(PREVIEW, max(options.preview_size, ctx.settings.thumbnail_size)),
    ]
    data = await ctx.read_object(task.bucket, task.key)
    if not data:
        raise CorruptImage("the file is empty")
    rendered = await ctx.run_cpu(
        lambda: render(
            data,
            specs,
            output_format=options.format,
            quality=options.quality,
            orientation=orientation_from(task.metadata),
            max_pixels=ctx.settings.max_pixels,
        )
    )
    by_name = {rendition.name: rendition for rendition in rendered.renditions}
    # The perceptual hash (near-duplicate grouping) from the thumbnail just made: ~2 ms.
    phash = await ctx.run_cpu(phash_of_encoded, by_name[THUMBNAIL].data)
    ordered = [by_name[spec.name] for spec in specs]
    keys = [thumbnail_key(task.image_id, r.name, r.extension) for r in ordered]
    await asyncio.gather(
        *(
            _store(ctx, task.bucket, key, rendition)
            for key, rendition in zip(keys, ordered, strict=True)
        )
    )
    ctx.log.info(
        "renditions stored",
        renditions={r.name: f"{r.width}x{r.height}" for r in ordered},
        orientation=rendered.orientation,
    )
    return ThumbnailResult(
        renditions=[
            Rendition(
                name=r.name,
                key=key,
                width=r.width,
                height=r.height,
                format=r.format,
                bytes=len(r.data),
            )
            for key, r in zip(keys, ordered, strict=True)
        ],
        placeholder=rendered.placeholder,
        phash=phash,
    )


async def _store(ctx: WorkContext, bucket: str, key: str, rendition: EncodedRendition) -> None:
    await ctx.aws.s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=rendition.data,
        ContentType=rendition.content_type,
        CacheControl=CACHE_CONTROL,
    )
