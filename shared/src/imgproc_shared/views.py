"""The public shape of an image: what the CLI prints and the status API returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from imgproc_shared.catalog import stages_of

RenditionUrl = Callable[[str, str], Awaitable[str]]  # (bucket, key) -> URL that serves it


async def image_view(
    record: dict[str, Any],
    rendition_url: RenditionUrl,
    original: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`original`: the record a `DUPLICATE` duplicates, whose metadata, labels and renditions
    it shows (it has none of its own)."""
    shown = record
    if original is not None and original.get("owner") == record.get("owner"):
        shown = original
    error = None
    if record.get("error_code"):
        error = {
            "code": record["error_code"],
            "message": record.get("error_message") or "",
            "stage": record.get("failed_stage"),
        }
    thumbnails_result = shown.get("thumbnails") or {}
    renditions = []
    for rendition in thumbnails_result.get("renditions", []):
        renditions.append(
            {**rendition, "url": await rendition_url(shown.get("bucket", ""), rendition["key"])}
        )
    tags_result = shown.get("tags") or {}
    return {
        "image_id": record["image_id"],
        "album_id": record.get("album_id"),
        "owner": record.get("owner"),
        "file_name": record.get("file_name"),
        "status": record.get("status"),
        "error": error,
        "metadata": shown.get("metadata"),
        "tags": tags_result.get("labels", []),
        "thumbnails": renditions,
        "placeholder": thumbnails_result.get("placeholder"),
        "execution_arn": record.get("execution_arn"),
        "duplicate_of": record.get("duplicate_of"),
        "stages": stages_of(record),
        "uploaded_at": record.get("uploaded_at"),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
    }
