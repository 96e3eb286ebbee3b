"""Sample images for the extractor's tests: the committed fixture files and generated ones."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import ExifTags, Image, TiffImagePlugin

IMAGES = Path(__file__).parents[2] / "fixtures" / "images"

R = TiffImagePlugin.IFDRational


def fixture_bytes(name: str) -> bytes:
    return (IMAGES / name).read_bytes()


def camera_exif() -> Image.Exif:
    """EXIF as a camera writes it, with GPS south, west and below sea level."""
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "Canon"
    exif[ExifTags.Base.Model] = "EOS R5"
    exif[ExifTags.Base.Orientation] = 6
    sub = exif.get_ifd(ExifTags.IFD.Exif)
    sub[ExifTags.Base.DateTimeOriginal] = "2021:06:01 12:30:45"
    sub[ExifTags.Base.OffsetTimeOriginal] = "-03:30"
    sub[ExifTags.Base.ExposureTime] = R(1, 250)
    sub[ExifTags.Base.FNumber] = R(28, 10)
    sub[ExifTags.Base.ISOSpeedRatings] = 800
    sub[ExifTags.Base.FocalLength] = R(50, 1)
    sub[ExifTags.Base.LensModel] = "RF24-105mm F4 L IS USM"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "S"
    gps[ExifTags.GPS.GPSLatitude] = (R(33, 1), R(51, 1), R(3567, 100))
    gps[ExifTags.GPS.GPSLongitudeRef] = "W"
    gps[ExifTags.GPS.GPSLongitude] = (R(70, 1), R(30, 1), R(0, 1))
    gps[ExifTags.GPS.GPSAltitudeRef] = b"\x01"
    gps[ExifTags.GPS.GPSAltitude] = R(12, 1)
    return exif


def jpeg_bytes(
    size: tuple[int, int] = (64, 48), exif: Image.Exif | bytes | None = None, **save: object
) -> bytes:
    buffer = io.BytesIO()
    options: dict[str, object] = dict(save)
    if exif is not None:
        options["exif"] = exif
    Image.new("RGB", size, (200, 80, 40)).save(buffer, "JPEG", **options)
    return buffer.getvalue()


def image_bytes(fmt: str, size: tuple[int, int] = (32, 24), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 128 if mode in ("L", "P") else (10, 20, 30)).save(buffer, fmt)
    return buffer.getvalue()


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I", len(payload))
        + kind
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def png_header_only(width: int, height: int, *, bit_depth: int = 1, colour: int = 0) -> bytes:
    """A PNG whose header claims a frame of any size, with one tiny IDAT: a pixel bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )
