"""One import run: a producer (the folder walk or the bucket listing) feeds a bounded queue;
`concurrency` uploaders take from it; a watcher follows the uploaded images to a terminal
status with batched reads. At most `concurrency * WINDOW_PER_UPLOADER` images are uploaded
and unfinished at once, so a stack slower than the uploads holds the uploads back instead of
the import holding an ever longer list of images to poll."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from imgproc_cli.library_import.journal import Entry, ImportJournal, Outcome
from imgproc_cli.library_import.progress import (
    DUPLICATE,
    PENDING,
    SKIPPED,
    UNREADABLE,
    Reporter,
)
from imgproc_cli.library_import.sniff import CONTENT_TYPES, SNIFF_BYTES, sniff_format
from imgproc_cli.library_import.sources import (
    FileItem,
    Item,
    ObjectItem,
    Unreadable,
    inspect_file,
    list_objects,
    read_file,
    source_of,
    walk_folder,
)
from imgproc_cli.uploads import _extension, put_original
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog, is_conditional_failure
from imgproc_shared.errors import error_code
from imgproc_shared.models import (
    ALBUM_NAME_MAX,
    ImageStatus,
    clean_file_name,
    is_valid_display_name,
)
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import INCOMING_PREFIX, THUMBNAILS_PREFIX, ResourceNames, incoming_key

WINDOW_PER_UPLOADER = 25
POLL_INTERVAL_S = 0.5
_STATUS_FIELDS = ("image_id", "status", "error_code", "error_message", "album_id")


def album_name_for_folder(folder: str, top: str) -> str:
    """The album of a file in `folder` (relative to the imported root) with
    `--albums-from-folders`: the folder's relative path (`2024/Rome`), so that two `Rome`
    folders of different years stay apart; `top` for files directly in the root. A path too
    long for an album name keeps its end; control characters are dropped."""
    if not folder:
        return top
    name = clean_file_name(folder.replace("/", "\u2215")).replace("\u2215", "/")
    if len(name) > ALBUM_NAME_MAX:
        name = "…" + name[-(ALBUM_NAME_MAX - 1) :].lstrip("/ ")
    name = name.strip()
    return name if name and is_valid_display_name(name, ALBUM_NAME_MAX) else top


@dataclass(frozen=True)
class Plan:
    owner: str
    album: str | None  # one album for everything; None with albums from folders
    top_album: str  # the album of files directly in the root (albums from folders)
    albums_from_folders: bool
    concurrency: int
    timeout_s: float  # waiting for results with nothing changing, after the last upload
    max_upload_bytes: int


@dataclass
class _Waiter:
    source: str
    owner: str
    content: str


class ImportRun:
    def __init__(
        self,
        aws: AwsClients,
        names: ResourceNames,
        journal: ImportJournal,
        plan: Plan,
        reporter: Reporter,
    ) -> None:
        self.aws = aws
        self.names = names
        self.catalog = Catalog(aws, names)
        self.journal = journal
        self.plan = plan
        self.reporter = reporter
        self.run_id = uuid.uuid4().hex
        self.stopping = asyncio.Event()
        self.stop_walk = threading.Event()
        self._albums: dict[str, str] = {}
        self._album_locks: dict[str, asyncio.Lock] = {}
        self._waiting: dict[str, _Waiter] = {}
        self._window = asyncio.Semaphore(plan.concurrency * WINDOW_PER_UPLOADER)
        self._last_change = time.monotonic()

    def stop(self) -> None:
        """Ctrl-C: start nothing new; uploads under way finish, unfinished images stay pending."""
        self.stopping.set()
        self.stop_walk.set()

    async def run(self, source: Path | tuple[str, str]) -> None:
        queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=self.plan.concurrency * 4)
        watcher = asyncio.create_task(self._watch())
        uploaders = [
            asyncio.create_task(self._upload_from(queue)) for _ in range(self.plan.concurrency)
        ]
        try:
            if isinstance(source, Path):
                loop = asyncio.get_running_loop()
                await asyncio.to_thread(walk_folder, source, queue, loop, self.stop_walk)
            else:
                await self._list_bucket(*source, queue)
        finally:
            self.reporter.walking = False
            for _ in uploaders:
                await queue.put(None)
        await asyncio.gather(*uploaders)
        await self._finish_waiting()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await self._leave_pending()

    async def _list_bucket(
        self, bucket: str, prefix: str, queue: asyncio.Queue[Item | None]
    ) -> None:
        async for item in list_objects(self.aws.s3, bucket, prefix):
            if self.stopping.is_set():
                return
            await queue.put(item)

    # The uploaders.

    async def _upload_from(self, queue: asyncio.Queue[Item | None]) -> None:
        while True:
            item = await queue.get()
            if item is None:
                return
            if self.stopping.is_set():
                continue  # found but not started: neither reported nor counted
            self.reporter.found()
            try:
                await self._import(item)
            except Exception as exc:  # one file's failure is reported, not fatal
                # The import goes on; this file is retried by the next run (its journal row,
                # if any, is still pending).
                self._finish(source_of(item), None, PENDING, f"upload failed: {exc!r}")

    async def _import(self, item: Item) -> None:
        source = source_of(item)
        if isinstance(item, Unreadable):
            self._finish(source, None, UNREADABLE, item.reason)
            return
        if isinstance(item, FileItem):
            facts = await asyncio.to_thread(inspect_file, item.path)
            if isinstance(facts, Unreadable):
                self._finish(source, None, UNREADABLE, facts.reason)
                return
            content, size, photo_format = f"sha256:{facts.sha256}", facts.size, facts.format
        else:
            refusal = self._own_object(item)
            if refusal:
                self._finish(source, None, SKIPPED, refusal)
                return
            head = await self._object_head(item)
            if isinstance(head, Unreadable):
                self._finish(source, None, UNREADABLE, head.reason)
                return
            content, size = f"s3etag:{item.etag}:{item.size}", item.size
            photo_format = sniff_format(head, item.key)
        if photo_format is None:
            self._finish(source, None, SKIPPED, "not a photo (JPEG, PNG, HEIC, WebP or AVIF)")
            return
        if size > self.plan.max_upload_bytes:
            self._finish(source, None, SKIPPED, f"larger than {self.plan.max_upload_bytes} bytes")
            return
        owner = self.plan.owner
        entry = self.journal.lookup(owner, content)
        if entry is None:
            entry = self.journal.claim(owner, content, source, uuid.uuid4().hex)
            if entry.source != source:  # an identical file claimed it a moment ago
                self._duplicate(source, entry)
                return
            await self._put(item, entry, photo_format)
            return
        if entry.source != source:
            self._duplicate(source, entry)
            return
        await self._resume(item, entry, photo_format)

    def _duplicate(self, source: str, entry: Entry) -> None:
        self._finish(source, entry.image_id, DUPLICATE, f"same content as {entry.source}")

    async def _resume(self, item: FileItem | ObjectItem, entry: Entry, photo_format: str) -> None:
        """A file an earlier run started: follow it, or put it (again) where it is missing."""
        self.reporter.counts.resumed += 1
        record = await self.catalog.get_image(entry.image_id, _STATUS_FIELDS)
        if record is None:
            if entry.state != "pending":
                # It reached the library once and is gone (deleted, or another stack's data
                # directory): a new image, as the old id's execution may still exist.
                self.journal.restart(entry.owner, entry.content, uuid.uuid4().hex)
                entry = self.journal.lookup(entry.owner, entry.content) or entry
            await self._put(item, entry, photo_format)
            return
        status = ImageStatus(str(record.status))
        if status.terminal:
            self._terminal(entry.source, entry.owner, entry.content, record)
        elif status is ImageStatus.UPLOADING and entry.state == "pending":
            # Recorded, and the object perhaps never put (the run stopped in between): put it
            # where the record says, even if this run would choose another album. One the
            # journal has as uploaded was put: the starter has not taken its event yet (a busy
            # stack), so it is followed below, not uploaded a second time.
            await self._put(item, entry, photo_format, album_id=str(record.album_id))
        elif await self._window_slot():
            self._wait_for(entry)
        else:
            self._finish(entry.source, entry.image_id, PENDING, "stopped before it finished")

    async def _put(
        self,
        item: FileItem | ObjectItem,
        entry: Entry,
        photo_format: str,
        *,
        album_id: str | None = None,
    ) -> None:
        if not await self._window_slot():
            self._finish(entry.source, entry.image_id, PENDING, "not uploaded (stopped)")
            return
        try:
            album_id = album_id or await self._album_id(item.folder)
            if isinstance(item, FileItem):
                data = await asyncio.to_thread(read_file, item.path)
                if f"sha256:{hashlib.sha256(data).hexdigest()}" != entry.content:
                    self._window.release()
                    self._finish(entry.source, None, UNREADABLE, "changed while being imported")
                    return
                await put_original(
                    self.aws,
                    self.catalog,
                    self.names,
                    image_id=entry.image_id,
                    owner=entry.owner,
                    album_id=album_id,
                    file_name=item.path.name,
                    data=data,
                    content_type=CONTENT_TYPES[photo_format],
                )
            else:
                await self._copy(item, entry, album_id, photo_format)
        except BaseException:
            self._window.release()
            raise
        self.journal.mark(entry.owner, entry.content, "uploaded")
        self.reporter.uploaded()
        self._wait_for(entry)

    async def _copy(self, item: ObjectItem, entry: Entry, album_id: str, photo_format: str) -> None:
        """Server-side copy of a bucket's object into `incoming/`, recorded as an upload."""
        name = item.key.rsplit("/", 1)[-1]
        key = incoming_key(entry.owner, album_id, entry.image_id, _extension(Path(name)))
        try:
            await self.catalog.record_upload(
                image_id=entry.image_id,
                owner=entry.owner,
                album_id=album_id,
                bucket=self.names.bucket,
                key=key,
                file_name=clean_file_name(name),
                content_type=CONTENT_TYPES[photo_format],
                size=item.size,
            )
        except ClientError as exc:
            if not is_conditional_failure(exc):
                raise
        await self.aws.s3.copy_object(
            Bucket=self.names.bucket,
            Key=key,
            CopySource={"Bucket": item.bucket, "Key": item.key},
            CopySourceIfMatch=f'"{item.etag}"',
            MetadataDirective="REPLACE",
            ContentType=CONTENT_TYPES[photo_format],
        )

    def _own_object(self, item: ObjectItem) -> str | None:
        if item.bucket == self.names.bucket and item.key.startswith(
            (INCOMING_PREFIX, THUMBNAILS_PREFIX)
        ):
            return "already the library's own object (incoming/ is processed as it arrives)"
        return None

    async def _object_head(self, item: ObjectItem) -> bytes | Unreadable:
        try:
            response = await self.aws.s3.get_object(
                Bucket=item.bucket, Key=item.key, Range=f"bytes=0-{SNIFF_BYTES - 1}"
            )
            async with response["Body"] as body:
                data: bytes = await body.read()
            return data
        except ClientError as exc:
            return Unreadable(source_of(item), error_code(exc) or str(exc))

    async def _album_id(self, folder: str) -> str:
        plan = self.plan
        name = (
            album_name_for_folder(folder, plan.top_album)
            if plan.albums_from_folders
            else (plan.album or plan.top_album)
        )
        if name not in self._albums:
            lock = self._album_locks.setdefault(name, asyncio.Lock())
            async with lock:
                if name not in self._albums:
                    self._albums[name] = await self.catalog.album_named(plan.owner, name)
        return self._albums[name]

    # Following uploaded images to their end.

    async def _window_slot(self) -> bool:
        """One of the unfinished-images slots; False when the run stops while waiting."""
        if self.stopping.is_set():
            return False
        acquire = asyncio.create_task(self._window.acquire())
        stop = asyncio.create_task(self.stopping.wait())
        await asyncio.wait((acquire, stop), return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if acquire.done() and not acquire.cancelled():
            return True
        acquire.cancel()
        return False

    def _wait_for(self, entry: Entry) -> None:
        self._waiting[entry.image_id] = _Waiter(entry.source, entry.owner, entry.content)
        self._last_change = time.monotonic()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(POLL_INTERVAL_S)
            try:
                await self._poll()
            except (ClientError, BotoCoreError) as exc:
                # A transient read failure: the next poll tries again.
                self.reporter.note(f"status poll failed: {exc}")

    async def _poll(self) -> None:
        if not self._waiting:
            return
        records = await self.catalog.get_images(list(self._waiting), _STATUS_FIELDS)
        for record in records:
            waiter = self._waiting.get(record.image_id)
            if waiter and ImageStatus(str(record.status)).terminal:
                del self._waiting[record.image_id]
                self._window.release()
                self._last_change = time.monotonic()
                self._terminal(waiter.source, waiter.owner, waiter.content, record)

    def _terminal(self, source: str, owner: str, content: str, record: ImageRecord) -> None:
        status = str(record.status)
        reason = None
        if record.error_code or record.error_message:
            reason = f"{record.error_code}: {record.error_message}"
        self.journal.mark(owner, content, "done", status=status, reason=reason)
        self._finish(source, str(record.image_id), status, reason)

    async def _finish_waiting(self) -> None:
        """After the last upload: wait for every image until none has changed for the
        timeout, or the run is stopped; what is left is reported pending."""
        while self._waiting and not self.stopping.is_set():
            if time.monotonic() - self._last_change > self.plan.timeout_s:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), POLL_INTERVAL_S)

    async def _leave_pending(self) -> None:
        with contextlib.suppress(ClientError, BotoCoreError):
            await self._poll()  # what finished meanwhile is not left pending
        for image_id, waiter in list(self._waiting.items()):
            del self._waiting[image_id]
            reason = "stopped before it finished" if self.stopping.is_set() else "timed out"
            self._finish(waiter.source, image_id, PENDING, reason)

    def _finish(self, source: str, image_id: str | None, status: str, reason: str | None) -> None:
        outcome = Outcome(source, image_id, status, reason)
        self.journal.add_outcome(self.run_id, outcome)
        self.reporter.finished(outcome)
