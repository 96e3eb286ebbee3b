"""The ISO base media box structure of HEIF/HEIC and AVIF files, read without decoding pixels.

A HEIF file is a chain of top-level boxes (`ftyp`, `meta`, `mdat`, ...). The `meta` box holds
every image's declared size (`ispe` properties), so the pixel limit is enforced from it before
libheif or libavif sees the file; the chain of top-level boxes must end exactly at the end of
the file, else it is truncated (the pixel data in `mdat` is only read by a decoder).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

# Brands (major or compatible) by what the file holds.
AVIF_BRANDS = frozenset({b"avif", b"avis"})
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}
)
# A phone photo's `meta` box is a few kilobytes (item list, locations, properties, an ICC
# profile); the EXIF and pixels are in `mdat`. Anything this large is hostile, not a photo.
MAX_META_BYTES = 16 * 1024 * 1024
# Containers inside `meta` that hold the item properties (`iprp` > `ipco` > `ispe`).
_PROPERTY_PATH = (b"iprp", b"ipco")


class HeaderIncomplete(Exception):
    """The bytes end before the `meta` box does: more of the file is needed."""


class HeaderCorrupt(Exception):
    """The box structure is broken; the message says how."""


class Truncated(HeaderCorrupt):
    """A top-level box runs past the end of the file: the file was cut short."""


@dataclass(frozen=True)
class Box:
    kind: bytes
    start: int  # where its header starts
    payload: int  # where its content starts
    end: int  # one past its last byte


@dataclass(frozen=True)
class HeifLayout:
    """The brands, every image size the `meta` box declares (width, height), and the kinds of
    its item properties (`hvcC`: HEVC-coded, `av1C`: AV1-coded)."""

    brands: frozenset[bytes]
    sizes: tuple[tuple[int, int], ...]
    properties: frozenset[bytes]

    def coded_as(self, fallback: str) -> str:
        """HEIF or AVIF by the codec configuration present; the brands decide otherwise (a
        file branded only `mif1` may hold either)."""
        if b"hvcC" in self.properties:
            return "HEIF"
        if b"av1C" in self.properties:
            return "AVIF"
        return fallback


def brands(head: bytes) -> frozenset[bytes]:
    """The major and compatible brands of an `ftyp` box at the start; empty when there is none."""
    if len(head) < 16 or head[4:8] != b"ftyp":
        return frozenset()
    (size,) = struct.unpack_from(">I", head, 0)
    end = min(max(size, 16), len(head))
    compatible = [head[pos : pos + 4] for pos in range(16, end - 3, 4)]
    return frozenset([head[8:12], *compatible])


def is_avif(found: frozenset[bytes]) -> bool:
    return bool(found & AVIF_BRANDS)


def is_heif(found: frozenset[bytes]) -> bool:
    return not is_avif(found) and bool(found & HEIF_BRANDS)


def read_layout(head: bytes, size: int) -> HeifLayout:
    """Walk the top-level boxes in `head` (the first bytes of a `size`-byte file) to `meta` and
    read its image sizes.

    Raises `HeaderIncomplete` when `meta` goes on past `head`, `HeaderCorrupt` otherwise.
    """
    found = brands(head)
    if not found:
        raise HeaderCorrupt("it does not start with an ftyp box")
    for box in _boxes(head, 0, size, top_level=True):
        if box.kind == b"meta":
            if box.end - box.start > MAX_META_BYTES:
                raise HeaderCorrupt(
                    f"its metadata box is {(box.end - box.start) / (1024 * 1024):.0f} MiB "
                    f"(more than {MAX_META_BYTES // (1024 * 1024)} MiB: no photo needs that)"
                )
            if box.end > len(head):
                raise HeaderIncomplete
            properties = _properties(head, box)
            sizes = tuple(_image_size(head, p) for p in properties if p.kind == b"ispe")
            return HeifLayout(found, sizes, frozenset(p.kind for p in properties))
        if box.kind == b"mdat" and box.end > len(head):
            # The pixel data comes before the metadata: only the whole file has it.
            raise HeaderIncomplete
    raise HeaderCorrupt("it has no metadata box")


def check_complete(data: bytes) -> None:
    """Raise `HeaderCorrupt` unless the top-level boxes of the whole file end where it does."""
    for _ in _boxes(data, 0, len(data), top_level=True):
        pass


def _boxes(data: bytes, start: int, end: int, *, top_level: bool = False) -> Iterator[Box]:
    """The boxes from `start` to `end`; a top-level walk stops where `data` runs out."""
    pos = start
    while pos < end:
        if pos + 8 > len(data):
            raise _cut_off(data, end, top_level)
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            if pos + 16 > len(data):
                raise _cut_off(data, end, top_level)
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos  # "to the end of the enclosing space"
        if size < header:
            raise HeaderCorrupt(f"a {_name(kind)} box of {size} bytes")
        if pos + size > end:
            if top_level:
                raise Truncated(f"its {_name(kind)} box claims {size:,} bytes, past the end")
            raise HeaderCorrupt(f"a {_name(kind)} box of {size:,} bytes in a smaller box")
        yield Box(kind, pos, pos + header, pos + size)
        pos += size


def _cut_off(data: bytes, end: int, top_level: bool) -> Exception:
    """A box header that `data` cuts off: more bytes are needed, or the file ends inside it."""
    if top_level and len(data) < end:
        return HeaderIncomplete()
    if top_level:
        return Truncated("it ends inside a box header")
    return HeaderCorrupt("a box header is cut off")


def _properties(data: bytes, meta: Box) -> list[Box]:
    """The item properties in `meta` > `iprp` > `ipco` (sizes, codec configurations, ...)."""
    # `meta` is a full box: 4 bytes of version and flags before its children.
    container = Box(meta.kind, meta.start, meta.payload + 4, meta.end)
    for kind in _PROPERTY_PATH:
        children = _boxes(data, container.payload, container.end)
        found = next((box for box in children if box.kind == kind), None)
        if found is None:
            return []
        container = found
    return list(_boxes(data, container.payload, container.end))


def _image_size(data: bytes, ispe: Box) -> tuple[int, int]:
    """An `ispe` (image spatial extents) property: a full box, then width and height."""
    if ispe.end - ispe.payload < 12:
        raise HeaderCorrupt("an ispe box is too short")
    width, height = struct.unpack_from(">II", data, ispe.payload + 4)
    return width, height


def _name(kind: bytes) -> str:
    return kind.decode("latin-1") if kind.isalnum() else repr(kind)
