"""The local backend as the worker runs it: the second look shares the classifier's batches and
gives the same labels as the recognizer alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from imgproc_shared.models import StageTask
from imgproc_tagger.config import TaggerSettings
from imgproc_tagger.local import LocalBackend
from imgproc_tagger.recognizer import Recognizer

LABELLED = Path(__file__).resolve().parents[2] / "fixtures" / "labelled"


class PhotoContext:
    """The part of a worker's context the backend uses: one photo, a thread for CPU work."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.settings = SimpleNamespace(max_pixels=100_000_000, tagger_max_labels=10)

    async def read_object(self, bucket: str, key: str) -> bytes:
        return self.data

    async def run_cpu(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args)


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> Recognizer:
    return Recognizer.open(TaggerSettings(model_cache_dir=tmp_path_factory.mktemp("models")))


async def test_the_backend_takes_the_second_look_through_the_batcher(
    recognizer: Recognizer,
) -> None:
    data = (LABELLED / "food_fig_on_plate.jpg").read_bytes()
    backend = LocalBackend(recognizer, max_batch=8, max_wait_s=0.0)
    task = StageTask(
        task_token="token", stage="tag", image_id="img-fig", bucket="photos", key="fig.jpg"
    )
    try:
        labels = await backend.detect(task, PhotoContext(data))  # type: ignore[arg-type]
    finally:
        await backend.batcher.close()
    # Two classifier inputs went through the batcher: the whole photo, then the fig alone.
    assert len(backend.batcher.batch_sizes) == 2
    alone = recognizer.recognize(data).labels
    assert [(label.name, label.instances) for label in labels] == [
        (label.name, label.instances) for label in alone
    ]
    assert "Fig" in {label.name for label in labels}
