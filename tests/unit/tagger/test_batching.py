"""Concurrent images share one inference call, within the batch size and the wait bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from imgproc_tagger.batching import MicroBatcher

_pool = ThreadPoolExecutor(max_workers=2)


async def in_thread(fn: Callable[[Any], Any], arg: Any) -> Any:
    return await asyncio.get_running_loop().run_in_executor(_pool, fn, arg)


def doubled(batch: np.ndarray) -> np.ndarray:
    return batch * 2


async def test_concurrent_submissions_run_as_one_batch() -> None:
    calls: list[int] = []

    def infer(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return doubled(batch)

    batcher = MicroBatcher(infer, max_batch=8, max_wait_s=5.0)
    results = await asyncio.gather(
        *(batcher.submit(np.full(3, float(i)), in_thread) for i in range(8))
    )
    # A full batch goes at once: it does not wait out the 5 s bound.
    assert calls == [8]
    for i, row in enumerate(results):
        assert row.tolist() == [2.0 * i] * 3
    await batcher.close()


async def test_batches_never_exceed_the_bound() -> None:
    batcher = MicroBatcher(doubled, max_batch=4, max_wait_s=0.05)
    results = await asyncio.gather(*(batcher.submit(np.array([i]), in_thread) for i in range(10)))
    assert [int(r[0]) for r in results] == [2 * i for i in range(10)]
    assert max(batcher.batch_sizes) <= 4
    assert sum(batcher.batch_sizes) == 10
    await batcher.close()


async def test_a_lone_image_is_answered_after_the_wait() -> None:
    batcher = MicroBatcher(doubled, max_batch=8, max_wait_s=0.01)
    result = await asyncio.wait_for(batcher.submit(np.array([21.0]), in_thread), timeout=5)
    assert result.tolist() == [42.0]
    assert batcher.batch_sizes == [1]
    await batcher.close()


async def test_an_inference_error_reaches_every_waiter_and_the_batcher_goes_on() -> None:
    fail = True

    def flaky(batch: np.ndarray) -> np.ndarray:
        if fail:
            raise RuntimeError("out of memory")
        return doubled(batch)

    batcher = MicroBatcher(flaky, max_batch=2, max_wait_s=0.05)
    outcomes = await asyncio.gather(
        *(batcher.submit(np.array([1.0]), in_thread) for _ in range(2)), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    fail = False
    assert (await batcher.submit(np.array([3.0]), in_thread)).tolist() == [6.0]
    await batcher.close()


async def test_a_cancelled_waiter_does_not_break_the_batch() -> None:
    batcher = MicroBatcher(doubled, max_batch=3, max_wait_s=0.2)
    gone = asyncio.create_task(batcher.submit(np.array([1.0]), in_thread))
    await asyncio.sleep(0)  # let it enqueue before it is cancelled: the case under test
    gone.cancel()
    kept = await batcher.submit(np.array([5.0]), in_thread)
    assert kept.tolist() == [10.0]
    with pytest.raises(asyncio.CancelledError):
        await gone
    await batcher.close()
