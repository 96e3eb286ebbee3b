"""Deleting images and albums: records, originals and every derived object.

Deletion holds whatever state the image is in: its record is first replaced by a tombstone
(`catalog.DELETED`, in no album), which every later write of the upload path (the starter), the
workflow (StoreResults, Reject, failures) and the workers (stage progress) is conditional
against; then its execution is stopped and its objects go. What a stage still running writes
after that (a rendition) is removed by the sweep (`sweeper.py`) before it purges the tombstone.
"""

from __future__ import annotations

import contextlib
from typing import Any

from botocore.exceptions import ClientError

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import DELETED
from imgproc_shared.duplicates import ExactDuplicates
from imgproc_shared.logging import get_logger
from imgproc_shared.models import ImageStatus
from imgproc_shared.resources import THUMBNAILS_PREFIX, ResourceNames
from imgproc_shared.search import SearchIndex
from imgproc_status_api.api.deps import ApiState

log = get_logger()


async def delete_image(
    state: ApiState, record: dict[str, Any], *, album_deleting: str | None = None
) -> None:
    """Delete an image: stop its execution if it still runs, then its objects and record.
    Its exact duplicates (outside `album_deleting`) keep the photo: one is promoted."""
    image_id = str(record["image_id"])
    await ExactDuplicates(state.aws, state.names).before_delete(
        record, album_deleting=album_deleting
    )
    # The record as it was when the tombstone replaced it: its execution may have started
    # since `record` was read.
    replaced = await state.catalog.tombstone_image(record)
    if replaced is not None and replaced.get("status") != DELETED:
        record = {**record, **replaced}
    await remove_stored(state.aws, state.names, record)
    if record.get("owner"):
        await SearchIndex(state.aws, state.names).remove_image(str(record["owner"]), image_id)
    if record.get("album_id"):
        state.events.image_deleted(str(record["album_id"]), image_id)
    log.info("image deleted", image_id=image_id, status=record.get("status"))


async def remove_stored(aws: AwsClients, names: ResourceNames, record: dict[str, Any]) -> int:
    """Stop the image's execution if it may still run, and delete its original and every
    rendition; returns how many objects were deleted."""
    image_id = str(record["image_id"])
    bucket = record.get("bucket") or names.bucket
    if record.get("execution_arn") and record.get("status") in (
        ImageStatus.UPLOADING.value,
        ImageStatus.PROCESSING.value,
    ):
        # Best effort: a finished or unknown execution has nothing to stop.
        with contextlib.suppress(ClientError):
            await aws.stepfunctions.stop_execution(
                executionArn=record["execution_arn"], error="ImageDeleted", cause="deleted by owner"
            )
    keys = {record["key"]} if record.get("key") else set()
    for rendition in (record.get("thumbnails") or {}).get("renditions", []):
        keys.add(rendition["key"])
    # Renditions written by a stage that had not reported yet are found by prefix.
    paginator = aws.s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=f"{THUMBNAILS_PREFIX}{image_id}/"):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    ordered = sorted(keys)
    for start in range(0, len(ordered), 1000):
        batch = ordered[start : start + 1000]
        await aws.s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
    return len(ordered)


async def delete_album(state: ApiState, album: dict[str, Any]) -> int:
    """Delete an album with all its images, in whatever state; returns how many went with it.

    Tombstones leave the album's index, so each pass reads the images still there. One more
    pass after the album is gone takes any upload granted meanwhile (the starter refuses
    objects for an album that does not exist; the abandoned-upload sweep ends such grants)."""
    deleted = 0

    async def delete_images() -> None:
        nonlocal deleted
        while True:
            records, _ = await state.catalog.list_album_images(album["album_id"], limit=100)
            if not records:
                return
            for record in records:
                await delete_image(state, record, album_deleting=album["album_id"])
                deleted += 1

    await delete_images()
    await state.catalog.delete_album(album)
    await delete_images()
    log.info("album deleted", album_id=album["album_id"], images=deleted)
    return deleted
