"""Deleting images and albums: records, originals and every derived object.

Deletion holds whatever state the image is in: its record is first replaced by a tombstone
(`catalog.DELETED`, in no album), which every later write of the upload path (the starter), the
workflow (StoreResults, Reject, failures) and the workers (stage progress) is conditional
against; then its execution is stopped and its objects go. What a stage still running writes
after that (a rendition) is removed by the sweep (`sweeper.py`) before it purges the tombstone.
"""

from __future__ import annotations

from botocore.exceptions import ClientError

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import DELETED
from imgproc_shared.duplicates import ExactDuplicates
from imgproc_shared.errors import access_denial
from imgproc_shared.logging import get_logger
from imgproc_shared.models import ImageStatus
from imgproc_shared.records import AlbumRecord, ImageRecord
from imgproc_shared.resources import THUMBNAILS_PREFIX
from imgproc_shared.search import SearchIndex
from imgproc_status_api.api.deps import ApiState

log = get_logger()


async def delete_image(
    state: ApiState, record: ImageRecord, *, album_deleting: str | None = None
) -> None:
    """Delete an image: stop its execution if it still runs, then its objects and record.
    Its exact duplicates (outside `album_deleting`) keep the photo: one is promoted."""
    image_id = str(record.image_id)
    await ExactDuplicates(state.aws, state.names).before_delete(
        record, album_deleting=album_deleting
    )
    # The record as it was when the tombstone replaced it: its execution may have started
    # since `record` was read.
    replaced = await state.catalog.tombstone_image(record)
    if replaced is not None and replaced.status != DELETED:
        # The typed values themselves (model_copy does not validate: a dump would leave dicts).
        record = record.model_copy(
            update={name: getattr(replaced, name) for name in replaced.model_fields_set}
        )
    await remove_stored(state.aws, record)
    if record.owner:
        await SearchIndex(state.aws, state.names).remove_image(str(record.owner), image_id)
    if record.album_id:
        state.events.image_deleted(str(record.album_id), image_id)
    log.info("image deleted", image_id=image_id, status=record.status)


async def remove_stored(aws: AwsClients, record: ImageRecord) -> int:
    """Stop the image's execution if it may still run, and delete its original and every
    rendition; returns how many objects were deleted."""
    image_id = str(record.image_id)
    bucket = str(record.bucket)  # every record has one, from its first write to its tombstone
    if record.execution_arn and record.status in (
        ImageStatus.UPLOADING.value,
        ImageStatus.PROCESSING.value,
    ):
        try:
            await aws.stepfunctions.stop_execution(
                executionArn=record.execution_arn, error="ImageDeleted", cause="deleted by owner"
            )
        except ClientError as exc:
            # A finished or unknown execution has nothing to stop; a denial must be heard.
            if access_denial(exc) is not None:
                raise
    keys = {record.key} if record.key else set()
    for rendition in record.thumbnails.renditions if record.thumbnails else []:
        keys.add(rendition.key)
    # Renditions written by a stage that had not reported yet are found by prefix.
    paginator = aws.s3.get_paginator("list_objects_v2")
    async for page in paginator.paginate(Bucket=bucket, Prefix=f"{THUMBNAILS_PREFIX}{image_id}/"):
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    ordered = sorted(keys)
    for start in range(0, len(ordered), 1000):
        batch = ordered[start : start + 1000]
        response = await aws.s3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True}
        )
        # Each key is authorized on its own: a refusal comes back per key, not as an error.
        for failure in response.get("Errors", []):
            if failure.get("Code") == "AccessDenied":
                key = failure.get("Key", "")
                raise ClientError(
                    {
                        "Error": {
                            "Code": "AccessDenied",
                            "Message": "not authorized to perform: s3:DeleteObject on resource: "
                            f"arn:aws:s3:::{bucket}/{key}",
                        }
                    },
                    "DeleteObjects",
                )
            log.warning(
                "object not deleted",
                image_id=image_id,
                key=failure.get("Key"),
                error=failure.get("Code"),
            )
    return len(ordered)


async def delete_album(state: ApiState, album: AlbumRecord) -> int:
    """Delete an album with all its images, in whatever state; returns how many went with it.

    Tombstones leave the album's index, so each pass reads the images still there. One more
    pass after the album is gone takes any upload granted meanwhile (the starter refuses
    objects for an album that does not exist; the abandoned-upload sweep ends such grants)."""
    deleted = 0

    async def delete_images() -> None:
        nonlocal deleted
        while True:
            records, _ = await state.catalog.list_album_images(album.album_id, limit=100)
            if not records:
                return
            for record in records:
                await delete_image(state, record, album_deleting=album.album_id)
                deleted += 1

    await delete_images()
    await state.catalog.delete_album(album)
    await delete_images()
    log.info("album deleted", album_id=album.album_id, images=deleted)
    return deleted
