"""Renditions of HEIC/HEIF, AVIF and WebP: upright whatever their transforms or EXIF say, in
sRGB from a Display P3 profile, alpha composited, the first frame of an animation, and hostile
versions refused before a decode."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageCms

from imgproc_extractor.metadata import ObjectBytes, describe
from imgproc_shared.errors import CorruptImage, TooLarge
from imgproc_shared.models import ImageMetadata
from imgproc_thumbnailer.handler import orientation_from
from imgproc_thumbnailer.renditions import RenderedImage, RenditionSpec, render

from phone_photos import (
    BLUE,
    FORMATS,
    RED,
    display_p3_icc,
    photo,
    webp_with_canvas,
    with_ispe,
)

SPECS = (RenditionSpec("thumbnail", 64), RenditionSpec("preview", 200))
WHITE = (255, 255, 255)
# Lossy encoders (HEVC, AV1, the JPEG renditions) move a flat colour by a few levels.
TOLERANCE = 12


def _reported_orientation(data: bytes) -> int | None:
    """The orientation the thumbnailer is given: the one the extractor reported."""
    facts = describe(ObjectBytes.whole(data), 100_000_000)
    metadata = ImageMetadata(
        format="JPEG", width=1, height=1, mode="RGB", bytes=1, sha256="0", exif=facts.fields.exif
    )
    return orientation_from(metadata)


def _preview(rendered: RenderedImage) -> Image.Image:
    rendition = next(r for r in rendered.renditions if r.name == "preview")
    return Image.open(io.BytesIO(rendition.data)).convert("RGB")


def _near(got: tuple[int, ...], want: tuple[int, ...], tolerance: int = TOLERANCE) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(got, want, strict=True))


def _quadrants(image: Image.Image) -> tuple[tuple[int, ...], ...]:
    """The colour at the centre of each quadrant: top-left, top-right, bottom-left, -right."""
    w, h = image.size
    points = (
        (w // 4, h // 4),
        (3 * w // 4, h // 4),
        (w // 4, 3 * h // 4),
        (3 * w // 4, 3 * h // 4),
    )
    return tuple(tuple(image.getpixel(p)) for p in points)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("orientation", [None, 1, 2, 3, 4, 5, 6, 7, 8])
@pytest.mark.parametrize("told", [True, False], ids=["reported", "read-from-file"])
def test_renditions_come_out_upright(fmt: str, orientation: int | None, told: bool) -> None:
    """Upright (red top-left, 300x200) for every orientation, whether the thumbnailer is given
    the extractor's orientation or reads it from the file."""
    data = photo(fmt, size=(300, 200), orientation=orientation)
    rendered = render(data, SPECS, orientation=_reported_orientation(data) if told else None)
    preview = _preview(rendered)
    assert preview.size == (200, 133)
    top_left, top_right, bottom_left, bottom_right = _quadrants(preview)
    assert _near(top_left, RED), top_left
    for other in (top_right, bottom_left, bottom_right):
        assert _near(other, BLUE), other


@pytest.mark.parametrize("fmt", FORMATS)
def test_display_p3_is_converted_to_srgb(fmt: str) -> None:
    p3 = display_p3_icc()
    colour = (200, 120, 40)
    data = photo(fmt, size=(300, 200), icc=p3, colour=colour)
    assert Image.open(io.BytesIO(data)).info.get("icc_profile") == p3
    transform = ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(p3)),
        ImageCms.createProfile("sRGB"),
        "RGB",
        "RGB",
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
    )
    converted = ImageCms.applyTransform(Image.new("RGB", (1, 1), colour), transform)
    assert converted is not None
    want = converted.getpixel((0, 0))
    assert isinstance(want, tuple)
    assert not _near(want, colour, 15)  # P3 orange is more saturated than the same sRGB numbers
    top_left = _quadrants(_preview(render(data, SPECS)))[0]
    assert _near(top_left, want, 6), (top_left, want, colour)


@pytest.mark.parametrize("fmt", FORMATS)
def test_alpha_is_composited_over_white(fmt: str) -> None:
    data = photo(fmt, size=(300, 200), alpha=True)
    assert Image.open(io.BytesIO(data)).mode == "RGBA"
    *_, bottom_right = _quadrants(_preview(render(data, SPECS)))
    assert _near(bottom_right, WHITE), bottom_right
    webp = render(data, SPECS, output_format="WEBP").renditions[0]
    assert Image.open(io.BytesIO(webp.data)).mode == "RGBA"  # WebP renditions keep it


@pytest.mark.parametrize("fmt", ["WEBP", "AVIF"])
def test_animation_renders_its_first_frame(fmt: str) -> None:
    data = photo(fmt, size=(300, 200), frames=3)  # later frames are green
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) > 1  # WebP merges equal frames
    top_left, top_right, *_ = _quadrants(_preview(render(data, SPECS)))
    assert _near(top_left, RED) and _near(top_right, BLUE), (top_left, top_right)


@pytest.mark.parametrize("fmt", FORMATS)
def test_pixel_bombs_are_refused_before_a_decode(fmt: str) -> None:
    """144 MP declared: over the limit, within what libheif, libavif and libwebp would decode."""
    small = photo(fmt, size=(96, 64), alpha=fmt == "WEBP")
    bomb = (
        webp_with_canvas(small, 12000, 12000) if fmt == "WEBP" else with_ispe(small, 12000, 12000)
    )
    if fmt == "WEBP":
        # libwebp itself refuses a still image whose canvas and frame sizes differ.
        with pytest.raises(CorruptImage, match="not a readable image"):
            render(bomb, SPECS, max_pixels=100_000_000)
        return
    with pytest.raises(TooLarge, match="12000x12000"):
        render(bomb, SPECS, max_pixels=100_000_000)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_files_are_corrupt(fmt: str) -> None:
    data = photo(fmt, size=(300, 200))
    with pytest.raises(CorruptImage):
        render(data[: len(data) * 2 // 3], SPECS)
