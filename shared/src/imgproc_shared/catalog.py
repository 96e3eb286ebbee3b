"""Albums and images in DynamoDB: the records every service reads and writes, as the typed
models of `imgproc_shared.records`.

Complex values that the workflow writes itself (metadata, tags, thumbnails) are stored as JSON
strings, because States Language cannot build typed DynamoDB maps from task results.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError
from pydantic import BaseModel

from imgproc_shared.aws import AwsClients
from imgproc_shared.errors import error_code
from imgproc_shared.models import ImageStatus
from imgproc_shared.records import DELETED, STAGE_ORDER, AlbumRecord, ImageRecord, StageProgress
from imgproc_shared.resources import (
    ALBUMS_BY_OWNER_INDEX,
    IMAGES_BY_ALBUM_INDEX,
    IMAGES_BY_SWEEP_INDEX,
    SWEEP_DELETED,
    SWEEP_UPLOAD,
    ResourceNames,
    Table,
)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()

JSON_ATTRIBUTES = ("metadata", "tags", "thumbnails")

__all__ = ["DELETED", "STAGE_ORDER", "AlbumNameTaken", "Catalog", "album_name_guard"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_item(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in values.items() if v is not None}


def from_item(item: dict[str, Any]) -> dict[str, Any]:
    plain = {k: _deserializer.deserialize(v) for k, v in item.items()}
    for name in JSON_ATTRIBUTES:
        if isinstance(plain.get(name), str):
            plain[name] = json.loads(plain[name])
    converted: dict[str, Any] = _plain_numbers(plain)
    return converted


def _plain_numbers(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_numbers(v) for v in value]
    return value


def _image(item: dict[str, Any]) -> ImageRecord:
    return ImageRecord.model_validate(from_item(item))


def _projection(attributes: Sequence[str]) -> dict[str, Any]:
    """Read arguments that return only `attributes` of an image (names escaped), and its id,
    which every `ImageRecord` has; none for the whole item."""
    if not attributes:
        return {}
    attributes = tuple(dict.fromkeys(("image_id", *attributes)))
    names = {f"#a{i}": name for i, name in enumerate(attributes)}
    return {"ProjectionExpression": ", ".join(names), "ExpressionAttributeNames": names}


def _with_name(arguments: dict[str, Any], placeholder: str, name: str) -> dict[str, Any]:
    """Read arguments with one more attribute name placeholder (for a key condition)."""
    names = {**arguments.get("ExpressionAttributeNames", {}), placeholder: name}
    return {**arguments, "ExpressionAttributeNames": names}


def is_conditional_failure(exc: ClientError) -> bool:
    return error_code(exc) == "ConditionalCheckFailedException"


class Catalog:
    def __init__(self, aws: AwsClients, names: ResourceNames) -> None:
        self.aws = aws
        self.images_table = names.table(Table.IMAGES)
        self.albums_table = names.table(Table.ALBUMS)

    async def _update_image_if(self, image_id: str, **update: Any) -> bool:
        """One UpdateItem on an image with a ConditionExpression; False when it does not hold."""
        try:
            await self.aws.dynamodb.update_item(
                TableName=self.images_table, Key={"image_id": {"S": image_id}}, **update
            )
            return True
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise

    async def get_image(self, image_id: str, attributes: Sequence[str] = ()) -> ImageRecord | None:
        """The image's record (only `attributes` of it when given); None if there is none."""
        response = await self.aws.dynamodb.get_item(
            TableName=self.images_table,
            Key={"image_id": {"S": image_id}},
            ConsistentRead=True,
            **_projection(attributes),
        )
        item = response.get("Item")
        return _image(item) if item else None

    async def record_upload(
        self,
        *,
        image_id: str,
        owner: str,
        album_id: str,
        bucket: str,
        key: str,
        file_name: str,
        content_type: str | None = None,
        size: int | None = None,
    ) -> ImageRecord:
        """The image exists as UPLOADING from the moment an upload is granted."""
        values = {
            "image_id": image_id,
            "owner": owner,
            "album_id": album_id,
            "bucket": bucket,
            "key": key,
            "file_name": file_name,
            "content_type": content_type,
            "size": size,
            "status": ImageStatus.UPLOADING.value,
            "uploaded_at": now_iso(),
        }
        # Until the object arrives, the abandoned-upload sweep finds it by `by_sweep`.
        sweep = {"sweep": SWEEP_UPLOAD, "sweep_at": values["uploaded_at"]}
        await self.aws.dynamodb.put_item(
            TableName=self.images_table,
            Item=to_item({**values, **sweep}),
            ConditionExpression="attribute_not_exists(image_id)",
        )
        return ImageRecord.model_validate(values)

    async def mark_processing(
        self,
        *,
        image_id: str,
        owner: str,
        album_id: str,
        bucket: str,
        key: str,
        execution_arn: str,
        recorded_only: bool = False,
    ) -> bool:
        """UPLOADING (or unknown, for objects put straight into S3) → PROCESSING.

        False when the image is already past UPLOADING (a duplicate S3 event), when its record
        names another owner, album or key than the object's (so not this upload), when it was
        deleted, or, with `recorded_only`, when it has no record yet.
        """
        now = now_iso()
        condition = (
            "(#status = :uploading AND #owner = :owner AND #album_id = :album_id AND #key = :key)"
        )
        if not recorded_only:
            condition = "attribute_not_exists(image_id) OR " + condition
        return await self._update_image_if(
            image_id,
            UpdateExpression=(
                "SET #status = :processing, #arn = :arn, #started = :now, "
                + ", ".join(f"#{a} = if_not_exists(#{a}, :{a})" for a in _FIRST_SEEN)
                + " REMOVE #sweep, #sweep_at"
            ),
            ConditionExpression=condition,
            ExpressionAttributeNames={
                "#status": "status",
                "#arn": "execution_arn",
                "#started": "started_at",
                "#sweep": "sweep",
                "#sweep_at": "sweep_at",
                **{f"#{a}": a for a in _FIRST_SEEN},
            },
            ExpressionAttributeValues=to_item(
                {
                    ":processing": ImageStatus.PROCESSING.value,
                    ":uploading": ImageStatus.UPLOADING.value,
                    ":arn": execution_arn,
                    ":now": now,
                    ":owner": owner,
                    ":album_id": album_id,
                    ":bucket": bucket,
                    ":key": key,
                    ":uploaded_at": now,
                    ":file_name": key.rsplit("/", 1)[-1],
                }
            ),
        )

    async def mark_rerun(self, image_id: str, *, execution_arn: str, previous_reruns: int) -> bool:
        """FAILED → PROCESSING for a new execution (a dead-letter replay re-runs the image).

        Clears the failure and points `execution_arn` at the new execution. False when the
        image is not FAILED or another re-run counted first (the `reruns` counter guards it).
        """
        return await self._update_image_if(
            image_id,
            UpdateExpression=(
                "SET #status = :processing, execution_arn = :arn, reruns = :reruns, "
                "started_at = :now REMOVE error_code, error_message, failed_stage, finished_at"
            ),
            ConditionExpression=(
                "#status = :failed AND (attribute_not_exists(reruns) OR reruns = :previous)"
            ),
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":processing": ImageStatus.PROCESSING.value,
                    ":failed": ImageStatus.FAILED.value,
                    ":arn": execution_arn,
                    ":reruns": previous_reruns + 1,
                    ":previous": previous_reruns,
                    ":now": now_iso(),
                }
            ),
        )

    async def undo_rerun(self, image_id: str, *, execution_arn: str, cause: str) -> None:
        """Back to FAILED when a re-run's execution could not be started."""
        await self._update_image_if(
            image_id,
            UpdateExpression=(
                "SET #status = :failed, error_code = :code, error_message = :cause, "
                "finished_at = :now"
            ),
            ConditionExpression="#status = :processing AND execution_arn = :arn",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(
                {
                    ":failed": ImageStatus.FAILED.value,
                    ":processing": ImageStatus.PROCESSING.value,
                    ":arn": execution_arn,
                    ":code": "ImageProc.RerunNotStarted",
                    ":cause": cause,
                    ":now": now_iso(),
                }
            ),
        )

    async def record_stage(
        self,
        image_id: str,
        stage: str,
        progress: StageProgress | dict[str, Any],
        results: dict[str, Any] | None = None,
    ) -> bool:
        """Write one stage's progress (started, finished, error), and `results` (attributes
        stored as JSON, like `metadata`) in the same write; False if the image is unknown.

        A deleted image's write is dropped and counts as done (True): the worker's message goes
        and its late answer finds the execution stopped; nothing is written to the tombstone."""
        names = {"#stage": f"stage_{stage}", "#status": "status"}
        progress = StageProgress.model_validate(progress)
        values = {
            ":progress": _serializer.serialize(progress.model_dump(mode="json")),
            ":deleted": _serializer.serialize(DELETED),
        }
        assignments = ["#stage = :progress"]
        for i, (name, value) in enumerate((results or {}).items()):
            assert name in JSON_ATTRIBUTES, name
            names[f"#r{i}"] = name
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json")
            values[f":r{i}"] = {"S": json.dumps(value, separators=(",", ":"))}
            assignments.append(f"#r{i} = :r{i}")
        try:
            await self.aws.dynamodb.update_item(
                TableName=self.images_table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression="attribute_exists(image_id) AND #status <> :deleted",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return True
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
            existing: Any = exc.response.get("Item") or {}  # with ALL_OLD: the record as it is
            return bool(existing.get("status", {}).get("S") == DELETED)

    async def put_album(self, *, album_id: str, owner: str, name: str) -> AlbumRecord:
        album = AlbumRecord(album_id=album_id, owner=owner, name=name, created_at=now_iso())
        await self.aws.dynamodb.put_item(
            TableName=self.albums_table,
            Item=to_item(album.model_dump()),
            ConditionExpression="attribute_not_exists(album_id)",
        )
        return album

    async def get_album(self, album_id: str) -> AlbumRecord | None:
        """The album; None if there is none (a name guard or a content claim is no album)."""
        response = await self.aws.dynamodb.get_item(
            TableName=self.albums_table, Key={"album_id": {"S": album_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        if not item or "owner" not in item:
            return None
        return AlbumRecord.model_validate(from_item(item))

    # Queries and deletions used by the status API. Album names are unique per owner through a
    # guard item written in the same transaction as the album (a query-then-put would race).

    async def put_album_unique(self, *, album_id: str, owner: str, name: str) -> AlbumRecord:
        """Create an album whose name no other album of `owner` has; raises `AlbumNameTaken`."""
        album = AlbumRecord(album_id=album_id, owner=owner, name=name, created_at=now_iso())
        try:
            await self.aws.dynamodb.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.albums_table,
                            "Item": to_item(album.model_dump()),
                            "ConditionExpression": "attribute_not_exists(album_id)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.albums_table,
                            "Item": to_item(
                                {"album_id": album_name_guard(owner, name), "guards": album_id}
                            ),
                            "ConditionExpression": "attribute_not_exists(album_id)",
                        }
                    },
                ]
            )
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                raise AlbumNameTaken(name) from exc
            raise
        return album

    async def album_named(self, owner: str, name: str) -> str:
        """The id of `owner`'s album called `name`, created (through its name guard) if missing;
        safe when several callers ask for the same new name at once."""
        for _ in range(3):
            guard = await self.aws.dynamodb.get_item(
                TableName=self.albums_table,
                Key={"album_id": {"S": album_name_guard(owner, name)}},
                ConsistentRead=True,
            )
            guarded = from_item(guard["Item"]).get("guards") if guard.get("Item") else None
            if guarded:
                return str(guarded)
            album_id = uuid.uuid4().hex
            try:
                await self.put_album_unique(album_id=album_id, owner=owner, name=name)
                return album_id
            except AlbumNameTaken:
                continue  # another caller created it first: read its guard again
        raise AlbumNameTaken(name)

    async def list_albums(self, owner: str) -> list[AlbumRecord]:
        """The owner's albums, newest first."""
        albums: list[AlbumRecord] = []
        kwargs: dict[str, Any] = {}
        while True:
            page = await self.aws.dynamodb.query(
                TableName=self.albums_table,
                IndexName=ALBUMS_BY_OWNER_INDEX,
                KeyConditionExpression="#owner = :owner",
                ExpressionAttributeNames={"#owner": "owner"},
                ExpressionAttributeValues={":owner": {"S": owner}},
                ScanIndexForward=False,
                **kwargs,
            )
            albums.extend(AlbumRecord.model_validate(from_item(i)) for i in page.get("Items", []))
            if not page.get("LastEvaluatedKey"):
                return albums
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def delete_album(self, album: AlbumRecord) -> None:
        """Delete an album record and its name guard (its images are deleted separately)."""
        await self.aws.dynamodb.transact_write_items(
            TransactItems=[
                {
                    "Delete": {
                        "TableName": self.albums_table,
                        "Key": {"album_id": {"S": album.album_id}},
                    }
                },
                {
                    "Delete": {
                        "TableName": self.albums_table,
                        "Key": {"album_id": {"S": album_name_guard(album.owner, album.name)}},
                    }
                },
            ]
        )

    async def list_album_images(
        self,
        album_id: str,
        *,
        limit: int,
        after: tuple[str, str] | None = None,
    ) -> tuple[list[ImageRecord], tuple[str, str] | None]:
        """One page of an album's images, newest upload first.

        `after` and the returned position are (uploaded_at, image_id) of the last image of a
        page; None when there is no further page.
        """
        kwargs: dict[str, Any] = {}
        if after is not None:
            kwargs["ExclusiveStartKey"] = {
                "album_id": {"S": album_id},
                "uploaded_at": {"S": after[0]},
                "image_id": {"S": after[1]},
            }
        page = await self.aws.dynamodb.query(
            TableName=self.images_table,
            IndexName=IMAGES_BY_ALBUM_INDEX,
            KeyConditionExpression="album_id = :album",
            ExpressionAttributeValues={":album": {"S": album_id}},
            ScanIndexForward=False,
            Limit=limit,
            **kwargs,
        )
        images = [_image(item) for item in page.get("Items", [])]
        last = page.get("LastEvaluatedKey")
        position = None
        if last and images:
            position = (str(images[-1].uploaded_at), images[-1].image_id)
        return images, position

    async def get_images(
        self, image_ids: list[str], attributes: Sequence[str] = ()
    ) -> list[ImageRecord]:
        """Several image records at once (unknown ids are left out); only `attributes` of
        each when given (a poll for status need not carry every record's metadata)."""
        records: list[ImageRecord] = []
        projection = _projection(attributes)
        for start in range(0, len(image_ids), 100):
            keys: list[dict[str, Any]] = [
                {"image_id": {"S": image_id}} for image_id in image_ids[start : start + 100]
            ]
            request: dict[str, Any] = {
                self.images_table: {"Keys": keys, "ConsistentRead": True, **projection}
            }
            while request:
                response = await self.aws.dynamodb.batch_get_item(RequestItems=request)
                found = response.get("Responses", {}).get(self.images_table, [])
                records.extend(_image(item) for item in found)
                request = response.get("UnprocessedKeys") or {}
        return records

    async def iter_images(
        self,
        *,
        album_id: str | None = None,
        owner: str | None = None,
        attributes: Sequence[str] = (),
    ) -> AsyncIterator[ImageRecord]:
        """Every image of an album, of an owner, or of the whole table (neither given), a page
        at a time; only `attributes` of each when given. An album of another owner yields
        nothing when both are given."""
        projection = _projection(tuple(dict.fromkeys((*attributes, "owner"))) if attributes else ())
        if album_id is not None:
            pages = self._pages(
                "query",
                IndexName=IMAGES_BY_ALBUM_INDEX,
                KeyConditionExpression="#album = :album",
                ExpressionAttributeValues={":album": {"S": album_id}},
                **_with_name(projection, "#album", "album_id"),
            )
        elif owner is not None:
            for album in await self.list_albums(owner):
                async for record in self.iter_images(
                    album_id=album.album_id, owner=owner, attributes=attributes
                ):
                    yield record
            return
        else:
            pages = self._pages("scan", ConsistentRead=True, **projection)
        async for item in pages:
            record = _image(item)
            if owner is None or record.owner == owner:
                yield record

    async def _pages(self, operation: str, **kwargs: Any) -> AsyncIterator[dict[str, Any]]:
        call = getattr(self.aws.dynamodb, operation)
        while True:
            page = await call(TableName=self.images_table, **kwargs)
            for item in page.get("Items", []):
                yield item
            if not page.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def delete_image(self, image_id: str) -> None:
        await self.aws.dynamodb.delete_item(
            TableName=self.images_table, Key={"image_id": {"S": image_id}}
        )

    # Deletion that holds: a tombstone replaces the record, then the sweep purges it.

    async def tombstone_image(
        self, record: ImageRecord, *, only_if_uploading: bool = False
    ) -> ImageRecord | None:
        """Replace the image's record by a DELETED tombstone; returns the record it replaced
        (None if there was none). With `only_if_uploading`, only a record still UPLOADING is
        replaced (the abandoned-upload sweep), and None also when it is not."""
        now = now_iso()
        tombstone = {
            "image_id": record.image_id,
            "owner": record.owner,
            "bucket": record.bucket,
            "key": record.key,
            "status": DELETED,
            "deleted_at": now,
            "sweep": SWEEP_DELETED,
            "sweep_at": now,
        }
        condition: dict[str, Any] = {}
        if only_if_uploading:
            condition = {
                "ConditionExpression": "#status = :uploading",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": to_item({":uploading": ImageStatus.UPLOADING.value}),
            }
        try:
            response = await self.aws.dynamodb.put_item(
                TableName=self.images_table,
                Item=to_item(tombstone),
                ReturnValues="ALL_OLD",
                **condition,
            )
        except ClientError as exc:
            if only_if_uploading and is_conditional_failure(exc):
                return None
            raise
        old = response.get("Attributes")
        return _image(old) if old else None

    async def purge_tombstone(self, image_id: str) -> bool:
        """Delete a tombstone for good; False if the record is not one."""
        try:
            await self.aws.dynamodb.delete_item(
                TableName=self.images_table,
                Key={"image_id": {"S": image_id}},
                ConditionExpression="#status = :deleted",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item({":deleted": DELETED}),
            )
            return True
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise

    async def clear_sweep(self, image_id: str, kind: str) -> None:
        """Take a record the sweep of `kind` is done with out of the `by_sweep` index."""
        await self._update_image_if(
            image_id,
            UpdateExpression="REMOVE #sweep, #sweep_at",
            ConditionExpression="#sweep = :kind AND #status <> :uploading",
            ExpressionAttributeNames={
                "#sweep": "sweep",
                "#sweep_at": "sweep_at",
                "#status": "status",
            },
            ExpressionAttributeValues=to_item(
                {":kind": kind, ":uploading": ImageStatus.UPLOADING.value}
            ),
        )

    async def due_for_sweep(
        self, kind: str, before: str, *, limit: int, after: dict[str, Any] | None = None
    ) -> tuple[list[ImageRecord], dict[str, Any] | None]:
        """One page of records the sweep of `kind` must look at again (`sweep_at` before
        `before`), oldest first, from the sparse `by_sweep` index; and where the next starts."""
        kwargs: dict[str, Any] = {"ExclusiveStartKey": after} if after else {}
        page = await self.aws.dynamodb.query(
            TableName=self.images_table,
            IndexName=IMAGES_BY_SWEEP_INDEX,
            KeyConditionExpression="#sweep = :kind AND #sweep_at < :before",
            ExpressionAttributeNames={"#sweep": "sweep", "#sweep_at": "sweep_at"},
            ExpressionAttributeValues=to_item({":kind": kind, ":before": before}),
            Limit=limit,
            **kwargs,
        )
        records = [_image(item) for item in page.get("Items", [])]
        return records, page.get("LastEvaluatedKey")


class AlbumNameTaken(Exception):
    """The owner already has an album with this name."""


def album_name_guard(owner: str, name: str) -> str:
    """The key of the item that reserves an album name for its owner.

    It contains `#`, which no album id may, so it never collides with or reads as an album.
    """
    digest = hashlib.sha256(f"{owner}\n{name.casefold()}".encode()).hexdigest()
    return f"name#{digest}"


# Attributes the starter fills in only for objects that arrived without an upload record.
_FIRST_SEEN = ("owner", "album_id", "bucket", "key", "uploaded_at", "file_name")
