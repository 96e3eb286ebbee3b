"""The sweep, a task of the status API: ends abandoned uploads and purges deleted images.

- An image still UPLOADING after its grant's lifetime plus a margin (a closed tab, a lost
  network) will never get its object: its record becomes a tombstone and open galleries drop
  its card. One whose object did arrive but never started (a lost S3 event) is started instead.
- A deleted image's tombstone, once no grant of it can still be used, is purged, after its
  original and `thumbnails/{image_id}/` are deleted again (a stage that was still running when
  the image was deleted may have written a rendition since).

Both are found through the images table's sparse `by_sweep` index (only records waiting for
the sweep are in it), a bounded page at a time, oldest first: no scan. Every change is a
conditional write, so several status API processes may sweep at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from imgproc_shared.aws import as_dict
from imgproc_shared.errors import error_code
from imgproc_shared.logging import get_logger
from imgproc_shared.models import ImageStatus
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import SWEEP_DELETED, SWEEP_UPLOAD
from imgproc_shared.s3_events import ObjectCreated
from imgproc_status_api.api.deps import ApiState
from imgproc_status_api.removal import remove_stored
from imgproc_status_api.starter import Starter

log = get_logger(stage="sweep")

# Records looked at per kind and round: a backlog is worked off over several rounds.
PAGE_SIZE = 100
PAGES_PER_ROUND = 5


@dataclass
class SweepReport:
    abandoned: int = 0  # UPLOADING records ended
    started: int = 0  # uploads that had arrived but never started
    purged: int = 0  # tombstones purged


class Sweeper:
    def __init__(self, state: ApiState, starter: Starter | None = None) -> None:
        self.state = state
        self.starter = starter
        settings = state.api_settings
        # No upload can arrive later than its grant allows (S3 refuses an expired policy).
        self.abandoned_after = timedelta(
            seconds=settings.upload_url_ttl_s + settings.upload_sweep_margin_s
        )
        self.interval_s = settings.sweep_interval_s

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                await self.sweep()
            except (ClientError, OSError) as exc:
                log.warning("sweep failed; it runs again next round", error=str(exc)[:300])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=self.interval_s)

    async def sweep(self) -> SweepReport:
        """One round: every record due now, up to PAGES_PER_ROUND pages of each kind."""
        report = SweepReport()
        before = _iso(datetime.now(UTC) - self.abandoned_after)
        async for record in self._due(SWEEP_UPLOAD, before):
            await self._abandoned(record, report)
        async for record in self._due(SWEEP_DELETED, before):
            await remove_stored(self.state.aws, record)
            if await self.state.catalog.purge_tombstone(str(record.image_id)):
                report.purged += 1
        if report.abandoned or report.started or report.purged:
            log.info(
                "swept",
                abandoned=report.abandoned,
                started=report.started,
                purged=report.purged,
            )
        return report

    async def _due(self, kind: str, before: str) -> Any:
        after = None
        for _ in range(PAGES_PER_ROUND):
            records, after = await self.state.catalog.due_for_sweep(
                kind, before, limit=PAGE_SIZE, after=after
            )
            for record in records:
                yield record
            if after is None:
                return

    async def _abandoned(self, record: ImageRecord, report: SweepReport) -> None:
        image_id = str(record.image_id)
        bucket = str(record.bucket or self.state.names.bucket)
        key = str(record.key or "")
        if record.status == ImageStatus.UPLOADING.value and key:
            head = await self._head(bucket, key)
            if head is not None:
                # It arrived; its S3 event was lost or has not been handled: start it now (an
                # execution is named by the image, so a late event starts nothing twice).
                if self.starter is not None:
                    created = ObjectCreated(bucket, key, head.get("ContentLength"), None)
                    if await self.starter.start_image(created):
                        report.started += 1
                return
        replaced = await self.state.catalog.tombstone_image(record, only_if_uploading=True)
        if replaced is None:
            # Moved on meanwhile (started, deleted, a duplicate): the sweep is done with it.
            await self.state.catalog.clear_sweep(image_id, SWEEP_UPLOAD)
            return
        report.abandoned += 1
        log.info("abandoned upload ended", image_id=image_id, uploaded_at=record.uploaded_at)
        if replaced.album_id:
            self.state.events.image_deleted(str(replaced.album_id), image_id)

    async def _head(self, bucket: str, key: str) -> dict[str, Any] | None:
        try:
            head = as_dict(await self.state.aws.s3.head_object(Bucket=bucket, Key=key))
        except ClientError as exc:
            if error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return head


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
