"""Duplicates: exact ones (the same bytes, the same owner) are recorded and never processed;
near ones (perceptual hashes within a Hamming distance) are grouped on request.

Exact. Before it starts an execution the starter hashes the upload (the SHA-256 S3 stored and
verified when the uploader sent one, else the object streamed through hashlib) and claims
`(owner, sha256)` with a conditional put of a guard item. The first image to claim it is
processed; any later image of that owner with those bytes becomes `DUPLICATE` with
`duplicate_of` (the claim's holder): no execution, no tagging, no renditions, and its object is
deleted, so it costs one record. Two identical uploads at the same moment: the conditional put
lets exactly one through. A holder that FAILED or whose record is gone is taken over, so
re-uploading a failed photo retries it.

The guard lives in the albums table beside the album-name guards (key `sha256#{owner}#{hex}`:
no album id contains `#`, and an item without `owner` is in no index), not in the images table,
whose whole-table scans (`imgproc retag --all`) must see only images; the local snapshot keeps
it across restarts with the albums.

Deleting. A `DUPLICATE` leaves its claim's list. An original whose claim lists duplicates
promotes the oldest (not one in an album being deleted with it): the claim passes to it, the
other duplicates point at it, and the original's object is copied to its key while it is
`UPLOADING` again, so the S3 event processes it as an upload (its own execution, renditions,
labels). An original without duplicates releases the claim: the same bytes uploaded later are
processed again.

Search. A `DUPLICATE` is indexed (`SearchIndex.index_record`) with what the user sees for it: its
original's metadata and labels, its own album, upload time and status. Its recorder indexes it
at once; when the original is stored again (processed, re-tagged) the search indexer re-indexes
the duplicates on its claim's list (`duplicates_of`); a promoted heir leaves the index until it
is processed as an original.

Near. The thumbnailer stores a 64-bit DCT pHash with the renditions (`thumbnails.phash`, hex).
`duplicate_groups` reads one owner's images through the by-album index (never another owner's),
compares every pair of hashes (numpy when installed: tens of thousands of images in well under
a second) and joins images within the distance into groups.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog, from_item, is_conditional_failure, now_iso, to_item
from imgproc_shared.checksums import stored_sha256
from imgproc_shared.errors import error_code
from imgproc_shared.logging import get_logger
from imgproc_shared.models import ImageStatus
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import ResourceNames, Table
from imgproc_shared.search import SearchIndex

log = get_logger(stage="duplicates")

CLAIM_PREFIX = "sha256#"
STREAM_CHUNK_BYTES = 1024 * 1024
_CLAIM_ATTEMPTS = 5
_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
# What grouping reads of each image: enough to group, not the whole record.
_GROUPING_ATTRIBUTES = ("image_id", "status", "duplicate_of", "thumbnails", "uploaded_at")


def content_claim_key(owner: str, sha256: str) -> str:
    """The key of the guard item that gives `owner`'s bytes with this SHA-256 to one image."""
    return f"{CLAIM_PREFIX}{owner}#{sha256}"


def _claim_key_of(record: ImageRecord) -> str | None:
    """The key of the claim an image holds or is listed on; None when its hash is unknown."""
    sha256 = record.content_sha256 or (record.metadata.sha256 if record.metadata else None)
    if not isinstance(sha256, str) or not isinstance(record.owner, str):
        return None
    return content_claim_key(record.owner, sha256)


async def object_sha256(aws: AwsClients, bucket: str, key: str) -> str | None:
    """The SHA-256 of an object: S3's stored checksum (one HEAD), else the object streamed
    through hashlib a chunk at a time (bounded memory); None if the object is gone."""
    try:
        head = await aws.s3.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
        stored = stored_sha256(head)
        if stored is not None:
            return stored
        response = await aws.s3.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in _NOT_FOUND:
            return None
        raise
    hasher = hashlib.sha256()
    async with response["Body"] as body:
        while chunk := await body.read(STREAM_CHUNK_BYTES):
            # hashlib releases the GIL on large buffers: hash off the event loop.
            await asyncio.to_thread(hasher.update, chunk)
    return hasher.hexdigest()


class ExactDuplicates:
    """The claims on content hashes, for the starter (decide) and deletions (release)."""

    def __init__(self, aws: AwsClients, names: ResourceNames) -> None:
        self.aws = aws
        self.names = names
        self.catalog = Catalog(aws, names)
        self.claims_table = names.table(Table.ALBUMS)

    async def recorded_as_duplicate(
        self, *, image_id: str, bucket: str, key: str, owner: str
    ) -> bool:
        """Decide, before its execution starts, whether a PROCESSING image is a duplicate: True
        when it is (now recorded as `DUPLICATE`, or gone meanwhile): start nothing."""
        sha256 = await object_sha256(self.aws, bucket, key)
        if sha256 is None:
            return False  # the object is gone: the execution reports it as usual
        claim_key = content_claim_key(owner, sha256)
        bound = log.bind(image_id=image_id)
        for _ in range(_CLAIM_ATTEMPTS):
            holder = await self._claim(claim_key, image_id)
            if holder == image_id:
                await self._set_image(
                    image_id, "SET content_sha256 = :sha", "attribute_exists(image_id)", sha=sha256
                )
                return False
            # Join the holder's duplicates, only while the claim is still the holder's (a
            # deletion may be handing it on): the list is what a deletion promotes from.
            if not await self._update_claim(
                claim_key,
                "ADD duplicates :me",
                "guards = :holder",
                {":me": {"SS": [image_id]}, ":holder": {"S": holder}},
            ):
                continue
            marked = await self._set_image(
                image_id,
                "SET #status = :duplicate, duplicate_of = :holder, content_sha256 = :sha, "
                "finished_at = :now REMOVE execution_arn",
                "#status = :processing",
                holder=holder,
                sha=sha256,
            )
            if not marked:
                # Deleted (or moved on) meanwhile: it must not stay on the list.
                await self._leave_claim(claim_key, image_id)
                bound.info("duplicate no longer processing; nothing started")
                return True
            with contextlib.suppress(ClientError):
                # The original's bytes serve it: keeping a second copy would only cost.
                await self.aws.s3.delete_object(Bucket=bucket, Key=key)
            bound.info("exact duplicate recorded; nothing started", duplicate_of=holder)
            await self._index_for_search(image_id)
            return True
        raise RuntimeError(f"the claim on {claim_key} kept changing; the event will be retried")

    async def _index_for_search(self, image_id: str) -> None:
        """No workflow announces a `DUPLICATE` on `stored`: its recorder indexes it. A failure
        is logged, not raised (the decision is made; a retried event would undo nothing);
        `imgproc reindex` adds what was missed."""
        bound = log.bind(image_id=image_id)
        index = SearchIndex(self.aws, self.names)
        try:
            record = await self.catalog.get_image(image_id)
            if record is not None:
                await index.index_unless_deleted(record)
        except (ClientError, BotoCoreError, RuntimeError) as exc:
            bound.warning("image not indexed for search", error=str(exc)[:300])

    async def before_delete(self, record: ImageRecord, *, album_deleting: str | None) -> None:
        """Called before an image's record and objects are deleted: leave or hand on its claim
        (see the module's notes). `album_deleting`: an album going with it, whose duplicates
        are not promoted."""
        image_id = str(record.image_id)
        claim_key = _claim_key_of(record)
        if claim_key is None:
            return
        if record.status == ImageStatus.DUPLICATE.value:
            await self._leave_claim(claim_key, image_id)
            return
        claim = await self._get_claim(claim_key)
        if claim is None or claim.get("guards") != image_id:
            return
        duplicates = await self._listed_duplicates(claim, image_id)
        heirs = sorted(
            (r for r in duplicates if r.album_id != album_deleting),
            key=lambda r: (str(r.uploaded_at or ""), str(r.image_id)),
        )
        if not heirs:
            await self._delete_claim(claim_key, image_id)
            return
        await self._promote(record, heirs[0], duplicates, claim_key)

    async def duplicates_of(self, record: ImageRecord) -> list[ImageRecord]:
        """The `DUPLICATE`s of an original, from its claim's list (two reads, no scan); none
        for an image that holds no claim."""
        claim_key = _claim_key_of(record)
        if claim_key is None or record.status == ImageStatus.DUPLICATE.value:
            return []
        claim = await self._get_claim(claim_key)
        if claim is None or claim.get("guards") != record.image_id:
            return []
        return await self._listed_duplicates(claim, str(record.image_id))

    async def _listed_duplicates(self, claim: Mapping[str, Any], holder: str) -> list[ImageRecord]:
        """The images on a claim's list that are still `DUPLICATE`s of its holder."""
        listed = sorted(str(i) for i in claim.get("duplicates") or ())
        return [
            r
            for r in await self.catalog.get_images(listed)
            if r.status == ImageStatus.DUPLICATE.value and r.duplicate_of == holder
        ]

    async def _promote(
        self,
        original: ImageRecord,
        heir: ImageRecord,
        duplicates: Sequence[ImageRecord],
        claim_key: str,
    ) -> None:
        image_id, heir_id = str(original.image_id), str(heir.image_id)
        if not await self._update_claim(
            claim_key,
            "SET guards = :heir DELETE duplicates :heirs",
            "guards = :me",
            {":heir": {"S": heir_id}, ":heirs": {"SS": [heir_id]}, ":me": {"S": image_id}},
        ):
            return  # the claim changed hands meanwhile
        for other in duplicates:
            if other.image_id != heir_id:
                await self._set_image(
                    str(other.image_id),
                    "SET duplicate_of = :heir",
                    "#status = :duplicate AND duplicate_of = :me",
                    heir=heir_id,
                    me=image_id,
                )
        # UPLOADING again, then its bytes back: the S3 event starts it like any upload.
        if not await self._set_image(
            heir_id,
            "SET #status = :uploading REMOVE duplicate_of, finished_at",
            "#status = :duplicate",
        ):
            return
        # Out of the index until it is processed (its `stored` announcement indexes it, and the
        # duplicates now pointing at it): unfinished images have no entries. Before the copy,
        # so this cannot land after its processing's own indexing.
        await self._index_for_search(heir_id)
        try:
            await self.aws.s3.copy_object(
                Bucket=str(heir.bucket),
                Key=str(heir.key),
                CopySource={"Bucket": str(original.bucket), "Key": str(original.key)},
                ChecksumAlgorithm="SHA256",
            )
        except ClientError as exc:
            await self._set_image(
                heir_id,
                "SET #status = :failed, error_code = :code, error_message = :message, "
                "finished_at = :now",
                "#status = :uploading",
                code="DuplicateNotPromoted",
                message=f"the original was deleted and its bytes could not be copied: {exc}",
            )
            await self._index_for_search(heir_id)  # FAILED: found as what it is now
            return
        log.info("duplicate promoted to original", image_id=heir_id, deleted_original=image_id)

    async def _claim(self, claim_key: str, image_id: str) -> str:
        """The image that holds the claim once this returns: `image_id` when it got it."""
        for _ in range(_CLAIM_ATTEMPTS):
            try:
                await self.aws.dynamodb.put_item(
                    TableName=self.claims_table,
                    Item=to_item(
                        {"album_id": claim_key, "guards": image_id, "claimed_at": now_iso()}
                    ),
                    ConditionExpression="attribute_not_exists(album_id)",
                )
                return image_id
            except ClientError as exc:
                if not is_conditional_failure(exc):
                    raise
            claim = await self._get_claim(claim_key)
            if claim is None:
                continue  # released meanwhile: claim it again
            holder = str(claim["guards"])
            if holder == image_id:
                return image_id
            original = await self.catalog.get_image(holder, ("status",))
            if original is not None and original.status != ImageStatus.FAILED.value:
                return holder
            # A holder that failed or is gone (deleted without releasing): take over.
            if await self._update_claim(
                claim_key,
                "SET guards = :me REMOVE duplicates",
                "guards = :holder",
                {":me": {"S": image_id}, ":holder": {"S": holder}},
            ):
                return image_id
        raise RuntimeError(f"the claim on {claim_key} kept changing; the event will be retried")

    async def _leave_claim(self, claim_key: str, image_id: str) -> None:
        """Take a duplicate off its claim's list (nothing if the claim is gone)."""
        await self._update_claim(
            claim_key,
            "DELETE duplicates :me",
            "attribute_exists(album_id)",
            {":me": {"SS": [image_id]}},
        )

    async def _get_claim(self, claim_key: str) -> dict[str, Any] | None:
        response = await self.aws.dynamodb.get_item(
            TableName=self.claims_table, Key={"album_id": {"S": claim_key}}, ConsistentRead=True
        )
        item = response.get("Item")
        return from_item(item) if item else None

    async def _delete_claim(self, claim_key: str, holder: str) -> None:
        with contextlib.suppress(ClientError):  # the condition: only the holder releases it
            await self.aws.dynamodb.delete_item(
                TableName=self.claims_table,
                Key={"album_id": {"S": claim_key}},
                ConditionExpression="guards = :me",
                ExpressionAttributeValues={":me": {"S": holder}},
            )

    async def _update_claim(
        self, claim_key: str, update: str, condition: str, values: dict[str, Any]
    ) -> bool:
        """One conditional update of a claim (`values` typed); False when `condition` fails."""
        try:
            await self.aws.dynamodb.update_item(
                TableName=self.claims_table,
                Key={"album_id": {"S": claim_key}},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
            return True
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise

    async def _set_image(self, image_id: str, update: str, condition: str, **values: str) -> bool:
        """One conditional update of an image record; False when the condition does not hold."""
        named = {
            ":duplicate": ImageStatus.DUPLICATE.value,
            ":processing": ImageStatus.PROCESSING.value,
            ":uploading": ImageStatus.UPLOADING.value,
            ":failed": ImageStatus.FAILED.value,
            ":now": now_iso(),
            **{f":{name}": value for name, value in values.items()},
        }
        expression = f"{update} {condition}"
        used = {k: v for k, v in named.items() if re.search(rf"{k}\b", expression)}
        arguments: dict[str, Any] = {"ExpressionAttributeValues": to_item(used)}
        if "#status" in expression:
            arguments["ExpressionAttributeNames"] = {"#status": "status"}
        try:
            await self.aws.dynamodb.update_item(
                TableName=self.catalog.images_table,
                Key={"image_id": {"S": image_id}},
                UpdateExpression=update,
                ConditionExpression=condition,
                **arguments,
            )
            return True
        except ClientError as exc:
            if is_conditional_failure(exc):
                return False
            raise


# Near duplicates ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DuplicateGroup:
    """Images of one owner that are the same photo: `exact` (an original first, then its
    `DUPLICATE`s; distance 0) or `near` (pHashes within the distance; `distance` is the largest
    between two of them)."""

    kind: Literal["exact", "near"]
    distance: int
    image_ids: list[str]


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def parse_phash(value: object) -> int | None:
    """A stored hash (16 hex digits) as an int; None for anything else."""
    if not isinstance(value, str) or len(value) != 16:
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def close_pairs(hashes: Sequence[int], max_distance: int) -> list[tuple[int, int]]:
    """Every (i, j), i < j, whose hashes are at most `max_distance` bits apart: all pairs are
    compared (numpy, when installed, does a row of XOR-popcounts at a time)."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - the status API and the CLI have numpy
        return [
            (i, j)
            for i in range(len(hashes))
            for j in range(i + 1, len(hashes))
            if hamming(hashes[i], hashes[j]) <= max_distance
        ]
    values = np.array(hashes, dtype=np.uint64)
    pairs: list[tuple[int, int]] = []
    for i in range(len(values) - 1):
        distances = np.bitwise_count(values[i + 1 :] ^ values[i])
        pairs.extend((i, i + 1 + int(j)) for j in np.flatnonzero(distances <= max_distance))
    return pairs


def near_groups(hashes: Mapping[str, int], max_distance: int) -> list[DuplicateGroup]:
    """Images joined by hashes at most `max_distance` apart (a chain A~B~C is one group);
    groups of two or more, each in the order given."""
    ids = list(hashes)
    values = [hashes[i] for i in ids]
    parent = list(range(len(ids)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in close_pairs(values, max_distance):
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[int]] = {}
    for i in range(len(ids)):
        members.setdefault(root(i), []).append(i)
    groups = []
    for indexes in members.values():
        if len(indexes) < 2:
            continue
        widest = max(
            hamming(values[a], values[b]) for n, a in enumerate(indexes) for b in indexes[n + 1 :]
        )
        groups.append(DuplicateGroup("near", widest, [ids[i] for i in indexes]))
    return groups


def group_records(records: Sequence[ImageRecord], max_distance: int) -> list[DuplicateGroup]:
    """Exact groups (originals with their `DUPLICATE`s) and near groups (processed images by
    pHash) among one owner's image records; oldest upload first within a group, exact groups
    first, then the closest near groups."""
    ordered = sorted(records, key=lambda r: (str(r.uploaded_at or ""), str(r.image_id)))
    known = {str(r.image_id) for r in ordered}
    exact: dict[str, list[str]] = {}
    hashes: dict[str, int] = {}
    for record in ordered:
        image_id = str(record.image_id)
        original = record.duplicate_of
        if record.status == ImageStatus.DUPLICATE.value and isinstance(original, str):
            exact.setdefault(original, []).append(image_id)
            continue
        if record.status == ImageStatus.PROCESSED.value:
            phash = parse_phash(record.thumbnails.phash if record.thumbnails else None)
            if phash is not None:
                hashes[image_id] = phash
    groups = [
        DuplicateGroup("exact", 0, ([original] if original in known else []) + copies)
        for original, copies in exact.items()
    ]
    groups = [g for g in groups if len(g.image_ids) > 1]
    near = sorted(near_groups(hashes, max_distance), key=lambda g: (g.distance, g.image_ids[0]))
    return groups + near


async def duplicate_groups(catalog: Catalog, owner: str, max_distance: int) -> list[DuplicateGroup]:
    """The owner's duplicate groups, read through the by-album index (the owner's albums)."""
    records = [
        record async for record in catalog.iter_images(owner=owner, attributes=_GROUPING_ATTRIBUTES)
    ]
    return group_records(records, max_distance)
