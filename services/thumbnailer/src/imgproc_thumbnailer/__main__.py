"""`imgproc-thumbnailer`: the thumbnail stage's worker process."""

from __future__ import annotations

from imgproc_shared.resources import Stage
from imgproc_shared.worker.runtime import run_worker
from imgproc_thumbnailer.handler import handle, setup


def main() -> None:
    """Serve the thumbnail queue until SIGTERM/SIGINT."""
    run_worker("thumbnailer", Stage.THUMBNAIL, handle, setup=setup)


if __name__ == "__main__":
    main()
