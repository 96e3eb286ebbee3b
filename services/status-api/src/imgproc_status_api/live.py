"""Live updates per album, for Server-Sent Events.

Two sources feed them: the `status-events` queue (the workflow announces every terminal status
on `stored`), and the stage progress the workers record in DynamoDB, which this process reads
back cheaply while someone listens: one BatchGetItem of the album's unfinished images every
`events_poll_interval_s`, and a query of the album every `events_discovery_interval_s` to find
images that arrived without this API (e.g. straight into S3). Each change is pushed once, as
the image's full public view, so the client never polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, ValidationError

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.logging import get_logger
from imgproc_shared.long_poll import delete_batch, receive_batches
from imgproc_shared.models import ImageStatus, StatusEvent
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import Queue, ResourceNames

log = get_logger(component="live")

ImageView = Callable[[ImageRecord], Awaitable[BaseModel]]

# A listener that falls this far behind is dropped; its client reconnects and reloads.
_LISTENER_BACKLOG = 1000
_TERMINAL = {s.value for s in ImageStatus if s.terminal}


@dataclass(frozen=True)
class AlbumEvent:
    kind: str  # "image" or "deleted"
    data: dict[str, Any]


def fingerprint(record: ImageRecord) -> str:
    """What a listener sees change: status, execution, stage progress, errors, results."""
    return json.dumps(
        [
            record.status,
            record.execution_arn,
            {stage: p.model_dump(mode="json") for stage, p in record.stages().items()},
            record.error_code,
            record.metadata is not None,
            record.tags is not None,
            record.thumbnails is not None,
        ],
        sort_keys=True,
        default=str,
    )


@dataclass
class _AlbumWatch:
    album_id: str
    listeners: set[asyncio.Queue[AlbumEvent | None]] = field(default_factory=set)
    # Last pushed fingerprint of every image seen in this album.
    seen: dict[str, str] = field(default_factory=dict)
    unfinished: set[str] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    # Serialises pushes for this album so a poll and a queue message never interleave.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class AlbumEvents:
    def __init__(
        self,
        aws: AwsClients,
        names: ResourceNames,
        catalog: Catalog,
        view: ImageView,
        *,
        poll_interval_s: float,
        discovery_interval_s: float,
        wait_time_s: int,
    ) -> None:
        self.aws = aws
        self.names = names
        self.catalog = catalog
        self.view = view
        self.poll_interval_s = poll_interval_s
        self.discovery_interval_s = discovery_interval_s
        self.wait_time_s = wait_time_s
        self._watches: dict[str, _AlbumWatch] = {}
        self._closed = False

    @contextlib.asynccontextmanager
    async def subscribe(self, album_id: str) -> AsyncIterator[asyncio.Queue[AlbumEvent | None]]:
        """A queue of the album's events for one listener; None means the stream must end."""
        queue: asyncio.Queue[AlbumEvent | None] = asyncio.Queue(maxsize=_LISTENER_BACKLOG)
        if self._closed:
            queue.put_nowait(None)
            yield queue
            return
        watch = self._watches.get(album_id)
        if watch is None:
            watch = self._watches[album_id] = _AlbumWatch(album_id)
            watch.task = asyncio.create_task(self._poll(watch), name=f"album-watch-{album_id}")
        watch.listeners.add(queue)
        try:
            yield queue
        finally:
            watch.listeners.discard(queue)
            if not watch.listeners and self._watches.get(album_id) is watch:
                del self._watches[album_id]
                if watch.task is not None:
                    watch.task.cancel()

    async def image_changed(self, record: ImageRecord) -> None:
        """Push a record this process just wrote (an upload), without waiting for a poll."""
        watch = self._watches.get(str(record.album_id))
        if watch is not None:
            async with watch.lock:
                await self._push_if_changed(watch, record)

    def image_deleted(self, album_id: str, image_id: str) -> None:
        watch = self._watches.get(album_id)
        if watch is None:
            return
        watch.seen.pop(image_id, None)
        watch.unfinished.discard(image_id)
        self._broadcast(watch, AlbumEvent("deleted", {"image_id": image_id}))

    def close(self) -> None:
        """End every stream (the process is stopping)."""
        self._closed = True
        for watch in list(self._watches.values()):
            if watch.task is not None:
                watch.task.cancel()
            for listener in list(watch.listeners):
                self._offer(watch, listener, None)

    async def _push_if_changed(self, watch: _AlbumWatch, record: ImageRecord) -> None:
        image_id = str(record.image_id)
        if record.album_id != watch.album_id:
            return
        if record.status in _TERMINAL:
            watch.unfinished.discard(image_id)
        else:
            watch.unfinished.add(image_id)
        mark = fingerprint(record)
        if watch.seen.get(image_id) == mark:
            return
        watch.seen[image_id] = mark
        view = await self.view(record)
        self._broadcast(watch, AlbumEvent("image", view.model_dump(mode="json")))

    def _broadcast(self, watch: _AlbumWatch, event: AlbumEvent) -> None:
        for listener in list(watch.listeners):
            self._offer(watch, listener, event)

    def _offer(
        self,
        watch: _AlbumWatch,
        listener: asyncio.Queue[AlbumEvent | None],
        event: AlbumEvent | None,
    ) -> None:
        try:
            listener.put_nowait(event)
        except asyncio.QueueFull:
            watch.listeners.discard(listener)
            # Make room for the end-of-stream marker so the slow listener's stream closes.
            with contextlib.suppress(asyncio.QueueEmpty):
                listener.get_nowait()
            listener.put_nowait(None)

    async def _discover(self, watch: _AlbumWatch, *, initial: bool) -> None:
        after: tuple[str, str] | None = None
        while True:
            records, after = await self.catalog.list_album_images(
                watch.album_id, limit=100, after=after
            )
            for record in records:
                image_id = str(record.image_id)
                if initial:
                    # The client loads the list itself; only remember what it already has.
                    watch.seen[image_id] = fingerprint(record)
                    if record.status not in _TERMINAL:
                        watch.unfinished.add(image_id)
                elif image_id not in watch.seen:
                    async with watch.lock:
                        await self._push_if_changed(watch, record)
            if after is None:
                return

    async def _poll(self, watch: _AlbumWatch) -> None:
        loop = asyncio.get_running_loop()
        next_discovery = 0.0
        initial = True
        while True:
            try:
                if loop.time() >= next_discovery:
                    await self._discover(watch, initial=initial)
                    initial = False
                    next_discovery = loop.time() + self.discovery_interval_s
                if watch.unfinished:
                    records = await self.catalog.get_images(sorted(watch.unfinished))
                    async with watch.lock:
                        for record in records:
                            await self._push_if_changed(watch, record)
            except asyncio.CancelledError:
                raise
            except (ClientError, BotoCoreError) as exc:
                log.warning("album poll failed", album_id=watch.album_id, error=str(exc))
            await asyncio.sleep(self.poll_interval_s)

    async def consume_status_events(self, stopping: asyncio.Event) -> None:
        """Push each terminal status the workflow announces on `stored` to its album's listeners.

        Announcements for albums nobody watches are dropped: they are notifications, and the
        image record holds the state for whoever looks later. One for an image that does not
        exist is poison and goes to the dead-letter queue.
        """
        queue_url = (
            await self.aws.sqs.get_queue_url(QueueName=self.names.queue(Queue.STATUS_EVENTS))
        )["QueueUrl"]
        async for messages in receive_batches(
            self.aws.sqs, queue_url, stopping, wait_time_s=self.wait_time_s
        ):
            done = []
            for message in messages:
                try:
                    await self._announced(message["Body"])
                    done.append(message)
                except (ValidationError, ValueError) as exc:
                    # Left for the dead-letter queue after the redrive count.
                    log.warning("malformed status event", reason=str(exc)[:300])
                except (ClientError, BotoCoreError) as exc:
                    log.warning("status event not pushed; it will be retried", error=str(exc))
            await delete_batch(self.aws.sqs, queue_url, [m["ReceiptHandle"] for m in done])

    async def _announced(self, body: str) -> None:
        event = StatusEvent.model_validate_json(body)
        if event.album_id is not None and event.album_id not in self._watches:
            # Nobody watches its album: only make sure the image exists (else it is poison),
            # without reading the whole record.
            if await self.catalog.get_image(event.image_id, attributes=("image_id",)) is None:
                raise ValueError(f"announcement for an unknown image {event.image_id}")
            return
        record = await self.catalog.get_image(event.image_id)
        if record is None:
            # A poison message: left for the dead-letter queue like any other.
            raise ValueError(f"announcement for an unknown image {event.image_id}")
        watch = self._watches.get(str(record.album_id or ""))
        if watch is not None:
            async with watch.lock:
                await self._push_if_changed(watch, record)
