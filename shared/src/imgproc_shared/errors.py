"""Failures as values with names: each name maps to one behaviour in the workflow.

A task answered with one of these names is caught by the state machine:
- `ImageProc.CorruptImage` / `ImageProc.TooLarge` / `ImageProc.UnsupportedFormat`: the image is
  REJECTED (the file is at fault; retrying cannot help).
- `ImageProc.Transient`: retried with backoff by the workflow.
- anything else: the image is FAILED with the stage and the error.
"""

from __future__ import annotations

CORRUPT_IMAGE = "ImageProc.CorruptImage"
TOO_LARGE = "ImageProc.TooLarge"
UNSUPPORTED_FORMAT = "ImageProc.UnsupportedFormat"
TRANSIENT = "ImageProc.Transient"
STAGE_FAILED = "ImageProc.StageFailed"

REJECTIONS = (CORRUPT_IMAGE, TOO_LARGE)

# A service exits with this when it cannot work until someone fixes its setup (a broken model
# file, say): restarting it would only loop, so the local supervisor leaves it stopped.
EXIT_UNRECOVERABLE = 3


class TaskError(Exception):
    """A task failed with a named error and a cause a person can read."""

    error: str = STAGE_FAILED

    def __init__(self, cause: str, *, error: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        if error is not None:
            self.error = error


class CorruptImage(TaskError):
    error = CORRUPT_IMAGE


class TooLarge(TaskError):
    error = TOO_LARGE


class TransientError(TaskError):
    error = TRANSIENT
