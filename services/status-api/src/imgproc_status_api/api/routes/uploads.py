"""Uploads into an album: a presigned S3 POST (the browser's path) or a direct multipart upload
through the API (for clients that cannot do presigned uploads).

Either way the image exists as UPLOADING from the moment the upload is granted; the S3 event
then starts its execution.
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from botocore.exceptions import ClientError
from fastapi import APIRouter, File, UploadFile

from imgproc_shared.errors import access_denial
from imgproc_shared.models import clean_file_name
from imgproc_shared.resources import incoming_key
from imgproc_status_api.api.deps import CurrentUser, OwnedAlbum, State
from imgproc_status_api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from imgproc_status_api.schemas import (
    IMAGE_CONTENT_TYPE_PATTERN,
    ImageOut,
    PresignedPost,
    UploadGrant,
    UploadRequest,
)

router = APIRouter(prefix="/api/albums", tags=["uploads"], responses=ERROR_RESPONSES)

_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")
_CONTENT_TYPE = re.compile(IMAGE_CONTENT_TYPE_PATTERN)
_READ_CHUNK = 1024 * 1024


def extension_for(file_name: str, content_type: str) -> str:
    """The key's extension: the file's own when it is plain, else one from the content type.

    It is informative only: the extractor identifies the format by content.
    """
    if "." in file_name:
        suffix = file_name.rsplit(".", 1)[1].lower()
        if _EXTENSION.match(suffix):
            return suffix
    subtype = content_type.split("/", 1)[1].split("+", 1)[0].lower()
    subtype = {"jpeg": "jpg", "pjpeg": "jpg"}.get(subtype, subtype)
    return subtype if _EXTENSION.match(subtype) else "bin"


@router.post(
    "/{album_id}/uploads",
    status_code=201,
    responses={413: {"model": ErrorBody, "description": "Larger than the upload limit"}},
)
async def request_upload(
    body: UploadRequest, album: OwnedAlbum, user: CurrentUser, state: State
) -> UploadGrant:
    """Grant an upload: an image id and a presigned S3 POST for exactly one key under
    `incoming/`, this content type and at most the upload limit."""
    limit = state.settings.max_upload_bytes
    if body.size is not None and body.size > limit:
        raise ApiError(413, "too_large", f"the upload limit is {limit} bytes")
    image_id = uuid.uuid4().hex
    key = incoming_key(
        user.id, album.album_id, image_id, extension_for(body.file_name, body.content_type)
    )
    bucket = state.names.bucket
    ttl = state.api_settings.upload_url_ttl_s
    # S3 enforces these conditions (the embedded endpoint too: imgproc_local.s3_post_policy).
    post: dict[str, Any] = await state.aws.s3.generate_presigned_post(
        Bucket=bucket,
        Key=key,
        Fields={"Content-Type": body.content_type},
        Conditions=[
            {"Content-Type": body.content_type},
            ["content-length-range", 1, limit],
        ],
        ExpiresIn=ttl,
    )
    record = await state.catalog.record_upload(
        image_id=image_id,
        owner=user.id,
        album_id=album.album_id,
        bucket=bucket,
        key=key,
        file_name=body.file_name,
        content_type=body.content_type,
        size=body.size,
    )
    await state.events.image_changed(record)
    return UploadGrant(
        image_id=image_id,
        key=key,
        upload=PresignedPost(url=post["url"], fields=post["fields"]),
        expires_in=ttl,
        max_bytes=limit,
        image=await state.view(record),
    )


@router.post(
    "/{album_id}/images",
    status_code=201,
    responses={
        413: {"model": ErrorBody, "description": "Larger than the upload limit"},
        415: {"model": ErrorBody, "description": "Not an image content type"},
    },
    # Say in the document, not only in prose, that the part must be an image (a client built
    # from the document otherwise sends application/octet-stream and gets 415). Concrete types:
    # generators send a listed range like `image/*` literally. Any image/* type is accepted.
    openapi_extra={
        "requestBody": {
            "content": {
                "multipart/form-data": {
                    "encoding": {"file": {"contentType": "image/jpeg, image/png"}}
                }
            }
        }
    },
)
async def upload_image(
    file: Annotated[
        UploadFile,
        # minLength: an empty file is refused (422 empty_file), and the document says so.
        File(description="the photo, as an image/* part", json_schema_extra={"minLength": 1}),
    ],
    album: OwnedAlbum,
    user: CurrentUser,
    state: State,
) -> ImageOut:
    """Upload a photo through the API (multipart/form-data, field `file`)."""
    content_type = (file.content_type or "").lower()
    if not _CONTENT_TYPE.match(content_type):
        raise ApiError(415, "unsupported_content_type", "the file part must be an image/* type")
    limit = state.settings.max_upload_bytes
    chunks: list[bytes] = []
    size = 0
    while chunk := await file.read(_READ_CHUNK):
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "too_large", f"the upload limit is {limit} bytes")
        chunks.append(chunk)
    if size == 0:
        raise ApiError(422, "empty_file", "the file is empty")
    file_name = clean_file_name(file.filename)
    image_id = uuid.uuid4().hex
    key = incoming_key(user.id, album.album_id, image_id, extension_for(file_name, content_type))
    bucket = state.names.bucket
    record = await state.catalog.record_upload(
        image_id=image_id,
        owner=user.id,
        album_id=album.album_id,
        bucket=bucket,
        key=key,
        file_name=file_name,
        content_type=content_type,
        size=size,
    )
    await state.events.image_changed(record)
    try:
        # The stored SHA-256 lets the extractor skip hashing what S3 already hashed.
        await state.aws.s3.put_object(
            Bucket=bucket,
            Key=key,
            Body=b"".join(chunks),
            ContentType=content_type,
            ChecksumAlgorithm="SHA256",
        )
    except ClientError as exc:
        await state.catalog.delete_image(image_id)
        state.events.image_deleted(album.album_id, image_id)
        if access_denial(exc):
            raise  # a missing permission: answered naming it
        raise ApiError(502, "storage_unavailable", "the photo could not be stored") from exc
    return await state.view(record)
