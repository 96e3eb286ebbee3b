"""EXIF, GPS and capture time: exact values for the fixture files, generated camera EXIF, and
malformed fields that are left out without failing the image."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from PIL import ExifTags, Image, ImageFile

from imgproc_extractor.exif import ExifFields, extract_fields, load_exif, xmp_orientation
from imgproc_extractor.metadata import ImageFacts, ObjectBytes, describe
from imgproc_shared.models import Gps

from extractor_samples import R, camera_exif, fixture_bytes, jpeg_bytes, png_chunk

MAX_PIXELS = 100_000_000


def facts_of(data: bytes) -> ImageFacts:
    return describe(ObjectBytes.whole(data), MAX_PIXELS)


# Every file in the corpus's exif/ folder, as a person reading the EXIF would write it down.
EXPECTED_EXIF: dict[str, dict[str, Any]] = {
    # Pillow's GPS test file: its latitude is the 0xFFFFFFFF/1 "unknown" sentinel as a single
    # rational, without a reference or a longitude, and its exposure time is the same sentinel:
    # no usable position, exposure left out.
    "exif_gps.jpg": {
        "make": "Make",
        "model": "XXX-XXX",
        "datetime_original": "2099-09-29T10:10:10",
    },
    "flower_canon.jpg": {
        "make": "Canon",
        "model": "Canon PowerShot S40",
        "datetime_original": "2003-12-14T12:01:44",
        "exposure_time": 0.002,
        "f_number": 4.9,
        "focal_length": 21.3125,
        "orientation": 1,
    },
    "iptc_nokia.jpg": {
        "make": "Nokia",
        "model": "N70-1",
        "datetime_original": "2006-07-08T21:14:45",
        "exposure_time": 0.007396,
        "f_number": 3.2,
        "iso": 125,
        "focal_length": 4.5,
        "orientation": 1,
    },
    "no_exif.jpg": {},
    "r_canon_gps.jpg": {  # its GPS IFD holds only GPSVersionID: no position
        "make": "Canon",
        "model": "Canon PowerShot G1 X Mark II",
        "datetime_original": "2013-12-17T14:04:24",
        "exposure_time": 0.02,
        "f_number": 5.6,
        "iso": 100,
        "focal_length": 12.5,
        "orientation": 1,
    },
    "r_sony.jpg": {
        "make": "SONY",
        "model": "DSC-RX1R",
        "datetime_original": "2013-04-13T10:22:18",
        "exposure_time": 0.008,
        "f_number": 8.0,
        "iso": 100,
        "focal_length": 35.0,
        "orientation": 1,
    },
    "xmp_canon.jpg": {
        "make": "Canon",
        "model": "Canon EOS Rebel T6",
        "lens": "EF-S18-55mm f/3.5-5.6 III",
        "datetime_original": "2018-10-27T13:27:23",
        "exposure_time": 0.01,
        "f_number": 4.0,
        "iso": 100,
        "focal_length": 25.0,
    },
    "exif_in_png.png": {"orientation": 1},  # eXIf chunk after the image data
    "png_exif_orientation3.png": {"orientation": 3},  # ImageMagick "Raw profile type exif"
    "png_xmp_orientation3.png": {"orientation": 3},  # XMP tiff:Orientation only
    "sugarshack_3ds.mpo": {
        "make": "Nintendo",
        "model": "Nintendo 3DS",
        "datetime_original": "2014-03-02T14:17:39",
    },
}


@pytest.mark.parametrize("name", sorted(EXPECTED_EXIF))
def test_fixture_exif_is_read_exactly(name: str) -> None:
    facts = facts_of(fixture_bytes(name))
    assert facts.fields.exif.model_dump(exclude_none=True) == EXPECTED_EXIF[name]
    assert facts.fields.gps is None
    assert facts.fields.taken_at == EXPECTED_EXIF[name].get("datetime_original")


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_fixtures(orientation: int) -> None:
    facts = facts_of(fixture_bytes(f"hopper_orientation_{orientation}.jpg"))
    # hopper_orientation_1.jpg carries no EXIF at all: orientation unknown means upright.
    assert facts.fields.exif.orientation == (None if orientation == 1 else orientation)
    assert (facts.width, facts.height) == (128, 128)


def test_orientation_of_a_non_square_image_keeps_stored_dimensions() -> None:
    facts = facts_of(fixture_bytes("orientation_rectangle_2x1_o8.jpg"))
    assert (facts.width, facts.height, facts.fields.exif.orientation) == (2, 1, 8)


def test_orientation_matches_pillow_for_every_fixture() -> None:
    """The thumbnailer rotates by Pillow's reading of the orientation: ours must agree."""
    from extractor_samples import IMAGES

    for path in sorted(IMAGES.glob("*")):
        if path.suffix not in (".jpg", ".png", ".mpo") or path.stat().st_size == 0:
            continue
        if path.name.startswith(("truncated", "broken")):
            continue
        with Image.open(path) as im:
            im.load()
            expected = im.getexif().get(ExifTags.Base.Orientation)
        assert facts_of(path.read_bytes()).fields.exif.orientation == expected, path.name


def test_generated_camera_exif_with_gps_south_west_below_sea_level() -> None:
    facts = facts_of(jpeg_bytes(exif=camera_exif()))
    exif = facts.fields.exif
    assert exif.model_dump() == {
        "make": "Canon",
        "model": "EOS R5",
        "lens": "RF24-105mm F4 L IS USM",
        "datetime_original": "2021-06-01T12:30:45",
        "offset_time_original": "-03:30",
        "exposure_time": 0.004,
        "f_number": 2.8,
        "iso": 800,
        "focal_length": 50.0,
        "orientation": 6,
    }
    # 33° 51' 35.67" S, 70° 30' W, 12 m below sea level.
    assert facts.fields.gps == Gps(latitude=-33.8599083, longitude=-70.5, altitude=-12.0)
    assert facts.fields.taken_at == "2021-06-01T12:30:45-03:30"


def test_gps_north_east_with_decimal_minutes() -> None:
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (R(56, 1), R(9359705, 1000000), R(0, 1))
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (R(10, 1), R(12492287, 1000000), R(0, 1))
    gps[ExifTags.GPS.GPSAltitudeRef] = b"\x00"
    gps[ExifTags.GPS.GPSAltitude] = R(4305, 10)
    facts = facts_of(jpeg_bytes(exif=exif))
    assert facts.fields.gps == Gps(latitude=56.1559951, longitude=10.2082048, altitude=430.5)


# --- malformed EXIF: the field is left out, the image is not failed -------------------------


def _fields_with(
    sub: dict[int, Any] | None = None, gps: dict[int, Any] | None = None, **base: Any
) -> ExifFields:
    exif = Image.Exif()
    for name, value in base.items():
        exif[getattr(ExifTags.Base, name)] = value
    for tag, value in (sub or {}).items():
        exif.get_ifd(ExifTags.IFD.Exif)[tag] = value
    for tag, value in (gps or {}).items():
        exif.get_ifd(ExifTags.IFD.GPSInfo)[tag] = value
    # Through a real JPEG, so the values go through Pillow's writer and reader.
    return facts_of(jpeg_bytes(exif=exif)).fields


def test_zero_denominator_and_sentinel_rationals_are_left_out() -> None:
    fields = _fields_with(
        sub={
            ExifTags.Base.ExposureTime: R(1, 0),
            ExifTags.Base.FNumber: R(0xFFFFFFFF, 1),
            ExifTags.Base.FocalLength: R(0, 1),
            ExifTags.Base.ISOSpeedRatings: 0,
        },
        Make="Fuji",
    )
    assert fields.exif.model_dump(exclude_none=True) == {"make": "Fuji"}


def test_impossible_dates_and_offsets_are_left_out() -> None:
    fields = _fields_with(
        sub={
            ExifTags.Base.DateTimeOriginal: "0000:00:00 00:00:00",
            ExifTags.Base.OffsetTimeOriginal: "+99:00",
        }
    )
    assert fields.exif.datetime_original is None
    assert fields.exif.offset_time_original is None
    assert fields.taken_at is None
    fields = _fields_with(
        sub={
            ExifTags.Base.DateTimeOriginal: "2019:02:30 10:00:00",  # 30 February
            ExifTags.Base.OffsetTimeOriginal: "+05:45",
        }
    )
    assert (fields.exif.datetime_original, fields.exif.offset_time_original) == (None, "+05:45")
    assert fields.taken_at is None


def test_orientation_out_of_range_is_left_out() -> None:
    assert _fields_with(Orientation=9).exif.orientation is None
    assert _fields_with(Orientation=0).exif.orientation is None


def test_strings_are_stripped_of_nuls_padding_and_decoded() -> None:
    fields = _fields_with(Make="OLYMPUS IMAGING CORP.  \x00\x00", Model="   \x00")
    assert fields.exif.make == "OLYMPUS IMAGING CORP."
    assert fields.exif.model is None  # nothing but padding


def test_utf8_and_latin1_bytes_in_ascii_tags() -> None:
    # Raw bytes in the ASCII tag, as cameras and editors write them.
    assert _fields_with(Make="Café".encode()).exif.make == "Café"
    # Not valid UTF-8: read as latin-1 rather than dropped or garbled into replacement marks.
    assert _fields_with(Make=b"Caf\xe9").exif.make == "Café"


def test_iso_over_65535_comes_from_iso_speed() -> None:
    fields = _fields_with(sub={ExifTags.Base.ISOSpeedRatings: 65535, 0x8833: 102400})
    assert fields.exif.iso == 102400


def test_gps_without_longitude_or_out_of_range_is_left_out() -> None:
    latitude = (R(33, 1), R(51, 1), R(0, 1))
    assert _fields_with(gps={ExifTags.GPS.GPSLatitude: latitude}).gps is None
    assert (
        _fields_with(
            gps={
                ExifTags.GPS.GPSLatitude: (R(95, 1), R(0, 1), R(0, 1)),
                ExifTags.GPS.GPSLongitude: (R(10, 1), R(0, 1), R(0, 1)),
            }
        ).gps
        is None
    )
    # Minutes past 59: malformed.
    assert (
        _fields_with(
            gps={
                ExifTags.GPS.GPSLatitude: (R(45, 1), R(75, 1), R(0, 1)),
                ExifTags.GPS.GPSLongitude: (R(10, 1), R(0, 1), R(0, 1)),
            }
        ).gps
        is None
    )


def test_gps_with_bad_altitude_keeps_the_position() -> None:
    fields = _fields_with(
        gps={
            ExifTags.GPS.GPSLatitude: (R(45, 1), R(30, 1), R(0, 1)),
            ExifTags.GPS.GPSLongitude: (R(10, 1), R(0, 1), R(0, 1)),
            ExifTags.GPS.GPSAltitude: R(5, 0),
        }
    )
    assert fields.gps == Gps(latitude=45.5, longitude=10.0, altitude=None)


def _tiff(entries: list[tuple[int, int, int, bytes]], next_ifd: int = 0) -> bytes:
    """A little-endian TIFF with one IFD; values of up to 4 bytes inline."""
    body = struct.pack("<2sHI", b"II", 42, 8) + struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\x00")
    return body + struct.pack("<I", next_ifd)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_broken_sub_ifd_offsets_leave_the_rest_intact() -> None:
    raw = _tiff(
        [
            (ExifTags.Base.Make, 2, 4, b"Sony"),
            (ExifTags.Base.Orientation, 3, 1, struct.pack("<H", 3)),
            (ExifTags.IFD.Exif, 4, 1, struct.pack("<I", 0x7FFFFFF0)),  # far past the end
            (ExifTags.IFD.GPSInfo, 4, 1, struct.pack("<I", 0x7FFFFFF0)),
        ]
    )
    facts = facts_of(jpeg_bytes(exif=b"Exif\x00\x00" + raw))
    assert facts.fields.exif.model_dump(exclude_none=True) == {"make": "Sony", "orientation": 3}
    assert facts.fields.gps is None


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
@pytest.mark.parametrize(
    "raw",
    [b"Exif\x00\x00garbage that is not TIFF", b"Exif\x00\x00II*\x00\xff\xff\xff\x7f", b"\x00"],
)
def test_undecodable_exif_block_gives_no_exif_not_an_error(raw: bytes) -> None:
    facts = facts_of(jpeg_bytes(exif=raw))
    assert facts.format == "JPEG"
    assert facts.fields.exif.model_dump(exclude_none=True) == {}


def test_load_exif_and_xmp_orientation_helpers() -> None:
    assert dict(load_exif(None)) == {}
    assert xmp_orientation(b'<x tiff:Orientation="6"/>') == 6
    assert xmp_orientation("<tiff:Orientation>8</tiff:Orientation>") == 8
    assert xmp_orientation(b'<x tiff:Orientation="0"/>') is None
    assert extract_fields(load_exif(b"")).gps is None


# --- PNG: EXIF without decoding the image ---------------------------------------------------


def _png_with_exif_after_image_data(orientation: int) -> bytes:
    """A PNG whose eXIf chunk follows IDAT (allowed, and what Pillow's getexif() decodes for)."""
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "Phone"
    plain = _png((40, 30))
    iend = plain.rindex(b"IEND") - 4
    return plain[:iend] + png_chunk(b"eXIf", exif.tobytes()) + plain[iend:]


def _png(size: tuple[int, int]) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", size, (1, 2, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def test_png_exif_after_image_data_without_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png_with_exif_after_image_data(6)

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    whole = facts_of(data)
    assert whole.fields.exif.model_dump(exclude_none=True) == {"make": "Phone", "orientation": 6}
    # Read in ranges: the eXIf is found in the tail window by its length and CRC.
    ranged = describe(ObjectBytes(len(data), data[:100], data[-200:], complete=False), MAX_PIXELS)
    assert ranged == whole


def test_jpeg_and_png_fixtures_are_described_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for name in EXPECTED_EXIF:
        facts_of(fixture_bytes(name))
