"""The one-machine backend (and the default on AWS): the classifier and the detector on
onnxruntime, their labels merged (`recognizer`); a second look at one region shares the
classifier's batches."""

from __future__ import annotations

from typing import Any

import numpy as np

from imgproc_shared.models import Label, StageTask
from imgproc_shared.worker.runtime import WorkContext
from imgproc_tagger.batching import MicroBatcher
from imgproc_tagger.config import TaggerSettings
from imgproc_tagger.recognizer import Recognizer, prepare


class LocalBackend:
    """Labels from the local models; concurrent images share one classifier batch."""

    name = "local"

    def __init__(
        self,
        recognizer: Recognizer,
        *,
        max_batch: int = 8,
        max_wait_s: float = 0.01,
    ) -> None:
        self.recognizer = recognizer
        self.classifier = recognizer.classifier
        self.batcher = MicroBatcher(
            recognizer.classifier.probabilities, max_batch=max_batch, max_wait_s=max_wait_s
        )

    @classmethod
    def open(cls, settings: TaggerSettings) -> LocalBackend:
        """Load both models (building the classifier's graph on first use); `ModelUnavailable`
        if either cannot be loaded."""
        return cls(
            Recognizer.open(settings),
            max_batch=settings.batch_size,
            max_wait_s=settings.batch_wait_ms / 1000.0,
        )

    async def detect(self, task: StageTask, ctx: WorkContext) -> list[Label]:
        data = await ctx.read_object(task.bucket, task.key)
        prepared = await ctx.run_cpu(prepare, data, ctx.settings.max_pixels)
        probabilities: np.ndarray[Any, Any] = await self.batcher.submit(
            prepared.classifier_input, ctx.run_cpu
        )
        detections = await ctx.run_cpu(self.recognizer.detect, prepared)
        second_look = None
        region = await ctx.run_cpu(
            self.recognizer.second_look_region, probabilities, detections, prepared
        )
        if region is not None:
            region_probabilities: np.ndarray[Any, Any] = await self.batcher.submit(
                region[1], ctx.run_cpu
            )
            second_look = self.recognizer.look_again(region, region_probabilities)
        return self.recognizer.merge(
            probabilities, detections, prepared, ctx.settings.tagger_max_labels, second_look
        )
