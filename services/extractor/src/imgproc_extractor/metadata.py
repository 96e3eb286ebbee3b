"""From the bytes read of an object to what the extractor reports, without decoding pixels.

The handler reads as little of a large object as it can: its head (all JPEG/PNG headers fit in
it) and a small tail (where the end-of-image marker, `IEND` and a late PNG `eXIf` sit). Whatever
cannot be decided from those raises `NeedWholeObject`, and the handler reads it all.

Order of checks: empty → container and header structure → pixel limit (from the header, before
Pillow ever sees the frame) → truncation → Pillow's header parse → EXIF.

HEIF/HEIC, AVIF and WebP are judged the same way from their box or chunk headers; their EXIF
sits behind the image data or at an item location anywhere in the file, so once the head has
passed the pixel limit they are read whole. Opening them never decodes pixels: pillow-heif and
Pillow's AVIF and WebP plugins parse the container on open and decode only on `load`.

Orientation: libheif applies a HEIF's `irot`/`imir` transforms when it decodes, reports the
upright size and sets the EXIF orientation it hands over to 1, so a HEIF's pixels arrive upright
(orientation 1) wherever they are decoded. Pillow's AVIF plugin does the opposite: it decodes
the stored pixels and turns `irot`/`imir` into the EXIF orientation, which is applied as for a
JPEG. Either way the orientation reported is the one the thumbnailer and tagger apply.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from PIL import ExifTags, Image, UnidentifiedImageError

from imgproc_extractor import isobmff, jpeg, png, webp
from imgproc_extractor.content import Container, container, looks_like
from imgproc_extractor.exif import ExifFields, extract_fields, load_exif, xmp_orientation
from imgproc_shared.errors import CorruptImage, TooLarge
from imgproc_shared.models import Exif

# Errors Pillow raises for a file it cannot parse (docs/FACTS.md, "Pillow": UnidentifiedImageError,
# OSError for truncation, SyntaxError, ValueError), plus what its plugins leak on odd input.
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, IndexError, TypeError, EOFError, KeyError)


class NeedWholeObject(Exception):
    """The bytes read so far cannot decide; read the whole object and describe it again."""


@dataclass(frozen=True)
class ObjectBytes:
    """What was read of an object: its head and its tail, or (`complete`) all of it."""

    size: int
    head: bytes
    tail: bytes
    complete: bool

    @classmethod
    def whole(cls, data: bytes) -> ObjectBytes:
        return cls(size=len(data), head=data, tail=data, complete=True)


@dataclass(frozen=True)
class ImageFacts:
    """Everything the extractor reports except the object's size and hash."""

    format: str
    width: int
    height: int
    mode: str
    fields: ExifFields = field(default_factory=lambda: ExifFields(Exif(), None, None))


def describe(sample: ObjectBytes, max_pixels: int) -> ImageFacts:
    """Identify and check an image and read its metadata.

    Raises `CorruptImage` / `TooLarge` with a cause a person can read, or `NeedWholeObject`.
    """
    if sample.size == 0:
        raise CorruptImage("the file is empty")
    kind = container(sample.head)
    if kind is Container.JPEG:
        return _describe_jpeg(sample, max_pixels)
    if kind is Container.PNG:
        return _describe_png(sample, max_pixels)
    if kind in (Container.HEIF, Container.AVIF):
        return _describe_heif(sample, max_pixels, kind.value)
    if kind is Container.WEBP:
        return _describe_webp(sample, max_pixels)
    return _describe_other(sample, max_pixels)


def _describe_jpeg(sample: ObjectBytes, max_pixels: int) -> ImageFacts:
    try:
        layout = jpeg.read_layout(sample.head)
    except jpeg.HeaderIncomplete:
        if not sample.complete:
            raise NeedWholeObject from None
        raise CorruptImage("the JPEG is truncated (it ends inside its header)") from None
    except jpeg.HeaderCorrupt as exc:
        raise CorruptImage(str(exc)) from None
    if layout.width is not None and layout.height is not None:
        _check_pixels(layout.width, layout.height, max_pixels)
    if not jpeg.ends_with_eoi(sample.tail):
        if not sample.complete:
            raise NeedWholeObject  # data after the image, or truncation: only all of it tells
        if not jpeg.has_eoi_after(sample.head, layout.header_end):
            raise CorruptImage("the JPEG is truncated (its image data stops before the end)")
    with _open(sample.head, "JPEG", ("JPEG",)) as im:
        _check_pixels(*im.size, max_pixels)
        fields = _fields(im.info.get("exif"), im.info.get("xmp"))
        return ImageFacts(im.format or "JPEG", im.width, im.height, im.mode, fields)


def _describe_png(sample: ObjectBytes, max_pixels: int) -> ImageFacts:
    try:
        layout = png.read_layout(sample.head)
    except png.HeaderIncomplete:
        if not sample.complete:
            raise NeedWholeObject from None
        raise CorruptImage("the PNG is truncated (it ends inside its header)") from None
    except png.HeaderCorrupt as exc:
        raise CorruptImage(str(exc)) from None
    _check_pixels(layout.width, layout.height, max_pixels)
    if sample.complete:
        try:
            tail = png.read_tail_of_complete_file(sample.head, layout.image_data_start)
        except png.HeaderCorrupt as exc:  # a text-chunk bomb after the image data
            raise CorruptImage(str(exc)) from None
    else:
        tail = png.read_tail_window(sample.tail)
    if not tail.complete:
        if not sample.complete:
            raise NeedWholeObject
        raise CorruptImage("the PNG is truncated (its image data stops before the end)")
    with _open(sample.head, "PNG", ("PNG",)) as im:
        raw_exif = layout.exif or tail.exif or _raw_profile_exif(im.info)
        fields = _fields(raw_exif, im.info.get("XML:com.adobe.xmp") or im.info.get("xmp"))
        return ImageFacts(im.format or "PNG", im.width, im.height, im.mode, fields)


def _describe_heif(sample: ObjectBytes, max_pixels: int, fmt: str) -> ImageFacts:
    """HEIF/HEIC (pillow-heif) or AVIF (Pillow): sizes from `meta` before either library parses."""
    try:
        layout = isobmff.read_layout(sample.head, sample.size)
    except isobmff.HeaderIncomplete:
        if not sample.complete:
            raise NeedWholeObject from None
        raise CorruptImage(f"the {fmt} is truncated (it ends inside its header)") from None
    except isobmff.Truncated as exc:
        raise CorruptImage(f"the {fmt} is truncated ({exc})") from None
    except isobmff.HeaderCorrupt as exc:
        raise CorruptImage(f"the {fmt} header is broken ({exc})") from None
    for width, height in layout.sizes:
        _check_pixels(width, height, max_pixels)
    fmt = layout.coded_as(fmt)
    if not sample.complete:
        raise NeedWholeObject  # the EXIF item may be anywhere; libheif reads it from the file
    try:
        isobmff.check_complete(sample.head)
    except isobmff.Truncated as exc:
        raise CorruptImage(f"the {fmt} is truncated ({exc})") from None
    except isobmff.HeaderCorrupt as exc:
        raise CorruptImage(f"the {fmt} header is broken ({exc})") from None
    with _open(sample.head, fmt, (fmt,)) as im:
        _check_pixels(*im.size, max_pixels)
        fields = _fields(im.info.get("exif"), im.info.get("xmp"))
        return ImageFacts(im.format or fmt, im.width, im.height, im.mode, fields)


def _describe_webp(sample: ObjectBytes, max_pixels: int) -> ImageFacts:
    try:
        layout = webp.read_layout(sample.head)
    except webp.HeaderIncomplete:
        raise CorruptImage("the WebP is truncated (it ends inside its header)") from None
    except webp.HeaderCorrupt as exc:
        raise CorruptImage(str(exc)) from None
    _check_pixels(layout.width, layout.height, max_pixels)
    if sample.size < layout.declared_size:
        raise CorruptImage(
            f"the WebP is truncated (it is {sample.size:,} bytes; "
            f"its header says {layout.declared_size:,})"
        )
    if not sample.complete:
        raise NeedWholeObject  # Pillow parses the whole file; EXIF comes after the image data
    with _open(sample.head, "WebP", ("WEBP",)) as im:
        _check_pixels(*im.size, max_pixels)
        fields = _fields(im.info.get("exif"), im.info.get("xmp"))
        return ImageFacts(im.format or "WEBP", im.width, im.height, im.mode, fields)


def _describe_other(sample: ObjectBytes, max_pixels: int) -> ImageFacts:
    """Not JPEG or PNG: say what it is (so Validate can reject it by name) or what it looks like."""
    try:
        opened = _open(sample.head, "image", None)
    except CorruptImage:
        # Formats such as TIFF keep their directory anywhere in the file.
        if not sample.complete:
            raise NeedWholeObject from None
        raise
    with opened as im:
        _check_pixels(*im.size, max_pixels)
        return ImageFacts(im.format or "UNKNOWN", im.width, im.height, im.mode)


def _open(data: bytes, what: str, formats: tuple[str, ...] | None) -> Image.Image:
    """Pillow's header parse, with its decompression-bomb warning turned into `TooLarge`.

    `catch_warnings` is process-wide, so threads may see each other's filters; the pixel limit
    itself never depends on it: `_check_pixels` enforces it from the header sizes.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data), formats=formats)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise TooLarge(f"the image has too many pixels to decode safely ({exc})") from None
        except UnidentifiedImageError:
            if formats is None:
                raise CorruptImage(
                    f"the file is not an image (looks like {looks_like(data)})"
                ) from None
            raise CorruptImage(f"the {what} header is broken") from None
        except _PILLOW_ERRORS as exc:
            raise CorruptImage(f"the {what} header is broken ({exc})") from None
    return im


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width <= 0 or height <= 0:
        raise CorruptImage(f"the image has no pixels ({width}×{height})")
    pixels = width * height
    if pixels > max_pixels:
        raise TooLarge(
            f"the image is {width}×{height} ({pixels / 1e6:.1f} megapixels); "
            f"the limit is {max_pixels / 1e6:g} megapixels"
        )


def _fields(raw_exif: bytes | None, xmp: bytes | str | None) -> ExifFields:
    exif = load_exif(raw_exif)
    if ExifTags.Base.Orientation not in exif:
        orientation = xmp_orientation(xmp)
        if orientation is not None:
            exif[ExifTags.Base.Orientation] = orientation
    return extract_fields(exif)


def _raw_profile_exif(info: Mapping[Any, Any]) -> bytes | None:
    """EXIF that ImageMagick stores as hex in a `Raw profile type exif` text chunk."""
    for key in ("Raw profile type exif", "Raw profile type APP1"):
        text = info.get(key)
        if isinstance(text, str):
            try:
                # "\n<name>\n<length>\n<hex lines...>"
                return bytes.fromhex("".join(text.split("\n")[3:]))
            except ValueError:
                return None
    return None
