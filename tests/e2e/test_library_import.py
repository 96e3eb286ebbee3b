"""End to end, as a user with a library: `imgproc import` of a folder, interrupted
with Ctrl-C half way and run again; objects put straight into the bucket with plain boto3; and
`imgproc import s3://...` of a bucket that already holds photos.

The stack runs with moto's canned Rekognition labels: labels are not what these tests are
about, and the local model would cost most of the time.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from helpers import eventually
from PIL import Image

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.resources import ResourceNames
from imgproc_status_api.starter import direct_image_id

from phone_photos import photo as phone_photo
from stack_process import IMGPROC, RunningStack, start_stack

pytestmark = pytest.mark.e2e

OWNER = "importer"
PHOTOS = 200
# Where the photos go, relative to the library's root ("" is the root itself).
# A phone's and a website's formats beside the camera's: index % 10 → format.
LIBRARY_FORMATS = {0: "PNG", 3: "HEIF", 5: "WEBP", 7: "AVIF"}
PHONE_FORMATS = ("HEIF", "WEBP", "AVIF")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "HEIF": "heic", "WEBP": "webp", "AVIF": "avif"}
FOLDERS = ("", "2023/Summer", "2023/Winter", "2024", "2024/Rome/day 1", "scans.jpg")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    running = start_stack(tmp_path_factory.mktemp("import-home"), tagger="rekognition")
    yield running
    running.stop()


def _photo(index: int, fmt: str = "JPEG") -> bytes:
    """A small photo of its own colour; the comment keeps even close colours' files apart."""
    colour = ((index * 37) % 256, (index * 91) % 256, (index * 53) % 256)
    if fmt in PHONE_FORMATS:
        return phone_photo(fmt, (64, 48), colour=colour)
    buffer = io.BytesIO()
    if fmt == "JPEG":
        Image.new("RGB", (64, 48), colour).save(buffer, "JPEG", comment=f"photo {index}")
    else:
        image = Image.new("RGB", (64, 48), colour)
        image.putpixel((0, 0), (index % 256, index // 256, 7))
        image.save(buffer, "PNG")
    return buffer.getvalue()


def _library(root: Path) -> dict[str, int]:
    """200 photos (a mixed library: every tenth a PNG, a HEIC, a WebP and an AVIF) in nested
    folders, 2 identical copies, 3 entries that
    cannot be read (a broken link, a link to itself, a FIFO), 2 files that are not photos.
    Returns the number of distinct photos per folder."""
    per_folder: dict[str, int] = {}
    for index in range(PHOTOS):
        folder = FOLDERS[index % len(FOLDERS)]
        (root / folder).mkdir(parents=True, exist_ok=True)
        fmt = LIBRARY_FORMATS.get(index % 10, "JPEG")
        name = f"IMG_{index:04d}.{EXTENSIONS[fmt]}"
        (root / folder / name).write_bytes(_photo(index, fmt))
        per_folder[folder] = per_folder.get(folder, 0) + 1
    # Copies beside their originals, so which of the two is the duplicate decides no album.
    (root / "2024" / "IMG_0003 copy.heic").write_bytes(
        (root / "2024" / "IMG_0003.heic").read_bytes()
    )
    (root / "IMG_0006 (1).jpg").write_bytes((root / "IMG_0006.jpg").read_bytes())
    (root / "2023/Summer" / "broken.jpg").symlink_to(root / "nowhere.jpg")
    (root / "2024" / "loop.jpg").symlink_to(root / "2024" / "loop.jpg")
    os.mkfifo(root / "pipe.jpg")
    (root / "notes.txt").write_text("not a photo\n")
    (root / "2023" / "fake.jpg").write_text("not a photo either\n")
    return per_folder


def _import(stack: RunningStack, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(IMGPROC), "import", *args, "--user", OWNER, "--json"],
        env=stack.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _summary(process: subprocess.Popen[str], timeout: float) -> tuple[int, dict[str, Any]]:
    out, err = process.communicate(timeout=timeout)
    assert out.strip(), f"no summary (exit {process.returncode}): {err}"
    lines = out.strip().splitlines()
    assert len(lines) == 1, out[:2000]
    return process.returncode, json.loads(lines[0])


def _journal_uploaded(path: Path) -> int:
    if not path.exists():
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        try:
            row = db.execute("SELECT COUNT(*) FROM imports WHERE state != 'pending'").fetchone()
        except sqlite3.OperationalError:  # the import has created the file, not yet its table
            return 0
        return int(row[0])


async def _album_counts(stack: RunningStack, owner: str) -> dict[str, list[dict[str, Any]]]:
    """Album name → its image records, for every album of `owner`."""
    albums: dict[str, list[dict[str, Any]]] = {}
    async with AwsClients(stack.settings) as aws:
        catalog = Catalog(aws, ResourceNames.from_settings(stack.settings))
        for album in await catalog.list_albums(owner):
            images: list[dict[str, Any]] = []
            after = None
            while True:
                page, after = await catalog.list_album_images(
                    album.album_id, limit=100, after=after
                )
                images += [r.model_dump(mode="json", exclude_unset=True) for r in page]
                if after is None:
                    break
            assert album.name not in albums, f"two albums named {album.name!r}"
            albums[album.name] = images
    return albums


def test_folder_import_interrupted_and_resumed_brings_each_photo_in_once(
    stack: RunningStack, tmp_path: Path
) -> None:
    root = tmp_path / "Pictures"
    per_folder = _library(root)
    journal = tmp_path / "journal.sqlite3"
    args = (str(root), "--albums-from-folders", "--journal", str(journal), "--concurrency", "4")
    started = time.monotonic()

    first = _import(stack, *args)
    # Ctrl-C once some photos are in and well before all are.
    deadline = time.monotonic() + 60
    while _journal_uploaded(journal) < 40:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the first run uploaded too little in 60 s"
        time.sleep(0.05)  # polling the journal, bounded by the deadline
    first.send_signal(signal.SIGINT)
    code, interrupted = _summary(first, timeout=60)
    assert code == 130 and interrupted["interrupted"] is True, interrupted
    uploaded_first = interrupted["counts"]["uploaded"]
    assert 40 <= uploaded_first < PHOTOS, interrupted["counts"]

    code, summary = _summary(_import(stack, *args), timeout=120)
    elapsed = time.monotonic() - started
    counts = summary["counts"]
    assert code == 0, summary
    assert summary["interrupted"] is False
    # Every photo uploaded exactly once over the two runs, and every one processed.
    assert uploaded_first + counts["uploaded"] == PHOTOS, (uploaded_first, counts)
    assert counts["resumed"] >= uploaded_first, counts
    assert counts["processed"] == PHOTOS, counts
    assert (counts["duplicates"], counts["unreadable"], counts["skipped"]) == (2, 3, 2), counts
    assert (counts["rejected"], counts["failed"], counts["pending"]) == (0, 0, 0), counts
    assert counts["found"] == PHOTOS + 2 + 3 + 2

    files = {Path(f["path"]).relative_to(root).as_posix(): f for f in summary["files"]}
    assert len(files) == len(summary["files"]) == counts["found"]
    unreadable = {p: f["reason"] for p, f in files.items() if f["status"] == "UNREADABLE"}
    assert set(unreadable) == {"2023/Summer/broken.jpg", "2024/loop.jpg", "pipe.jpg"}
    assert all(unreadable.values()), unreadable
    assert {p for p, f in files.items() if f["status"] == "SKIPPED"} == {
        "notes.txt",
        "2023/fake.jpg",
    }
    duplicates = {p: f for p, f in files.items() if f["status"] == "DUPLICATE"}
    pairs = [
        ("2024/IMG_0003.heic", "2024/IMG_0003 copy.heic"),
        ("IMG_0006.jpg", "IMG_0006 (1).jpg"),
    ]
    for original, copy in pairs:
        [dup] = [p for p in (original, copy) if p in duplicates]
        kept = original if dup == copy else copy
        assert files[kept]["status"] == "PROCESSED"
        assert duplicates[dup]["image_id"] == files[kept]["image_id"]
        assert duplicates[dup]["reason"].endswith(kept)
    processed = [f for f in files.values() if f["status"] == "PROCESSED"]
    assert len({f["image_id"] for f in processed}) == PHOTOS

    # The library: one album per folder (its path under the root; the root's photos in an
    # album named after it), each photo once, all of them PROCESSED.
    albums = asyncio.run(_album_counts(stack, OWNER))
    expected = {folder or "Pictures": count for folder, count in per_folder.items()}
    assert {name: len(images) for name, images in albums.items()} == expected
    records = [r for images in albums.values() for r in images]
    assert {r["image_id"] for r in records} == {f["image_id"] for f in processed}
    assert {r["status"] for r in records} == {"PROCESSED"}
    print(
        f"\nIMPORT folder: photos={PHOTOS} first_run_uploaded={uploaded_first} "
        f"second_run_uploaded={counts['uploaded']} elapsed_s={elapsed:.1f}"
    )


def _s3(stack: RunningStack) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=stack.endpoint_url,
        region_name=stack.settings.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


async def _records(stack: RunningStack, ids: list[str]) -> dict[str, dict[str, Any]]:
    async with AwsClients(stack.settings) as aws:
        catalog = Catalog(aws, ResourceNames.from_settings(stack.settings))
        found = {
            r.image_id: r.model_dump(mode="json", exclude_unset=True)
            for r in await catalog.get_images(ids)
        }
        for record in found.values():
            album = await catalog.get_album(record["album_id"])
            record["album"] = album.model_dump() if album else None
        return found


def test_objects_put_straight_into_the_bucket_are_processed(stack: RunningStack) -> None:
    s3 = _s3(stack)
    bucket = ResourceNames.from_settings(stack.settings).bucket
    # Outside incoming/: ignored (put first, so it has had its chance by the end).
    s3.put_object(Bucket=bucket, Key="elsewhere/photo.jpg", Body=_photo(1001))
    puts = {
        "incoming/photo.jpg": ({}, ("default", "Imported")),
        "incoming/trip/photo.jpg": ({}, ("default", "trip")),
        # What `aws s3 cp photo.heic s3://BUCKET/incoming/` makes.
        "incoming/photo.heic": ({}, ("default", "Imported")),
        "incoming/2024/été à Rome/IMG 1+2 #3.jpg": ({}, ("default", "2024/été à Rome")),
        "incoming/from-app/a.jpg": ({"owner": "carol", "album": "Holidays"}, ("carol", "Holidays")),
        # The seed web app's names, as it set them.
        "incoming/from-app/b.jpg": (
            {"userid": "carol", "albumid": "Holidays"},
            ("carol", "Holidays"),
        ),
    }
    ids: dict[str, str] = {}
    for i, (key, (metadata, _)) in enumerate(puts.items()):
        body = _photo(1002 + i, "HEIF" if key.endswith(".heic") else "JPEG")
        response = s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata=metadata)
        ids[key] = direct_image_id(bucket, key, response["ETag"], response.get("VersionId"))

    async def done() -> dict[str, dict[str, Any]] | None:
        found = await _records(stack, list(ids.values()))
        finished = {k: found.get(i) for k, i in ids.items()}
        if all(r and r["status"] in ("PROCESSED", "REJECTED", "FAILED") for r in finished.values()):
            return finished  # type: ignore[return-value]
        return None

    finished = asyncio.run(eventually(done, timeout=60, interval=0.5, what="direct puts"))
    for key, (_, (owner, album)) in puts.items():
        record = finished[key]
        assert record["status"] == "PROCESSED", record
        assert (record["owner"], record["album"]["owner"], record["album"]["name"]) == (
            owner,
            owner,
            album,
        ), key
        assert record["key"] == key and record["file_name"] == key.rsplit("/", 1)[-1]
    # One album per name, however many objects named it at once.
    assert (
        finished["incoming/from-app/a.jpg"]["album_id"]
        == finished["incoming/from-app/b.jpg"]["album_id"]
    )

    # The same object again (a duplicate event for the same version): nothing new.
    again = s3.put_object(Bucket=bucket, Key="incoming/photo.jpg", Body=_photo(1002))
    assert (
        direct_image_id(bucket, "incoming/photo.jpg", again["ETag"], None)
        == ids["incoming/photo.jpg"]
    )

    ignored = s3.head_object(Bucket=bucket, Key="elsewhere/photo.jpg")
    ignored_id = direct_image_id(bucket, "elsewhere/photo.jpg", ignored["ETag"], None)
    assert asyncio.run(_records(stack, [ignored_id])) == {}


def test_bucket_import_copies_photos_and_resumes(stack: RunningStack) -> None:
    s3 = _s3(stack)
    source = "legacy-photos"
    s3.create_bucket(Bucket=source)
    objects = {
        "albums/2019/beach.jpg": _photo(2001),
        "albums/2019/sunset.png": _photo(2002, "PNG"),
        "albums/cover.jpg": _photo(2003),
        "albums/2019/beach copy.jpg": _photo(2001),
        "albums/readme.txt": b"hello",
        "albums/": b"",  # a console's folder marker
    }
    for key, body in objects.items():
        s3.put_object(Bucket=source, Key=key, Body=body)
    args = (f"s3://{source}/albums", "--albums-from-folders", "--user", "dora")

    def run() -> dict[str, Any]:
        process = subprocess.Popen(
            [str(IMGPROC), "import", *args, "--json"],
            env=stack.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        code, summary = _summary(process, timeout=90)
        assert code == 0, summary
        return summary

    first = run()
    counts = first["counts"]
    assert (counts["found"], counts["uploaded"], counts["processed"]) == (5, 3, 3), counts
    assert (counts["duplicates"], counts["skipped"]) == (1, 1), counts
    statuses = {f["path"]: f["status"] for f in first["files"]}
    assert statuses[f"s3://{source}/albums/readme.txt"] == "SKIPPED"

    again = run()["counts"]
    assert (again["uploaded"], again["resumed"], again["processed"]) == (0, 3, 3), again

    albums = asyncio.run(_album_counts(stack, "dora"))
    assert {name: len(images) for name, images in albums.items()} == {"2019": 2, "albums": 1}
    # The source bucket is left as it was.
    listed = s3.list_objects_v2(Bucket=source)["Contents"]
    assert len(listed) == len(objects)
