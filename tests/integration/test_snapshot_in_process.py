"""Snapshots read the in-process endpoint's backends, and skip when nothing changed.

The endpoint these tests use runs in the test process (as it runs in `imgproc up`'s), so the
in-process path is the one taken; each test compares it with the path over the API.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from imgproc_local import persistence, request_counter
from imgproc_local.persistence import (
    PERSISTED_TABLES,
    InProcessState,
    Snapshots,
    StateStore,
    mutation_count,
)
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.resources import ResourceNames, Table, incoming_key, thumbnail_key


async def _populate(settings: Any, aws: AwsClients) -> ResourceNames:
    names = ResourceNames.from_settings(settings)
    catalog = Catalog(aws, names)
    for n in range(3):
        await catalog.put_album(album_id=f"a{n}", owner="alice", name=f"Album {n}")
    for n in range(12):
        await catalog.record_upload(
            image_id=f"img{n}",
            owner="alice",
            album_id=f"a{n % 3}",
            bucket=names.bucket,
            key=incoming_key("alice", f"a{n % 3}", f"img{n}", "jpg"),
            file_name=f"photo {n}.jpg",
        )
    # Every attribute type a finished image can hold, nested as the workflow nests them.
    await aws.dynamodb.update_item(
        TableName=names.table(Table.IMAGES),
        Key={"image_id": {"S": "img0"}},
        UpdateExpression=(
            "SET metadata = :m, tags = :t, thumbnails = :th, reruns = :r, flagged = :f, "
            "gone = :null, labels = :ss, sizes = :ns"
        ),
        ExpressionAttributeValues={
            ":m": {"M": {"width": {"N": "4000"}, "make": {"S": "Canon"}, "gps": {"NULL": True}}},
            ":t": {"L": [{"M": {"label": {"S": "beach"}, "confidence": {"N": "97.25"}}}]},
            ":th": {"M": {"thumbnail": {"S": thumbnail_key("img0", "thumbnail", "jpg")}}},
            ":r": {"N": "2"},
            ":f": {"BOOL": False},
            ":null": {"NULL": True},
            ":ss": {"SS": ["sea", "sand"]},
            ":ns": {"NS": ["1", "2.5"]},
        },
    )
    await aws.s3.put_object(
        Bucket=names.bucket, Key=incoming_key("alice", "a0", "img0", "jpg"), Body=b"x" * 3000
    )
    thumb = thumbnail_key("img0", "thumbnail", "jpg")
    await aws.s3.put_object(Bucket=names.bucket, Key=thumb, Body=b"old", ContentType="image/png")
    await aws.s3.put_object(Bucket=names.bucket, Key=thumb, Body=b"new", ContentType="image/jpeg")
    # No content type (moto's default), and a name that needs quoting on disk.
    await aws.s3.put_object(Bucket=names.bucket, Key="thumbnails/odd name+ü/%2F.bin", Body=b"\0")
    # A multipart upload's ETag has its own form.
    upload = await aws.s3.create_multipart_upload(
        Bucket=names.bucket, Key="thumbnails/multi.jpg", ContentType="image/jpeg"
    )
    part = await aws.s3.upload_part(
        Bucket=names.bucket,
        Key="thumbnails/multi.jpg",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=b"m" * 1000,
    )
    await aws.s3.complete_multipart_upload(
        Bucket=names.bucket,
        Key="thumbnails/multi.jpg",
        UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )
    # Deleted: must be in neither snapshot.
    await aws.s3.put_object(Bucket=names.bucket, Key="thumbnails/deleted.jpg", Body=b"d")
    await aws.s3.delete_object(Bucket=names.bucket, Key="thumbnails/deleted.jpg")
    return names


_NOTHING_WRITTEN = {"items": 0, "items_deleted": 0, "object_files": 0, "objects_deleted": 0}


def _saved(store: StateStore) -> dict[str, Any]:
    """Everything a snapshot holds: each table's items, the object index, the object files."""
    return {
        "tables": {table.value: store.saved_items(table) for table in PERSISTED_TABLES},
        "index": store.saved_objects(),
        "files": {path.name: path.read_bytes() for path in sorted(store.objects.iterdir())},
    }


def _housekeeping_reads() -> dict[str, int]:
    counts = request_counter.request_counts()["housekeeping_requests"]
    return {
        "Scan": counts.get("dynamodb", {}).get("Scan", 0),
        "GetObject": counts.get("s3", {}).get("GetObject", 0),
        "ListObjects": counts.get("s3", {}).get("GETBucket", 0),
    }


async def test_in_process_snapshot_writes_what_the_api_snapshot_wrote(
    stack: Any, tmp_path: Path
) -> None:
    settings, aws, _ = stack
    names = await _populate(settings, aws)

    over_api = StateStore(tmp_path / "api")
    api_counts = await over_api.snapshot(aws, settings)
    state = InProcessState.find(settings)
    assert state is not None
    # The account moto filed the stack under: its default, for the endpoint's `testing` key.
    assert state.account == "123456789012"

    reads_before = _housekeeping_reads()
    in_process = StateStore(tmp_path / "local")
    local_counts = await in_process.snapshot(aws, settings, in_process=True)
    assert _housekeeping_reads() == reads_before  # nothing went over HTTP

    assert local_counts == api_counts == {"Albums": 3, "Images": 12, "Search": 0, "objects": 4}
    # The same items, index and object files, byte for byte.
    assert _saved(in_process) == _saved(over_api)

    # And the items are exactly what a Scan returns.
    for table in Table:
        scanned = await aws.dynamodb.scan(TableName=names.table(table), ConsistentRead=True)
        assert state.table_items(table) == scanned["Items"]


async def test_in_process_snapshot_follows_changes(stack: Any, tmp_path: Path) -> None:
    settings, aws, _ = stack
    names = await _populate(settings, aws)
    store = StateStore(tmp_path)
    await store.snapshot(aws, settings, in_process=True)
    index = store.saved_objects()
    multi = store.objects / "thumbnails%2Fmulti.jpg"
    assert multi.exists()

    thumb = thumbnail_key("img0", "thumbnail", "jpg")
    await aws.s3.put_object(Bucket=names.bucket, Key=thumb, Body=b"newer", ContentType="image/jpeg")
    await aws.s3.delete_object(Bucket=names.bucket, Key="thumbnails/multi.jpg")
    await aws.dynamodb.delete_item(
        TableName=names.table(Table.IMAGES), Key={"image_id": {"S": "img3"}}
    )
    counts = await store.snapshot(aws, settings, in_process=True)

    assert counts == {"Albums": 3, "Images": 11, "Search": 0, "objects": 3}
    assert (store.objects / "thumbnails%2Fimg0%2Fthumbnail.jpg").read_bytes() == b"newer"
    assert not multi.exists()
    new_index = store.saved_objects()
    assert new_index[thumb]["etag"] != index[thumb]["etag"]
    # Only what changed was written: one object file, no item row (the delete removed one).
    assert store.last_written == {
        **_NOTHING_WRITTEN,
        "items_deleted": 1,
        "object_files": 1,
        "objects_deleted": 1,
    }
    # Same as the API path sees it now.
    over_api = StateStore(tmp_path / "api")
    await over_api.snapshot(aws, settings)
    assert _saved(store) == _saved(over_api)


async def test_unchanged_stack_takes_no_new_snapshot(stack: Any, tmp_path: Path) -> None:
    settings, aws, _ = stack
    names = await _populate(settings, aws)
    store = StateStore(tmp_path)
    snapshots = Snapshots(store, settings)
    assert mutation_count() is not None

    def mtimes() -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in store.objects.iterdir()}

    # The first snapshot, then one more to settle (requests counted before the first may still
    # have been in flight); after that, a quiet endpoint costs nothing. Other tests' leftovers
    # (executions timing out) may still write in this process's endpoint: allow a few rounds.
    assert await snapshots.take(aws) is not None
    written = mtimes()
    for _ in range(20):
        if await snapshots.take(aws) is None:
            break
        await asyncio.sleep(0.2)
    else:
        pytest.fail("a quiet stack was snapshotted every time")
    # Reads are not counted as changes (retried: leftovers may write meanwhile).
    for _ in range(5):
        before = mutation_count()
        await aws.dynamodb.get_item(
            TableName=names.table(Table.IMAGES), Key={"image_id": {"S": "img0"}}
        )
        await aws.s3.get_object(Bucket=names.bucket, Key=thumbnail_key("img0", "thumbnail", "jpg"))
        await aws.s3.list_objects_v2(Bucket=names.bucket)
        await aws.dynamodb.query(
            TableName=names.table(Table.IMAGES),
            KeyConditionExpression="image_id = :id",
            ExpressionAttributeValues={":id": {"S": "img0"}},
        )
        if mutation_count() == before:
            break
    else:
        pytest.fail("reads were counted as changes")
    # Whatever was taken meanwhile rewrote nothing: no object file changed.
    assert mtimes() == written
    assert store.last_written == _NOTHING_WRITTEN

    # A write is always picked up by the next round.
    await Catalog(aws, names).put_album(album_id="a9", owner="bob", name="Late")
    counts = await snapshots.take(aws)
    assert counts is not None and counts["Albums"] == 4
    albums = store.saved_items(Table.ALBUMS)
    assert "a9" in {item["album_id"]["S"] for item in albums}
    # Only that item was written; the objects did not change, nor did their files.
    assert store.last_written == {**_NOTHING_WRITTEN, "items": 1}
    assert mtimes() == written

    # The last snapshot of a clean stop is taken whatever the counter says.
    taken = snapshots.taken
    assert await snapshots.take(aws, force=True) is not None
    assert snapshots.taken == taken + 1


async def test_settling_rule(stack: Any, tmp_path: Path) -> None:
    """Skip only for a counter value that was already current one round before a snapshot."""
    settings, aws, _ = stack
    values = iter([5, 5, 5, 5, 6, 6, 7, 7, 7])
    snapshots = Snapshots(StateStore(tmp_path), settings, count=lambda: next(values))
    taken = [await snapshots.take(aws) is not None for _ in range(9)]
    assert taken == [True, True, False, False, True, True, True, True, False]


async def test_without_the_endpoint_in_process_snapshots_go_over_the_api(
    stack: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, aws, _ = stack
    await _populate(settings, aws)
    expected = StateStore(tmp_path / "expected")
    await expected.snapshot(aws, settings, in_process=True)

    monkeypatch.setattr(InProcessState, "find", classmethod(lambda cls, settings: None))
    store = StateStore(tmp_path / "api")
    snapshots = Snapshots(store, settings)
    scans = _housekeeping_reads()["Scan"]
    # No backends to read, so no change signal either: every round snapshots, over HTTP.
    for _ in range(3):
        assert await snapshots.take(aws) is not None
    assert snapshots.skipped == 0
    assert _housekeeping_reads()["Scan"] == scans + 3 * len(PERSISTED_TABLES)
    assert _saved(store) == _saved(expected)


async def test_in_process_state_is_only_found_for_a_stack_this_endpoint_holds(
    stack: Any, settings_factory: Any
) -> None:
    settings, _, _ = stack
    assert InProcessState.find(settings) is not None
    # Never bootstrapped here: nothing in this process's backends, so the API path is used.
    assert InProcessState.find(settings_factory()) is None
    # Real AWS (no endpoint): never in process, even with the same names here.
    assert InProcessState.find(settings.model_copy(update={"endpoint_url": None})) is None


@pytest.mark.parametrize(
    ("service", "action", "changes"),
    [
        ("dynamodb", "PutItem", True),
        ("dynamodb", "UpdateItem", True),
        ("dynamodb", "BatchWriteItem", True),
        ("dynamodb", "TransactWriteItems", True),
        ("dynamodb", "ExecuteStatement", True),
        ("dynamodb", "GetItem", False),
        ("dynamodb", "Query", False),
        ("dynamodb", "Scan", False),
        ("dynamodb", "DescribeTable", False),
        ("s3", "PutObject", True),
        ("s3", "DeleteObject", True),
        ("s3", "POSTBucket", True),  # DeleteObjects, presigned POST uploads
        ("s3", "GetObject", False),
        ("s3", "HeadObject", False),
        ("s3", "GETBucket", False),
        ("unknown", "POST", True),  # a browser's presigned POST: signed in its form body
        ("unknown", "GET", False),
        ("sqs", "SendMessage", False),
        ("stepfunctions", "StartExecution", False),
    ],
)
def test_which_requests_count_as_changes(service: str, action: str, changes: bool) -> None:
    assert persistence._may_change(service, action) is changes
