"""What an import reads: files under a folder (walked as a stream) or objects under an S3
prefix (listed a page at a time), each read only when its turn comes."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import stat
import threading
from collections.abc import AsyncIterator
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

from imgproc_cli.library_import.sniff import SNIFF_BYTES, sniff_format

HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class FileItem:
    path: Path
    folder: str  # relative to the imported folder, "/"-separated; "" for the top


@dataclass(frozen=True)
class ObjectItem:
    bucket: str
    key: str
    etag: str
    size: int
    folder: str  # relative to the imported prefix, "/"-separated; "" for the top


@dataclass(frozen=True)
class Unreadable:
    path: str
    reason: str


Item = FileItem | ObjectItem | Unreadable


def source_of(item: Item) -> str:
    if isinstance(item, FileItem):
        return str(item.path)
    if isinstance(item, ObjectItem):
        return f"s3://{item.bucket}/{item.key}"
    return item.path


def walk_folder(
    root: Path,
    put: asyncio.Queue[Item | None],
    loop: asyncio.AbstractEventLoop,
    stopping: threading.Event,
) -> None:
    """Walk `root` in this (worker) thread, handing each non-folder entry to `put` as it is
    found; blocks while the queue is full, so only the folders still to visit are held.

    Hidden folders (`.git`, `.Trash`, `.thumbnails`) are not entered; links to folders are not
    followed (a link may loop); a folder that cannot be listed is reported as unreadable.
    """
    folders: list[tuple[Path, str]] = [(root, "")]

    def hand_over(item: Item) -> bool:
        future = asyncio.run_coroutine_threadsafe(put.put(item), loop)
        while not stopping.is_set():
            try:
                future.result(timeout=0.25)
                return True
            except FutureTimeout:
                continue
        future.cancel()
        return False

    while folders and not stopping.is_set():
        folder, relative = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if stopping.is_set():
                        return
                    try:
                        is_folder = entry.is_dir(follow_symlinks=False)
                    except OSError:
                        is_folder = False
                    if is_folder:
                        if not entry.name.startswith("."):
                            child = f"{relative}/{entry.name}" if relative else entry.name
                            folders.append((Path(entry.path), child))
                        continue
                    if not hand_over(FileItem(Path(entry.path), relative)):
                        return
        except OSError as exc:
            if not hand_over(Unreadable(str(folder), f"cannot list folder: {_why(exc)}")):
                return


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size: int
    format: str | None  # None: not a photo


def inspect_file(path: Path) -> FileFacts | Unreadable:
    """Identify and hash one file, in chunks (one open file, one chunk in memory). A file that
    is not a regular file (a FIFO, a socket, a broken link) is never opened for reading."""
    try:
        info = os.stat(path)
        if stat.S_ISDIR(info.st_mode):
            return Unreadable(str(path), "a link to a folder (not followed)")
        if not stat.S_ISREG(info.st_mode):
            return Unreadable(str(path), "not a regular file")
        # O_NONBLOCK: were it swapped for a FIFO since the stat, opening must not hang.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
                return Unreadable(str(path), "not a regular file")
            head = file.read(SNIFF_BYTES)
            digest = hashlib.sha256(head)
            size = len(head)
            while chunk := file.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError as exc:
        return Unreadable(str(path), _why(exc))
    return FileFacts(digest.hexdigest(), size, sniff_format(head, path.name))


def read_file(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read()


def _why(exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return "no such file (a broken link?)"
    if exc.errno == errno.ELOOP:
        return "too many levels of symbolic links"
    return exc.strerror or str(exc)


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://BUCKET/PREFIX` → (bucket, prefix)."""
    rest = url[len("s3://") :]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix


async def list_objects(s3: object, bucket: str, prefix: str) -> AsyncIterator[ObjectItem]:
    """Every object under `prefix`, one listing page (up to 1,000 keys) at a time."""
    paginator = s3.get_paginator("list_objects_v2")  # type: ignore[attr-defined]
    async for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = str(obj["Key"])
            if key.endswith("/"):
                continue  # a console's "folder" marker, not an object
            relative = key[len(prefix) :].lstrip("/") if key.startswith(prefix) else key
            folder = relative.rsplit("/", 1)[0] if "/" in relative else ""
            yield ObjectItem(
                bucket, key, str(obj.get("ETag", "")).strip('"'), int(obj["Size"]), folder
            )
