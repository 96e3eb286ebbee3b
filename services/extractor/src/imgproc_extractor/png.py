"""The PNG chunk structure, read without inflating pixels: the frame size, the chunks before the
image data, an `eXIf` chunk wherever it sits, and whether the file ends with `IEND`.

Why not `Image.getexif()`: on a PNG it loads (decodes) the whole image to look for an `eXIf`
chunk after the image data (~300 ms for 14 MP). Walking the chunk headers finds it for free.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

SIGNATURE = b"\x89PNG\r\n\x1a\n"
IEND_CHUNK = b"\x00\x00\x00\x00IEND\xaeB`\x82"

_IMAGE_DATA = (b"IDAT", b"fdAT")
# Pillow inflates a compressed text chunk up to this much and refuses more
# (PngImagePlugin.MAX_TEXT_CHUNK); a chunk that inflates further is a decompression bomb.
MAX_TEXT_BYTES = 1024 * 1024
_MAX_CHUNK = 2**31 - 1  # the spec's limit on a chunk length
# Allowed bit depths per colour type (grey, RGB, palette, grey+alpha, RGBA).
_BIT_DEPTHS = {0: (1, 2, 4, 8, 16), 2: (8, 16), 3: (1, 2, 4, 8), 4: (8, 16), 6: (8, 16)}


class HeaderIncomplete(Exception):
    """The bytes end before the first image-data chunk: more of the file is needed."""


class HeaderCorrupt(Exception):
    """The chunk structure is broken; the message says how."""


@dataclass(frozen=True)
class PngLayout:
    """The frame size, where the image data starts, and an `eXIf` found before it."""

    width: int
    height: int
    image_data_start: int
    exif: bytes | None


@dataclass(frozen=True)
class PngTail:
    """What the chunks after the image data hold: an `eXIf` payload and whether `IEND` is there."""

    exif: bytes | None
    complete: bool


def read_layout(data: bytes) -> PngLayout:
    """Walk the chunks from the signature to the first image-data chunk."""
    if not data.startswith(SIGNATURE):
        raise HeaderCorrupt("the PNG does not start with the PNG signature")
    width = height = 0
    exif: bytes | None = None
    pos = len(SIGNATURE)
    while True:
        if pos + 8 > len(data):
            raise HeaderIncomplete
        length, kind = struct.unpack_from(">I4s", data, pos)
        if length > _MAX_CHUNK:
            raise HeaderCorrupt(f"the PNG header is broken (chunk length {length})")
        if pos == len(SIGNATURE):
            if kind != b"IHDR" or length < 8:
                raise HeaderCorrupt("the PNG header is broken (it does not start with IHDR)")
            width, height = _read_ihdr(data, pos, length)
        if kind in _IMAGE_DATA:
            return PngLayout(width=width, height=height, image_data_start=pos, exif=exif)
        if kind == b"IEND":
            raise HeaderCorrupt("the PNG has no image data")
        end = pos + 12 + length
        if kind == b"eXIf" and exif is None:
            if end > len(data):
                raise HeaderIncomplete
            exif = data[pos + 8 : pos + 8 + length]
        if end <= len(data):
            check_text_chunk(kind, data[pos + 8 : pos + 8 + length])
        pos = end


def _read_ihdr(data: bytes, pos: int, length: int) -> tuple[int, int]:
    end = pos + 12 + length
    if end > len(data):
        raise HeaderIncomplete
    (crc,) = struct.unpack_from(">I", data, end - 4)
    if zlib.crc32(data[pos + 4 : end - 4]) != crc:
        raise HeaderCorrupt("the PNG header is broken (IHDR checksum mismatch)")
    width, height, depth, colour = struct.unpack_from(">IIBB", data, pos + 8)
    if depth not in _BIT_DEPTHS.get(colour, ()):
        raise HeaderCorrupt(f"the PNG header is broken (colour type {colour}, bit depth {depth})")
    return width, height


def read_tail_of_complete_file(data: bytes, image_data_start: int) -> PngTail:
    """Walk every chunk from the image data to the end of a complete file."""
    exif: bytes | None = None
    pos = image_data_start
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > len(data):
            break  # the last chunk runs past the end of the file: truncated
        if kind == b"IEND":
            return PngTail(exif=exif, complete=True)
        if kind == b"eXIf" and exif is None:
            exif = data[pos + 8 : pos + 8 + length]
        check_text_chunk(kind, data[pos + 8 : pos + 8 + length])
        pos = end
    return PngTail(exif=exif, complete=False)


def check_text_chunk(kind: bytes, payload: bytes) -> None:
    """Refuse a compressed text chunk (zTXt, or iTXt with its compression flag) that inflates
    past MAX_TEXT_BYTES, inflating at most that much to find out.

    Found by the reliability tests: Pillow refuses such a chunk before the image data (the
    extractor rejected it, with a cryptic reason), but one after the image data was only met
    by the thumbnailer's decode, so the image ended FAILED instead of REJECTED.
    """
    if kind == b"zTXt":
        keyword_end = payload.find(b"\0")
        compressed = payload[keyword_end + 2 :] if keyword_end >= 0 else b""
    elif kind == b"iTXt":
        keyword_end = payload.find(b"\0")
        if keyword_end < 0 or payload[keyword_end + 1 : keyword_end + 2] != b"\1":
            return  # uncompressed text is as long as its chunk: nothing to fear
        # keyword \0 flag method language \0 translated keyword \0 text
        language_end = payload.find(b"\0", keyword_end + 3)
        translated_end = payload.find(b"\0", language_end + 1) if language_end >= 0 else -1
        compressed = payload[translated_end + 1 :] if translated_end >= 0 else b""
    else:
        return
    try:
        inflated = zlib.decompressobj().decompress(compressed, MAX_TEXT_BYTES + 1)
    except zlib.error:
        return  # a damaged text chunk is metadata we do without, not a reason to reject
    if len(inflated) > MAX_TEXT_BYTES:
        raise HeaderCorrupt(
            f"the PNG has a compressed {kind.decode()} text chunk that inflates to more than "
            f"{MAX_TEXT_BYTES // (1024 * 1024)} MiB (a decompression bomb)"
        )


def read_tail_window(tail: bytes) -> PngTail:
    """Read the last bytes of a file read in ranges: chunk boundaries are unknown there, so an
    `eXIf` counts only where its length and CRC check out."""
    exif: bytes | None = None
    start = tail.find(b"eXIf", 4)
    while start != -1 and exif is None:
        (length,) = struct.unpack_from(">I", tail, start - 4)
        payload_end = start + 4 + length
        if payload_end + 4 <= len(tail):
            payload = tail[start + 4 : payload_end]
            (crc,) = struct.unpack_from(">I", tail, payload_end)
            if zlib.crc32(b"eXIf" + payload) == crc:
                exif = payload
        start = tail.find(b"eXIf", start + 4)
    return PngTail(exif=exif, complete=IEND_CHUNK in tail)
