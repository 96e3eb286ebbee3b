"""Server-Sent Events per album: every status and stage change of its images, as it happens."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse

from imgproc_status_api.api.deps import OwnedAlbum, State
from imgproc_status_api.errors import ERROR_RESPONSES

router = APIRouter(prefix="/api/albums", tags=["events"])

# The error answers are documented like every other route's (the fuzz in tests/security found
# the 404 missing and the 422 documented as FastAPI's default body instead of ours).
_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERROR_RESPONSES,
    200: {
        "description": (
            "`text/event-stream`: a `ready` event, then `image` events (an image's full view, "
            "as `GET /api/images/{id}` returns it) and `deleted` events (`{image_id}`)"
        ),
        # Before OpenAPI 3.2 (`itemSchema`), an event stream's `schema` describes each event.
        "content": {
            "text/event-stream": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "event": {"type": "string", "enum": ["ready", "image", "deleted"]},
                        "data": {"type": "string", "contentMediaType": "application/json"},
                        "retry": {"type": "integer"},
                        "id": {"type": "string"},
                    },
                    "required": ["event", "data"],
                }
            }
        },
    },
}


@router.get("/{album_id}/events", response_class=StreamingResponse, responses=_RESPONSES)
async def album_events(album: OwnedAlbum, state: State) -> StreamingResponse:
    """Live updates of an album's images. The stream stays open; clients reconnect on error."""
    keepalive = state.api_settings.events_keepalive_s
    hub = state.events

    async def stream() -> AsyncIterator[str]:
        async with hub.subscribe(album.album_id) as queue:
            yield "retry: 2000\nevent: ready\ndata: {}\n\n"
            while True:
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=keepalive)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                if event is None:
                    return
                yield f"event: {event.kind}\ndata: {json.dumps(event.data)}\n\n"

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
