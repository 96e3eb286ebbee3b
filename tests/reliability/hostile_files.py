"""Hostile files, made on the spot: pixel bombs in JPEG, PNG, HEIC, AVIF and WebP headers, zero
dimensions, text-chunk decompression bombs, truncated phone formats, a HEIC box claiming more
than the file, other files named `.jpg`, and a file over the size limit.

Each entry is (file name, bytes, words the rejection must contain). Broken files from the test
corpus (MIT/MIT-CMU, in `tests/fixtures/images/`) are added by `hostile_files()`.
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from pathlib import Path

from PIL import Image

from phone_photos import photo, webp_with_canvas, with_ispe

FIXTURES = Path(__file__).parents[1] / "fixtures" / "images"

# A text chunk that inflates to this much would take that much memory if anyone inflated it.
TEXT_BOMB_BYTES = 256 * 1024 * 1024


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, *, before_data: bytes = b"", after_data: bytes = b"") -> bytes:
    """An 8-bit greyscale PNG whose IHDR claims `width`×`height`, with one tiny IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * max(width, 1) for _ in range(min(max(height, 1), 4)))
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + before_data
        + _chunk(b"IDAT", zlib.compress(rows[:4096]))
        + after_data
        + _chunk(b"IEND", b"")
    )


def _small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (4, 4), 128).save(buffer, "PNG")
    return buffer.getvalue()


@functools.cache
def _zeros_deflated() -> bytes:
    """TEXT_BOMB_BYTES of zeros, deflated (~250 KB; made once, it takes a few seconds)."""
    squeezed = zlib.compressobj(9)
    zeros = bytes(1024 * 1024)
    payload = b"".join(squeezed.compress(zeros) for _ in range(TEXT_BOMB_BYTES // len(zeros)))
    return payload + squeezed.flush()


def _text_bomb(kind: bytes) -> bytes:
    """A zTXt or compressed iTXt chunk that inflates to TEXT_BOMB_BYTES of zeros."""
    payload = _zeros_deflated()
    if kind == b"zTXt":
        return _chunk(b"zTXt", b"Comment\x00\x00" + payload)
    return _chunk(b"iTXt", b"Comment\x00\x01\x00en\x00Comment\x00" + payload)


def _with_text_bomb(kind: bytes, *, after_image_data: bool) -> bytes:
    """A real 4×4 PNG carrying a text bomb before or after its image data."""
    plain = _small_png()
    idat = plain.index(b"IDAT") - 4
    iend = plain.index(b"IEND") - 4
    bomb = _text_bomb(kind)
    if after_image_data:
        return plain[:iend] + bomb + plain[iend:]
    return plain[:idat] + bomb + plain[idat:]


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A real 8×8 baseline JPEG whose SOF0 header is rewritten to claim `width`×`height`."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _zip_named_jpg() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("holiday/photo.jpg", b"\xff\xd8" + bytes(4096))
        archive.writestr("readme.txt", "not a photo")
    return buffer.getvalue()


def _one_bit_bomb() -> bytes:
    """A valid 12000×12000 1-bit PNG (144 MP, ~20 KB): over the 100 MP limit."""
    buffer = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _oversized(limit: int) -> bytes:
    """A real JPEG followed by padding, just over the byte limit."""
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 90, 200)).save(buffer, "JPEG")
    return buffer.getvalue() + bytes(limit + 1024 - len(buffer.getvalue()))


def _cut(data: bytes) -> bytes:
    return data[: len(data) * 2 // 3]


def _heic_with_endless_box() -> bytes:
    """A HEIC whose `meta` box claims 4 GiB (a 64-bit box size): it holds a few hundred bytes."""
    data = photo("HEIF")
    meta = data.index(b"meta") - 4
    return data[:meta] + struct.pack(">I4sQ", 1, b"meta", 2**32) + data[meta + 8 :]


def hostile_files(max_upload_bytes: int) -> list[tuple[str, bytes, tuple[str, ...]]]:
    """Every hostile file with the words (any of them, lower case) its rejection must contain."""
    generated: list[tuple[str, bytes, tuple[str, ...]]] = [
        ("jpeg_sof_60000x60000.jpg", _jpeg_claiming(60000, 60000), ("60000×60000", "limit")),
        ("png_ihdr_50000x50000.png", _png(50000, 50000), ("50000×50000", "limit")),
        ("png_1bit_12000x12000.png", _one_bit_bomb(), ("12000×12000", "limit")),
        ("jpeg_zero_width.jpg", _jpeg_claiming(0, 480), ("no pixels", "broken")),
        ("jpeg_zero_height.jpg", _jpeg_claiming(640, 0), ("no pixels", "broken")),
        ("png_zero_by_zero.png", _png(0, 0), ("no pixels", "broken")),
        ("ztxt_bomb_before_idat.png", _with_text_bomb(b"zTXt", after_image_data=False), ()),
        ("itxt_bomb_before_idat.png", _with_text_bomb(b"iTXt", after_image_data=False), ()),
        ("ztxt_bomb_after_idat.png", _with_text_bomb(b"zTXt", after_image_data=True), ()),
        (
            "page.jpg",
            b"<!DOCTYPE html><html><body><script>alert(1)</script></body></html>\n",
            ("html",),
        ),
        ("archive.jpg", _zip_named_jpg(), ("zip",)),
        ("notes.jpg", b"these are my notes, not a photo\n", ("not an image",)),
        ("too_big.jpg", _oversized(max_upload_bytes), ("limit",)),
        ("heic_ispe_40000x30000.heic", with_ispe(photo("HEIF"), 40000, 30000), ("40000×30000",)),
        ("avif_ispe_12000x12000.avif", with_ispe(photo("AVIF"), 12000, 12000), ("12000×12000",)),
        (
            "webp_canvas_16000x16000.webp",
            webp_with_canvas(photo("WEBP"), 16000, 16000),
            ("16000×16000",),
        ),
        ("truncated.heic", _cut(photo("HEIF", size=(300, 200))), ("truncated",)),
        ("truncated.avif", _cut(photo("AVIF", size=(300, 200))), ("truncated",)),
        ("truncated.webp", _cut(photo("WEBP", size=(300, 200))), ("truncated",)),
        ("heic_meta_box_4gib.heic", _heic_with_endless_box(), ("truncated", "claims")),
    ]
    corpus: list[tuple[str, bytes, tuple[str, ...]]] = [
        ("empty_0_bytes.jpg", (FIXTURES / "empty_0_bytes.jpg").read_bytes(), ("empty",)),
        ("broken_header.png", (FIXTURES / "broken_header.png").read_bytes(), ("broken",)),
        ("truncated_image.png", (FIXTURES / "truncated_image.png").read_bytes(), ("truncated",)),
        (
            "truncated_progressive.jpg",
            (FIXTURES / "truncated_progressive.jpg").read_bytes(),
            ("truncated",),
        ),
    ]
    return generated + corpus
