"""The worker runtime every stage service runs on: see `runtime.Worker`."""

from imgproc_shared.worker.runtime import Handler, WorkContext, Worker, run_worker

__all__ = ["Handler", "WorkContext", "Worker", "run_worker"]
