"""From the bytes of one photo to its renditions and placeholder, decoding it once.

The fast path for JPEG/MPO: the decoder scales by 1/2, 1/4 or 1/8 while it decodes (`draft`),
so a 20 MP photo never exists at full size in memory. One decode makes the largest rendition;
each smaller one is resampled from the one before, and the EXIF orientation is applied to the
first small result, never to the full image.

Resampling runs on SIMD (`simd_resample`) where its wheel is installed (x86_64) and agrees with
this Pillow; the Pillow filters and reducing gaps below are what every other machine uses.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageFile

from imgproc_shared.errors import CorruptImage, TooLarge
from imgproc_thumbnailer import simd_resample
from imgproc_thumbnailer.colour import flatten, to_srgb, working_mode
from imgproc_thumbnailer.orientation import read_orientation, upright
from imgproc_thumbnailer.thumbhash import encode_placeholder

OutputFormat = Literal["JPEG", "WEBP"]

CONTENT_TYPES: dict[str, str] = {"JPEG": "image/jpeg", "WEBP": "image/webp"}
EXTENSIONS: dict[str, str] = {"JPEG": "jpg", "WEBP": "webp"}

# Decode-time scaling keeps at least this factor above the smallest rendition, so the
# final resample (not the decoder's DCT scaling) decides its sharpness. The largest rendition
# (the 1280 px preview) only needs the decode to cover it: measured on the corpus' 18-20 MP
# photos, a 1/4-scale decode gives a preview within 0.1-1.1 dB PSNR of a full-decode Lanczos
# reference once both are JPEG q80 encoded, at half the cost of the 1/2-scale decode.
DRAFT_MARGIN = 2
# From the decoded image to the largest rendition: a whole-factor box `reduce` to no less than
# the target (what draft does for JPEG, done for PNG), then a filter over the remaining <2x.
# Measured on the corpus: bicubic is within 0.1 dB PSNR of a full Lanczos once JPEG q80 encoded,
# and 5x cheaper on a 14.7 MP PNG (20 ms instead of 105 ms).
FIRST_RESAMPLE = Image.Resampling.BICUBIC
FIRST_REDUCING_GAP = 1.0
# Where 1.5-2x is left (a 2400 px JPEG, which no draft scale can shrink; a 4000 px one decoded
# at 1/2) Hamming costs ~38% less than bicubic (2400x1600 -> 1280: 30 ms instead of 50; 2000x1500
# -> 1280: 29 instead of 46) and, on real detail, loses 0.31 dB PSNR on average (0.10-0.64; 30
# cases: the corpus re-saved at 1920-4800 px) against a full-decode Lanczos once both are JPEG
# q80 encoded; bilinear, as cheap, loses 0.74 (up to 1.45) and looks softer. Below 1.5x Hamming
# loses 0.60 (up to 1.28), so bicubic stays there (the 1/4-decoded 18-20 MP photos: ~1.18x).
WIDE_RESAMPLE = Image.Resampling.HAMMING
WIDE_RATIO = 1.5
# libjpeg's 3/8 scale (see `draft`) takes the photos whose 1/4 decode falls just short of the
# preview: 1.0-1.33x is left. Its DCT scaling already band-limits the decode, so Hamming is
# enough there: on 4096 px squares and 4032x3024 photos (resampled real photos and smooth noise)
# a 3/8 decode with Hamming is -0.3 to +0.6 dB PSNR from the 1/2 decode with Hamming it replaces,
# against a full-decode Lanczos once both are JPEG q80 encoded, at 2/3 of the resample's cost
# (4096 px square: 15.5 ms instead of 22.6); bicubic after it would cost as much as before.
THREE_EIGHTHS = 3
# Between renditions (1280 -> 256): a box reduce to no less than 1.5x the target (1280 -> 427),
# then Lanczos. Measured on the corpus against a full-decode Lanczos 256, after q80 encoding:
# 0.00-0.16 dB below a 2.0 gap (1280 -> 640 -> 256), at 2/3 of its cost (3.2-4.8 ms, not 5-7.7).
RESAMPLE = Image.Resampling.LANCZOS
REDUCING_GAP = 1.5

# The SIMD path: Lanczos3 for every step, except Catmull-Rom after a 3/8-scale decode. Measured
# against a full-decode Lanczos once JPEG q80 encoded, on `bench.thumbnails`' 14 photos (corpus,
# shapes, stand-ins, the load test's 2000x1500): where a first resample is left, previews gain
# +0.7 to +9.3 dB over the Pillow filters above (the 3/8 square and portrait +2.7, Catmull-Rom
# there within 0.2 dB of Lanczos3 and 1 ms cheaper) and lose 0.2-0.3 on the two 20 MP stand-ins;
# thumbnails gain +0.1 to +5.8 (Lanczos3 straight from the preview, no box reduce). Time, one
# core: a 4096 px square's whole path 74 -> 65 ms, the load test's 2000x1500 JPEG 38.5 -> 29.1.
SIMD_KERNEL = simd_resample.Kernel.LANCZOS

_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass(frozen=True)
class RenditionSpec:
    """One rendition the client needs: a name and the most pixels its long edge may have."""

    name: str
    long_edge: int


@dataclass(frozen=True)
class EncodedRendition:
    name: str
    data: bytes
    width: int
    height: int
    format: OutputFormat
    content_type: str
    extension: str


@dataclass(frozen=True)
class RenderedImage:
    """Everything one decode produces: renditions (largest first) and the placeholder."""

    renditions: list[EncodedRendition]
    placeholder: str
    source_format: str
    orientation: int


def fit_within(width: int, height: int, long_edge: int) -> tuple[int, int]:
    """The size that fits a width x height image into a long_edge square; never larger."""
    longest = max(width, height)
    if longest <= long_edge:
        return width, height
    scale = long_edge / longest
    if width >= height:
        return long_edge, max(1, round(height * scale))
    return max(1, round(width * scale)), long_edge


def _open(data: bytes, max_pixels: int | None) -> ImageFile.ImageFile:
    try:
        with warnings.catch_warnings():
            # Our own limit (checked below) decides; Pillow's bomb warning is noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise TooLarge(f"image is too large to decode: {exc}") from exc
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"not a readable image: {exc}") from exc
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise TooLarge(f"{width}x{height} is over the limit of {max_pixels} pixels")
    return image


def draft(image: ImageFile.ImageFile, size: tuple[int, int]) -> None:
    """Set a JPEG/MPO to decode at the smallest scale that still covers size (before `load`):
    1/8, 1/4, 3/8 or 1/2; other formats decode at full size, as they are."""
    if image.format not in ("JPEG", "MPO"):
        return
    width, height = image.size
    image.draft("RGB" if image.mode == "RGB" else None, size)
    scale = image.decoderconfig[0] if image.decoderconfig else 1
    if scale == 2 and image.tile:
        scale = _three_eighths_if_it_covers(image, width, height, size)
    if scale > 1:
        # Pillow's "draft" decoder flag: libjpeg's merged upsampler (chroma replicated while
        # converting to RGB) instead of its smoothing one. Its fast-DCT half has no effect here,
        # as scaled decodes use libjpeg's own reduced IDCTs whatever the method. The resample
        # after the decode smooths the chroma anyway: measured on the corpus photos, the
        # renditions keep the same PSNR against a full-decode Lanczos (-0.08 to +0.46 dB) for
        # 2-15 ms less per 18-20 MP photo. Full-scale decodes keep the exact path.
        image.decoderconfig = (scale, 1)


def _three_eighths_if_it_covers(
    image: ImageFile.ImageFile, width: int, height: int, size: tuple[int, int]
) -> int:
    """Pillow's draft only asks for 1/2, 1/4 and 1/8, but libjpeg also scales by 3/8: it rounds
    a 1/3 request up to 3/8, making ceil(3n/8) pixels of n. Where that still covers size (a
    4096 px square, a 4032x3024 phone photo for a 1280 preview), decode at 3/8 instead of 1/2:
    the same decode time, and the resample after it reads 44% fewer pixels. Returns the scale
    the decoder is given."""
    scaled = (-(-3 * width // 8), -(-3 * height // 8))
    if scaled[0] < size[0] or scaled[1] < size[1]:
        return 2
    decoder, _, offset, args = image.tile[0]
    # The image's size and tile must be libjpeg's output size exactly: Pillow allocates the
    # scanline buffer from them.
    image.tile = [ImageFile._Tile(decoder, (0, 0, *scaled), offset, args)]
    image._size = scaled
    return THREE_EIGHTHS


def decode_for(
    data: bytes, long_edge: int, *, smallest_edge: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """The first frame of an image, decoded no larger than a long_edge rendition needs.

    JPEG/MPO decode at the smallest 1/2^k scale that still covers long_edge and leaves
    DRAFT_MARGIN above smallest_edge; other formats decode at full size.
    """
    image = _open(data, max_pixels)
    need = max(long_edge, DRAFT_MARGIN * (smallest_edge or long_edge))
    draft(image, fit_within(image.width, image.height, need))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
    except _DECODE_ERRORS as exc:
        raise CorruptImage(f"image data is damaged or truncated: {exc}") from exc
    return image


def first_filter(
    source: tuple[int, int], size: tuple[int, int], *, three_eighths: bool = False
) -> Image.Resampling:
    """The filter for the first resample: what is left after the whole-factor reduce decides
    (`three_eighths`: the source is a 3/8-scale JPEG decode)."""
    if three_eighths:
        return WIDE_RESAMPLE
    ratio = max(source[0] / size[0], source[1] / size[1])
    left = ratio / max(1, int(ratio / FIRST_REDUCING_GAP))
    return WIDE_RESAMPLE if left >= WIDE_RATIO else FIRST_RESAMPLE


def decoded_at_three_eighths(image: Image.Image) -> bool:
    """Whether `draft` set this JPEG to decode at libjpeg's 3/8 scale."""
    config: tuple[int, ...] = getattr(image, "decoderconfig", ())
    return bool(config) and config[0] == THREE_EIGHTHS


def resample(
    image: Image.Image, size: tuple[int, int], *, first: bool = False, three_eighths: bool = False
) -> Image.Image:
    """The image at size (`first`: straight from the decoder, `three_eighths` at that scale);
    itself when already that size."""
    if image.size == size:
        return image
    simd = simd_resample.resize(
        image, size, simd_resample.Kernel.BICUBIC if three_eighths else SIMD_KERNEL
    )
    if simd is not None:
        return simd
    if first:
        resample_filter = first_filter(image.size, size, three_eighths=three_eighths)
        return image.resize(size, resample_filter, reducing_gap=FIRST_REDUCING_GAP)
    return image.resize(size, RESAMPLE, reducing_gap=REDUCING_GAP)


def encode(image: Image.Image, output_format: OutputFormat, quality: int) -> bytes:
    """Encode without any metadata: no EXIF, GPS, XMP or ICC leaves with a rendition."""
    out = image if output_format == "WEBP" else flatten(image)
    if out.info:
        # Pillow copies `info` through resize/convert and some writers fall back to it (the
        # JPEG comment, WebP's background); the caller's image keeps its own.
        out = out.copy() if out is image else out
        out.info = {}
    buffer = io.BytesIO()
    if output_format == "JPEG":
        out.save(buffer, "JPEG", quality=quality)
    else:
        out.save(buffer, "WEBP", quality=quality)
    return buffer.getvalue()


def render(
    data: bytes,
    specs: Sequence[RenditionSpec],
    *,
    output_format: OutputFormat = "JPEG",
    quality: int = 80,
    orientation: int | None = None,
    max_pixels: int | None = None,
) -> RenderedImage:
    """Decode once and produce every rendition (largest first) and the ThumbHash placeholder.

    `orientation` is the EXIF orientation the extractor read; None reads it from the file.
    Raises CorruptImage or TooLarge for files that cannot be made into renditions.
    """
    if not specs:
        raise ValueError("at least one rendition is needed")
    ordered = sorted(specs, key=lambda spec: spec.long_edge, reverse=True)
    image = decode_for(
        data, ordered[0].long_edge, smallest_edge=ordered[-1].long_edge, max_pixels=max_pixels
    )
    source_format = image.format or "UNKNOWN"
    if orientation is None or not 1 <= orientation <= 8:
        orientation = read_orientation(image)
    icc = image.info.get("icc_profile")

    current = working_mode(image)
    largest = fit_within(current.width, current.height, ordered[0].long_edge)
    current = resample(current, largest, first=True, three_eighths=decoded_at_three_eighths(image))
    # Colour and orientation on the small image: both cost in proportion to the pixels.
    current = upright(to_srgb(current, icc if isinstance(icc, bytes) else None), orientation)
    # The colours are settled (transparency was read from `info`): drop the source's metadata
    # here, on an image this call owns, so the renditions resampled from it (each copies
    # `info`) leave `encode` nothing to strip and no copy to make.
    current.info = {}

    renditions: list[EncodedRendition] = []
    for spec in ordered:
        current = resample(current, fit_within(current.width, current.height, spec.long_edge))
        renditions.append(
            EncodedRendition(
                name=spec.name,
                data=encode(current, output_format, quality),
                width=current.width,
                height=current.height,
                format=output_format,
                content_type=CONTENT_TYPES[output_format],
                extension=EXTENSIONS[output_format],
            )
        )
    shown = current if output_format == "WEBP" else flatten(current)
    return RenderedImage(renditions, encode_placeholder(shown), source_format, orientation)
