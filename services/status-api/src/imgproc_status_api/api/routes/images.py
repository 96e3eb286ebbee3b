"""Images: an album's images (newest first, cursor-paginated), one image, its original (a
short-lived download link), delete one."""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated
from urllib.parse import quote

from botocore.exceptions import ClientError
from fastapi import APIRouter, Query, Response

from imgproc_shared.errors import access_denial
from imgproc_shared.models import is_valid_id
from imgproc_status_api.api.deps import OwnedAlbum, OwnedImage, State
from imgproc_status_api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from imgproc_status_api.removal import delete_image
from imgproc_status_api.schemas import ImageOut, ImagePage, OriginalOut

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
        album.album_id, limit=limit, after=after
    )
    items = [await state.view(r) for r in records]
    return ImagePage(items=items, next_cursor=encode_cursor(position) if position else None)


@router.get("/images/{image_id}")
async def get_image(record: OwnedImage, state: State) -> ImageOut:
    """One image: status, stage progress and timings, error, metadata, labels, renditions
    (with URLs that serve them), placeholder and execution ARN."""
    return await state.view(record)


# Seconds a download link works: long enough to start the download, short enough that a link
# copied out of the page soon stops working.
ORIGINAL_URL_TTL_S = 300


def attachment(file_name: str) -> str:
    """A Content-Disposition that saves the file under its name: an ASCII fallback and the
    exact name in RFC 5987 form (quotes, backslashes and control characters cannot break out)."""
    fallback = re.sub(r"[^A-Za-z0-9._ -]", "_", file_name).strip() or "photo"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(file_name, safe='')}"


@router.get(
    "/images/{image_id}/original",
    responses={409: {"model": ErrorBody, "description": "Not uploaded yet, or no longer stored"}},
)
async def original(record: OwnedImage, state: State) -> OriginalOut:
    """A link that downloads the original file as uploaded (`Content-Disposition: attachment`
    with its file name), valid for a few minutes. An answer, not a redirect: the browser's
    navigation to it carries no bearer token."""
    stored = record
    if record.status == "DUPLICATE" and isinstance(record.duplicate_of, str):
        # A duplicate's object is deleted: the original it duplicates holds the same bytes.
        first = await state.catalog.get_image(record.duplicate_of)
        if first is not None and first.owner == record.owner:
            stored = first
    bucket = stored.bucket or state.names.bucket
    key = stored.key
    try:
        if not isinstance(key, str):
            raise ApiError(409, "original_missing", "the original file is not stored")
        await state.aws.s3.head_object(Bucket=bucket, Key=key)
    except (ClientError, ApiError) as exc:
        if isinstance(exc, ClientError) and access_denial(exc):
            raise  # a missing permission, not a missing file
        if record.status == "UPLOADING":
            raise ApiError(409, "not_uploaded", "the photo has not finished uploading") from exc
        raise ApiError(409, "original_missing", "the original file is no longer stored") from exc
    file_name = record.file_name or record.image_id
    params: dict[str, str] = {
        "Bucket": bucket,
        "Key": key,
        "ResponseContentDisposition": attachment(file_name),
    }
    if isinstance(record.content_type, str):
        params["ResponseContentType"] = record.content_type
    url: str = await state.aws.s3.generate_presigned_url(
        "get_object", Params=params, ExpiresIn=ORIGINAL_URL_TTL_S
    )
    return OriginalOut(url=url, file_name=file_name, expires_in=ORIGINAL_URL_TTL_S)


@router.delete("/images/{image_id}", status_code=204, response_class=Response)
async def remove_image(record: OwnedImage, state: State) -> Response:
    """Delete an image, its original and its renditions."""
    await delete_image(state, record)
    return Response(status_code=204)
