"""The status API: health, images (and, as it grows, albums, uploads and live updates).

It also runs the starter, which turns uploads into executions, as a task of this process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Path, Request
from fastapi.responses import JSONResponse

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.logging import get_logger
from imgproc_shared.models import IMAGE_ID_PATTERN
from imgproc_shared.resources import ResourceNames
from imgproc_shared.settings import Settings, get_settings
from imgproc_shared.views import image_view

from imgproc_status_api.starter import Starter, resolve_state_machine_arn

log = get_logger()


class ApiError(HTTPException):
    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(status_code=status_code, detail=message)
        self.code = code


def create_app(settings: Settings | None = None, *, run_starter: bool = True) -> FastAPI:
    settings = settings or get_settings()
    names = ResourceNames.from_settings(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AwsClients(settings) as aws:
            app.state.aws = aws
            app.state.catalog = Catalog(aws, names)
            stopping = asyncio.Event()
            starter_task = None
            if run_starter:
                arn = await resolve_state_machine_arn(aws, settings)
                starter_task = asyncio.create_task(Starter(aws, settings, arn).run(stopping))
            try:
                yield
            finally:
                stopping.set()
                if starter_task is not None:
                    await asyncio.wait({starter_task}, timeout=5)
                    starter_task.cancel()

    app = FastAPI(title="imgproc status API", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"code": exc.code, "message": exc.detail}
        )

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/images/{image_id}")
    async def get_image(
        request: Request, image_id: str = Path(pattern=IMAGE_ID_PATTERN)
    ) -> dict[str, Any]:
        record = await request.app.state.catalog.get_image(image_id)
        if record is None:
            raise ApiError(404, "image_not_found", f"no image {image_id}")
        aws: AwsClients = request.app.state.aws

        async def presigned(bucket: str, key: str) -> str:
            url: str = await aws.s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
            )
            return url

        return await image_view(record, presigned)

    return app
