"""The API's documentation pages, `/docs` (Swagger UI) and `/redoc` (ReDoc), served from this
origin: the scripts and stylesheet come from the `fastapi-offline` package (Swagger UI,
Apache-2.0; ReDoc, MIT), so the pages load offline and under a content security policy that
allows no other origin and no inline script."""

from __future__ import annotations

from html import escape
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_offline.__file__).parent / "static"
# Swagger UI needs nothing but this origin (and data: images). ReDoc (styled-components) writes
# `<style>` elements and runs its search in a worker made from a blob, so its page allows inline
# styles and blob workers; scripts stay this origin's files only on both.
SWAGGER_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
REDOC_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)
# ReDoc's sidebar credit shows a logo from its CDN, whatever the options; our copy points it here.
_REDOC_CDN_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def _headers(policy: str) -> dict[str, str]:
    return {"Content-Security-Policy": policy, "Cache-Control": "no-cache"}


def _page(title: str, head: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f'<link rel="icon" type="image/png" href="{ASSETS_URL}/favicon.png">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )


def install_api_docs(app: FastAPI, *, openapi_url: str = "/openapi.json") -> None:
    """Serve `/docs` and `/redoc` (the app must be made with `docs_url=None, redoc_url=None`)."""
    redoc_script = (ASSETS_DIR / "redoc.standalone.js").read_bytes()
    redoc_script = redoc_script.replace(_REDOC_CDN_LOGO, f"{ASSETS_URL}/favicon.png".encode())

    @app.get(f"{ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    async def redoc_script_here() -> Response:
        return Response(
            redoc_script,
            media_type="text/javascript",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    swagger = _page(
        f"{app.title} - Swagger UI",
        f'<link rel="stylesheet" href="{ASSETS_URL}/swagger-ui.css">\n',
        # The configuration travels in data attributes: an inline script would be blocked.
        f'<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>\n'
        f'<script src="{ASSETS_URL}/swagger-ui-bundle.js"></script>\n'
        '<script src="/web/swagger-init.js"></script>\n',
    )
    redoc = _page(
        f"{app.title} - ReDoc",
        "",
        f'<redoc spec-url="{escape(openapi_url)}"></redoc>\n'
        f'<script src="{ASSETS_URL}/redoc.standalone.js"></script>\n',
    )

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(swagger, headers=_headers(SWAGGER_CONTENT_SECURITY_POLICY))

    @app.get("/redoc", include_in_schema=False)
    async def redoc_page() -> HTMLResponse:
        return HTMLResponse(redoc, headers=_headers(REDOC_CONTENT_SECURITY_POLICY))
