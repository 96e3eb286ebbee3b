"""`python -m imgproc_status_api [--host H] [--port N]`: serve the status API (and the starter)."""

from __future__ import annotations

import argparse

import uvicorn

from imgproc_shared.logging import configure_logging
from imgproc_shared.settings import get_settings

from imgproc_status_api.app import create_app


def main() -> None:
    parser = argparse.ArgumentParser(prog="imgproc-status-api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    settings = get_settings()
    configure_logging("status-api", settings.log_level)
    uvicorn.run(
        create_app(settings), host=args.host, port=args.port, log_level="warning",
        timeout_graceful_shutdown=5,
    )


if __name__ == "__main__":
    main()
