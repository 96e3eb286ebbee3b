"""EXIF and GPS fields from an already-parsed `PIL.Image.Exif`, each one checked on its own.

Pillow reads the TIFF structure (`getexif()`, `get_ifd(IFD.Exif)`, `get_ifd(IFD.GPSInfo)`) from
the header bytes in 1-2 ms a photo. piexif is not used: it has had no release since 2019 and
reads the same tags no faster.

Camera firmware writes odd things: padded or NUL-terminated strings, non-UTF-8 bytes, rationals
with a zero denominator, the all-ones "unknown" sentinel, dates of all zeros. A field that does
not make sense is left out; it never fails the image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from PIL import ExifTags, Image

from imgproc_shared.models import Exif, Gps

T = TypeVar("T")

_Base = ExifTags.Base
_GPS = ExifTags.GPS

# ISO speeds above 65535 do not fit the SHORT tag: it holds 65535 and the real value is in ISOSpeed.
_ISO_OVERFLOW = 65535
_ISO_SPEED = 0x8833

_DATETIME_RE = re.compile(r"^\s*(\d{4})[:\-/](\d{2})[:\-/](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_OFFSET_RE = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")
_XMP_ORIENTATION_RE = re.compile(rb'tiff:Orientation(?:="|>)\s*([1-8])\b')


@dataclass(frozen=True)
class ExifFields:
    """What the extractor reports from EXIF: the camera fields, GPS and the capture time."""

    exif: Exif
    gps: Gps | None
    taken_at: str | None


def load_exif(raw: bytes | None) -> Image.Exif:
    """Parse raw EXIF (a TIFF structure, with or without the `Exif\\0\\0` prefix); empty if bad."""
    exif = Image.Exif()
    if raw:
        try:
            exif.load(raw)
        except Exception:  # any malformed TIFF structure: no EXIF rather than no image
            return Image.Exif()
    return exif


def xmp_orientation(xmp: bytes | str | None) -> int | None:
    """`tiff:Orientation` from an XMP packet, as Pillow's `getexif()` falls back to it."""
    if not xmp:
        return None
    data = xmp.encode("utf-8", "replace") if isinstance(xmp, str) else xmp
    match = _XMP_ORIENTATION_RE.search(data)
    return int(match[1]) if match else None


def extract_fields(exif: Image.Exif) -> ExifFields:
    """Read the fields the extractor reports; a malformed field is left out, never raised."""
    sub = _ifd(exif, ExifTags.IFD.Exif)
    gps_ifd = _ifd(exif, ExifTags.IFD.GPSInfo)

    datetime_original = _field(_datetime, sub.get(_Base.DateTimeOriginal))
    offset = _field(_offset, sub.get(_Base.OffsetTimeOriginal))
    fields = Exif(
        make=_field(_text, exif.get(_Base.Make)),
        model=_field(_text, exif.get(_Base.Model)),
        lens=_field(_text, sub.get(_Base.LensModel)),
        datetime_original=datetime_original,
        offset_time_original=offset,
        exposure_time=_field(_positive(86_400.0), sub.get(_Base.ExposureTime)),
        f_number=_field(_positive(1_000.0), sub.get(_Base.FNumber)),
        iso=_field(_iso, sub),
        focal_length=_field(_positive(100_000.0), sub.get(_Base.FocalLength)),
        orientation=_field(_orientation, exif.get(_Base.Orientation)),
    )
    taken_at = None
    if datetime_original is not None:
        taken_at = datetime_original + (offset or "")
    return ExifFields(exif=fields, gps=_field(_gps, gps_ifd), taken_at=taken_at)


def _ifd(exif: Image.Exif, tag: int) -> Mapping[int, Any]:
    try:
        return exif.get_ifd(tag)
    except Exception:  # a broken sub-IFD offset: that IFD is missing, the rest still counts
        return {}


def _field(parse: Callable[[Any], T | None], value: Any) -> T | None:
    if value is None:
        return None
    try:
        return parse(value)
    except (ValueError, TypeError, ArithmeticError, IndexError, KeyError):
        return None


def _text(value: Any) -> str | None:
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    if isinstance(value, str):
        # Pillow decodes ASCII tags as latin-1; most non-ASCII strings in the wild are UTF-8.
        raw = value.encode("latin-1", "replace")
    elif isinstance(value, bytes):
        raw = value
    else:
        return None
    raw = raw.split(b"\x00", 1)[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    text = "".join(ch for ch in text if ch.isprintable()).strip()
    return text or None


def _number(value: Any) -> float:
    if isinstance(value, (tuple, list)):
        value = value[0]
    if isinstance(value, bytes):
        raise ValueError("not a number")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError("not finite")
    return number


def _positive(maximum: float) -> Callable[[Any], float | None]:
    """A positive measurement no larger than `maximum` (which also rules out 0xFFFFFFFF/1)."""

    def parse(value: Any) -> float | None:
        number = _number(value)
        return number if 0 < number <= maximum else None

    return parse


def _iso(sub: Mapping[int, Any]) -> int | None:
    value = sub.get(_Base.ISOSpeedRatings)
    if value is None:
        return None
    iso = int(_number(value))
    if iso == _ISO_OVERFLOW and _ISO_SPEED in sub:
        iso = int(_number(sub[_ISO_SPEED]))
    return iso if 0 < iso <= 10_000_000 else None


def _orientation(value: Any) -> int | None:
    orientation = int(_number(value))
    return orientation if 1 <= orientation <= 8 else None


def _datetime(value: Any) -> str | None:
    """EXIF `YYYY:MM:DD HH:MM:SS` → ISO 8601 local time; None for blanks and impossible dates."""
    text = _text(value)
    match = _DATETIME_RE.match(text or "")
    if not match:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    # ValueError on 0000:00:00 and other impossible dates.
    parsed = datetime(year, month, day, hour, minute, second)
    return parsed.isoformat()


def _offset(value: Any) -> str | None:
    """EXIF `OffsetTimeOriginal` (`+02:00`) → `+02:00`; None when out of the real-world range."""
    match = _OFFSET_RE.match(_text(value) or "")
    if not match:
        return None
    sign, hours, minutes = match[1], int(match[2]), int(match[3])
    if hours > 14 or minutes > 59:
        return None
    return f"{sign}{hours:02d}:{minutes:02d}"


def _gps(ifd: Mapping[int, Any]) -> Gps | None:
    """Signed decimal degrees (S and W negative), metres (below sea level negative)."""
    latitude = _coordinate(ifd.get(_GPS.GPSLatitude), ifd.get(_GPS.GPSLatitudeRef), "S", 90.0)
    longitude = _coordinate(ifd.get(_GPS.GPSLongitude), ifd.get(_GPS.GPSLongitudeRef), "W", 180.0)
    if latitude is None or longitude is None:
        return None
    return Gps(latitude=latitude, longitude=longitude, altitude=_field(_altitude, ifd))


def _coordinate(value: Any, ref: Any, negative_ref: str, limit: float) -> float | None:
    if value is None:
        return None
    try:
        parts = (
            [_number(part) for part in value]
            if isinstance(value, (tuple, list))
            else [_number(value)]
        )
    except (ValueError, TypeError, ArithmeticError):
        return None
    if not 1 <= len(parts) <= 3 or any(part < 0 for part in parts):
        return None
    if any(part >= 60 for part in parts[1:]):  # minutes and seconds
        return None
    degrees: float = sum(part / 60.0**i for i, part in enumerate(parts))
    if degrees > limit:
        return None
    if (_text(ref) or "").upper().startswith(negative_ref):
        degrees = -degrees
    return round(degrees, 7)  # ~1 cm: more digits are noise, not precision


def _altitude(ifd: Mapping[int, Any]) -> float | None:
    value = ifd.get(_GPS.GPSAltitude)
    if value is None:
        return None
    altitude = _number(value)
    if not 0 <= altitude <= 100_000:  # metres; the all-ones sentinel and nonsense are left out
        return None
    ref = ifd.get(_GPS.GPSAltitudeRef)
    if isinstance(ref, bytes):
        below = ref[:1] == b"\x01"
    elif isinstance(ref, (tuple, list)):
        below = bool(ref) and int(ref[0]) == 1
    else:
        below = ref is not None and int(ref) == 1
    return round(-altitude if below else altitude, 3)
