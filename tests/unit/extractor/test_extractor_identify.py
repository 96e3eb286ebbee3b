"""Identification by content, limits and truncation, decided before any pixel is decoded; and
the same answers from a head-and-tail read as from the whole file."""

from __future__ import annotations

import io
import os
import struct
import zipfile

import pytest
from PIL import Image

from imgproc_extractor import jpeg
from imgproc_extractor.content import looks_like
from imgproc_extractor.handler import HEAD_BYTES, TAIL_BYTES
from imgproc_extractor.metadata import ImageFacts, NeedWholeObject, ObjectBytes, describe
from imgproc_shared.errors import CorruptImage, TooLarge

from extractor_samples import (
    camera_exif,
    fixture_bytes,
    image_bytes,
    jpeg_bytes,
    png_chunk,
    png_header_only,
)

MAX_PIXELS = 100_000_000


def facts_of(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageFacts:
    return describe(ObjectBytes.whole(data), max_pixels)


def ranged(data: bytes, head: int, tail: int) -> ObjectBytes:
    return ObjectBytes(size=len(data), head=data[:head], tail=data[-tail:], complete=False)


# --- formats by content ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("cmyk.jpg", ("JPEG", 100, 100, "CMYK")),
        ("grayscale.jpg", ("JPEG", 128, 128, "L")),
        ("progressive_icc_big.jpg", ("JPEG", 425, 250, "RGB")),
        ("progressive_app13.jpg", ("JPEG", 256, 160, "RGB")),
        ("png16_gray_trns.png", ("PNG", 64, 64, "I;16")),
        ("apng16_rgba.png", ("PNG", 128, 64, "RGBA")),
        ("interlaced_palette_trns.png", ("PNG", 162, 150, "P")),
        ("interlaced_rgba.png", ("PNG", 162, 150, "RGBA")),
        ("palette_single_trns.png", ("PNG", 64, 64, "P")),
        ("la_uncompressed.png", ("PNG", 128, 128, "LA")),
        ("sugarshack_3ds.mpo", ("MPO", 640, 480, "RGB")),  # Validate counts MPO as JPEG
        ("xmp_canon.jpg", ("JPEG", 2000, 1072, "RGB")),
    ],
)
def test_format_fixtures(name: str, expected: tuple[str, int, int, str]) -> None:
    facts = facts_of(fixture_bytes(name))
    assert (facts.format, facts.width, facts.height, facts.mode) == expected


def test_png_named_jpg_is_a_png() -> None:
    # What a file is called never matters: only bytes reach `describe`.
    assert facts_of(fixture_bytes("interlaced_rgba.png")).format == "PNG"


@pytest.mark.parametrize(
    ("fmt", "reported", "mode"),
    [
        ("GIF", "GIF", "P"),
        ("BMP", "BMP", "RGB"),
        ("WEBP", "WEBP", "RGB"),
        ("TIFF", "TIFF", "RGB"),
        ("PPM", "PPM", "RGB"),
    ],
)
def test_other_formats_are_reported_as_what_they_are(fmt: str, reported: str, mode: str) -> None:
    data = image_bytes(fmt, mode="P" if fmt == "GIF" else "RGB")
    facts = facts_of(data)
    assert (facts.format, facts.width, facts.height) == (reported, 32, 24)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_other_format_not_identifiable_from_the_head_needs_the_whole_file() -> None:
    data = image_bytes("TIFF", size=(300, 200))
    # Its directory does not fit in 16 bytes: only the whole file can say what it is.
    with pytest.raises(NeedWholeObject):
        describe(ranged(data, head=16, tail=16), MAX_PIXELS)
    assert facts_of(data).format == "TIFF"


@pytest.mark.parametrize(
    ("data", "phrase"),
    [
        (b"", "the file is empty"),
        (b"Hello, this is just a note saved with the wrong name.\n", "looks like text"),
        (b"<!DOCTYPE html><html><body>oops</body></html>", "looks like HTML"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "looks like a PDF document"),
        # A HEIC signature and nothing after it: identified, then refused as broken.
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "the HEIF header is broken"),
        (bytes(range(256)) * 4, "looks like unrecognised binary data"),
    ],
)
def test_non_images_are_corrupt_with_what_they_look_like(data: bytes, phrase: str) -> None:
    with pytest.raises(CorruptImage) as caught:
        facts_of(data)
    assert phrase in caught.value.cause


def test_zip_renamed_jpg() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photo.jpg", b"not really")
    with pytest.raises(CorruptImage, match="looks like a ZIP archive"):
        facts_of(buffer.getvalue())


def test_empty_fixture() -> None:
    with pytest.raises(CorruptImage, match=r"^the file is empty$"):
        facts_of(fixture_bytes("empty_0_bytes.jpg"))


def test_looks_like_text_in_other_encodings_of_the_sample() -> None:
    # A UTF-8 character cut by the 4 KiB sample boundary is still text.
    assert looks_like(("é" * 3000).encode()) == "text"
    assert looks_like(b'{"not": "an image"}') == "JSON or other text"
    assert looks_like(b"<svg xmlns='http://www.w3.org/2000/svg'/>").startswith("an SVG")


# --- broken headers and truncation -----------------------------------------------------------


def test_broken_png_header() -> None:
    with pytest.raises(CorruptImage, match="the PNG header is broken"):
        facts_of(fixture_bytes("broken_header.png"))


def test_png_with_impossible_bit_depth() -> None:
    with pytest.raises(CorruptImage, match=r"bit depth 48"):
        facts_of(png_header_only(64, 64, bit_depth=48, colour=2))


def test_truncated_png_fixture() -> None:
    with pytest.raises(CorruptImage, match="the PNG is truncated"):
        facts_of(fixture_bytes("truncated_image.png"))


def test_truncated_progressive_jpeg_fixture() -> None:
    with pytest.raises(CorruptImage, match="the JPEG is truncated"):
        facts_of(fixture_bytes("truncated_progressive.jpg"))


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_jpeg_cut_anywhere_in_its_image_data_is_truncated(keep: float) -> None:
    data = jpeg_bytes(size=(256, 256), exif=camera_exif())
    header_end = jpeg.read_layout(data).header_end
    cut = header_end + int((len(data) - header_end) * keep)
    with pytest.raises(CorruptImage, match="the JPEG is truncated"):
        facts_of(data[:cut])


def test_jpeg_cut_inside_its_header() -> None:
    data = jpeg_bytes(exif=camera_exif())
    with pytest.raises(CorruptImage, match="ends inside its header"):
        facts_of(data[:200])
    with pytest.raises(NeedWholeObject):
        describe(ranged(data, head=200, tail=16), MAX_PIXELS)


def test_jpeg_without_image_data() -> None:
    with pytest.raises(CorruptImage, match="no image data"):
        facts_of(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9")


def test_data_after_the_end_of_image_is_not_truncation() -> None:
    """Motion photos and vendor trailers append data after the JPEG's end-of-image marker."""
    data = (
        jpeg_bytes(size=(128, 96), exif=camera_exif())
        + b"\x00\x00\x00\x18ftypmp42"
        + os.urandom(4096)
    )
    # The tail is not the marker: only the whole file tells a trailer from truncation.
    with pytest.raises(NeedWholeObject):
        describe(ranged(data, head=2048, tail=512), MAX_PIXELS)
    facts = facts_of(data)
    assert (facts.format, facts.fields.exif.model) == ("JPEG", "EOS R5")


def test_padding_after_the_end_of_image_is_accepted_from_the_tail() -> None:
    data = jpeg_bytes(size=(64, 64)) + b"\x00" * 100 + b"\n"
    assert describe(ranged(data, head=1024, tail=256), MAX_PIXELS).format == "JPEG"


# --- limits, before decoding ---------------------------------------------------------------


def test_pixel_bomb_png_is_too_large_from_its_header() -> None:
    bomb = png_header_only(12_000, 12_000)  # 144 MP in a few hundred bytes
    with pytest.raises(TooLarge) as caught:
        facts_of(bomb)
    assert caught.value.cause == (
        "the image is 12000×12000 (144.0 megapixels); the limit is 100 megapixels"
    )


def test_pixel_limit_comes_from_settings() -> None:
    data = fixture_bytes("grayscale.jpg")  # 128×128
    with pytest.raises(TooLarge, match=r"the limit is 0\.01 megapixels"):
        facts_of(data, max_pixels=10_000)
    assert facts_of(data, max_pixels=128 * 128).width == 128


def test_zero_sized_frame_is_corrupt() -> None:
    with pytest.raises(CorruptImage, match=r"no pixels \(0×10\)"):
        facts_of(png_header_only(0, 10))


def _gif_header(width: int, height: int) -> bytes:
    """A GIF whose screen and first frame claim `width`×`height` (a 1-pixel-sized file)."""
    screen = struct.pack("<6sHHBBB", b"GIF89a", width, height, 0x80, 0, 0) + b"\x00" * 6
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b"\x3b"


def test_decompression_bomb_warning_is_an_error() -> None:
    """Pillow's own bomb guard (its limit, not ours) also rejects, instead of only warning."""
    side = int((Image.MAX_IMAGE_PIXELS or 89_478_485) ** 0.5) + 10
    with pytest.raises(TooLarge, match="too many pixels"):
        facts_of(_gif_header(side, side), max_pixels=10 * side * side)
    with pytest.raises(TooLarge, match="too many pixels"):
        facts_of(_gif_header(65535, 65535), max_pixels=2**40)


def test_other_formats_get_the_pixel_limit_too() -> None:
    with pytest.raises(TooLarge, match=r"the limit is 0\.0001 megapixels"):
        facts_of(image_bytes("GIF", mode="P"), max_pixels=100)


# --- a head-and-tail read gives the same answer as the whole file ---------------------------


@pytest.mark.parametrize(
    "name",
    [
        "xmp_canon.jpg",
        "sugarshack_3ds.mpo",
        "flower_canon.jpg",
        "exif_in_png.png",
        "png_exif_orientation3.png",
        "png_xmp_orientation3.png",
        "cmyk.jpg",
        "grayscale.jpg",
    ],
)
def test_head_and_tail_agree_with_the_whole_file(name: str) -> None:
    data = fixture_bytes(name)
    assert describe(ranged(data, head=HEAD_BYTES, tail=TAIL_BYTES), MAX_PIXELS) == facts_of(data)
    # Most headers are far shorter than the head read by the handler.
    if name not in ("xmp_canon.jpg", "cmyk.jpg"):
        assert describe(ranged(data, head=8 * 1024, tail=1024), MAX_PIXELS) == facts_of(data)


def test_header_longer_than_the_head_needs_the_whole_file() -> None:
    data = fixture_bytes("progressive_icc_big.jpg")  # ~500 KB of ICC profile before the scan
    with pytest.raises(NeedWholeObject):
        describe(ranged(data, head=HEAD_BYTES // 2, tail=TAIL_BYTES), MAX_PIXELS)


def test_truncated_files_read_in_ranges_need_the_whole_file() -> None:
    for name in ("truncated_progressive.jpg", "truncated_image.png"):
        data = fixture_bytes(name)
        with pytest.raises(NeedWholeObject):
            describe(ranged(data, head=2048, tail=1024), MAX_PIXELS)


def test_png_chunks_after_a_late_exif_do_not_hide_it() -> None:
    exif = Image.Exif()
    exif[0x0112] = 8
    plain = image_bytes("PNG", size=(20, 20))
    iend = plain.rindex(b"IEND") - 4
    data = (
        plain[:iend]
        + png_chunk(b"eXIf", exif.tobytes())
        + png_chunk(b"tEXt", b"k\x00v")
        + plain[iend:]
    )
    assert facts_of(data).fields.exif.orientation == 8
    assert describe(ranged(data, head=64, tail=80), MAX_PIXELS).fields.exif.orientation == 8
