"""Deleting images and albums: records, originals and every derived object."""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import ClientError

from imgproc_shared.logging import get_logger
from imgproc_shared.models import ImageStatus
from imgproc_shared.resources import THUMBNAILS_PREFIX
from imgproc_status_api.api.deps import ApiState

log = get_logger()


async def delete_image(state: ApiState, record: dict[str, Any]) -> None:
    """Delete an image: stop its execution if it still runs, then its objects and record."""
    image_id = str(record["image_id"])
    bucket = record.get("bucket") or state.names.bucket
    if record.get("execution_arn") and record.get("status") in (
        ImageStatus.UPLOADING.value,
        ImageStatus.PROCESSING.value,
    ):
        # Best effort: a finished or unknown execution has nothing to stop.
        with contextlib.suppress(ClientError):
            await state.aws.stepfunctions.stop_execution(
                executionArn=record["execution_arn"], error="ImageDeleted", cause="deleted by owner"
            )
    keys = {record["key"]} if record.get("key") else set()
    for rendition in (record.get("thumbnails") or {}).get("renditions", []):
        keys.add(rendition["key"])
    # Renditions written by a stage that had not reported yet are found by prefix.
    paginator = state.aws.s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=f"{THUMBNAILS_PREFIX}{image_id}/"):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    ordered = sorted(keys)
    for start in range(0, len(ordered), 1000):
        batch = ordered[start : start + 1000]
        await state.aws.s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
    await state.catalog.delete_image(image_id)
    if record.get("album_id"):
        state.events.image_deleted(str(record["album_id"]), image_id)
    log.info("image deleted", image_id=image_id, objects=len(ordered))


async def delete_album(state: ApiState, album: dict[str, Any]) -> int:
    """Delete an album with all its images; returns how many images went with it."""
    deleted = 0
    while True:
        records, _ = await state.catalog.list_album_images(album["album_id"], limit=100)
        if not records:
            break
        for record in records:
            await delete_image(state, record)
            deleted += 1
    await state.catalog.delete_album(album)
    log.info("album deleted", album_id=album["album_id"], images=deleted)
    return deleted
