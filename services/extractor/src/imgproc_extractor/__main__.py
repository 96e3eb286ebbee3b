"""`imgproc-extractor` / `python -m imgproc_extractor`: the extract stage's worker process."""

from __future__ import annotations

from imgproc_extractor.handler import RESULT_ATTRIBUTE, handle, setup
from imgproc_shared.resources import Stage
from imgproc_shared.worker.runtime import run_worker


def main() -> None:
    """Serve the `extract` queue until SIGTERM/SIGINT."""
    run_worker("extractor", Stage.EXTRACT, handle, setup=setup, result_attribute=RESULT_ATTRIBUTE)


if __name__ == "__main__":
    main()
