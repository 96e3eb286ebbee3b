"""The status API: identity, albums, uploads, images, executions, live updates, queue views,
and the web client at `/`.

It also runs, as tasks of this process, the starter (uploads → executions), the consumer of
`status-events` that feeds live updates, the search indexer (`search-index`) and the sweep of
abandoned uploads and deleted images' tombstones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.logging import get_logger
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import ResourceNames
from imgproc_shared.settings import Settings, get_settings
from imgproc_shared.workflow import image_proc_arn
from imgproc_status_api.api.deps import ApiState
from imgproc_status_api.api.main import api_router
from imgproc_status_api.api_docs import install_api_docs
from imgproc_status_api.auth import make_verifier
from imgproc_status_api.config import ApiSettings
from imgproc_status_api.errors import install_error_handlers
from imgproc_status_api.live import AlbumEvents
from imgproc_status_api.operations import operator_clients
from imgproc_status_api.schemas import Health, ImageOut
from imgproc_status_api.search_index import SearchIndexer
from imgproc_status_api.starter import Starter
from imgproc_status_api.sweeper import Sweeper

log = get_logger()

WEB_ROOT = Path(__file__).parent / "web"
# The web client loads nothing but itself; images and uploads go to S3 (another origin).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data: blob: http: https:; connect-src 'self' http: https:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# Multipart bodies beyond the upload limit (plus room for the form's framing) are refused
# before they are read.
_BODY_HEADROOM = 1024 * 1024


def create_app(
    settings: Settings | None = None,
    *,
    run_starter: bool = True,
    api_settings: ApiSettings | None = None,
) -> FastAPI:
    """The ASGI app. `run_starter=False` serves the API without starting executions (tests)."""
    settings = settings or get_settings()
    api_settings = (api_settings or ApiSettings()).with_secret()
    names = ResourceNames.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AwsClients(settings) as aws, operator_clients(settings, aws) as operator_aws:
            catalog = Catalog(aws, names)
            verifier = make_verifier(api_settings)
            state_holder: list[ApiState] = []

            async def view(record: ImageRecord) -> ImageOut:
                return await state_holder[0].view(record)

            events = AlbumEvents(
                aws,
                names,
                catalog,
                view,
                poll_interval_s=api_settings.events_poll_interval_s,
                discovery_interval_s=api_settings.events_discovery_interval_s,
                wait_time_s=settings.wait_time_s,
            )
            state = ApiState(
                settings, api_settings, names, aws, catalog, verifier, events, operator_aws
            )
            state_holder.append(state)
            app.state.api = state
            stopping = asyncio.Event()
            tasks = [
                asyncio.create_task(events.consume_status_events(stopping), name="status-events"),
                asyncio.create_task(
                    SearchIndexer(aws, names, catalog, wait_time_s=settings.wait_time_s).run(
                        stopping
                    ),
                    name="search-index",
                ),
            ]
            starter = None
            if run_starter:
                arn = await image_proc_arn(aws.stepfunctions, settings)
                starter = Starter(aws, settings, arn)
                tasks.append(asyncio.create_task(starter.run(stopping), name="starter"))
            tasks.append(asyncio.create_task(Sweeper(state, starter).run(stopping), name="sweeper"))
            try:
                yield
            finally:
                stopping.set()
                events.close()
                await asyncio.wait(tasks, timeout=5)
                for task in tasks:
                    task.cancel()

    app = FastAPI(
        title="imgproc status API",
        version="0.2.0",
        description=(
            "Albums, uploads, images, executions and live updates of the imgproc image "
            "pipeline. Every error is `{code, message}`."
        ),
        lifespan=lifespan,
        # Served by install_api_docs from this origin (FastAPI's own pages load a CDN).
        docs_url=None,
        redoc_url=None,
    )
    install_error_handlers(app)
    install_api_docs(app)
    if api_settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=api_settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )

    body_limit = settings.max_upload_bytes + _BODY_HEADROOM

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > body_limit):
            return JSONResponse(
                status_code=413,
                content={
                    "code": "too_large",
                    "message": f"bodies are limited to {body_limit} bytes",
                },
            )
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if response.headers.get("content-type", "").startswith("text/html"):
            # A page may bring its own (the API docs); every other gets the client's.
            response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        return Health(status="ok")

    app.include_router(api_router)

    @app.get("/", include_in_schema=False)
    async def web_client() -> FileResponse:
        return FileResponse(WEB_ROOT / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/web", StaticFiles(directory=WEB_ROOT), name="web")
    return app
