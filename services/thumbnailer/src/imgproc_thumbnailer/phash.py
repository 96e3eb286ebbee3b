"""A 64-bit perceptual hash (DCT pHash) of a photo, made from its thumbnail.

The thumbnail is already upright, sRGB and small (256 px), so decoding it again costs about a
millisecond and the hash sees what a person sees. The method is `imagehash.phash`'s: grey,
32×32, the lowest 8×8 frequencies of a 2-D DCT-II, one bit per coefficient above their median.
Only those 8×8 of the 32×32 coefficients are computed (10k multiply-adds in plain Python, ~2 ms),
so the stage needs neither numpy nor scipy.
"""

from __future__ import annotations

import io
import math
from statistics import median

from PIL import Image

SIDE = 32  # the image is reduced to SIDE×SIDE grey pixels
LOW = 8  # LOW×LOW lowest frequencies make the 64 bits
HASH_HEX_DIGITS = LOW * LOW // 4

# DCT-II basis rows for the LOW lowest frequencies over SIDE samples, unnormalised like scipy's
# default DCT that imagehash uses: a factor common to every coefficient changes no comparison.
_BASIS: tuple[tuple[float, ...], ...] = tuple(
    tuple(math.cos(math.pi * k * (2 * n + 1) / (2 * SIDE)) for n in range(SIDE)) for k in range(LOW)
)


def phash_of_pixels(grey: Image.Image) -> int:
    """The 64-bit hash of an image already reduced to SIDE×SIDE grey ("L") pixels."""
    if grey.size != (SIDE, SIDE) or grey.mode != "L":
        raise ValueError(f"expected a {SIDE}x{SIDE} L image, got {grey.size} {grey.mode}")
    data = grey.tobytes()
    rows = [data[r * SIDE : (r + 1) * SIDE] for r in range(SIDE)]
    # Transform the rows (LOW frequencies each), then the columns of that (LOW frequencies).
    row_freqs = [
        [sum(b * p for b, p in zip(basis, row, strict=True)) for basis in _BASIS] for row in rows
    ]
    coefficients = [
        sum(_BASIS[v][r] * row_freqs[r][u] for r in range(SIDE))
        for v in range(LOW)
        for u in range(LOW)
    ]
    middle = median(coefficients)
    value = 0
    for coefficient in coefficients:
        value = (value << 1) | (coefficient > middle)
    return value


def phash(image: Image.Image) -> int:
    """The 64-bit perceptual hash of any Pillow image."""
    grey = image.convert("L") if image.mode != "L" else image
    return phash_of_pixels(grey.resize((SIDE, SIDE), Image.Resampling.LANCZOS))


def phash_hex(image: Image.Image) -> str:
    """The hash as 16 hex digits (JSON numbers lose bits above 2^53 in browsers)."""
    return f"{phash(image):0{HASH_HEX_DIGITS}x}"


def phash_of_encoded(data: bytes) -> str | None:
    """The hash of an encoded rendition (JPEG or WebP, as the thumbnailer wrote it); None when
    it cannot be decoded, which never fails the stage: the hash only serves grouping."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("L", (SIDE * 2, SIDE * 2))
            return phash_hex(image)
    except (OSError, ValueError, SyntaxError):
        return None
