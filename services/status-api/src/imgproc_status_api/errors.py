"""Every error the API answers is JSON `{"code", "message"}` with a stable code."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgproc_shared.errors import access_denial
from imgproc_shared.logging import get_logger

log = get_logger()


class ErrorBody(BaseModel):
    code: str
    message: str


class ApiError(Exception):
    """Raised by routes; answered as `{"code", "message"}` with `status_code`."""

    def __init__(self, status_code: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.message = message


def not_found(kind: str, ident: str) -> ApiError:
    # Someone else's id and an unknown id answer the same, so ids reveal nothing.
    return ApiError(404, f"{kind}_not_found", f"no {kind} {ident}")


# Codes for errors raised by the framework itself (unknown route, wrong method, ...).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    # Also a body that is not UTF-8 JSON: FastAPI answers that with 400, not 422 (the
    # schemathesis fuzz in tests/security sends such bodies).
    400: {"model": ErrorBody, "description": "Malformed request"},
    401: {"model": ErrorBody, "description": "Missing, invalid or expired token"},
    404: {"model": ErrorBody, "description": "Unknown id, or someone else's"},
    422: {"model": ErrorBody, "description": "Invalid request"},
}


def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "request"
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "invalid request"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(
            status_code=exc.status_code,
            content={"code": exc.code, "message": exc.message},
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(
            status_code=422,
            content={"code": "validation_error", "message": _describe_validation(exc)},
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        message = exc.detail if isinstance(exc.detail, str) else code
        return JSONResponse(
            status_code=exc.status_code,
            content={"code": code, "message": message},
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(ClientError)
    async def aws_error(request: Request, exc: ClientError) -> JSONResponse:
        denial = access_denial(exc)
        if denial is None:
            raise exc  # answered below, as any other unexpected error
        # A permission missing from the API's policy: say which, so it can be granted.
        log.error("access denied", path=request.url.path, **denial.log_fields())
        return JSONResponse(
            status_code=500,
            content={
                "code": "access_denied",
                "message": f"the server is not allowed to {denial.action} on {denial.resource}",
            },
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return JSONResponse(
            status_code=500, content={"code": "internal_error", "message": "internal error"}
        )


# The operators' routers add this: queues and dead letters name every user's images.
OPERATOR_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    403: {"model": ErrorBody, "description": "Only operators (`IMGPROC_OPERATORS`)"},
}
