"""Which DynamoDB items changed since a snapshot last looked: what makes snapshots incremental.

A snapshot that converts every item of every table costs in proportion to the library, not to
what changed: at ~500 photos (~6,000 items, most of them the search index's) it took ~0.1 s of
the endpoint's CPU every 2 s while anything was written, and a 10,000-photo library would spend
more than the interval on it. So the endpoint records the key of every item that a write may
have touched, and each snapshot reads and stores only those items (`persistence`).

Every write to an item goes through one of three of moto's methods, whatever the request
(PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems and its rollback, which
puts back only items its own writes touched): `Table.put_item` and `Table.delete_item` (the item
stores) and `DynamoDBBackend.update_item` (the one that changes an item in place). Each marks
the key after the write, also when the write failed (a mark too many only costs a re-read).
PartiQL statements write through the item stores too, but moto calls its PartiQL support
experimental: they also mark every table wholly unknown, read whole by the next snapshot. A
table that was replaced (deleted and created again, restored from a backup) is noticed by the
snapshot itself, which keeps the table object it read last.

Marks happen inside a DynamoDB request, and every request holds `moto_fixes.DYNAMODB_LOCK`
from its parsing to its answer; a snapshot takes its marks under that lock too, so a mark is
never lost between a write and the snapshot that reads it.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Any

from imgproc_local import moto_patches

# An item's key as moto's tables hold it: (hash key, range key or None), both DynamoTypes.
ItemKey = tuple[Any, Any]


class ChangeFeed:
    """The item keys written since this feed's owner last took them, table by table.

    A table is only tracked once `take` was asked about it; the first `take` answers None
    (everything is unknown: read the whole table), as does the next one after a PartiQL write.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty: dict[str, set[ItemKey]] = {}
        self._unknown: set[str] = set()

    def mark(self, table_name: str, key: ItemKey) -> None:
        with self._lock:
            dirty = self._dirty.get(table_name)
            if dirty is not None:
                dirty.add(key)

    def mark_all_unknown(self) -> None:
        with self._lock:
            self._unknown.update(self._dirty)

    def take(self, table_name: str) -> set[ItemKey] | None:
        """The keys marked since the last take (and clears them); None when the whole table
        must be read: the first time, or after a PartiQL write."""
        with self._lock:
            dirty = self._dirty.get(table_name)
            self._dirty[table_name] = set()
            if dirty is None or table_name in self._unknown:
                self._unknown.discard(table_name)
                return None
            return dirty


_feeds: weakref.WeakSet[ChangeFeed] = weakref.WeakSet()
_feeds_lock = threading.Lock()


def subscribe() -> ChangeFeed:
    """A new feed of this process's DynamoDB writes (held weakly: dropped with its owner)."""
    feed = ChangeFeed()
    with _feeds_lock:
        _feeds.add(feed)
    return feed


def tracking() -> bool:
    """Whether this process's moto marks its writes (`install` ran)."""
    return "table_changes" in moto_patches.installed()


def _mark(table_name: str, key: ItemKey) -> None:
    with _feeds_lock:
        feeds = list(_feeds)
    for feed in feeds:
        feed.mark(table_name, key)


def _mark_all_unknown() -> None:
    with _feeds_lock:
        feeds = list(_feeds)
    for feed in feeds:
        feed.mark_all_unknown()


def _key_of(table: Any, attributes: dict[str, Any]) -> ItemKey | None:
    """The item key in `attributes` (an item's or a request's Key), as moto computes it."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    try:
        hash_value = DynamoType(attributes[table.hash_key_attr])
        range_attr = table.range_key_attr
        range_value = DynamoType(attributes[range_attr]) if range_attr else None
    except (KeyError, TypeError, AttributeError):  # an invalid request: moto rejected it
        return None
    return hash_value, range_value


def _patch_table_changes() -> None:
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    put_item = Table.put_item
    delete_item = Table.delete_item
    update_item = DynamoDBBackend.update_item

    @functools.wraps(put_item)
    def marking_put_item(self: Any, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return put_item(self, item_attrs, *args, **kwargs)
        finally:
            key = _key_of(self, item_attrs)
            if key is not None:
                _mark(self.name, key)

    @functools.wraps(delete_item)
    def marking_delete_item(self: Any, hash_key: Any, range_key: Any) -> Any:
        try:
            return delete_item(self, hash_key, range_key)
        finally:
            _mark(self.name, (hash_key, range_key))

    @functools.wraps(update_item)
    def marking_update_item(
        self: Any, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any
    ) -> Any:
        try:
            return update_item(self, table_name, key, *args, **kwargs)
        finally:
            try:
                table = self.get_table(table_name)
            except Exception:  # no such table: nothing was written
                table = None
            marked = _key_of(table, key) if table is not None else None
            if marked is not None:
                _mark(table_name, marked)

    Table.put_item = marking_put_item  # type: ignore[method-assign]
    Table.delete_item = marking_delete_item  # type: ignore[method-assign]
    DynamoDBBackend.update_item = marking_update_item  # type: ignore[method-assign]

    for name in ("execute_statement", "execute_transaction", "batch_execute_statement"):
        original = getattr(DynamoDBBackend, name)

        def marking_statement(
            self: Any, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            try:
                return _original(self, *args, **kwargs)
            finally:
                _mark_all_unknown()

        setattr(DynamoDBBackend, name, functools.wraps(original)(marking_statement))


PATCHES: list[moto_patches.Patch] = [("table_changes", _patch_table_changes)]


def install() -> None:
    """Mark every DynamoDB write from now on (idempotent); moto's names are checked first."""
    moto_patches.apply("persistence", PATCHES)
