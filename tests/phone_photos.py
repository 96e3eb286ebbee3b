"""Photos in the formats phones and websites make (HEIC, AVIF, WebP), generated at test time.

Each is a small picture whose top-left quarter is red and the rest blue, so a test can tell from
any rendition which way up it came out; with EXIF as a phone writes it (camera, capture time
with its offset, GPS), and optionally an orientation, alpha, a Display P3 profile, or frames.
"""

from __future__ import annotations

import io
import struct

import pillow_heif
from PIL import ExifTags, Image, TiffImagePlugin

pillow_heif.register_heif_opener()

R = TiffImagePlugin.IFDRational
RED = (220, 20, 20)
BLUE = (20, 40, 220)
# Pillow's encoder name for each format the extractor reports.
FORMATS = ("HEIF", "AVIF", "WEBP")
EXTENSIONS = {"HEIF": "heic", "AVIF": "avif", "WEBP": "webp"}


def phone_exif(orientation: int | None = None) -> Image.Exif:
    """EXIF as an iPhone writes it: camera, capture time with offset, GPS north-east."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Apple"
    exif[ExifTags.Base.Model] = "iPhone 15 Pro"
    if orientation is not None:
        exif[ExifTags.Base.Orientation] = orientation
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = "2024:07:14 18:05:09"
    sub[ExifTags.Base.OffsetTimeOriginal] = "+02:00"
    sub[ExifTags.Base.FNumber] = R(178, 100)
    sub[ExifTags.Base.ISOSpeedRatings] = 64
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (R(48, 1), R(51, 1), R(2940, 100))
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (R(2, 1), R(17, 1), R(4020, 100))
    gps[ExifTags.GPS.GPSAltitudeRef] = b"\x00"
    gps[ExifTags.GPS.GPSAltitude] = R(35, 1)
    return exif


def quarters(
    size: tuple[int, int], *, alpha: bool = False, colour: tuple[int, ...] = RED
) -> Image.Image:
    """Blue with the top-left quarter `colour`; with alpha, the bottom half half-transparent."""
    width, height = size
    image = Image.new("RGBA" if alpha else "RGB", size, (*BLUE, 255) if alpha else BLUE)
    image.paste((*colour, 255) if alpha else colour, (0, 0, width // 2, height // 2))
    if alpha:
        image.paste((*BLUE, 0), (width // 2, height // 2, width, height))
    return image


def stored_for(upright: Image.Image, orientation: int) -> Image.Image:
    """The pixels a camera stores for an upright picture shown with this EXIF orientation."""
    inverse = {
        2: (Image.Transpose.FLIP_LEFT_RIGHT,),
        3: (Image.Transpose.ROTATE_180,),
        4: (Image.Transpose.FLIP_TOP_BOTTOM,),
        5: (Image.Transpose.TRANSPOSE,),
        6: (Image.Transpose.ROTATE_90,),
        7: (Image.Transpose.TRANSVERSE,),
        8: (Image.Transpose.ROTATE_270,),
    }
    for transpose in inverse.get(orientation, ()):
        upright = upright.transpose(transpose)
    return upright


def photo(
    fmt: str,
    size: tuple[int, int] = (96, 64),
    *,
    orientation: int | None = None,
    alpha: bool = False,
    icc: bytes | None = None,
    exif: bool = True,
    colour: tuple[int, ...] = RED,
    frames: int = 1,
) -> bytes:
    """An upright `size` picture saved as `fmt` (HEIF, AVIF or WEBP).

    With an orientation, the stored pixels are turned so that applying it shows them upright:
    pillow-heif and Pillow's AVIF writer turn the EXIF orientation into the `irot`/`imir`
    transforms, as phones write them.
    """
    upright = quarters(size, alpha=alpha, colour=colour)
    image = stored_for(upright, orientation or 1)
    options: dict[str, object] = {"quality": 90}
    if exif:
        options["exif"] = phone_exif(orientation).tobytes()
    if icc is not None:
        options["icc_profile"] = icc
    if fmt == "WEBP":
        options["lossless"] = True
    buffer = io.BytesIO()
    if frames > 1:
        later = [Image.new(image.mode, image.size, (0, 255, 0, 255)[: len(image.mode)])] * (
            frames - 1
        )
        image.save(buffer, fmt, save_all=True, append_images=later, duration=100, **options)
    else:
        image.save(buffer, fmt, **options)
    return buffer.getvalue()


def iso_boxes(data: bytes) -> list[tuple[bytes, int, int]]:
    """The top-level boxes of a HEIF/AVIF file: (kind, start, size)."""
    boxes = []
    pos = 0
    while pos < len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        boxes.append((kind, pos, size))
        pos += size
    return boxes


def with_ispe(data: bytes, width: int, height: int) -> bytes:
    """The same HEIF/AVIF with every declared image size (`ispe`) replaced: a pixel bomb."""
    out = bytearray(data)
    pos = out.find(b"ispe")
    assert pos > 0, "no ispe box"
    while pos > 0:
        struct.pack_into(">II", out, pos + 8, width, height)
        pos = out.find(b"ispe", pos + 4)
    return bytes(out)


def webp_with_canvas(data: bytes, width: int, height: int) -> bytes:
    """The same extended (VP8X) WebP with its canvas declared as width x height: a pixel bomb."""
    assert data[12:16] == b"VP8X", "needs an extended WebP (EXIF, alpha or animation)"
    out = bytearray(data)
    out[24:27] = (width - 1).to_bytes(3, "little")
    out[27:30] = (height - 1).to_bytes(3, "little")
    return bytes(out)


# --- a Display P3 ICC profile ---------------------------------------------------------------
# Pillow's ImageCms can only create sRGB, LAB and XYZ profiles, so this builds a minimal ICC v2
# matrix/TRC profile: Display P3's primaries (adapted to D50, as ICC wants; the values of
# Apple's own profile) and the sRGB tone curve approximated by gamma 2.2.
_P3_COLORANTS = {
    b"rXYZ": (0.515102, 0.241182, -0.001050),
    b"gXYZ": (0.291965, 0.692236, 0.041881),
    b"bXYZ": (0.157153, 0.066582, 0.784169),
}
_D50 = (0.964203, 1.0, 0.824905)


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(values: tuple[float, float, float]) -> bytes:
    return b"XYZ \0\0\0\0" + b"".join(_s15(v) for v in values)


def _text_desc(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\0"
    return (
        b"desc\0\0\0\0"
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + b"\0" * 8  # no Unicode description
        + b"\0" * 3  # no ScriptCode description
        + b"\0" * 67
    )


def display_p3_icc() -> bytes:
    gamma = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(2.2 * 256)) + b"\0\0"
    tags: list[tuple[bytes, bytes]] = [
        (b"desc", _text_desc("Display P3 (test)")),
        (b"wtpt", _xyz(_D50)),
        *((name, _xyz(xyz)) for name, xyz in _P3_COLORANTS.items()),
        (b"rTRC", gamma),
        (b"gTRC", gamma),
        (b"bTRC", gamma),
        (b"cprt", b"text\0\0\0\0No copyright, test data\0"),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table = struct.pack(">I", len(tags))
    body = b""
    for name, payload in tags:
        padded = payload + b"\0" * (-len(payload) % 4)
        table += name + struct.pack(">II", offset + len(body), len(payload))
        body += padded
    size = 128 + table_size + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + bytes([2, 0x10, 0, 0])  # version 2.1
        + b"mntrRGB XYZ "
        + bytes(12)  # creation date
        + b"acsp"
        + b"APPL"
        + bytes(4 + 4 + 4 + 8 + 4)  # flags, manufacturer, model, attributes, intent
        + b"".join(_s15(v) for v in _D50)
        + b"lcms"
        + bytes(44)
    )
    assert len(header) == 128
    return header + table + body
