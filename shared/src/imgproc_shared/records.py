"""The album and image records in DynamoDB, as typed models: what `Catalog` reads and writes.

Every attribute the catalog, the workflow (StoreResults, Reject, the failure states, StoreTags),
the worker runtime (stage progress), the duplicate claims and the sweep write on an image is
declared here. Undeclared attributes are ignored on read: nothing reads one, and no write puts a
record read back as a whole (each write names its attributes), so ignoring loses nothing.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from imgproc_shared.models import ImageMetadata, ImageStatus, TagResult, ThumbnailResult

# A deleted image's record until the sweep purges it: it has no album (so no album view, query
# or live update finds it) and no other status, so no conditional write of the upload path, the
# workflow or a worker can bring the image back. Never shown, hence not an ImageStatus.
DELETED = "DELETED"

STAGE_ORDER = ("extract", "tag", "thumbnail")


def _missing(value: object) -> bool:
    return value is None


class _Record(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class StageError(_Record):
    """Why a stage's attempt failed, as the worker runtime records it."""

    code: str
    message: str = ""


class StageProgress(_Record):
    """One stage's progress on an image (`stage_{stage}`): only `started_at` while it runs.

    Dumped without the attributes it lacks, as stored and as the client reads it (a running
    stage has no `finished_at`, not a null one)."""

    started_at: str
    finished_at: str | None = Field(default=None, exclude_if=_missing)
    duration_ms: int | None = Field(default=None, exclude_if=_missing)
    error: StageError | None = Field(default=None, exclude_if=_missing)


class AlbumRecord(_Record):
    album_id: str
    name: str
    owner: str
    created_at: str


class ImageRecord(_Record):
    """An image's record. Only `image_id` is always there: reads may ask for a few attributes
    (a status poll), a tombstone keeps only what the sweep needs, an object put straight into S3
    has no upload fields until the starter fills them in, and each stage adds its own."""

    image_id: str
    # Where the image belongs and what was uploaded (the upload grant, or the starter).
    owner: str | None = None
    album_id: str | None = None
    bucket: str | None = None
    key: str | None = None
    file_name: str | None = None
    content_type: str | None = None
    size: int | None = None
    status: ImageStatus | Literal["DELETED"] | None = None
    uploaded_at: str | None = None
    # The execution (the starter, or a dead-letter replay's re-run, counted by `reruns`).
    execution_arn: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    reruns: int | None = None
    # FAILED and REJECTED: the workflow's failure states and Reject.
    error_code: str | None = None
    error_message: str | None = None
    failed_stage: str | None = None
    # Each stage's progress (the worker runtime) and results (the extractor's own write, and
    # StoreResults / StoreTags).
    stage_extract: StageProgress | None = None
    stage_tag: StageProgress | None = None
    stage_thumbnail: StageProgress | None = None
    metadata: ImageMetadata | None = None
    tags: TagResult | None = None
    thumbnails: ThumbnailResult | None = None
    retag_request: str | None = None
    retagged_at: str | None = None
    # Exact duplicates (`imgproc_shared.duplicates`).
    content_sha256: str | None = None
    duplicate_of: str | None = None
    # Deletion and the abandoned-upload sweep (`sweep` is the sparse `by_sweep` index's key).
    deleted_at: str | None = None
    sweep: str | None = None
    sweep_at: str | None = None

    @property
    def deleted(self) -> bool:
        return self.status == DELETED

    @property
    def terminal(self) -> bool:
        return isinstance(self.status, ImageStatus) and self.status.terminal

    def stages(self) -> dict[str, StageProgress]:
        """The progress of each stage that has any, in workflow order."""
        progress = {
            "extract": self.stage_extract,
            "tag": self.stage_tag,
            "thumbnail": self.stage_thumbnail,
        }
        return {stage: p for stage, p in progress.items() if p is not None}
