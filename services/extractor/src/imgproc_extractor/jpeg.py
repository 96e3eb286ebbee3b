"""The JPEG marker structure, read without decoding: where the header ends, the frame size, and
whether the file ends with its end-of-image marker.

Entropy-coded data never contains `FF D9` (an `FF` data byte is stuffed as `FF 00`), so the first
`FF D9` after the start-of-scan header is the end of the image: a file without one is truncated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SIGNATURE = b"\xff\xd8\xff"
EOI = b"\xff\xd9"

_SOS = 0xDA
_EOI_MARKER = 0xD9
# Start-of-frame markers (baseline, extended, progressive, lossless, arithmetic variants).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
# Markers without a length field.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
# Bytes allowed after the end-of-image marker without it being "trailing data".
_PADDING = b"\x00\r\n\t "


class HeaderIncomplete(Exception):
    """The bytes end before the start-of-scan header: more of the file is needed."""


class HeaderCorrupt(Exception):
    """The marker structure is broken; the message says how."""


@dataclass(frozen=True)
class JpegLayout:
    """Where the header (all segments up to and including the SOS header) ends, and the frame."""

    header_end: int
    width: int | None
    height: int | None


def read_layout(data: bytes) -> JpegLayout:
    """Walk the markers from SOI to the first SOS header.

    Raises `HeaderIncomplete` when `data` is only the head of a longer file whose header goes on,
    and `HeaderCorrupt` for a structure no decoder can follow.
    """
    if not data.startswith(SIGNATURE):
        raise HeaderCorrupt("the JPEG does not start with a start-of-image marker")
    width: int | None = None
    height: int | None = None
    pos = 2
    while True:
        if pos + 2 > len(data):
            raise HeaderIncomplete
        if data[pos] != 0xFF:  # junk between segments: skipped, as Pillow and libjpeg do
            pos += 1
            continue
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker == _EOI_MARKER:
            raise HeaderCorrupt("the JPEG has no image data (it ends before its first scan)")
        if pos + 4 > len(data):
            raise HeaderIncomplete
        (length,) = struct.unpack_from(">H", data, pos + 2)
        if length < 2:
            raise HeaderCorrupt(f"the JPEG header is broken (segment length {length})")
        end = pos + 2 + length
        if marker in _SOF and width is None:
            if pos + 9 > len(data):
                raise HeaderIncomplete
            height, width = struct.unpack_from(">HH", data, pos + 5)
        if marker == _SOS:
            if end > len(data):
                raise HeaderIncomplete
            return JpegLayout(header_end=end, width=width, height=height)
        pos = end


def ends_with_eoi(tail: bytes) -> bool:
    """True when the last bytes of the file are the end-of-image marker (padding allowed)."""
    # Only the last bytes matter; slicing first keeps this O(1) on a whole file held in memory.
    return tail[-4096:].rstrip(_PADDING).endswith(EOI)


def has_eoi_after(data: bytes, header_end: int) -> bool:
    """True when the complete file has an end-of-image marker after its header.

    Catches files with data appended after the image (motion photos, vendor trailers), whose tail
    is not the marker, as well as confirming truncation when there is none.
    """
    return data.find(EOI, header_end) != -1
