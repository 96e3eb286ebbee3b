"""HEIC/HEIF, AVIF and WebP in the extractor: identified by content, sizes and pixel limits from
their headers, EXIF and orientation, and hostile versions rejected with a reason."""

from __future__ import annotations

import io
import os
import struct

import pillow_heif
import pytest
from PIL import Image

from imgproc_extractor import isobmff
from imgproc_extractor.handler import HEAD_BYTES, TAIL_BYTES
from imgproc_extractor.metadata import ImageFacts, NeedWholeObject, ObjectBytes, describe
from imgproc_shared.errors import CorruptImage, TooLarge
from imgproc_shared.settings import Settings
from imgproc_shared.workflow import WorkflowLimits, WorkflowTargets, build_definition

from phone_photos import FORMATS, iso_boxes, photo, webp_with_canvas, with_ispe

MAX_PIXELS = 100_000_000


def facts_of(data: bytes, max_pixels: int = MAX_PIXELS) -> ImageFacts:
    return describe(ObjectBytes.whole(data), max_pixels)


def ranged(data: bytes, head: int, tail: int) -> ObjectBytes:
    return ObjectBytes(size=len(data), head=data[:head], tail=data[-tail:], complete=False)


def noisy_heic(size: tuple[int, int] = (640, 480)) -> bytes:
    """A HEIC larger than the handler's head read (noise does not compress)."""
    image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    buffer = io.BytesIO()
    image.save(buffer, "HEIF", quality=95)
    return buffer.getvalue()


# --- identified by content, with their metadata ----------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_phone_format_is_identified_with_its_exif(fmt: str) -> None:
    facts = facts_of(photo(fmt, size=(96, 64)))
    assert (facts.format, facts.width, facts.height, facts.mode) == (fmt, 96, 64, "RGB")
    exif = facts.fields.exif
    assert (exif.make, exif.model, exif.iso) == ("Apple", "iPhone 15 Pro", 64)
    assert exif.datetime_original == "2024-07-14T18:05:09"
    assert facts.fields.taken_at == "2024-07-14T18:05:09+02:00"
    assert facts.fields.gps is not None
    assert (facts.fields.gps.latitude, facts.fields.gps.longitude) == (48.8581667, 2.2945)
    assert facts.fields.gps.altitude == 35.0


@pytest.mark.parametrize("fmt", FORMATS)
def test_alpha_is_reported_in_the_mode(fmt: str) -> None:
    assert facts_of(photo(fmt, alpha=True)).mode == "RGBA"


@pytest.mark.parametrize(("fmt", "brand"), [("HEIF", b"heic"), ("AVIF", b"avif")])
def test_iso_media_brands_decide_the_format(fmt: str, brand: bytes) -> None:
    data = photo(fmt, exif=False)
    assert data[8:12] == brand
    assert facts_of(data).format == fmt


def test_heif_branded_only_mif1_is_told_by_its_codec_configuration() -> None:
    data = photo("HEIF", exif=False)
    ftyp_end = int.from_bytes(data[:4], "big")
    # Major brand and compatible brands without the HEVC one.
    generic = data[:8] + b"mif1" + data[12:ftyp_end].replace(b"heic", b"miaf") + data[ftyp_end:]
    assert b"heic" not in generic[:ftyp_end]
    facts = facts_of(generic)
    assert (facts.format, facts.width, facts.height) == ("HEIF", 96, 64)


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_heif_transforms_are_applied_by_the_decoder_so_it_reports_upright(orientation: int) -> None:
    """libheif applies `irot`/`imir` on decode and hands over EXIF orientation 1: the upright
    size and orientation 1 are what the thumbnailer and tagger will see."""
    data = photo("HEIF", size=(96, 64), orientation=orientation)
    assert b"irot" in data  # pillow-heif wrote the EXIF orientation as a transform
    facts = facts_of(data)
    assert (facts.width, facts.height) == (96, 64)
    assert facts.fields.exif.orientation == 1


@pytest.mark.parametrize("fmt", ["AVIF", "WEBP"])
@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_avif_and_webp_report_the_orientation_to_apply(fmt: str, orientation: int) -> None:
    """Pillow decodes their stored pixels (an AVIF's `irot`/`imir` become its EXIF orientation),
    so, as for a JPEG, the stored size and the orientation to apply are reported."""
    facts = facts_of(photo(fmt, size=(96, 64), orientation=orientation))
    stored = (64, 96) if orientation in (6, 8) else (96, 64)
    assert (facts.width, facts.height) == stored
    assert facts.fields.exif.orientation == orientation


@pytest.mark.parametrize("fmt", ["WEBP", "AVIF"])
def test_animated_images_are_described_by_their_canvas(fmt: str) -> None:
    facts = facts_of(photo(fmt, size=(48, 32), frames=3))
    assert (facts.format, facts.width, facts.height) == (fmt, 48, 32)


# --- header only: no pixel is decoded --------------------------------------------------------


def test_heic_metadata_is_read_without_decoding_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_decoding(_: object) -> bytes:
        raise AssertionError("the HEIC pixels were decoded")

    data = photo("HEIF", size=(96, 64), orientation=6, alpha=True)
    monkeypatch.setattr(pillow_heif.heif.HeifImage, "data", property(no_decoding))
    facts = facts_of(data)
    assert (facts.format, facts.width, facts.height) == ("HEIF", 96, 64)
    assert facts.fields.exif.model == "iPhone 15 Pro"
    # The patch does stop a decode: loading the same file fails.
    with pytest.raises(AssertionError, match="decoded"):
        Image.open(io.BytesIO(data)).load()


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_pixel_bomb_is_rejected_from_the_meta_box_before_any_library_parses_it(
    fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bomb = with_ispe(photo(fmt), 40000, 30000)

    def never(*_: object, **__: object) -> None:
        raise AssertionError("Pillow was asked to open the bomb")

    monkeypatch.setattr(Image, "open", never)
    with pytest.raises(TooLarge, match=r"40000×30000 \(1200\.0 megapixels\)"):
        facts_of(bomb)


def test_heic_bomb_is_rejected_from_the_head_alone() -> None:
    bomb = with_ispe(noisy_heic(), 40000, 30000)
    assert len(bomb) > HEAD_BYTES + TAIL_BYTES
    with pytest.raises(TooLarge):
        describe(ranged(bomb, HEAD_BYTES, TAIL_BYTES), MAX_PIXELS)


def test_large_heic_read_in_ranges_then_whole_agrees() -> None:
    data = noisy_heic()
    with pytest.raises(NeedWholeObject):
        describe(ranged(data, HEAD_BYTES, TAIL_BYTES), MAX_PIXELS)
    facts = facts_of(data)
    assert (facts.format, facts.width, facts.height) == ("HEIF", 640, 480)


def test_webp_canvas_bomb_is_rejected_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    bomb = webp_with_canvas(photo("WEBP"), 16000, 16000)
    monkeypatch.setattr(Image, "open", lambda *_, **__: pytest.fail("opened"))
    with pytest.raises(TooLarge, match="16000×16000"):
        facts_of(bomb)
    with pytest.raises(TooLarge):
        describe(ranged(bomb, 64, 64), MAX_PIXELS)


def test_pixel_limit_of_the_settings_applies() -> None:
    with pytest.raises(TooLarge, match=r"the limit is 0\.005 megapixels"):
        facts_of(photo("HEIF", size=(96, 64)), max_pixels=5000)


# --- truncated and broken ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("keep", [0.97, 0.6, 0.25])
def test_truncated_file_is_rejected(fmt: str, keep: float) -> None:
    data = photo(fmt, size=(96, 64))
    with pytest.raises(CorruptImage, match="truncated"):
        facts_of(data[: int(len(data) * keep)])


def test_truncated_webp_is_rejected_from_its_head() -> None:
    data = photo("WEBP", size=(96, 64))
    cut = data[: len(data) - 40]
    with pytest.raises(CorruptImage, match="truncated"):
        describe(ranged(cut, 64, 16), MAX_PIXELS)


def test_box_claiming_more_than_the_file_is_truncation() -> None:
    data = bytearray(photo("HEIF"))
    _, start, _ = next(box for box in iso_boxes(bytes(data)) if box[0] == b"meta")
    struct.pack_into(">I", data, start, 2**32 - 1)
    with pytest.raises(CorruptImage, match=r"the HEIF is truncated \(its meta box claims"):
        facts_of(bytes(data))


def test_huge_metadata_box_is_refused_before_it_is_read() -> None:
    data = photo("HEIF")
    meta = next(box for box in iso_boxes(data) if box[0] == b"meta")
    size = isobmff.MAX_META_BYTES + 1024
    huge = data[: meta[1]] + struct.pack(">I4s", size, b"meta") + bytes(size - 8)
    with pytest.raises(CorruptImage, match="metadata box is 16 MiB"):
        describe(ranged(huge, HEAD_BYTES, TAIL_BYTES), MAX_PIXELS)


def test_box_larger_than_its_parent_is_broken() -> None:
    data = bytearray(photo("HEIF"))
    ispe = data.find(b"ispe") - 4
    struct.pack_into(">I", data, ispe, 100_000)
    with pytest.raises(CorruptImage, match="the HEIF header is broken"):
        facts_of(bytes(data))


def test_corrupt_webp_chunk_is_broken() -> None:
    data = bytearray(photo("WEBP", exif=False))  # a simple lossless WebP
    data[12:16] = b"JUNK"
    with pytest.raises(CorruptImage, match="WebP header is broken"):
        facts_of(bytes(data))


# --- which formats the workflow accepts ------------------------------------------------------


def test_phone_formats_are_accepted_by_default_and_one_setting_narrows_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IMGPROC_SUPPORTED_FORMATS", raising=False)
    assert Settings().accepted_formats() == ["JPEG", "PNG", "HEIF", "WEBP", "AVIF", "MPO"]
    assert Settings(supported_formats="JPEG,PNG").accepted_formats() == ["JPEG", "PNG", "MPO"]
    assert Settings(supported_formats="jpeg,heic").accepted_formats() == ["JPEG", "HEIF", "MPO"]
    targets = WorkflowTargets("queue-url", "validated-arn", "stored-arn", "images")
    choice = build_definition(targets, WorkflowLimits())["States"]["Validate"]
    accepted = [rule["StringEquals"] for rule in choice["Choices"][0]["Or"]]
    assert accepted == ["JPEG", "PNG", "HEIF", "WEBP", "AVIF", "MPO"]
