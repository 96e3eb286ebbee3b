"""The tag stage: a `StageTask` in, a `TagResult` (labels with confidence and parents) out."""

from __future__ import annotations

import threading

from imgproc_shared.logging import get_logger
from imgproc_shared.models import StageTask, TagResult
from imgproc_shared.worker.runtime import WorkContext
from imgproc_tagger.backend import LabelBackend
from imgproc_tagger.classifier import ModelUnavailable
from imgproc_tagger.config import get_tagger_settings
from imgproc_tagger.local import LocalBackend
from imgproc_tagger.rekognition import RekognitionBackend

BACKENDS = ("rekognition", "local")

# One backend of each kind per process: the local model is loaded once, at startup.
_backends: dict[str, LabelBackend] = {}
# A thread lock, not an asyncio one: opening runs in the worker's thread pool, and an asyncio
# lock would tie the module to the first event loop that used it.
_opening = threading.Lock()


def _open_backend_blocking(name: str) -> LabelBackend:
    with _opening:
        if name not in _backends:
            if name == "rekognition":
                _backends[name] = RekognitionBackend()
            elif name == "local":
                _backends[name] = LocalBackend.open(get_tagger_settings())
            else:
                raise ModelUnavailable(
                    f"unknown tagger backend {name!r}; choose one of {', '.join(BACKENDS)}"
                )
        return _backends[name]


async def open_backend(name: str, ctx: WorkContext) -> LabelBackend:
    """The process's backend called `name`, opened on first use (loading the local model
    takes a moment, and builds its graph on a first start: off the event loop)."""
    backend = _backends.get(name)
    if backend is None:
        backend = await ctx.run_cpu(_open_backend_blocking, name)
    return backend


async def setup(ctx: WorkContext) -> None:
    """Worker startup: open the configured backend, so a broken model stops the process now."""
    backend = await open_backend(ctx.settings.tagger_backend, ctx)
    providers = getattr(getattr(backend, "classifier", None), "providers", None)
    detector = getattr(getattr(backend, "recognizer", None), "detector", None)
    get_logger().info(
        "tagger backend ready",
        backend=backend.name,
        providers=providers,
        detector_precision=getattr(detector, "precision", None),
    )


async def shutdown(ctx: WorkContext) -> None:
    """Worker stop: end the local backend's batching task (every message is settled by now)."""
    backend = _backends.get("local")
    if isinstance(backend, LocalBackend):
        await backend.batcher.close()


async def handle(task: StageTask, ctx: WorkContext) -> TagResult:
    """Label the image of `task` with the configured backend."""
    backend = await open_backend(ctx.settings.tagger_backend, ctx)
    labels = await backend.detect(task, ctx)
    return TagResult(labels=labels, backend=backend.name)
