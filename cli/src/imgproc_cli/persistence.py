"""Keep the local stack's data across restarts (`imgproc up --data-dir DIR`).

moto keeps everything in memory, so `up` snapshots what users own — the Albums and Images
tables and every object in the bucket — into the data directory every few seconds and once more
on a clean stop, and restores it into the fresh endpoint on the next start (a `kill -9` loses
at most the last interval).

Restoring the tables first and then the originals under `incoming/` also resumes unfinished
work: each restored original raises the same S3 notification a new upload does, and the starter
starts an execution for every image that is not yet terminal (the fresh endpoint has no
executions, so the image id is free again as an execution name) and ignores the rest.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imgproc_shared.aws import AwsClients
from imgproc_shared.logging import get_logger
from imgproc_shared.resources import INCOMING_PREFIX, ResourceNames, Table
from imgproc_shared.settings import Settings

log = get_logger(stage="persistence")

SNAPSHOT_INTERVAL_S = 2.0


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class StateStore:
    """The on-disk copy of one stack's tables and objects."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "state"
        self.tables = self.root / "tables"
        self.objects = self.root / "objects"
        self.index_path = self.root / "objects.json"

    def _object_path(self, key: str) -> Path:
        # One flat file per key: the key quoted, so no user-chosen name can escape the folder.
        return self.objects / quote(key, safe="")

    def _index(self) -> dict[str, dict[str, Any]]:
        try:
            index: dict[str, dict[str, Any]] = json.loads(self.index_path.read_text())
            return index
        except (OSError, ValueError):
            return {}

    async def snapshot(self, aws: AwsClients, settings: Settings) -> dict[str, int]:
        names = ResourceNames.from_settings(settings)
        counts: dict[str, int] = {}
        for table in (Table.ALBUMS, Table.IMAGES):
            items: list[dict[str, Any]] = []
            kwargs: dict[str, Any] = {"TableName": names.table(table), "ConsistentRead": True}
            while True:
                page = await aws.dynamodb.scan(**kwargs)
                items.extend(page.get("Items", []))
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
            _atomic_write(self.tables / f"{table.value}.json", json.dumps(items).encode())
            counts[table.value] = len(items)

        index = self._index()
        seen: dict[str, dict[str, Any]] = {}
        paginator_kwargs: dict[str, Any] = {"Bucket": names.bucket}
        while True:
            page = await aws.s3.list_objects_v2(**paginator_kwargs)
            for obj in page.get("Contents", []):
                key, etag = obj["Key"], obj.get("ETag", "")
                known = index.get(key)
                if known and known.get("etag") == etag and self._object_path(key).exists():
                    seen[key] = known
                    continue
                response = await aws.s3.get_object(Bucket=names.bucket, Key=key)
                async with response["Body"] as body:
                    data = await body.read()
                _atomic_write(self._object_path(key), data)
                seen[key] = {"etag": etag, "content_type": response.get("ContentType")}
            if not page.get("IsTruncated"):
                break
            paginator_kwargs["ContinuationToken"] = page["NextContinuationToken"]
        for gone in set(index) - set(seen):
            self._object_path(gone).unlink(missing_ok=True)
        _atomic_write(self.index_path, json.dumps(seen).encode())
        counts["objects"] = len(seen)
        return counts

    async def restore(self, aws: AwsClients, settings: Settings) -> dict[str, int]:
        """Load a snapshot into a freshly bootstrapped stack; originals last (they resume)."""
        names = ResourceNames.from_settings(settings)
        counts: dict[str, int] = {}
        for table in (Table.ALBUMS, Table.IMAGES):
            path = self.tables / f"{table.value}.json"
            items = json.loads(path.read_text()) if path.exists() else []
            for start in range(0, len(items), 25):
                requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
                pending: dict[str, Any] = {names.table(table): requests}
                while pending:
                    response = await aws.dynamodb.batch_write_item(RequestItems=pending)
                    pending = response.get("UnprocessedItems") or {}
            counts[table.value] = len(items)
        index = self._index()
        # Derived objects first, originals last: an original's notification may start work.
        ordered = sorted(index, key=lambda key: key.startswith(INCOMING_PREFIX))
        restored = 0
        for key in ordered:
            path = self._object_path(key)
            if not path.exists():
                continue
            extra = {}
            if index[key].get("content_type"):
                extra["ContentType"] = index[key]["content_type"]
            await aws.s3.put_object(
                Bucket=names.bucket,
                Key=key,
                Body=path.read_bytes(),
                ChecksumAlgorithm="SHA256",
                **extra,
            )
            restored += 1
        counts["objects"] = restored
        return counts
