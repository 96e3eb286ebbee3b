"""`imgproc-tagger`: the tag stage's worker process."""

from __future__ import annotations

import sys

from imgproc_shared.errors import EXIT_UNRECOVERABLE
from imgproc_shared.logging import get_logger
from imgproc_shared.resources import Stage
from imgproc_shared.worker.runtime import run_worker
from imgproc_tagger.classifier import ModelUnavailable
from imgproc_tagger.handler import handle, setup

# Exit status for "fix the installation": a supervisor should not restart into the same error.
EXIT_MODEL_UNAVAILABLE = EXIT_UNRECOVERABLE


def main() -> None:
    try:
        run_worker("tagger", Stage.TAG, handle, setup=setup)
    except ModelUnavailable as exc:
        get_logger().error("tagger cannot start: model unavailable", cause=str(exc))
        sys.exit(EXIT_MODEL_UNAVAILABLE)


if __name__ == "__main__":
    main()
