"""The photos the load test uploads: generated ones that compress like photos (cached on disk),
or the images of a directory."""

from __future__ import annotations

import argparse
import io
import os
import random
import struct
import zlib
from pathlib import Path

from imgproc_cli.uploads import UsageError

_GENERATED_VARIANTS = 4
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".mpo"}


def unique_copy(data: bytes, marker: str) -> bytes:
    """`data` made distinct by a `marker` that no decoder shows: a JPEG comment segment after
    SOI, or a PNG text chunk after IHDR. The stack records an upload whose bytes the owner
    already has as a duplicate of the first and processes nothing, so a load test that repeats
    its few photos must make each upload its own. Other formats are returned as they are."""
    text = f"imgproc loadtest {marker}".encode()
    if data[:2] == b"\xff\xd8":
        return data[:2] + b"\xff\xfe" + struct.pack(">H", len(text) + 2) + text + data[2:]
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        body = b"tEXt" + b"Comment\x00" + text
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", zlib.crc32(body))
        ihdr_end = 8 + 8 + 13 + 4  # signature, IHDR length/type, IHDR data, CRC
        return data[:ihdr_end] + chunk + data[ihdr_end:]
    return data


def parse_size(value: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected WIDTHxHEIGHT, e.g. 2400x1600"
        ) from None
    if not (16 <= width <= 20000 and 16 <= height <= 20000):
        raise argparse.ArgumentTypeError(f"{value!r}: each side must be 16..20000 pixels")
    return width, height


def synthetic_photo(width: int, height: int, seed: int) -> bytes:
    """A JPEG that compresses like a photo (gradients, soft shapes, sensor-like noise) with EXIF
    and GPS, so every stage does real work on it."""
    from PIL import Image, ImageChops, ImageDraw, ImageFilter

    rnd = random.Random(seed)
    small = (max(8, width // 16), max(8, height // 16))
    channels = [
        Image.linear_gradient("L").rotate(rnd.uniform(0, 360)).resize(small),
        Image.radial_gradient("L").resize(small),
        Image.linear_gradient("L").rotate(rnd.uniform(0, 360)).resize(small),
    ]
    base = Image.merge("RGB", channels)
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x, y = rnd.randrange(small[0]), rnd.randrange(small[1])
        r = rnd.randrange(2, max(3, min(small) // 3))
        colour = tuple(rnd.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    scene = base.filter(ImageFilter.GaussianBlur(1.5)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    noise = Image.merge("RGB", [Image.effect_noise((width, height), 10) for _ in range(3)])
    photo = ImageChops.add(scene, noise, scale=1.0, offset=-128)

    exif = Image.Exif()
    exif[0x010F] = "imgproc"  # Make
    exif[0x0110] = "loadtest synthetic"  # Model
    exif[0x0112] = 1  # Orientation
    details = exif.get_ifd(0x8769)
    details[0x9003] = f"2024:06:{1 + seed % 28:02d} 12:{seed % 60:02d}:00"  # DateTimeOriginal
    details[0x8827] = 100 * (1 + seed % 8)  # ISO
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, float(seed % 60))
    gps[3], gps[4] = "E", (2.0, 21.0, 3.0)
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()


def generated_photos(size: tuple[int, int], cache_dir: Path) -> list[tuple[str, bytes]]:
    """A few distinct synthetic photos of `size`, generated once and cached on disk."""
    width, height = size
    cache_dir.mkdir(parents=True, exist_ok=True)
    photos = []
    for variant in range(_GENERATED_VARIANTS):
        path = cache_dir / f"synthetic-{width}x{height}-{variant}.jpg"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(synthetic_photo(width, height, seed=variant))
            tmp.replace(path)
        photos.append((path.name, path.read_bytes()))
    return photos


def source_photos(directory: Path) -> list[tuple[str, bytes]]:
    if not directory.is_dir():
        raise UsageError(f"--source {directory}: not a directory")
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
    )
    if not files:
        raise UsageError(f"--source {directory}: no image files")
    return [(p.name, p.read_bytes()) for p in files]
