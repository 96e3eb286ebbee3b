"""The extract task: read as little of the uploaded object as needed and describe it.

1. HeadObject (with the stored checksum): a file over the byte limit is rejected unread.
2. The SHA-256 comes from S3 when the uploader stored one (`ChecksumAlgorithm="SHA256"`, verified
   by S3 on upload); only otherwise is the whole object streamed through hashlib.
3. A large object is read in two ranges, its head and its tail; a small one, or one whose header
   is longer than the head (huge ICC profiles), or a format that needs it, is read whole.
4. Identification, limits, truncation and EXIF run in the worker's thread pool (`metadata.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from botocore.exceptions import ClientError
from PIL import Image

from imgproc_extractor.metadata import ImageFacts, NeedWholeObject, ObjectBytes, describe
from imgproc_shared.aws import as_dict
from imgproc_shared.checksums import stored_sha256
from imgproc_shared.errors import CorruptImage, TaskError, TooLarge, TransientError, error_code
from imgproc_shared.models import ImageMetadata, StageTask
from imgproc_shared.worker.runtime import WorkContext

# Every JPEG/PNG header we have seen fits in the head, except ones with megabyte ICC profiles or
# long PNG text chunks (those fall back to a whole read). The tail holds the end-of-image
# marker, IEND, and an eXIf chunk written after the PNG image data.
HEAD_BYTES = 256 * 1024
TAIL_BYTES = 64 * 1024
# At or below this size one GET of the whole object beats two ranged ones.
WHOLE_READ_BYTES = HEAD_BYTES + TAIL_BYTES
STREAM_CHUNK_BYTES = 1024 * 1024

_MiB = 1024 * 1024

# The worker stores this stage's result on the image record itself, under this attribute, as
# soon as it is known: the metadata is wanted before the other stages end (the workflow stores
# tags and renditions together, when both are in).
RESULT_ATTRIBUTE = "metadata"


async def setup(ctx: WorkContext) -> None:
    """Align Pillow's decompression-bomb limit with ours, so its warning fires at our limit.

    `metadata.describe` enforces `max_pixels` itself from the header; this keeps Pillow from
    warning (and so rejecting) below it in this process.
    """
    Image.MAX_IMAGE_PIXELS = ctx.settings.max_pixels


async def handle(task: StageTask, ctx: WorkContext) -> ImageMetadata:
    """Describe the uploaded object: format, size, hash, EXIF and GPS; or reject it."""
    head = await _head_object(ctx, task.bucket, task.key)
    size = int(head["ContentLength"])
    check_size(size, ctx.settings.max_upload_bytes)

    stored = stored_sha256(head)
    sha256 = stored
    if sha256 is None:
        sample, sha256 = await _stream_and_hash(ctx, task.bucket, task.key, size)
        fetched = size
    elif size <= WHOLE_READ_BYTES:
        sample = ObjectBytes.whole(await ctx.read_object(task.bucket, task.key))
        fetched = size
    else:
        sample = await _read_ends(ctx, task.bucket, task.key, size)
        fetched = len(sample.head) + len(sample.tail)

    try:
        facts: ImageFacts = await ctx.run_cpu(describe, sample, ctx.settings.max_pixels)
    except NeedWholeObject:
        data = await ctx.read_object(task.bucket, task.key)
        fetched += len(data)
        facts = await ctx.run_cpu(describe, ObjectBytes.whole(data), ctx.settings.max_pixels)

    ctx.log.info(
        "extracted",
        format=facts.format,
        width=facts.width,
        height=facts.height,
        bytes=size,
        fetched_bytes=fetched,
        checksum_from_s3=stored is not None,
    )
    return ImageMetadata(
        format=facts.format,
        width=facts.width,
        height=facts.height,
        mode=facts.mode,
        bytes=size,
        sha256=sha256,
        exif=facts.fields.exif,
        gps=facts.fields.gps,
        taken_at=facts.fields.taken_at,
    )


def check_size(size: int, max_bytes: int) -> None:
    """Reject an empty or oversized object before reading any of it."""
    if size == 0:
        raise CorruptImage("the file is empty")
    if size > max_bytes:
        shown, limit = f"{size / _MiB:.1f} MiB", f"{max_bytes / _MiB:g} MiB"
        if float(shown.split()[0]) <= max_bytes / _MiB:
            # Found by the reliability tests: "the file is 1.0 MiB; the limit is 1 MiB" reads
            # as if it fit. Just over the limit, say it in bytes.
            shown, limit = f"{size:,} bytes", f"{max_bytes:,} bytes ({limit})"
        raise TooLarge(f"the file is {shown}; the limit is {limit}")


async def _head_object(ctx: WorkContext, bucket: str, key: str) -> dict[str, Any]:
    try:
        head = as_dict(await ctx.aws.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED"))
    except ClientError as exc:
        code = error_code(exc) or ""
        if code in ("404", "NoSuchKey", "NotFound"):
            # Deleted after upload: no retry brings it back.
            raise TaskError(f"the uploaded file s3://{bucket}/{key} no longer exists") from None
        raise
    return head


async def _read_ends(ctx: WorkContext, bucket: str, key: str, size: int) -> ObjectBytes:
    """Two ranged GETs, in parallel: the head and the tail of the object."""
    head, tail = await asyncio.gather(
        ctx.read_object(bucket, key, f"bytes=0-{HEAD_BYTES - 1}"),
        ctx.read_object(bucket, key, f"bytes=-{TAIL_BYTES}"),
    )
    return ObjectBytes(size=size, head=head, tail=tail, complete=False)


async def _stream_and_hash(
    ctx: WorkContext, bucket: str, key: str, size: int
) -> tuple[ObjectBytes, str]:
    """Stream the whole object through SHA-256, keeping only its head and tail (all of a small
    one), so a large object is never held in memory."""
    hasher = hashlib.sha256()
    keep_all = size <= WHOLE_READ_BYTES
    kept: list[bytes] = []
    head = b""
    tail = b""
    read = 0
    response = await ctx.aws.s3.get_object(Bucket=bucket, Key=key)
    async with response["Body"] as body:
        while chunk := await body.read(STREAM_CHUNK_BYTES):
            read += len(chunk)
            # hashlib releases the GIL on large buffers: hash in the pool, off the event loop.
            await ctx.run_cpu(hasher.update, chunk)
            if keep_all:
                kept.append(chunk)
                continue
            if len(head) < HEAD_BYTES:
                head += chunk[: HEAD_BYTES - len(head)]
            tail = (tail + chunk)[-TAIL_BYTES:] if len(chunk) < TAIL_BYTES else chunk[-TAIL_BYTES:]
    if read != size:
        raise TransientError(f"read {read} bytes of an object of {size}; it changed while read")
    if keep_all:
        return ObjectBytes.whole(b"".join(kept)), hasher.hexdigest()
    return ObjectBytes(size=size, head=head, tail=tail, complete=False), hasher.hexdigest()
