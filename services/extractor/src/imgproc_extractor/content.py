"""What a file is, judged by its first bytes and never by its name.

JPEG, PNG, HEIF/HEIC, AVIF and WebP (the formats the workflow can process) are recognised here
by their signatures (`ftyp` brands, `RIFF....WEBP`) and checked in depth; anything else is left
to Pillow to identify, so a GIF, BMP or TIFF is reported as what it is and the workflow's
Validate rejects it. When nothing can read the file, `looks_like` says in words what it seems
to be, for the rejection a person reads.
"""

from __future__ import annotations

from enum import StrEnum

from imgproc_extractor import isobmff, jpeg, png, webp


class Container(StrEnum):
    JPEG = "JPEG"  # JPEG or MPO (a JPEG carrying more pictures)
    PNG = "PNG"
    HEIF = "HEIF"  # HEIC (HEVC) and other HEIF images
    AVIF = "AVIF"
    WEBP = "WEBP"
    OTHER = "OTHER"


def container(head: bytes) -> Container:
    """The container by its signature."""
    if head.startswith(jpeg.SIGNATURE):
        return Container.JPEG
    if head.startswith(png.SIGNATURE):
        return Container.PNG
    if webp.is_webp(head):
        return Container.WEBP
    found = isobmff.brands(head)
    if isobmff.is_avif(found):
        return Container.AVIF
    if isobmff.is_heif(found):
        return Container.HEIF
    return Container.OTHER


# (prefix, offset, what it looks like) for common files that are not images Pillow can read.
_SIGNATURES: tuple[tuple[bytes, int, str], ...] = (
    (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"PK\x05\x06", 0, "an empty ZIP archive"),
    (b"%PDF-", 0, "a PDF document"),
    (b"\x1f\x8b", 0, "a gzip archive"),
    (b"Rar!\x1a\x07", 0, "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"\x7fELF", 0, "a Linux executable"),
    (b"MZ", 0, "a Windows executable"),
    (b"ID3", 0, "an MP3 audio file"),
    (b"OggS", 0, "an Ogg media file"),
    (b"\x1a\x45\xdf\xa3", 0, "a Matroska/WebM video"),
    (b"8BPS", 0, "a Photoshop document"),
)
_VIDEO_BRANDS = (b"isom", b"iso2", b"mp41", b"mp42", b"avc1", b"M4V ", b"qt  ", b"3gp4", b"3gp5")


def looks_like(head: bytes) -> str:
    """A short phrase for what a file that is not a readable image seems to be."""
    for prefix, offset, what in _SIGNATURES:
        if head[offset:].startswith(prefix):
            return what
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in isobmff.HEIF_BRANDS | isobmff.AVIF_BRANDS:
            return "a HEIF/AVIF image"
        if brand in _VIDEO_BRANDS:
            return "an MP4/QuickTime video"
        return "an ISO media file"
    text = _as_text(head[:4096])
    if text is None:
        return "unrecognised binary data"
    lowered = text.lstrip("\ufeff \t\r\n").lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<html" in lowered[:512]:
        return "HTML"
    if lowered.startswith("<svg") or "<svg" in lowered[:1024]:
        return "an SVG drawing, which is not supported"
    if lowered.startswith("<?xml"):
        return "XML"
    if lowered.startswith(("{", "[")):
        return "JSON or other text"
    return "text"


def _as_text(sample: bytes) -> str | None:
    """The sample as text when it is (nearly) all printable UTF-8, else None."""
    if not sample or b"\x00" in sample:
        return None
    # A multi-byte character may be cut at the end of the sample: allow up to 3 bytes of it.
    for cut in range(4):
        try:
            text = sample[: len(sample) - cut].decode("utf-8")
            break
        except UnicodeDecodeError:
            continue
    else:
        return None
    printable = sum(ch.isprintable() or ch in "\t\r\n\f" for ch in text)
    return text if printable >= 0.95 * len(text) else None
