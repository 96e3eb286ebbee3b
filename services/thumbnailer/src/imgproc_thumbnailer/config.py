"""The thumbnailer's own settings (`IMGPROC_THUMBNAIL_*`), beside the shared ones.

The thumbnail's long edge stays in the shared settings (`IMGPROC_THUMBNAIL_SIZE`) because the
status API and the client read it too; how renditions are encoded matters only here.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ThumbnailSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGPROC_THUMBNAIL_", extra="ignore")

    # JPEG everywhere by default; WebP is ~25% smaller but 10-20x slower to encode.
    format: Literal["JPEG", "WEBP"] = "JPEG"
    quality: int = Field(default=80, ge=1, le=100)
    # Long edge of the "preview" rendition (the client's full-screen view).
    preview_size: int = Field(default=1280, ge=16)


@lru_cache(maxsize=1)
def get_thumbnail_settings() -> ThumbnailSettings:
    return ThumbnailSettings()
