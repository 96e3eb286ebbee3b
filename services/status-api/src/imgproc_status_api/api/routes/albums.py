"""Albums: create, list mine (newest first), get, delete (with everything in them)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response

from imgproc_shared.catalog import AlbumNameTaken
from imgproc_status_api.api.deps import CurrentUser, OwnedAlbum, State
from imgproc_status_api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from imgproc_status_api.removal import delete_album
from imgproc_status_api.schemas import AlbumCreate, AlbumList, AlbumOut

router = APIRouter(prefix="/api/albums", tags=["albums"], responses=ERROR_RESPONSES)


@router.post("", status_code=201, responses={409: {"model": ErrorBody}})
async def create_album(body: AlbumCreate, user: CurrentUser, state: State) -> AlbumOut:
    """Create an album; its name is unique among the caller's albums (ignoring case)."""
    try:
        album = await state.catalog.put_album_unique(
            album_id=uuid.uuid4().hex, owner=user.id, name=body.name
        )
    except AlbumNameTaken as exc:
        raise ApiError(409, "album_name_taken", "you already have an album with this name") from exc
    return AlbumOut.model_validate(album)


@router.get("")
async def list_albums(user: CurrentUser, state: State) -> AlbumList:
    """The caller's albums, newest first."""
    albums = await state.catalog.list_albums(user.id)
    return AlbumList(items=[AlbumOut.model_validate(a) for a in albums])


@router.get("/{album_id}")
async def get_album(album: OwnedAlbum) -> AlbumOut:
    return AlbumOut.model_validate(album)


@router.delete("/{album_id}", status_code=204, response_class=Response)
async def remove_album(album: OwnedAlbum, state: State) -> Response:
    """Delete an album with its images, their originals and renditions."""
    await delete_album(state, album)
    return Response(status_code=204)
