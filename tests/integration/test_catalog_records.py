"""The album and image records round-trip through the embedded DynamoDB as their models: what
`Catalog` writes is what it reads back, field for field (numbers as ints and floats, the JSON
attributes as the shared models), every attribute stored is one `ImageRecord` declares, and the
name guard beside an album is never read as one."""

from __future__ import annotations

from typing import Any

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog, album_name_guard
from imgproc_shared.models import (
    BoundingBox,
    Exif,
    Gps,
    ImageMetadata,
    ImageStatus,
    Instance,
    Label,
    Rendition,
    TagResult,
    ThumbnailResult,
)
from imgproc_shared.records import AlbumRecord, ImageRecord, StageError, StageProgress
from imgproc_shared.resources import SWEEP_DELETED, SWEEP_UPLOAD, ResourceNames, Table
from imgproc_shared.settings import Settings

Stack = tuple[Settings, AwsClients, dict[str, Any]]

METADATA = ImageMetadata(
    format="JPEG",
    width=4000,
    height=3000,
    mode="RGB",
    bytes=3_141_592,
    sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    exif=Exif(
        make="PENTAX",
        model="K-1",
        datetime_original="2024:05:01 10:11:12",
        offset_time_original="+02:00",
        exposure_time=0.004,
        f_number=5.6,
        iso=200,
        focal_length=35.0,
        orientation=6,
    ),
    gps=Gps(latitude=41.8902, longitude=12.4922, altitude=21.5),
    taken_at="2024-05-01T10:11:12+02:00",
)
TAGS = TagResult(
    labels=[
        Label(
            name="Dog",
            confidence=97.25,
            parents=["Animal", "Pet"],
            instances=[
                Instance(
                    bounding_box=BoundingBox(left=0.1, top=0.2, width=0.3, height=0.4),
                    confidence=91.5,
                )
            ],
        )
    ],
    backend="local",
)
THUMBNAILS = ThumbnailResult(
    renditions=[
        Rendition(
            name="thumbnail",
            key="thumbnails/rt1/thumbnail.jpg",
            width=256,
            height=192,
            format="JPEG",
            bytes=12_345,
        )
    ],
    placeholder="1QcSHQRnh493V4dIh4eXh1h4kJUI",
    phash="0123456789abcdef",
)


async def test_album_and_image_records_read_back_as_written(stack: Stack) -> None:
    settings, aws, _ = stack
    names = ResourceNames.from_settings(settings)
    catalog = Catalog(aws, names)

    album = await catalog.put_album_unique(album_id="al1", owner="rt", name="Rome 2024")
    assert isinstance(album, AlbumRecord)
    assert await catalog.get_album("al1") == album
    assert await catalog.list_albums("rt") == [album]  # the name guard is no album
    assert await catalog.get_album(album_name_guard("rt", "rome 2024")) is None

    uploaded = await catalog.record_upload(
        image_id="rt1",
        owner="rt",
        album_id="al1",
        bucket=names.bucket,
        key="incoming/rt/al1/rt1.jpg",
        file_name="IMG_0001.JPG",
        content_type="image/jpeg",
        size=3_141_592,
    )
    assert uploaded.status is ImageStatus.UPLOADING
    stored = await catalog.get_image("rt1")
    assert stored is not None
    assert stored.model_copy(update={"sweep": None, "sweep_at": None}) == uploaded
    assert stored.sweep == SWEEP_UPLOAD and stored.sweep_at == uploaded.uploaded_at

    arn = "arn:aws:states:us-east-1:123456789012:execution:ImageProc:rt1"
    assert await catalog.mark_processing(
        image_id="rt1",
        owner="rt",
        album_id="al1",
        bucket=names.bucket,
        key="incoming/rt/al1/rt1.jpg",
        execution_arn=arn,
        recorded_only=True,
    )
    progress = StageProgress(
        started_at="2024-05-01T10:11:12.000Z",
        finished_at="2024-05-01T10:11:12.345Z",
        duration_ms=345,
    )
    failed = progress.model_copy(
        update={"error": StageError(code="ImageProc.Transient", message="busy")}
    )
    results: dict[str, dict[str, Any]] = {
        "extract": {"metadata": METADATA},
        "tag": {"tags": TAGS},
        "thumbnail": {"thumbnails": THUMBNAILS},
    }
    for stage, result in results.items():
        assert await catalog.record_stage(
            "rt1", stage, failed if stage == "tag" else progress, result
        )
    # A running stage: only when it started (the runtime's note), stored without the rest.
    running = StageProgress(started_at="2024-05-01T10:11:13.000Z")
    assert await catalog.record_stage("rt2", "extract", running) is False  # no such image

    record = await catalog.get_image("rt1")
    assert record is not None
    assert record.started_at is not None and record.started_at >= str(uploaded.uploaded_at)
    assert record == uploaded.model_copy(
        update={
            "status": ImageStatus.PROCESSING,
            "execution_arn": arn,
            "started_at": record.started_at,
            "stage_extract": progress,
            "stage_tag": failed,
            "stage_thumbnail": progress,
            "metadata": METADATA,
            "tags": TAGS,
            "thumbnails": THUMBNAILS,
        }
    )
    assert record.stages() == {"extract": progress, "tag": failed, "thumbnail": progress}
    assert record.stages()["extract"].model_dump() == {
        "started_at": "2024-05-01T10:11:12.000Z",
        "finished_at": "2024-05-01T10:11:12.345Z",
        "duration_ms": 345,
    }
    # Every attribute written is one the model declares: nothing is dropped on read.
    item = await aws.dynamodb.get_item(
        TableName=names.table(Table.IMAGES), Key={"image_id": {"S": "rt1"}}
    )
    assert set(item["Item"]) <= set(ImageRecord.model_fields)
    # Projected reads carry the id and what was asked for.
    polled = await catalog.get_images(["rt1"], ("status",))
    assert polled == [ImageRecord(image_id="rt1", status=ImageStatus.PROCESSING)]

    # The tombstone: what the sweep needs, and the record it replaced.
    replaced = await catalog.tombstone_image(record)
    assert replaced == record
    tombstone = await catalog.get_image("rt1")
    assert tombstone is not None and tombstone.deleted
    assert (tombstone.owner, tombstone.bucket, tombstone.key, tombstone.album_id) == (
        "rt",
        names.bucket,
        "incoming/rt/al1/rt1.jpg",
        None,
    )
    assert tombstone.sweep == SWEEP_DELETED and tombstone.deleted_at == tombstone.sweep_at
