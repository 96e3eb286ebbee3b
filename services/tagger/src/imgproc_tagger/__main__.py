"""`imgproc-tagger`: the tag stage's worker process."""

from __future__ import annotations

from imgproc_shared.resources import Stage
from imgproc_shared.worker.runtime import run_worker
from imgproc_tagger.classifier import ModelUnavailable
from imgproc_tagger.handler import handle, setup, shutdown


def main() -> None:
    # A broken model is fixed by a person, not by a restart: the process exits with
    # EXIT_UNRECOVERABLE and one line saying why.
    run_worker(
        "tagger",
        Stage.TAG,
        handle,
        setup=setup,
        setup_failures={ModelUnavailable: "model unavailable"},
        shutdown=shutdown,
    )


if __name__ == "__main__":
    main()
