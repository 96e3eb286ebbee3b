"""The WebP RIFF structure, read without decoding: the canvas size and whether the file is whole.

A WebP file is `RIFF` + a little-endian length + `WEBP` + chunks. The first chunk says the size:
`VP8X` (extended: a canvas, with animation, alpha, ICC, EXIF), `VP8 ` (lossy) or `VP8L`
(lossless). The RIFF length says how long the file must be, so truncation shows without
reading the image data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SIGNATURE = b"RIFF"
FORM = b"WEBP"
_HEADER = 12  # RIFF, length, WEBP
_VP8_START_CODE = b"\x9d\x01\x2a"
_VP8L_SIGNATURE = 0x2F


class HeaderIncomplete(Exception):
    """The bytes end before the first chunk's size fields: more of the file is needed."""


class HeaderCorrupt(Exception):
    """The structure is broken; the message says how."""


@dataclass(frozen=True)
class WebpLayout:
    width: int
    height: int
    declared_size: int  # the file length the RIFF header declares


def is_webp(head: bytes) -> bool:
    return head[:4] == SIGNATURE and head[8:12] == FORM


def read_layout(head: bytes) -> WebpLayout:
    """The canvas size from the first chunk and the file length the RIFF header declares."""
    if len(head) < _HEADER + 8:
        raise HeaderIncomplete
    (riff_length,) = struct.unpack_from("<I", head, 4)
    declared_size = 8 + riff_length + (riff_length & 1)
    kind = head[12:16]
    (length,) = struct.unpack_from("<I", head, 16)
    payload = _HEADER + 8
    if kind == b"VP8X":
        if length < 10:
            raise HeaderCorrupt("the WebP header is broken (a short VP8X chunk)")
        need = payload + 10
        if len(head) < need:
            raise HeaderIncomplete
        width = 1 + int.from_bytes(head[payload + 4 : payload + 7], "little")
        height = 1 + int.from_bytes(head[payload + 7 : payload + 10], "little")
    elif kind == b"VP8 ":
        need = payload + 10
        if len(head) < need:
            raise HeaderIncomplete
        if head[payload + 3 : payload + 6] != _VP8_START_CODE:
            raise HeaderCorrupt("the WebP header is broken (no VP8 start code)")
        width, height = (v & 0x3FFF for v in struct.unpack_from("<HH", head, payload + 6))
    elif kind == b"VP8L":
        need = payload + 5
        if len(head) < need:
            raise HeaderIncomplete
        if head[payload] != _VP8L_SIGNATURE:
            raise HeaderCorrupt("the WebP header is broken (no VP8L signature)")
        (bits,) = struct.unpack_from("<I", head, payload + 1)
        width = 1 + (bits & 0x3FFF)
        height = 1 + ((bits >> 14) & 0x3FFF)
    else:
        raise HeaderCorrupt(f"the WebP header is broken (it starts with a {kind!r} chunk)")
    if payload + length > declared_size:
        raise HeaderCorrupt("the WebP header is broken (its first chunk is longer than the file)")
    return WebpLayout(width, height, declared_size)
