"""Keep the local stack's data across restarts (`imgproc up --data-dir DIR`).

moto keeps everything in memory, so `up` snapshots what users own — the Albums, Images and
Search tables and every object in the bucket — into the data directory every few seconds and
once more on a clean stop, and restores it into the fresh endpoint on the next start (a
`kill -9` loses at most the last interval).

Restoring the tables first and then the originals under `incoming/` also resumes unfinished
work: each restored original raises the same S3 notification a new upload does, and the starter
starts an execution for every image that is not yet terminal (the fresh endpoint has no
executions, so the image id is free again as an execution name) and ignores the rest.

Snapshots are cheap and proportional to change, because `up` hosts the endpoint in its own
process:

- they read moto's backends directly (`InProcessState`) instead of Scanning the tables and
  GETting objects over HTTP: a Scan of 300 image items cost the endpoint ~2-3 s of CPU in
  response serialization alone. Items are converted exactly as a Scan's response is, so the
  files are the same either way; where the backends do not hold the stack (the endpoint is in
  another process) the snapshot goes over the API as before;
- objects are written only when new or changed (by ETag), and a table file only when its
  content changed;
- a periodic snapshot is skipped outright while the endpoint has taken no request that can
  change a table or the bucket (`mutation_count`, from `request_counter`;
  O(number of distinct actions), independent of the data). That counter ticks when a request
  arrives, before the request changes anything, so a snapshot only counts as complete for a
  counter value that was already current one interval earlier (`Snapshots`); every write is
  thus in the first or second snapshot after it, as before. The final snapshot on a clean stop
  is always taken.

Restore always goes through the API: it loads into a fresh endpoint, whose notifications must
fire.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imgproc_local import moto_fixes, moto_patches, request_counter
from imgproc_shared.aws import AwsClients
from imgproc_shared.aws import _credentials as client_credentials
from imgproc_shared.logging import get_logger
from imgproc_shared.resources import INCOMING_PREFIX, ResourceNames, Table
from imgproc_shared.settings import Settings

# The tables users' data lives in. Not the dead-letter mirror: it describes queue messages, and
# queues start empty after a restart.
PERSISTED_TABLES = (Table.ALBUMS, Table.IMAGES, Table.SEARCH)

log = get_logger(stage="persistence")

SNAPSHOT_INTERVAL_S = 2.0

# An S3 object that a request thread replaced or deleted while it was read (its buffer closed
# underneath) is simply read again, as its newest version.
_READ_ATTEMPTS = 5


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)


class InProcessState:
    """One stack's tables and bucket as this process's moto backends hold them.

    Found only where the embedded endpoint runs in this process (`imgproc up`, the tests): the
    account is the one moto gives the stack's requests (`MOTO_ACCOUNT_ID`, else the account of
    the clients' access key, which is moto's default 123456789012 for the embedded endpoint's
    `testing` key), the region the settings' one, and both tables and the bucket must be there.
    Request threads keep writing while this reads: every live dict is copied before it is
    iterated (and the copy redone if it was resized meanwhile).
    """

    def __init__(self, account: str, tables: dict[Table, Any], bucket: Any) -> None:
        self.account = account
        self._tables = tables
        self._bucket = bucket

    @classmethod
    def find(cls, settings: Settings) -> InProcessState | None:
        # A server that created the stack's tables has imported these; never import moto here.
        if not settings.endpoint_url or not all(
            module in sys.modules for module in ("moto.dynamodb.models", "moto.s3.models")
        ):
            return None
        try:
            from moto.dynamodb.models import dynamodb_backends
            from moto.s3.models import s3_backends
            from moto.utilities.utils import get_partition

            account = _moto_account(settings)
            names = ResourceNames.from_settings(settings)
            backend = dynamodb_backends[account][settings.region]
            tables = {table: backend.tables.get(names.table(table)) for table in Table}
            bucket = s3_backends[account][get_partition(settings.region)].buckets.get(names.bucket)
        except Exception as exc:  # anything unexpected in moto's internals: use the API
            log.warning("in-process state unavailable", error=repr(exc))
            return None
        if bucket is None or any(table is None for table in tables.values()):
            return None
        return cls(account, tables, bucket)

    def table_items(self, table: Table) -> list[dict[str, Any]]:
        """The table's items as a consistent Scan returns them: DynamoDB JSON, in key order."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        model = self._tables[table]

        # Each item is copied whole, between requests (`DYNAMODB_LOCK`), as a Scan reads it;
        # the lock is taken per item, so requests wait at most for one item's copy.
        with moto_fixes.DYNAMODB_LOCK:
            rows = list(model.items.values())
            items = rows if not model.range_key_attr else [i for r in rows for i in r.values()]
        # The order of moto's Scan (`Table.all_items`).
        items.sort(key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

        def attributes(item: Any) -> dict[str, Any]:
            with moto_fixes.DYNAMODB_LOCK:
                converted: dict[str, Any] = _plain(dict(item.attrs), DynamoType)
            return converted

        return [attributes(item) for item in items]

    def object_keys(self) -> list[str]:
        """The bucket's keys, sorted as ListObjectsV2 lists them (delete markers left out)."""
        versions: dict[str, list[Any]] = dict.copy(self._bucket.keys)
        return sorted(name for name, kept in versions.items() if kept and _is_object(kept[-1]))

    def _latest(self, key: str) -> Any:
        versions = dict.get(self._bucket.keys, key)
        latest = versions[-1] if versions else None
        return latest if _is_object(latest) else None

    def object_etag(self, key: str) -> str | None:
        """The object's quoted ETag, as ListObjectsV2 gives it; None if it is gone."""
        for _ in range(_READ_ATTEMPTS):
            obj = self._latest(key)
            if obj is None:
                return None
            try:
                with obj.lock:  # a lazily computed ETag reads the buffer GETs read under it
                    return str(obj.etag)
            except ValueError:  # replaced or deleted meanwhile: its buffer was closed
                continue
        return None

    def read_object(self, key: str) -> tuple[bytes, str, str | None] | None:
        """(body, ETag, Content-Type) of the object's current version; None if it is gone."""
        for _ in range(_READ_ATTEMPTS):
            obj = self._latest(key)
            if obj is None:
                return None
            try:
                data = bytes(obj.value)
                with obj.lock:
                    etag = str(obj.etag)
            except ValueError:  # replaced or deleted meanwhile: read the new version
                continue
            content_type = obj.metadata.get("Content-Type")
            return data, etag, str(content_type) if content_type is not None else None
        return None


def _plain(obj: Any, dynamo_type: type[Any]) -> Any:
    """What a Scan response serializes an item's attributes to (`DynamoResult` applies moto's
    `dynamo_to_dict`): the same conversion, without that function's import on every call (half
    its cost) and with a shortcut for the S and N values that make up most of an item."""
    if type(obj) is str:
        return obj
    if isinstance(obj, dynamo_type):
        kind, value = obj.type, obj.value
        if type(value) is str and kind != "B":
            return {kind: value}
        if kind == "B":
            return {"B": value if isinstance(value, bytes) else base64.b64decode(value)}
        if kind == "M":
            return {"M": {key: _plain(item, dynamo_type) for key, item in dict(value).items()}}
        if kind == "L":
            return {"L": [_plain(item, dynamo_type) for item in list(value)]}
        if kind == "BS":
            return {"BS": [v if isinstance(v, bytes) else base64.b64decode(v) for v in value]}
        return {kind: _plain(value, dynamo_type)}
    if isinstance(obj, datetime):
        return obj
    if hasattr(obj, "to_json"):
        return _plain(obj.to_json(), dynamo_type)
    if isinstance(obj, dict):  # copied first: an UpdateItem may be changing it in place
        return {key: _plain(value, dynamo_type) for key, value in dict(obj).items()}
    if isinstance(obj, list):
        return [_plain(value, dynamo_type) for value in list(obj)]
    return obj


def _is_object(version: Any) -> bool:
    # A version that holds data (not a delete marker), and has not been disposed of.
    return hasattr(version, "lock") and not getattr(version, "disposed", False)


def _moto_account(settings: Settings) -> str:
    """The account moto files the stack's requests under (`BaseResponse.get_current_account`)."""
    explicit = os.environ.get("MOTO_ACCOUNT_ID")
    if explicit:
        return explicit
    from moto.iam.models import get_account_id_from

    return get_account_id_from(client_credentials(settings).get("aws_access_key_id", ""))


# Read-only actions; any other DynamoDB, S3 or unsigned request (presigned POST uploads are
# unsigned as far as the counter can tell) may change what a snapshot holds.
_READ_PREFIXES = ("Get", "BatchGet", "TransactGet", "Query", "Scan", "Describe", "List")
_S3_READS = {"GetObject", "HeadObject", "GET", "HEAD", "OPTIONS"}


def _may_change(service: str, action: str) -> bool:
    if service == "dynamodb":
        return not action.startswith(_READ_PREFIXES)
    if service in ("s3", "unknown"):
        return action.removesuffix("Bucket") not in _S3_READS
    return False


def mutation_count() -> int | None:
    """Requests so far to the in-process endpoint that may have changed a table or the bucket.

    None where there is no such counter in this process (`request_counter` not installed).
    """
    if "request_counter" not in moto_patches.installed():
        return None
    counts = request_counter.request_counts()
    return sum(
        int(n)
        for group in ("requests", "housekeeping_requests")
        for service, actions in counts[group].items()
        for action, n in actions.items()
        if _may_change(service, action)
    )


class StateStore:
    """The on-disk copy of one stack's tables and objects."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "state"
        self.tables = self.root / "tables"
        self.objects = self.root / "objects"
        self.index_path = self.root / "objects.json"
        # What this store last wrote, so an unchanged file is not written again.
        self._written_tables: dict[str, list[dict[str, Any]]] = {}
        self._written_index: dict[str, dict[str, Any]] | None = None
        self._on_disk: set[str] = set()

    def _object_path(self, key: str) -> Path:
        # One flat file per key: the key quoted, so no user-chosen name can escape the folder.
        return self.objects / quote(key, safe="")

    def _index(self) -> dict[str, dict[str, Any]]:
        if self._written_index is not None:
            return dict(self._written_index)
        try:
            index: dict[str, dict[str, Any]] = json.loads(self.index_path.read_text())
            return index
        except (OSError, ValueError):
            return {}

    async def snapshot(
        self, aws: AwsClients, settings: Settings, *, in_process: bool = False
    ) -> dict[str, int]:
        """Write the stack's tables and objects; `in_process`: read them from this process's
        moto backends when these hold the stack, else (and by default) over the API."""
        state = InProcessState.find(settings) if in_process else None
        return await self._snapshot(aws, settings, state)

    async def _snapshot(
        self, aws: AwsClients, settings: Settings, state: InProcessState | None
    ) -> dict[str, int]:
        names = ResourceNames.from_settings(settings)
        counts: dict[str, int] = {}
        for table in PERSISTED_TABLES:
            if state is not None:
                items = state.table_items(table)
            else:
                items = await self._scan(aws, names.table(table))
            self._write_table(table, items)
            counts[table.value] = len(items)

        index = self._index()
        seen: dict[str, dict[str, Any]] = {}
        if state is not None:
            for key in state.object_keys():
                known = index.get(key)
                if known and known.get("etag") == state.object_etag(key) and self._have_file(key):
                    seen[key] = known
                    continue
                read = state.read_object(key)
                if read is None:  # deleted since it was listed
                    continue
                data, etag, content_type = read
                self._write_object(key, data)
                seen[key] = {"etag": etag, "content_type": content_type}
        else:
            await self._copy_objects_over_api(aws, names.bucket, index, seen)
        for gone in set(index) - set(seen):
            self._object_path(gone).unlink(missing_ok=True)
            self._on_disk.discard(gone)
        if seen != self._written_index:
            _atomic_write(self.index_path, json.dumps(seen).encode())
            self._written_index = seen
        counts["objects"] = len(seen)
        return counts

    def _write_table(self, table: Table, items: list[dict[str, Any]]) -> None:
        if self._written_tables.get(table.value) != items:
            _atomic_write(self.tables / f"{table.value}.json", json.dumps(items).encode())
            self._written_tables[table.value] = items

    def _write_object(self, key: str, data: bytes) -> None:
        _atomic_write(self._object_path(key), data)
        self._on_disk.add(key)

    def _have_file(self, key: str) -> bool:
        """Whether the object's file is there (checked on disk once per key and process)."""
        if key not in self._on_disk and self._object_path(key).exists():
            self._on_disk.add(key)
        return key in self._on_disk

    @staticmethod
    async def _scan(aws: AwsClients, table_name: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
        while True:
            page = await aws.dynamodb.scan(**kwargs)
            items.extend(page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return items
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    async def _copy_objects_over_api(
        self,
        aws: AwsClients,
        bucket: str,
        index: dict[str, dict[str, Any]],
        seen: dict[str, dict[str, Any]],
    ) -> None:
        paginator_kwargs: dict[str, Any] = {"Bucket": bucket}
        while True:
            page = await aws.s3.list_objects_v2(**paginator_kwargs)
            for obj in page.get("Contents", []):
                key, etag = obj["Key"], obj.get("ETag", "")
                known = index.get(key)
                if known and known.get("etag") == etag and self._have_file(key):
                    seen[key] = known
                    continue
                response = await aws.s3.get_object(Bucket=bucket, Key=key)
                async with response["Body"] as body:
                    data = await body.read()
                self._write_object(key, data)
                seen[key] = {"etag": etag, "content_type": response.get("ContentType")}
            if not page.get("IsTruncated"):
                return
            paginator_kwargs["ContinuationToken"] = page["NextContinuationToken"]

    async def restore(self, aws: AwsClients, settings: Settings) -> dict[str, int]:
        """Load a snapshot into a freshly bootstrapped stack; originals last (they resume)."""
        names = ResourceNames.from_settings(settings)
        counts: dict[str, int] = {}
        for table in PERSISTED_TABLES:
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


class Snapshots:
    """Periodic snapshots of one stack, skipped while nothing can have changed.

    With the endpoint in this process (its backends hold the stack, and its request counter is
    installed), `take` reads the state in process and skips when `mutation_count` still equals
    the value of the last *settled* snapshot: one that started when the counter had not moved
    since the previous call (at least one interval earlier), so every counted request had had
    that long to finish. Otherwise — and always with `force` — it snapshots.
    """

    def __init__(
        self,
        store: StateStore,
        settings: Settings,
        *,
        count: Callable[[], int | None] = mutation_count,
    ) -> None:
        self.store = store
        self.settings = settings
        self._count = count
        self._previous: int | None = None
        self._settled: int | None = None
        self.taken = 0
        self.skipped = 0

    async def take(self, aws: AwsClients, *, force: bool = False) -> dict[str, int] | None:
        """Snapshot unless nothing changed since the last settled one; None when skipped."""
        state = InProcessState.find(self.settings)
        # The counter speaks for the stack only where the stack lives in this process.
        count = self._count() if state is not None else None
        previous, self._previous = self._previous, count
        if not force and count is not None and count == self._settled:
            self.skipped += 1
            return None
        counts = await self.store._snapshot(aws, self.settings, state)
        self.taken += 1
        if count is not None and count == previous:
            self._settled = count
        return counts
