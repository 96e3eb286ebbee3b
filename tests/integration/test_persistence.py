"""`imgproc up --data-dir`: a snapshot of one stack restores into a fresh one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgproc_local.bootstrap import bootstrap
from imgproc_local.persistence import StateStore
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.resources import ResourceNames, incoming_key, thumbnail_key


async def test_snapshot_restores_tables_and_objects(
    stack: Any, settings_factory: Any, tmp_path: Path
) -> None:
    settings, aws, _ = stack
    names = ResourceNames.from_settings(settings)
    catalog = Catalog(aws, names)
    await catalog.put_album(album_id="a1", owner="alice", name="Holiday")
    original = incoming_key("alice", "a1", "img1", "jpg")
    await catalog.record_upload(
        image_id="img1",
        owner="alice",
        album_id="a1",
        bucket=names.bucket,
        key=original,
        file_name="beach.jpg",
    )
    thumb = thumbnail_key("img1", "thumbnail", "jpg")
    await aws.s3.put_object(Bucket=names.bucket, Key=thumb, Body=b"thumb", ContentType="image/jpeg")
    store = StateStore(tmp_path)

    counts = await store.snapshot(aws, settings)
    assert counts == {"Albums": 1, "Images": 1, "Search": 0, "objects": 1}
    # A second snapshot after a delete drops the object from disk too.
    await aws.s3.delete_object(Bucket=names.bucket, Key=thumb)
    assert (await store.snapshot(aws, settings))["objects"] == 0
    await aws.s3.put_object(Bucket=names.bucket, Key=thumb, Body=b"thumb", ContentType="image/jpeg")
    await store.snapshot(aws, settings)

    fresh = settings_factory()
    async with AwsClients(fresh) as fresh_aws:
        await bootstrap(fresh_aws, fresh)
        restored = await store.restore(fresh_aws, fresh)
        assert restored == {"Albums": 1, "Images": 1, "Search": 0, "objects": 1}
        fresh_names = ResourceNames.from_settings(fresh)
        record = await Catalog(fresh_aws, fresh_names).get_image("img1")
        assert record is not None and record.file_name == "beach.jpg"
        obj = await fresh_aws.s3.get_object(Bucket=fresh_names.bucket, Key=thumb)
        assert obj["ContentType"] == "image/jpeg"
        async with obj["Body"] as body:
            assert await body.read() == b"thumb"
