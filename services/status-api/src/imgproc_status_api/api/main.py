"""Every route of the API, gathered in one router."""

from __future__ import annotations

from fastapi import APIRouter

from imgproc_status_api.api.routes import (
    albums,
    auth,
    auth_config,
    dead_letters,
    duplicates,
    events,
    executions,
    images,
    operators,
    retag,
    retry,
    search,
    uploads,
)

api_router = APIRouter()
for module in (
    auth,
    auth_config,
    albums,
    uploads,
    images,
    executions,
    events,
    operators,
    dead_letters,
    retag,
    duplicates,
    search,
):
    api_router.include_router(module.router)
api_router.include_router(retry.router)
api_router.include_router(retry.operator_router)
