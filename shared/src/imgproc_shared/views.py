"""The public shape of an image: what the CLI prints and the status API returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

from imgproc_shared.models import ImageMetadata, Label, Rendition
from imgproc_shared.records import ImageRecord, StageProgress

RenditionUrl = Callable[[str, str], Awaitable[str]]  # (bucket, key) -> URL that serves it


class _View(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ImageError(_View):
    """Why an image is FAILED or REJECTED, and the stage that said so."""

    code: str
    message: str
    stage: str | None = None


class RenditionView(Rendition):
    url: str = Field(description="a presigned GET of the rendition")


class ImageView(_View):
    image_id: str
    album_id: str | None = None
    owner: str | None = None
    file_name: str | None = None
    status: str | None = None
    error: ImageError | None = None
    metadata: ImageMetadata | None = None
    tags: list[Label] = Field(default_factory=list)
    thumbnails: list[RenditionView] = Field(default_factory=list)
    placeholder: str | None = None
    execution_arn: str | None = None
    duplicate_of: str | None = Field(
        default=None,
        description="for a DUPLICATE: the image with the same bytes, whose metadata, labels "
        "and renditions this one shows",
    )
    stages: dict[str, StageProgress] = Field(default_factory=dict)
    uploaded_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None


async def image_view(
    record: ImageRecord,
    rendition_url: RenditionUrl,
    original: ImageRecord | None = None,
) -> ImageView:
    """`original`: the record a `DUPLICATE` duplicates, whose metadata, labels and renditions
    it shows (it has none of its own)."""
    shown = record
    if original is not None and original.owner == record.owner:
        shown = original
    error = None
    if record.error_code:
        error = ImageError(
            code=record.error_code,
            message=record.error_message or "",
            stage=record.failed_stage,
        )
    renditions = []
    thumbnails = shown.thumbnails
    for rendition in thumbnails.renditions if thumbnails else []:
        url = await rendition_url(shown.bucket or "", rendition.key)
        renditions.append(RenditionView(**dict(rendition), url=url))
    return ImageView(
        image_id=record.image_id,
        album_id=record.album_id,
        owner=record.owner,
        file_name=record.file_name,
        status=record.status,
        error=error,
        metadata=shown.metadata,
        tags=shown.tags.labels if shown.tags else [],
        thumbnails=renditions,
        placeholder=thumbnails.placeholder if thumbnails else None,
        execution_arn=record.execution_arn,
        duplicate_of=record.duplicate_of,
        stages=record.stages(),
        uploaded_at=record.uploaded_at,
        started_at=record.started_at,
        finished_at=record.finished_at,
    )
