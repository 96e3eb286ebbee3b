"""The perceptual hash: the same photo resized, re-encoded or slightly cropped stays within the
near-duplicate distance; unrelated photos of the corpus stay beyond it. Each hash is made from
the thumbnail the stage makes, as in production."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from helpers import FIXTURES
from PIL import Image

from imgproc_shared.duplicates import hamming, parse_phash
from imgproc_shared.settings import Settings
from imgproc_thumbnailer.phash import SIDE, phash, phash_of_encoded, phash_of_pixels
from imgproc_thumbnailer.renditions import RenditionSpec, render

# The shipped default (IMGPROC_NEAR_DUPLICATE_DISTANCE).
DISTANCE: int = Settings.model_fields["near_duplicate_distance"].default
PHOTOS = [
    *sorted((FIXTURES / "labelled").glob("*.jpg"))[::4],
    FIXTURES / "tagger" / "cat_chelsea.jpg",
]


def _thumbnail_hash(data: bytes) -> int:
    rendered = render(data, [RenditionSpec("thumbnail", 256), RenditionSpec("preview", 1280)])
    thumbnail = next(r for r in rendered.renditions if r.name == "thumbnail")
    value = parse_phash(phash_of_encoded(thumbnail.data))
    assert value is not None
    return value


def _jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: Path(p).stem)
def test_copies_are_within_the_distance(path: Path) -> None:
    data = path.read_bytes()
    image = Image.open(io.BytesIO(data)).convert("RGB")
    width, height = image.size
    dx, dy = width // 50, height // 50  # 2% off each side
    copies = {
        "half size": _jpeg(image.resize((width // 2, height // 2), Image.Resampling.LANCZOS)),
        "quality 30": _jpeg(image, quality=30),
        "cropped 2%": _jpeg(image.crop((dx, dy, width - dx, height - dy))),
    }
    original = _thumbnail_hash(data)
    for name, copy in copies.items():
        assert hamming(original, _thumbnail_hash(copy)) <= DISTANCE, name


def test_unrelated_photos_are_beyond_the_distance() -> None:
    hashes = {p.name: _thumbnail_hash(p.read_bytes()) for p in PHOTOS}
    closest = min(hamming(a, b) for a, b in itertools.combinations(hashes.values(), 2))
    assert closest > DISTANCE


def test_hash_is_64_bits_in_16_hex_digits_and_stable() -> None:
    image = Image.open(PHOTOS[0])
    first = phash_of_encoded(_jpeg(image.convert("RGB")))
    assert first is not None and len(first) == 16 and int(first, 16) < 2**64
    assert phash_of_encoded(_jpeg(image.convert("RGB"))) == first
    assert phash_of_encoded(b"not an image") is None
    with pytest.raises(ValueError):
        phash_of_pixels(Image.new("L", (SIDE + 1, SIDE)))


def test_the_hash_splits_the_low_frequencies_at_their_median() -> None:
    # A left-to-right ramp: the lowest horizontal frequencies dominate, and about half the
    # 64 coefficients are above the median.
    ramp = Image.linear_gradient("L").rotate(90).resize((SIDE, SIDE))
    bits = phash(ramp).bit_count()
    assert 28 <= bits <= 32
    assert phash(ramp) != phash(ramp.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
