"""Every route of the API, gathered in one router."""

from __future__ import annotations

from fastapi import APIRouter

from imgproc_status_api.api.routes import (
    albums,
    auth,
    dead_letters,
    events,
    executions,
    images,
    operators,
    retag,
    uploads,
)

api_router = APIRouter()
for module in (
    auth,
    albums,
    uploads,
    images,
    executions,
    events,
    operators,
    dead_letters,
    retag,
):
    api_router.include_router(module.router)
