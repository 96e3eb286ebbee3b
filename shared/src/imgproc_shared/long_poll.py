"""Long-polling a queue until asked to stop: the loop the stage workers, the starter and the
status API share, with the batched delete and the pause between polls.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from imgproc_shared.errors import access_denial
from imgproc_shared.logging import get_logger

log = get_logger()

MAX_BATCH = 10  # SQS ReceiveMessage limit
# A denied poll is retried after 1, 2, 4 ... s, at most this: a missing permission is not
# granted by asking again, but the loop must notice when it is fixed.
MAX_DENIED_BACKOFF_S = 60.0


async def receive_batches(
    sqs: Any,
    queue_url: str,
    stopping: asyncio.Event,
    *,
    wait_time_s: int,
    pause_s: float = 0.0,
    batch_size: Callable[[], int] = lambda: MAX_BATCH,
    **receive_args: Any,
) -> AsyncIterator[list[dict[str, Any]]]:
    """Yield each non-empty batch until `stopping` is set (a poll in progress is abandoned:
    what it may have taken becomes visible again after the visibility timeout).

    Each poll asks for `batch_size()` messages (at most 10), read when the poll starts: a
    worker asks for as many as it has free slots, and polls again only once the loop's body
    has returned. After a batch smaller than asked for, wait `pause_s` before the next poll,
    so that it finds several. `receive_args` go to every `ReceiveMessage` as they are.
    """
    denied_backoff_s = 1.0
    while not stopping.is_set():
        requested = min(batch_size(), MAX_BATCH)
        receive = asyncio.create_task(
            sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=requested,
                WaitTimeSeconds=wait_time_s,
                **receive_args,
            )
        )
        stop = asyncio.create_task(stopping.wait())
        await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not receive.done():
            receive.cancel()
            return
        try:
            messages: list[dict[str, Any]] = receive.result().get("Messages", [])
        except (ClientError, BotoCoreError) as exc:
            if (denial := access_denial(exc)) is not None:
                log.error(
                    "access denied; polling again later",
                    retry_in_s=denied_backoff_s,
                    **denial.log_fields(),
                )
                await pause(stopping, denied_backoff_s)
                denied_backoff_s = min(2 * denied_backoff_s, MAX_DENIED_BACKOFF_S)
                continue
            log.warning("receive failed", queue_url=queue_url, error=str(exc))
            await asyncio.sleep(1)  # back off from a failing endpoint before polling again
            continue
        denied_backoff_s = 1.0
        if messages:
            yield messages
            if len(messages) < requested:
                await pause(stopping, pause_s)


async def delete_batch(sqs: Any, queue_url: str, receipts: list[str]) -> list[dict[str, Any]]:
    """Delete handled messages by receipt handle (at most 10); returns the entries that failed."""
    if not receipts:
        return []
    response = await sqs.delete_message_batch(
        QueueUrl=queue_url,
        Entries=[{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(receipts)],
    )
    failed: list[dict[str, Any]] = response.get("Failed", [])
    return failed


async def pause(stopping: asyncio.Event, seconds: float) -> None:
    """Wait `seconds`, or less if `stopping` is set meanwhile."""
    if seconds > 0 and not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), seconds)
        except TimeoutError:
            pass
