"""Request and response bodies: the API's contract, as published in `/openapi.json`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from imgproc_shared.models import (
    ALBUM_NAME_MAX,
    DISPLAY_NAME_PATTERN,
    FILE_NAME_MAX,
    IMAGE_ID_PATTERN,
)
from imgproc_shared.records import AlbumRecord
from imgproc_shared.views import ImageView

Username = Annotated[str, StringConstraints(pattern=IMAGE_ID_PATTERN)]
# Letters, digits, `-` and `_`: usernames become a segment of S3 keys.

# Checked as sent (the document's limits hold for the text the client wrote), stored stripped,
# shown escaped.
AlbumName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=ALBUM_NAME_MAX, pattern=DISPLAY_NAME_PATTERN),
    AfterValidator(str.strip),
]
FileName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=FILE_NAME_MAX, pattern=DISPLAY_NAME_PATTERN),
    AfterValidator(str.strip),
]
# `type/subtype` of an image; the presigned policy pins the exact value.
IMAGE_CONTENT_TYPE_PATTERN = r"^image/[A-Za-z0-9][A-Za-z0-9.+-]{0,62}$"
ImageContentType = Annotated[str, StringConstraints(pattern=IMAGE_CONTENT_TYPE_PATTERN)]


class RequestBody(BaseModel):
    """A JSON request body as the document states it: no unknown fields, and no coercion
    between JSON types (`true` is not the integer 1, `"5"` is not 5)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @field_validator("*", mode="before")
    @classmethod
    def _integral_numbers(cls, value: object) -> object:
        # JSON Schema's integer includes 5.0 (a number without a fraction); strict refuses it.
        return int(value) if isinstance(value, float) and value.is_integer() else value


class SignIn(RequestBody):
    username: Username = Field(description="1–64 letters, digits, '-' or '_'")


class UserOut(BaseModel):
    id: str
    name: str
    # May see the Operations page and call `/api/operators/*`.
    operator: bool = False


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    user: UserOut


class AlbumCreate(RequestBody):
    name: AlbumName


class AlbumOut(AlbumRecord):
    """An album as the client sees it: its record (read from one by attribute)."""

    model_config = ConfigDict(from_attributes=True)


class AlbumList(BaseModel):
    items: list[AlbumOut]


class UploadRequest(RequestBody):
    file_name: FileName
    content_type: ImageContentType
    size: int | None = Field(default=None, ge=1, description="bytes, when the client knows")

    @field_validator("content_type")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class PresignedPost(BaseModel):
    url: str
    fields: dict[str, str]


class ImageOut(ImageView):
    """The public shape of an image (`imgproc_shared.views.ImageView`) plus the upload's size
    and content type."""

    size: int | None = None
    content_type: str | None = None


class UploadGrant(BaseModel):
    image_id: str
    key: str
    upload: PresignedPost
    expires_in: int
    max_bytes: int
    image: ImageOut


class ImagePage(BaseModel):
    items: list[ImageOut]
    next_cursor: str | None = None


class OriginalOut(BaseModel):
    url: str = Field(description="a presigned GET of the original, saved as `file_name`")
    file_name: str
    expires_in: int = Field(description="seconds the URL works")


class LabelCount(BaseModel):
    name: str
    count: int = Field(description="images with this label (or a label under it)")


class LabelFacets(BaseModel):
    labels: list[LabelCount]
    complete: bool = Field(
        default=True,
        description="false when a filtered count stopped early (very broad filters)",
    )


class ExecutionStateOut(BaseModel):
    name: str
    type: str | None = None
    entered_at: str | None = None
    exited_at: str | None = None
    duration_ms: int | None = None
    outcome: Literal["succeeded", "failed", "running", "caught", "aborted"]
    attempts: int = 0
    error: str | None = None
    cause: str | None = None


class ExecutionOut(BaseModel):
    execution_arn: str
    status: str
    started_at: str | None = None
    stopped_at: str | None = None
    error: str | None = None
    cause: str | None = None
    states: list[ExecutionStateOut]


class QueueCounts(BaseModel):
    queue: str
    name: str
    visible: int
    in_flight: int
    delayed: int
    dead_letter: int | None = None
    workers: int | None = Field(default=None, description="running workers, where known")


class QueueReport(BaseModel):
    queues: list[QueueCounts]


class Health(BaseModel):
    status: str


class DuplicateGroupOut(BaseModel):
    kind: Literal["exact", "near"] = Field(
        description="exact: an original and its DUPLICATE uploads (the same bytes); near: "
        "processed images whose perceptual hashes are within the distance"
    )
    distance: int = Field(
        ge=0, le=64, description="the largest Hamming distance between two of its images"
    )
    images: list[ImageOut] = Field(description="oldest upload first")


class DuplicatesOut(BaseModel):
    groups: list[DuplicateGroupOut]
