"""Which files are photos imgproc takes: by their first bytes, as the extractor identifies
formats (the extension only breaks a tie between HEIF-family brands)."""

from __future__ import annotations

import struct

# Enough for a HEIF/AVIF `ftyp` box with its compatible brands.
SNIFF_BYTES = 256

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}
_HEIF_GENERIC_BRANDS = {b"mif1", b"msf1", b"mif2", b"miaf"}
_AVIF_BRANDS = {b"avif", b"avis"}

CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "HEIF": "image/heif",
    "WEBP": "image/webp",
    "AVIF": "image/avif",
}


def _ftyp_brands(head: bytes) -> list[bytes]:
    """The major and compatible brands of an ISO-BMFF `ftyp` box at the start, if any."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return []
    size = struct.unpack(">I", head[:4])[0]
    end = min(size if size >= 16 else 16, len(head))
    brands = [head[8:12]]
    brands += [head[i : i + 4] for i in range(16, end - 3, 4)]
    return brands


def sniff_format(head: bytes, name: str) -> str | None:
    """The photo format of a file starting with `head` (JPEG, PNG, HEIF, WEBP, AVIF), or None
    for anything else (a GIF, a video, a document)."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    brands = _ftyp_brands(head)
    if not brands:
        return None
    if brands[0] in _AVIF_BRANDS:
        return "AVIF"
    if brands[0] in _HEIF_BRANDS:
        return "HEIF"
    # A generic major brand (mif1): the compatible brands say which codec; then the name.
    if any(b in _AVIF_BRANDS for b in brands):
        return "AVIF"
    if any(b in _HEIF_BRANDS for b in brands):
        return "HEIF"
    if any(b in _HEIF_GENERIC_BRANDS for b in brands):
        return "AVIF" if name.lower().endswith(".avif") else "HEIF"
    return None  # e.g. an MP4 or QuickTime video (`isom`, `qt  `)
