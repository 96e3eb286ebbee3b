"""The one-machine backend: EfficientNet-Lite0 on onnxruntime, labels mapped through WordNet."""

from __future__ import annotations

from typing import Any

import numpy as np

from imgproc_shared.models import Label, StageTask
from imgproc_shared.worker.runtime import WorkContext
from imgproc_tagger.batching import MicroBatcher
from imgproc_tagger.classifier import Classifier, open_classifier
from imgproc_tagger.config import TaggerSettings
from imgproc_tagger.labels import LabelMap, default_label_map
from imgproc_tagger.preprocess import preprocess


class LocalBackend:
    """Labels from the local model; concurrent images share one inference batch."""

    name = "local"

    def __init__(
        self,
        classifier: Classifier,
        label_map: LabelMap,
        *,
        max_batch: int = 8,
        max_wait_s: float = 0.01,
    ) -> None:
        self.classifier = classifier
        self.label_map = label_map
        self.batcher = MicroBatcher(
            classifier.probabilities, max_batch=max_batch, max_wait_s=max_wait_s
        )

    @classmethod
    def open(cls, settings: TaggerSettings) -> LocalBackend:
        """Load the model (building and caching it on first use); `ModelUnavailable` if not."""
        return cls(
            open_classifier(settings),
            default_label_map(),
            max_batch=settings.batch_size,
            max_wait_s=settings.batch_wait_ms / 1000.0,
        )

    async def probabilities(self, data: bytes, ctx: WorkContext) -> np.ndarray[Any, Any]:
        """Class probabilities (1000,) of one image file."""
        sample = await ctx.run_cpu(preprocess, data, ctx.settings.max_pixels)
        return await self.batcher.submit(sample, ctx.run_cpu)

    async def detect(self, task: StageTask, ctx: WorkContext) -> list[Label]:
        data = await ctx.read_object(task.bucket, task.key)
        probabilities = await self.probabilities(data, ctx)
        return self.label_map.labels(
            probabilities,
            max_labels=ctx.settings.tagger_max_labels,
            min_confidence=ctx.settings.tagger_min_confidence,
        )
