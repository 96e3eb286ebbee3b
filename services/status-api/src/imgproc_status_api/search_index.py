"""The search indexer: consumes `search-index` (the `stored` announcements) and keeps the search
table (`imgproc_shared.search`) in step with each image record: a processed image gets its
entries, a re-tagged one gets them replaced, and one that no longer exists loses them.

Every announcement is handled by reading the record as it is now, so order and repeats do not
matter: the entries always end up as the latest record says. An original's `DUPLICATE`s are
indexed with its metadata and labels, so each announcement of it re-indexes them too (found
through its content claim's list, not a scan).
"""

from __future__ import annotations

import asyncio
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.duplicates import ExactDuplicates
from imgproc_shared.errors import access_denial
from imgproc_shared.logging import get_logger
from imgproc_shared.long_poll import delete_batch, receive_batches
from imgproc_shared.models import StatusEvent
from imgproc_shared.resources import Queue, ResourceNames
from imgproc_shared.search import SearchIndex

log = get_logger(stage="search-index")


class SearchIndexer:
    def __init__(
        self,
        aws: AwsClients,
        names: ResourceNames,
        catalog: Catalog,
        *,
        wait_time_s: int,
        pause_s: float = 0.0,
    ) -> None:
        self.aws = aws
        self.names = names
        self.catalog = catalog
        self.index = SearchIndex(aws, names)
        self.duplicates = ExactDuplicates(aws, names)
        self.wait_time_s = wait_time_s
        self.pause_s = pause_s
        self.indexed = 0

    async def handle(self, body: str) -> None:
        """Index the announced image as its record now stands (or drop its entries)."""
        event = StatusEvent.model_validate_json(body)
        record = await self.catalog.get_image(event.image_id)
        if record is None:
            if event.owner:
                await self.index.remove_image(event.owner, event.image_id)
            log.info("image gone: its search entries removed", image_id=event.image_id)
            return
        await self.index.index_unless_deleted(record)
        self.indexed += 1
        log.info("image indexed", image_id=event.image_id, status=record.status)
        for duplicate in await self.duplicates.duplicates_of(record):
            await self.index.index_unless_deleted(duplicate)
            log.info("duplicate indexed with its original", image_id=duplicate.image_id)

    async def _handle_message(self, message: dict[str, Any]) -> bool:
        """True when the message is done with (to be deleted)."""
        try:
            await self.handle(message["Body"])
            return True
        except (ValidationError, ValueError) as exc:
            # Left for the dead-letter queue after the redrive count.
            log.warning("malformed announcement", reason=str(exc)[:300])
        except (ClientError, BotoCoreError, RuntimeError) as exc:
            if (denial := access_denial(exc)) is not None:
                # Not a passing failure: named, and left for the dead-letter queue.
                log.error("access denied; image not indexed", **denial.log_fields())
                return False
            log.warning("image not indexed; it will be retried", error=str(exc)[:300])
        return False

    async def run(self, stopping: asyncio.Event) -> None:
        queue_url = (
            await self.aws.sqs.get_queue_url(QueueName=self.names.queue(Queue.SEARCH_INDEX))
        )["QueueUrl"]
        async for messages in receive_batches(
            self.aws.sqs,
            queue_url,
            stopping,
            wait_time_s=self.wait_time_s,
            pause_s=self.pause_s,
        ):
            # One at a time: two announcements of one image in a batch must not race.
            done = [m for m in messages if await self._handle_message(m)]
            await delete_batch(self.aws.sqs, queue_url, [m["ReceiptHandle"] for m in done])
