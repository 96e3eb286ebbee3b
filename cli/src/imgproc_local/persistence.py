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
  response serialization alone. Items are converted exactly as a Scan's response is, so what is
  stored is the same either way; where the backends do not hold the stack (the endpoint is in
  another process) the snapshot goes over the API as before, reading everything;
- they read only the items written since the last snapshot (`table_changes` marks each write's
  key), and only the objects whose current version is not the one they stored last; the first
  snapshot of a process reads everything once;
- what they store is one SQLite database (`state.sqlite`: a row per item and per object, each
  snapshot one transaction that writes only the rows that changed) beside one file per object,
  written only when new or changed. Earlier versions rewrote a whole JSON file per table on
  every change (`tables/*.json`, `objects.json`): such a directory is restored from them, and its
  first snapshot moves them into the database and removes them;
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
import contextlib
import json
import os
import sqlite3
import sys
import weakref
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from imgproc_local import moto_fixes, moto_patches, request_counter, table_changes
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

    def model(self, table: Table) -> Any:
        """moto's table object (replaced when the table is deleted and created again)."""
        return self._tables[table]

    def key_attributes(self, table: Table) -> tuple[str, str | None]:
        model = self._tables[table]
        return str(model.hash_key_attr), model.range_key_attr

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

    def item(self, table: Table, key: table_changes.ItemKey) -> dict[str, Any] | None:
        """One item as a Scan returns it (None: there is none with that key)."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        model = self._tables[table]
        hash_value, range_value = key
        with moto_fixes.DYNAMODB_LOCK:
            # `dict.get`: the items are a defaultdict, which a lookup must not grow.
            found = dict.get(model.items, hash_value)
            if model.range_key_attr and found is not None:
                found = dict.get(found, range_value)
            if found is None:
                return None
            converted: dict[str, Any] = _plain(dict(found.attrs), DynamoType)
        return converted

    @staticmethod
    def key_values(key: table_changes.ItemKey) -> list[Any]:
        """An item key's values as a Scan writes them (`_row_key` of the item)."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        return [_plain(part, DynamoType) if part is not None else None for part in key]

    def versions(self) -> list[tuple[str, Any]]:
        """(key, current version) of every key in the bucket: an object, or a delete marker or
        a disposed version (`is_object` tells)."""
        versions: dict[str, list[Any]] = dict.copy(self._bucket.keys)
        return [(name, kept[-1]) for name, kept in versions.items() if kept]

    def objects(self) -> list[tuple[str, Any]]:
        """(key, current version) of every object in the bucket (delete markers left out)."""
        return [(name, version) for name, version in self.versions() if is_object(version)]

    def _latest(self, key: str) -> Any:
        versions = dict.get(self._bucket.keys, key)
        latest = versions[-1] if versions else None
        return latest if is_object(latest) else None

    @staticmethod
    def version_etag(version: Any) -> str | None:
        """A version's quoted ETag, as ListObjectsV2 gives it; None if it was disposed of."""
        try:
            with version.lock:  # a lazily computed ETag reads the buffer GETs read under it
                return str(version.etag)
        except ValueError:  # replaced or deleted meanwhile: its buffer was closed
            return None

    def read_object(self, key: str) -> tuple[Any, bytes, str, str | None] | None:
        """(version, body, ETag, Content-Type) of the object's current version; None if it is
        gone."""
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
            return obj, data, etag, str(content_type) if content_type is not None else None
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


def is_object(version: Any) -> bool:
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


# One row per item and per object; each snapshot is one transaction. Created by the first
# snapshot's transaction, so a database that has these tables holds a whole snapshot.
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS items (tbl TEXT NOT NULL, key TEXT NOT NULL, item TEXT NOT NULL,"
    " PRIMARY KEY (tbl, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, etag TEXT NOT NULL,"
    " content_type TEXT) WITHOUT ROWID",
)

# What one snapshot writes: per table, row key -> item JSON (None: delete the row), and whether
# those rows are the whole table (every other row goes); per object key, its index entry (None:
# gone).
_TableRows = tuple[dict[str, str | None], bool]


def _row_key(values: list[Any]) -> str:
    """An item's row key: its key attributes' values (hash, range or None) as a Scan gives them."""
    return json.dumps(values, separators=(",", ":"), sort_keys=True)


def _item_row_key(item: dict[str, Any], attributes: tuple[str, str | None]) -> str:
    hash_attr, range_attr = attributes
    return _row_key([item[hash_attr], item[range_attr] if range_attr else None])


class StateStore:
    """The on-disk copy of one stack's tables and objects: `state.sqlite` and `objects/`."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "state"
        self.objects = self.root / "objects"
        self.db_path = self.root / "state.sqlite"
        # Where earlier versions kept the tables and the object index (read, then removed).
        self.legacy_tables = self.root / "tables"
        self.legacy_index = self.root / "objects.json"
        self._db: sqlite3.Connection | None = None
        # What the database holds (loaded once): each table's row keys, and the object index.
        self._keys: dict[str, set[str]] | None = None
        self._index: dict[str, dict[str, Any]] = {}
        self._on_disk: set[str] = set()
        # In process: the writes since the last snapshot, the table objects it read, and the
        # object versions whose files it holds (weakly: a replaced version may go).
        self._feed: table_changes.ChangeFeed | None = None
        self._models: dict[Table, Any] = {}
        self._versions: dict[str, weakref.ref[Any]] = {}
        # What the last snapshot wrote: rows of items, object files, deleted objects.
        self.last_written: dict[str, int] = {}

    def _object_path(self, key: str) -> Path:
        # One flat file per key: the key quoted, so no user-chosen name can escape the folder.
        return self.objects / quote(key, safe="")

    # --- the database ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.root.mkdir(parents=True, exist_ok=True)
            # One snapshot at a time uses it, from whichever thread snapshots.
            db = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed snapshot survives a power cut
            self._db = db
        return self._db

    def _has_snapshot(self) -> bool:
        if not self.db_path.exists():
            return False
        found = self._connect().execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'items'"
        )
        return bool(found.fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _load(self) -> dict[str, set[str]]:
        """What the database holds, read once: each table's row keys and the object index (or
        an earlier version's index, whose object files are then not written again)."""
        if self._keys is None:
            keys: dict[str, set[str]] = {table.value: set() for table in PERSISTED_TABLES}
            if self._has_snapshot():
                db = self._connect()
                for tbl, key in db.execute("SELECT tbl, key FROM items"):
                    keys.setdefault(tbl, set()).add(key)
                self._index = {
                    key: {"etag": etag, "content_type": content_type}
                    for key, etag, content_type in db.execute(
                        "SELECT key, etag, content_type FROM objects"
                    )
                }
            else:
                self._index = self._legacy_index()
            self._keys = keys
        return self._keys

    def _legacy_index(self) -> dict[str, dict[str, Any]]:
        try:
            index: dict[str, dict[str, Any]] = json.loads(self.legacy_index.read_text())
            return index
        except (OSError, ValueError):
            return {}

    def saved_items(self, table: Table) -> list[dict[str, Any]]:
        """The table's items in the last snapshot (the database's, else an earlier version's
        file), in key order."""
        if self._has_snapshot():
            rows = self._connect().execute(
                "SELECT item FROM items WHERE tbl = ? ORDER BY key", (table.value,)
            )
            return [json.loads(item) for (item,) in rows]
        path = self.legacy_tables / f"{table.value}.json"
        items: list[dict[str, Any]] = json.loads(path.read_text()) if path.exists() else []
        return items

    def saved_objects(self) -> dict[str, dict[str, Any]]:
        """Object key -> {"etag", "content_type"} in the last snapshot."""
        if self._has_snapshot():
            rows = self._connect().execute("SELECT key, etag, content_type FROM objects")
            return {key: {"etag": etag, "content_type": ct} for key, etag, ct in rows}
        return self._legacy_index()

    def _commit(self, tables: dict[Table, _TableRows], objects: dict[str, Any]) -> None:
        """Write one snapshot's changes in one transaction; then drop an earlier version's
        files, which the database now replaces."""
        keys = self._load()
        first = not self._has_snapshot()
        moved_from_legacy = first and (self.legacy_tables.exists() or self.legacy_index.exists())
        if first:  # the index read from an earlier version's file goes in whole
            objects = {**self._index, **objects}
        db = self._connect()
        written = deleted = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            for table, (rows, whole) in tables.items():
                held = keys.setdefault(table.value, set())
                gone = [key for key, item in rows.items() if item is None]
                if whole:
                    gone += [key for key in held if key not in rows]
                db.executemany(
                    "DELETE FROM items WHERE tbl = ? AND key = ?",
                    [(table.value, key) for key in gone],
                )
                upserts = [(table.value, k, item) for k, item in rows.items() if item is not None]
                db.executemany("INSERT OR REPLACE INTO items VALUES (?, ?, ?)", upserts)
                written += len(upserts)
                deleted += len([key for key in gone if key in held])
                held.difference_update(gone)
                held.update(key for _, key, _ in upserts)
            db.executemany(
                "DELETE FROM objects WHERE key = ?",
                [(key,) for key, entry in objects.items() if entry is None],
            )
            db.executemany(
                "INSERT OR REPLACE INTO objects VALUES (?, ?, ?)",
                [
                    (key, entry["etag"], entry.get("content_type"))
                    for key, entry in objects.items()
                    if entry is not None
                ],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            self._keys = None  # what the database holds is read again
            raise
        for key, entry in objects.items():
            if entry is None:
                self._index.pop(key, None)
            else:
                self._index[key] = entry
        self.last_written["items"] = written
        self.last_written["items_deleted"] = deleted
        if moved_from_legacy:
            self.legacy_index.unlink(missing_ok=True)
            for path in self.legacy_tables.glob("*.json"):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.legacy_tables.rmdir()

    # --- snapshots ---------------------------------------------------------------------------

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
        self._load()
        self.last_written = {
            "items": 0,
            "items_deleted": 0,
            "object_files": 0,
            "objects_deleted": 0,
        }
        tables: dict[Table, _TableRows] = {}
        for table in PERSISTED_TABLES:
            if state is not None:
                tables[table] = self._table_rows_in_process(state, table)
            else:
                tables[table] = await self._table_rows_over_api(aws, names.table(table))
        if state is not None:
            objects = self._object_changes_in_process(state)
        else:
            objects = await self._object_changes_over_api(aws, names.bucket)
        for key, entry in objects.items():
            if entry is None:
                self._object_path(key).unlink(missing_ok=True)
                self._on_disk.discard(key)
                self._versions.pop(key, None)
                self.last_written["objects_deleted"] += 1
        self._commit(tables, objects)
        counts = {table.value: len(self._load()[table.value]) for table in PERSISTED_TABLES}
        counts["objects"] = len(self._index)
        return counts

    def _table_rows_in_process(self, state: InProcessState, table: Table) -> _TableRows:
        """The rows of the items written since the last snapshot; every row, the first time
        (or when the table object changed: deleted and created again, restored)."""
        if self._feed is None and table_changes.tracking():
            self._feed = table_changes.subscribe()
        model = state.model(table)
        attributes = state.key_attributes(table)
        with moto_fixes.DYNAMODB_LOCK:  # no write is half done while the marks are taken
            changed = self._feed.take(model.name) if self._feed is not None else None
        if changed is None or self._models.get(table) is not model:
            self._models[table] = model
            items = state.table_items(table)
            return {_item_row_key(item, attributes): json.dumps(item) for item in items}, True
        rows: dict[str, str | None] = {}
        for key in changed:
            item = state.item(table, key)
            rows[_row_key(state.key_values(key))] = None if item is None else json.dumps(item)
        return rows, False

    async def _table_rows_over_api(self, aws: AwsClients, table_name: str) -> _TableRows:
        described = await aws.dynamodb.describe_table(TableName=table_name)
        schema = {k["KeyType"]: k["AttributeName"] for k in described["Table"]["KeySchema"]}
        attributes = (schema["HASH"], schema.get("RANGE"))
        items = await self._scan(aws, table_name)
        return {_item_row_key(item, attributes): json.dumps(item) for item in items}, True

    def _object_changes_in_process(self, state: InProcessState) -> dict[str, Any]:
        """Index entries of the objects new or changed since the last snapshot (their files
        written), and None for the ones gone. A version already stored is not even read."""
        changes: dict[str, Any] = {}
        present: set[str] = set()
        stored_versions = self._versions
        for key, version in state.versions():
            stored = stored_versions.get(key)
            # The version whose file this store wrote or checked (most keys): nothing to read.
            if (
                stored is not None
                and stored() is version
                and not getattr(version, "disposed", False)
            ):
                present.add(key)
                continue
            if not is_object(version):
                continue
            present.add(key)
            known = self._index.get(key)
            if known and known.get("etag") == state.version_etag(version) and self._have_file(key):
                self._versions[key] = weakref.ref(version)
                continue
            read = state.read_object(key)
            if read is None:  # deleted since it was listed
                present.discard(key)
                continue
            read_version, data, etag, content_type = read
            self._write_object(key, data)
            self._versions[key] = weakref.ref(read_version)
            changes[key] = {"etag": etag, "content_type": content_type}
        for gone in set(self._index) - present:
            changes[gone] = None
        return changes

    async def _object_changes_over_api(self, aws: AwsClients, bucket: str) -> dict[str, Any]:
        changes: dict[str, Any] = {}
        present: set[str] = set()
        paginator_kwargs: dict[str, Any] = {"Bucket": bucket}
        while True:
            page = await aws.s3.list_objects_v2(**paginator_kwargs)
            for obj in page.get("Contents", []):
                key, etag = obj["Key"], obj.get("ETag", "")
                present.add(key)
                known = self._index.get(key)
                if known and known.get("etag") == etag and self._have_file(key):
                    continue
                response = await aws.s3.get_object(Bucket=bucket, Key=key)
                async with response["Body"] as body:
                    data = await body.read()
                self._write_object(key, data)
                changes[key] = {"etag": etag, "content_type": response.get("ContentType")}
            if not page.get("IsTruncated"):
                break
            paginator_kwargs["ContinuationToken"] = page["NextContinuationToken"]
        for gone in set(self._index) - present:
            changes[gone] = None
        return changes

    def _write_object(self, key: str, data: bytes) -> None:
        _atomic_write(self._object_path(key), data)
        self._on_disk.add(key)
        self.last_written["object_files"] = self.last_written.get("object_files", 0) + 1

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

    async def restore(self, aws: AwsClients, settings: Settings) -> dict[str, int]:
        """Load a snapshot into a freshly bootstrapped stack; originals last (they resume)."""
        names = ResourceNames.from_settings(settings)
        counts: dict[str, int] = {}
        for table in PERSISTED_TABLES:
            items = self.saved_items(table)
            for start in range(0, len(items), 25):
                requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
                pending: dict[str, Any] = {names.table(table): requests}
                while pending:
                    response = await aws.dynamodb.batch_write_item(RequestItems=pending)
                    pending = response.get("UnprocessedItems") or {}
            counts[table.value] = len(items)
        index = self.saved_objects()
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
