"""What a label backend must look like: the handler picks one by `settings.tagger_backend`."""

from __future__ import annotations

from typing import Protocol

from imgproc_shared.models import Label, StageTask
from imgproc_shared.worker.runtime import WorkContext


class LabelBackend(Protocol):
    """Detects labels in the image a task points at."""

    name: str

    async def detect(self, task: StageTask, ctx: WorkContext) -> list[Label]:
        """Labels (name, confidence 0–100, parents), most confident first, within the
        settings' MaxLabels and MinConfidence."""
        ...
