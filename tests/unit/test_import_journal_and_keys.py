"""`imgproc import`'s pieces that need no stack: the journal, the format sniffing, reading files
that cannot be read, album names from folders; and the starter's reading of object keys."""

from __future__ import annotations

import asyncio
import io
import os
import threading
from pathlib import Path

import pytest
from PIL import Image

from imgproc_cli.library_import.journal import ImportJournal, Outcome
from imgproc_cli.library_import.runner import album_name_for_folder
from imgproc_cli.library_import.sniff import sniff_format
from imgproc_cli.library_import.sources import (
    FileFacts,
    FileItem,
    Item,
    Unreadable,
    inspect_file,
    walk_folder,
)
from imgproc_shared.models import ALBUM_NAME_MAX
from imgproc_status_api.starter import (
    TOP_LEVEL_ALBUM,
    direct_image_id,
    folder_album_name,
    is_processable_key,
    parse_incoming_key,
)


def test_journal_claims_content_once_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    journal = ImportJournal(path, "http://127.0.0.1:1/imgproc-images")
    first = journal.claim("alice", "sha256:aa", "/pics/a.jpg", "img1")
    assert (first.image_id, first.state, first.source) == ("img1", "pending", "/pics/a.jpg")
    # The same content from another file (or a second try): the first claim holds.
    again = journal.claim("alice", "sha256:aa", "/pics/copy/a.jpg", "img2")
    assert (again.image_id, again.source) == ("img1", "/pics/a.jpg")
    # Another owner or another library has its own rows.
    assert journal.claim("bob", "sha256:aa", "/pics/a.jpg", "img3").image_id == "img3"
    other = ImportJournal(path, "aws:us-east-1/imgproc-images")
    assert other.lookup("alice", "sha256:aa") is None
    other.close()

    journal.mark("alice", "sha256:aa", "uploaded")
    journal.close()
    # A crash after the upload: the next run finds the same image id.
    reopened = ImportJournal(path, "http://127.0.0.1:1/imgproc-images")
    entry = reopened.lookup("alice", "sha256:aa")
    assert entry is not None and (entry.image_id, entry.state) == ("img1", "uploaded")
    reopened.mark("alice", "sha256:aa", "done", status="REJECTED", reason="CorruptImage: cut")
    entry = reopened.lookup("alice", "sha256:aa")
    assert entry is not None and (entry.status, entry.reason) == ("REJECTED", "CorruptImage: cut")
    reopened.restart("alice", "sha256:aa", "img9")
    entry = reopened.lookup("alice", "sha256:aa")
    assert entry is not None and (entry.image_id, entry.state, entry.status) == (
        "img9",
        "pending",
        None,
    )
    assert reopened.count() == 2 and reopened.count("pending") == 2


def test_journal_outcomes_stream_in_order_per_run(tmp_path: Path) -> None:
    journal = ImportJournal(tmp_path / "j.sqlite3", "t")
    for i in range(3):
        journal.add_outcome("run1", Outcome(f"/p/{i}.jpg", f"id{i}", "PROCESSED", None))
    journal.add_outcome("run2", Outcome("/q.jpg", None, "UNREADABLE", "not a regular file"))
    assert [o.source for o in journal.outcomes("run1")] == ["/p/0.jpg", "/p/1.jpg", "/p/2.jpg"]
    journal.forget_run("run1")
    assert list(journal.outcomes("run1")) == []
    assert [o.status for o in journal.outcomes("run2")] == ["UNREADABLE"]


def _encoded(fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    mode = "RGBA" if fmt in ("PNG", "WEBP") else "RGB"
    Image.new(mode, (8, 8), (200, 10, 10)).save(buffer, fmt, **options)
    return buffer.getvalue()


def _ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return (8 + len(body)).to_bytes(4, "big") + b"ftyp" + body + b"\x00\x00\x00\x08meta"


@pytest.mark.parametrize(
    ("head", "name", "expected"),
    [
        (_encoded("JPEG"), "x.jpg", "JPEG"),
        (_encoded("JPEG"), "no_extension", "JPEG"),
        (_encoded("PNG"), "named.jpg", "PNG"),
        (_encoded("WEBP"), "x.webp", "WEBP"),
        (_ftyp(b"heic", b"mif1", b"heic"), "IMG_0001.HEIC", "HEIF"),
        (_ftyp(b"mif1", b"mif1", b"heic"), "x.heif", "HEIF"),
        (_ftyp(b"avif", b"avif", b"mif1", b"miaf"), "x.avif", "AVIF"),
        (_ftyp(b"mif1", b"mif1", b"miaf"), "x.avif", "AVIF"),
        (_ftyp(b"mif1", b"mif1", b"miaf"), "x.heic", "HEIF"),
        (_ftyp(b"isom", b"isom", b"mp41"), "clip.mp4", None),
        (_ftyp(b"qt  ", b"qt  "), "clip.mov", None),
        (_encoded("GIF"), "x.gif", None),
        (b"these are my notes", "notes.jpg", None),
        (b"", "empty.jpg", None),
    ],
)
def test_photos_are_told_by_their_first_bytes(head: bytes, name: str, expected: str | None) -> None:
    assert sniff_format(head[:256], name) == expected


def test_files_that_cannot_be_read_are_reported_not_opened(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(_encoded("JPEG"))
    facts = inspect_file(photo)
    assert isinstance(facts, FileFacts) and facts.format == "JPEG"
    assert facts.size == photo.stat().st_size

    broken = tmp_path / "broken.jpg"
    broken.symlink_to(tmp_path / "gone.jpg")
    loop = tmp_path / "loop.jpg"
    loop.symlink_to(loop)
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    folder_link = tmp_path / "folder.jpg"
    folder_link.symlink_to(tmp_path)
    reasons = {}
    for path in (broken, loop, fifo, folder_link):
        result = inspect_file(path)  # a FIFO opened for reading would hang here
        assert isinstance(result, Unreadable), path
        reasons[path.name] = result.reason
    assert "no such file" in reasons["broken.jpg"]
    assert "symbolic links" in reasons["loop.jpg"]
    assert reasons["pipe.jpg"] == "not a regular file"
    assert "folder" in reasons["folder.jpg"]


async def test_walk_streams_through_a_small_queue_and_skips_hidden_folders(
    tmp_path: Path,
) -> None:
    for folder in ("a", "a/b", ".hidden", "c"):
        (tmp_path / folder).mkdir()
    for i in range(30):
        (tmp_path / "a" / "b" / f"{i}.jpg").write_bytes(b"x")
    (tmp_path / "top.jpg").write_bytes(b"x")
    (tmp_path / ".hidden" / "secret.jpg").write_bytes(b"x")
    (tmp_path / "c" / "d.png").write_bytes(b"x")
    queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=2)
    walking = asyncio.create_task(
        asyncio.to_thread(
            walk_folder, tmp_path, queue, asyncio.get_running_loop(), threading.Event()
        )
    )
    found: list[FileItem] = []
    while not (walking.done() and queue.empty()):
        try:
            item = await asyncio.wait_for(queue.get(), 0.5)
        except TimeoutError:
            continue
        assert isinstance(item, FileItem)
        assert queue.qsize() <= 2
        found.append(item)
    await walking
    folders = {item.path.name: item.folder for item in found}
    assert len(found) == 32 and "secret.jpg" not in folders
    assert folders["top.jpg"] == "" and folders["0.jpg"] == "a/b" and folders["d.png"] == "c"


def test_album_names_from_folders() -> None:
    assert album_name_for_folder("", "Pictures") == "Pictures"
    assert album_name_for_folder("2024/Rome", "Pictures") == "2024/Rome"
    assert album_name_for_folder("bad\x1bname", "Pictures") == "badname"
    long = "/".join(["folder"] * 30)
    name = album_name_for_folder(long, "Pictures")
    assert len(name) <= ALBUM_NAME_MAX and name.endswith("folder/folder")


def test_keys_in_our_layout_and_keys_of_objects_put_straight_into_the_bucket() -> None:
    assert parse_incoming_key("incoming/alice/a1/img1.jpg") == ("alice", "a1", "img1")
    # Anything else under incoming/ is an object put straight into the bucket.
    assert parse_incoming_key("incoming/photo.jpg") is None
    assert parse_incoming_key("incoming/trip/photo.jpg") is None
    assert parse_incoming_key("incoming/a/b/c/photo.jpg") is None
    assert parse_incoming_key("incoming/my trip/day 1/photo.jpg") is None
    assert is_processable_key("incoming/photo.jpg")
    assert is_processable_key("incoming/trip/été #1.heic")
    for key in ("thumbnails/img1/thumb.jpg", "photo.jpg", "incoming/", "incoming/trip/"):
        assert not is_processable_key(key), key

    assert folder_album_name("incoming/photo.jpg") == TOP_LEVEL_ALBUM
    assert folder_album_name("incoming/trip/photo.jpg") == "trip"
    assert folder_album_name("incoming/2024/rome/x.jpg") == "2024/rome"
    assert folder_album_name("incoming//x.jpg") == TOP_LEVEL_ALBUM
    assert folder_album_name("incoming/" + "y" * 200 + "/x.jpg") == "y" * ALBUM_NAME_MAX

    one = direct_image_id("b", "incoming/photo.jpg", '"abc"', None)
    assert one == direct_image_id("b", "incoming/photo.jpg", "abc", None)  # quotes or not
    assert one != direct_image_id("b", "incoming/photo.jpg", "abd", None)  # replaced object
    assert one != direct_image_id("b", "incoming/photo.jpg", "abc", "v2")
    assert one != direct_image_id("b", "incoming/other.jpg", "abc", None)
    assert len(one) == 32 and one.isalnum()
