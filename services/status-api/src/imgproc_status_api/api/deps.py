"""Dependencies for routes, as `Annotated` aliases so signatures read as English."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import IMAGE_ID_PATTERN
from imgproc_shared.presign import GetUrlSigner
from imgproc_shared.records import AlbumRecord, ImageRecord
from imgproc_shared.resources import ResourceNames, Table
from imgproc_shared.settings import Settings
from imgproc_shared.views import image_view
from imgproc_status_api.auth import CognitoTokens, LocalTokens, User, unauthorized
from imgproc_status_api.config import ApiSettings
from imgproc_status_api.errors import ApiError, not_found
from imgproc_status_api.live import AlbumEvents
from imgproc_status_api.revocations import TokenRevocations
from imgproc_status_api.schemas import ImageOut


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
    # The operations role's clients (imgproc_status_api.operations): only through OperatorAws.
    operator_aws: AwsClients

    @cached_property
    def revocations(self) -> TokenRevocations:
        """Signed-out tokens (`POST /api/auth/sign-out`), refused until they expire."""
        return TokenRevocations(self.aws.dynamodb, self.names.table(Table.ALBUMS))

    @cached_property
    def url_signer(self) -> GetUrlSigner:
        """Presigned GETs of renditions: a page of images needs a hundred at once."""
        return GetUrlSigner(self.aws.s3)

    async def rendition_url(self, bucket: str, key: str) -> str:
        return await self.url_signer.url(
            bucket or self.names.bucket, key, self.api_settings.presigned_url_ttl_s
        )

    async def view(self, record: ImageRecord) -> ImageOut:
        """The public JSON of an image record (a duplicate's shows its original's results)."""
        original = None
        if record.duplicate_of is not None:
            original = await self.catalog.get_image(record.duplicate_of)
        view = await image_view(record, self.rendition_url, original)
        return ImageOut(**dict(view), size=record.size, content_type=record.content_type)


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
    user = await state.verifier.verify(credentials.credentials)
    if user.token_id is not None and await state.revocations.is_revoked(user.token_id):
        raise ApiError(401, "token_revoked", "you signed out with this token; sign in again")
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def current_operator(user: CurrentUser, state: State) -> User:
    if not state.api_settings.is_operator(user.id, user.groups):
        raise ApiError(403, "operator_only", "only operators may see and act on the queues")
    return user


CurrentOperator = Annotated[User, Depends(current_operator)]


async def operator_aws(_: CurrentOperator, state: State) -> AwsClients:
    """The operations role's clients, for an operator's request only: operator actions (dead
    letters, replays, purges, re-tags, any image's re-run) go through these, never `state.aws`,
    whose identity is not allowed them."""
    return state.operator_aws


OperatorAws = Annotated[AwsClients, Depends(operator_aws)]

AlbumId = Annotated[str, Path(pattern=IMAGE_ID_PATTERN, description="an album id")]
ImageId = Annotated[str, Path(pattern=IMAGE_ID_PATTERN, description="an image id")]


async def owned_album(album_id: AlbumId, user: CurrentUser, state: State) -> AlbumRecord:
    album = await state.catalog.get_album(album_id)
    if album is None or album.owner != user.id:
        raise not_found("album", album_id)
    return album


async def owned_image(image_id: ImageId, user: CurrentUser, state: State) -> ImageRecord:
    record = await state.catalog.get_image(image_id)
    # A deleted image's tombstone is nobody's image.
    if record is None or record.owner != user.id or record.deleted:
        raise not_found("image", image_id)
    return record


OwnedAlbum = Annotated[AlbumRecord, Depends(owned_album)]
OwnedImage = Annotated[ImageRecord, Depends(owned_image)]
