"""Images: an album's images (newest first, cursor-paginated), one image, delete one."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated

from fastapi import APIRouter, Query, Response

from imgproc_shared.models import is_valid_id
from imgproc_status_api.api.deps import OwnedAlbum, OwnedImage, State
from imgproc_status_api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from imgproc_status_api.removal import delete_image
from imgproc_status_api.schemas import ImageOut, ImagePage

router = APIRouter(prefix="/api", tags=["images"], responses=ERROR_RESPONSES)


def encode_cursor(position: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(position)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """(uploaded_at, image_id) from a cursor; the album always comes from the path, so a cursor
    can never reach into another album."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        uploaded_at, image_id = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API issued") from exc
    if not (isinstance(uploaded_at, str) and isinstance(image_id, str) and is_valid_id(image_id)):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API issued")
    if not 0 < len(uploaded_at) <= 64:
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API issued")
    return uploaded_at, image_id


@router.get("/albums/{album_id}/images", responses={400: {"model": ErrorBody}})
async def list_images(
    album: OwnedAlbum,
    state: State,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> ImagePage:
    """An album's images, newest upload first; pass `next_cursor` back for the next page."""
    after = decode_cursor(cursor) if cursor else None
    records, position = await state.catalog.list_album_images(
        album["album_id"], limit=limit, after=after
    )
    items = [ImageOut.model_validate(await state.view(r)) for r in records]
    return ImagePage(items=items, next_cursor=encode_cursor(position) if position else None)


@router.get("/images/{image_id}")
async def get_image(record: OwnedImage, state: State) -> ImageOut:
    """One image: status, stage progress and timings, error, metadata, labels, renditions
    (with URLs that serve them), placeholder and execution ARN."""
    return ImageOut.model_validate(await state.view(record))


@router.delete("/images/{image_id}", status_code=204, response_class=Response)
async def remove_image(record: OwnedImage, state: State) -> Response:
    """Delete an image, its original and its renditions."""
    await delete_image(state, record)
    return Response(status_code=204)
