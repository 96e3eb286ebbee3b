"""Snapshots read only what was written since the last one, and still store exactly the tables.

Every kind of DynamoDB write goes over HTTP to the embedded endpoint (as the services write);
after each round the incremental snapshot must hold what a Scan returns, having written only the
rows of the items that round touched.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from imgproc_local.persistence import PERSISTED_TABLES, InProcessState, StateStore
from imgproc_shared.aws import AwsClients
from imgproc_shared.resources import ResourceNames, Table


def _canonical(items: list[dict[str, Any]]) -> list[str]:
    return sorted(json.dumps(item, sort_keys=True) for item in items)


async def _scan(aws: AwsClients, table_name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": table_name, "ConsistentRead": True}
    while True:
        page = await aws.dynamodb.scan(**kwargs)
        items += page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def _assert_matches_the_tables(store: StateStore, aws: AwsClients, names: Any) -> None:
    for table in PERSISTED_TABLES:
        scanned = await _scan(aws, names.table(table))
        assert _canonical(store.saved_items(table)) == _canonical(scanned), table


def _image(image_id: str, **extra: Any) -> dict[str, Any]:
    return {"image_id": {"S": image_id}, "status": {"S": "PROCESSING"}, **extra}


def _set_reruns(table_name: str, image_id: str, reruns: int) -> dict[str, Any]:
    """A transaction's update of one image."""
    return {
        "Update": {
            "TableName": table_name,
            "Key": {"image_id": {"S": image_id}},
            "UpdateExpression": "SET reruns = :r",
            "ExpressionAttributeValues": {":r": {"N": str(reruns)}},
        }
    }


def _posting(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}, "n": {"N": "1"}}


async def test_incremental_snapshots_follow_every_kind_of_write(stack: Any, tmp_path: Path) -> None:
    settings, aws, _ = stack
    names = ResourceNames.from_settings(settings)
    images, search = names.table(Table.IMAGES), names.table(Table.SEARCH)
    db = aws.dynamodb
    for n in range(40):
        await db.put_item(TableName=images, Item=_image(f"img{n}"))
    for n in range(40):
        await db.put_item(TableName=search, Item=_posting(f"t#{n % 5}", f"img{n}"))

    store = StateStore(tmp_path)
    await store.snapshot(aws, settings, in_process=True)
    assert store.last_written["items"] == 80  # the first snapshot reads everything once
    await _assert_matches_the_tables(store, aws, names)

    # 1. Put (new and replacing), update in place, delete.
    await db.put_item(TableName=images, Item=_image("new1"))
    await db.put_item(TableName=images, Item=_image("img1", status={"S": "PROCESSED"}))
    await db.update_item(
        TableName=images,
        Key={"image_id": {"S": "img2"}},
        UpdateExpression="SET tags = :t, #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":t": {"L": [{"S": "dog"}]}, ":s": {"S": "PROCESSED"}},
    )
    await db.delete_item(TableName=images, Key={"image_id": {"S": "img3"}})
    await store.snapshot(aws, settings, in_process=True)
    assert store.last_written["items"] == 3 and store.last_written["items_deleted"] == 1
    await _assert_matches_the_tables(store, aws, names)

    # 2. A batch on the table with a range key; an update that creates its item.
    await db.batch_write_item(
        RequestItems={
            search: [
                {"PutRequest": {"Item": _posting("t#9", "img1")}},
                {"DeleteRequest": {"Key": {"pk": {"S": "t#0"}, "sk": {"S": "img0"}}}},
                {"DeleteRequest": {"Key": {"pk": {"S": "t#1"}, "sk": {"S": "img1"}}}},
            ]
        }
    )
    await db.update_item(
        TableName=images,
        Key={"image_id": {"S": "made-by-update"}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": "UPLOADED"}},
    )
    await store.snapshot(aws, settings, in_process=True)
    assert store.last_written["items"] == 2 and store.last_written["items_deleted"] == 2
    await _assert_matches_the_tables(store, aws, names)

    # 3. A transaction that commits, and one whose last condition fails (its earlier writes
    # are rolled back), and a conditional update that fails.
    await db.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": search, "Item": _posting("t#7", "img7")}},
            _set_reruns(images, "img4", 1),
            {"Delete": {"TableName": images, "Key": {"image_id": {"S": "img5"}}}},
        ]
    )
    failed = None
    try:
        await db.transact_write_items(
            TransactItems=[
                _set_reruns(images, "img6", 9),
                {"Delete": {"TableName": images, "Key": {"image_id": {"S": "img8"}}}},
                {
                    "ConditionCheck": {
                        "TableName": images,
                        "Key": {"image_id": {"S": "img9"}},
                        "ConditionExpression": "attribute_not_exists(image_id)",
                    }
                },
            ]
        )
    except db.exceptions.TransactionCanceledException as exc:
        failed = exc
    assert failed is not None
    try:
        await db.update_item(
            TableName=images,
            Key={"image_id": {"S": "img10"}},
            UpdateExpression="SET reruns = :r",
            ConditionExpression="attribute_not_exists(image_id)",
            ExpressionAttributeValues={":r": {"N": "5"}},
        )
    except db.exceptions.ConditionalCheckFailedException:
        pass
    await store.snapshot(aws, settings, in_process=True)
    await _assert_matches_the_tables(store, aws, names)
    assert store.last_written["items"] <= 6  # the touched keys are re-read, nothing else

    # 4. A PartiQL statement: its table is read whole again.
    await db.execute_statement(
        Statement=f'UPDATE "{images}" SET reruns = ? WHERE image_id = ?',
        Parameters=[{"N": "3"}, {"S": "img11"}],
    )
    await store.snapshot(aws, settings, in_process=True)
    await _assert_matches_the_tables(store, aws, names)

    # 5. Nothing written: nothing stored.
    await store.snapshot(aws, settings, in_process=True)
    assert store.last_written["items"] == store.last_written["items_deleted"] == 0

    # 6. Random writes of every kind, a snapshot after each burst.
    rnd = random.Random(7)
    for _ in range(6):
        for _ in range(15):
            n = rnd.randrange(60)
            action = rnd.choice(("put", "update", "delete", "posting", "unposting"))
            if action == "put":
                await db.put_item(TableName=images, Item=_image(f"img{n}", r={"N": str(n)}))
            elif action == "update":
                await db.update_item(
                    TableName=images,
                    Key={"image_id": {"S": f"img{n}"}},
                    UpdateExpression="ADD hits :one",
                    ExpressionAttributeValues={":one": {"N": "1"}},
                )
            elif action == "delete":
                await db.delete_item(TableName=images, Key={"image_id": {"S": f"img{n}"}})
            elif action == "posting":
                await db.put_item(TableName=search, Item=_posting(f"t#{n % 7}", f"img{n}"))
            else:
                await db.delete_item(
                    TableName=search, Key={"pk": {"S": f"t#{n % 7}"}, "sk": {"S": f"img{n}"}}
                )
        await store.snapshot(aws, settings, in_process=True)
        assert store.last_written["items"] <= 15
        await _assert_matches_the_tables(store, aws, names)

    # A fresh store (a restarted `up`) reads what this one stored.
    assert _canonical(StateStore(tmp_path).saved_items(Table.IMAGES)) == _canonical(
        await _scan(aws, images)
    )


async def test_a_table_created_again_is_read_whole(stack: Any, tmp_path: Path) -> None:
    settings, aws, _ = stack
    names = ResourceNames.from_settings(settings)
    albums = names.table(Table.ALBUMS)
    db = aws.dynamodb
    for n in range(3):
        await db.put_item(
            TableName=albums, Item={"album_id": {"S": f"a{n}"}, "owner": {"S": "alice"}}
        )
    store = StateStore(tmp_path)
    await store.snapshot(aws, settings, in_process=True)
    described = (await db.describe_table(TableName=albums))["Table"]

    await db.delete_table(TableName=albums)
    keys = {key["AttributeName"] for key in described["KeySchema"]}
    await db.create_table(
        TableName=albums,
        KeySchema=described["KeySchema"],
        AttributeDefinitions=[
            attr for attr in described["AttributeDefinitions"] if attr["AttributeName"] in keys
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    await db.put_item(TableName=albums, Item={"album_id": {"S": "b1"}, "owner": {"S": "bob"}})
    assert InProcessState.find(settings) is not None
    await store.snapshot(aws, settings, in_process=True)
    assert [item["album_id"]["S"] for item in store.saved_items(Table.ALBUMS)] == ["b1"]
    assert store.last_written["items_deleted"] == 3


async def test_an_earlier_versions_json_files_are_restored_and_moved_into_the_database(
    stack: Any, settings_factory: Any, tmp_path: Path
) -> None:
    settings, aws, _ = stack
    names = ResourceNames.from_settings(settings)
    item = {"album_id": {"S": "a1"}, "owner": {"S": "alice"}, "name": {"S": "Holiday"}}
    # What earlier versions wrote: one JSON file per table, the object index, the files.
    state = tmp_path / "state"
    (state / "tables").mkdir(parents=True)
    (state / "tables" / "Albums.json").write_text(json.dumps([item]))
    (state / "tables" / "Images.json").write_text("[]")
    (state / "objects").mkdir()
    thumb_file = state / "objects" / "thumbnails%2Fa.jpg"
    thumb_file.write_bytes(b"thumb")
    etag = f'"{hashlib.md5(b"thumb").hexdigest()}"'
    (state / "objects.json").write_text(
        json.dumps({"thumbnails/a.jpg": {"etag": etag, "content_type": "image/jpeg"}})
    )
    written_at = thumb_file.stat().st_mtime_ns

    store = StateStore(tmp_path)
    assert store.saved_items(Table.ALBUMS) == [item]
    restored = await store.restore(aws, settings)
    assert restored == {"Albums": 1, "Images": 0, "Search": 0, "objects": 1}
    got = await aws.dynamodb.get_item(
        TableName=names.table(Table.ALBUMS), Key={"album_id": {"S": "a1"}}
    )
    assert got["Item"] == item

    counts = await store.snapshot(aws, settings, in_process=True)
    assert counts == {"Albums": 1, "Images": 0, "Search": 0, "objects": 1}
    # The database holds it now; the old files are gone, the object's file was not rewritten.
    assert not (state / "tables").exists() and not (state / "objects.json").exists()
    assert thumb_file.stat().st_mtime_ns == written_at
    again = StateStore(tmp_path)
    assert again.saved_items(Table.ALBUMS) == [item]
    assert again.saved_objects() == {
        "thumbnails/a.jpg": {"etag": etag, "content_type": "image/jpeg"}
    }
