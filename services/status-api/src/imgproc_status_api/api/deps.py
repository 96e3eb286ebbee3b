"""Dependencies for routes, as `Annotated` aliases so signatures read as English."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import IMAGE_ID_PATTERN
from imgproc_shared.resources import ResourceNames
from imgproc_shared.settings import Settings
from imgproc_shared.views import image_view
from imgproc_status_api.auth import CognitoTokens, LocalTokens, User, unauthorized
from imgproc_status_api.config import ApiSettings
from imgproc_status_api.errors import ApiError, not_found
from imgproc_status_api.live import AlbumEvents


@dataclass
class ApiState:
    """What the routes share for the life of the process (set up in the app's lifespan)."""

    settings: Settings
    api_settings: ApiSettings
    names: ResourceNames
    aws: AwsClients
    catalog: Catalog
    verifier: LocalTokens | CognitoTokens
    events: AlbumEvents

    async def rendition_url(self, bucket: str, key: str) -> str:
        url: str = await self.aws.s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket or self.names.bucket, "Key": key},
            ExpiresIn=self.api_settings.presigned_url_ttl_s,
        )
        return url

    async def view(self, record: dict[str, Any]) -> dict[str, Any]:
        """The public JSON of an image record."""
        view = await image_view(record, self.rendition_url)
        view["size"] = record.get("size")
        view["content_type"] = record.get("content_type")
        return view


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.api
    return state


State = Annotated[ApiState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="`POST /api/auth/sign-in`, or a Cognito JWT")


async def current_user(
    state: State,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise unauthorized("a bearer token is required")
    return await state.verifier.verify(credentials.credentials)


CurrentUser = Annotated[User, Depends(current_user)]


async def current_operator(user: CurrentUser, state: State) -> User:
    if not state.api_settings.is_operator(user.id):
        raise ApiError(403, "operator_only", "only operators may see and act on the queues")
    return user


CurrentOperator = Annotated[User, Depends(current_operator)]

AlbumId = Annotated[str, Path(pattern=IMAGE_ID_PATTERN, description="an album id")]
ImageId = Annotated[str, Path(pattern=IMAGE_ID_PATTERN, description="an image id")]


async def owned_album(album_id: AlbumId, user: CurrentUser, state: State) -> dict[str, Any]:
    album = await state.catalog.get_album(album_id)
    if album is None or album.get("owner") != user.id:
        raise not_found("album", album_id)
    return album


async def owned_image(image_id: ImageId, user: CurrentUser, state: State) -> dict[str, Any]:
    record = await state.catalog.get_image(image_id)
    if record is None or record.get("owner") != user.id:
        raise not_found("image", image_id)
    return record


OwnedAlbum = Annotated[dict[str, Any], Depends(owned_album)]
OwnedImage = Annotated[dict[str, Any], Depends(owned_image)]
