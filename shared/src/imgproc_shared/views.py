"""The public shape of an image: what the CLI prints and the status API returns."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from imgproc_shared.catalog import stages_of

RenditionUrl = Callable[[str, str], Awaitable[str]]  # (bucket, key) -> URL that serves it


async def image_view(record: dict[str, Any], rendition_url: RenditionUrl) -> dict[str, Any]:
    error = None
    if record.get("error_code"):
        error = {
            "code": record["error_code"],
            "message": record.get("error_message") or "",
            "stage": record.get("failed_stage"),
        }
    thumbnails_result = record.get("thumbnails") or {}
    renditions = []
    for rendition in thumbnails_result.get("renditions", []):
        renditions.append(
            {**rendition, "url": await rendition_url(record.get("bucket", ""), rendition["key"])}
        )
    tags_result = record.get("tags") or {}
    return {
        "image_id": record["image_id"],
        "album_id": record.get("album_id"),
        "owner": record.get("owner"),
        "file_name": record.get("file_name"),
        "status": record.get("status"),
        "error": error,
        "metadata": record.get("metadata"),
        "tags": tags_result.get("labels", []),
        "thumbnails": renditions,
        "placeholder": thumbnails_result.get("placeholder"),
        "execution_arn": record.get("execution_arn"),
        "stages": stages_of(record),
        "uploaded_at": record.get("uploaded_at"),
        "started_at": record.get("started_at"),
        "finished_at": record.get("finished_at"),
    }
