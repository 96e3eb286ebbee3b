"""`python -m imgproc_status_api [--host H] [--port N]`: serve the status API (and the starter)."""

from __future__ import annotations

import argparse
import asyncio
from types import FrameType

import uvicorn

from imgproc_shared.logging import configure_logging
from imgproc_shared.settings import get_settings
from imgproc_status_api.app import create_app


class _Server(uvicorn.Server):
    """Ends open event streams on SIGINT/SIGTERM, so shutdown does not wait for them."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        app = self.config.app
        api = getattr(getattr(app, "state", None), "api", None)
        if api is not None:
            try:
                asyncio.get_running_loop().call_soon_threadsafe(api.events.close)
            except RuntimeError:
                pass
        super().handle_exit(sig, frame)


def main() -> None:
    parser = argparse.ArgumentParser(prog="imgproc-status-api")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    settings = get_settings()
    configure_logging("status-api", settings.log_level)
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=5
    )
    _Server(config).run()


if __name__ == "__main__":
    main()
