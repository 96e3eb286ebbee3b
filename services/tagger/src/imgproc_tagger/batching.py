"""Gather concurrently received images into one inference call.

The worker runs several messages at once; each handler submits its preprocessed image and
awaits its scores. The first image of a batch waits at most `max_wait_s` for company, up to
`max_batch` images; while one batch runs, the next one gathers, so under load batches fill up by
themselves and an idle worker answers a lone image after `max_wait_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

Array = np.ndarray[Any, Any]
# Runs the blocking inference somewhere off the event loop (the worker's thread pool).
RunBlocking = Callable[[Callable[[Array], Array], Array], Awaitable[Array]]


class MicroBatcher:
    """Batches `submit(sample)` calls into `infer(stacked samples)` calls."""

    def __init__(
        self,
        infer: Callable[[Array], Array],
        *,
        max_batch: int,
        max_wait_s: float,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._infer = infer
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._pending: list[tuple[Array, asyncio.Future[Array]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._run: RunBlocking | None = None
        # Sizes of the batches run so far: the throughput story in numbers.
        self.batch_sizes: list[int] = []

    async def submit(self, sample: Array, run: RunBlocking) -> Array:
        """Score one sample; `run` executes the blocking inference off the event loop."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._task is None or self._task.done():
            self._start(loop)
        self._run = run
        future: asyncio.Future[Array] = loop.create_future()
        self._pending.append((sample, future))
        self._arrived.set()
        if len(self._pending) >= self.max_batch:
            self._full.set()
        return await future

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        # A new event loop (tests run one per test): start afresh on it.
        if loop is not self._loop:
            self._pending = []  # futures of a closed loop: nobody awaits them any more
        self._loop = loop
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._task = loop.create_task(self._gather_and_run(), name="tagger-batcher")

    async def close(self) -> None:
        """Stop the batching task; pending submissions are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()

    async def _gather_and_run(self) -> None:
        while True:
            await self._arrived.wait()
            if len(self._pending) < self.max_batch and self.max_wait_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), self.max_wait_s)
            batch = [(s, f) for s, f in self._pending[: self.max_batch] if not f.done()]
            del self._pending[: self.max_batch]
            if len(self._pending) < self.max_batch:
                self._full.clear()
            if not self._pending:
                self._arrived.clear()
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[Array, asyncio.Future[Array]]]) -> None:
        assert self._run is not None
        self.batch_sizes.append(len(batch))
        try:
            scores = await self._run(self._infer, np.stack([sample for sample, _ in batch]))
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), row in zip(batch, scores, strict=True):
            if not future.done():
                future.set_result(row)
