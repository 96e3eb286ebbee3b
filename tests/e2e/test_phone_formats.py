"""End to end, as a user: HEIC, WebP and AVIF photos uploaded with `imgproc upload --wait --json`
come back PROCESSED with their EXIF, GPS and labels, and renditions that are upright, in sRGB
and composited on white, as for a JPEG.

The photos are made here from the corpus' cat (CC0, 451x300), stored sideways or upside down as
phones store them (HEIF and AVIF with `irot`/`imir` transforms, WebP with an EXIF orientation),
two of them with a Display P3 profile.
"""

from __future__ import annotations

import io
import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from rendition_checks import mean_abs_diff, means, reference_colours

from imgproc_thumbnailer.renditions import fit_within

from phone_photos import BLUE, RED, display_p3_icc, phone_exif, photo, stored_for
from stack_process import IMGPROC, RunningStack

pytestmark = pytest.mark.e2e

CAT_PHOTO = Path(__file__).parents[1] / "fixtures" / "tagger" / "cat_chelsea.jpg"
# name: (Pillow format, EXIF orientation as stored, with a Display P3 profile)
CATS = {
    "cat.heic": ("HEIF", 6, True),
    "cat.webp": ("WEBP", 8, False),
    "cat.avif": ("AVIF", 3, True),
}


def _cat(path: Path, fmt: str, orientation: int, p3: bool) -> None:
    upright = Image.open(CAT_PHOTO).convert("RGB")
    options: dict[str, Any] = {"quality": 92, "exif": phone_exif(orientation).tobytes()}
    if p3:
        options["icc_profile"] = display_p3_icc()
    stored_for(upright, orientation).save(path, fmt, **options)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("phone-uploads")
    paths: dict[str, Path] = {}
    for name, (fmt, orientation, p3) in CATS.items():
        paths[name] = root / name
        _cat(paths[name], fmt, orientation, p3)
    # Transparent bottom-right quarter, and later frames of another colour.
    paths["sticker.webp"] = root / "sticker.webp"
    paths["sticker.webp"].write_bytes(photo("WEBP", size=(600, 400), alpha=True, frames=3))
    return paths


@pytest.fixture(scope="module")
def results(local_stack: RunningStack, files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        [str(IMGPROC), "upload", *map(str, files.values()), "--wait", "--json", "--timeout", "120"],
        env=local_stack.env(),
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    outputs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {Path(o["file"]).name: o for o in outputs}


def _fetch(rendition: dict[str, Any]) -> Image.Image:
    with urllib.request.urlopen(rendition["url"], timeout=10) as response:
        image = Image.open(io.BytesIO(response.read()))
        image.load()
    return image


@pytest.mark.parametrize("name", list(CATS))
def test_phone_photo_is_processed_with_its_exif_and_labels(
    results: dict[str, dict[str, Any]], name: str
) -> None:
    record = results[name]
    assert record["status"] == "PROCESSED", record
    metadata = record["metadata"]
    assert metadata["format"] == CATS[name][0]
    assert (metadata["exif"]["make"], metadata["exif"]["model"]) == ("Apple", "iPhone 15 Pro")
    assert metadata["taken_at"] == "2024-07-14T18:05:09+02:00"
    assert metadata["gps"]["latitude"] == pytest.approx(48.8581667, abs=1e-6)
    assert metadata["gps"]["longitude"] == pytest.approx(2.2945, abs=1e-6)
    cat = next((t for t in record["tags"] if t["name"] == "Cat"), None)
    assert cat is not None, f"a photo of a cat should be labelled Cat: {record['tags']}"


@pytest.mark.parametrize("name", list(CATS))
def test_phone_photo_renditions_are_upright_and_in_srgb(
    results: dict[str, dict[str, Any]], files: dict[str, Path], name: str
) -> None:
    record = results[name]
    assert record["status"] == "PROCESSED", record
    # Upright (451x300) and converted from its profile, made without our code.
    reference = reference_colours(files[name])
    assert reference.size == (451, 300)
    assert len(record["thumbnails"]) == 2
    for rendition in record["thumbnails"]:
        image = _fetch(rendition)
        assert (image.format, image.mode) == ("JPEG", "RGB")
        long_edge = max(rendition["width"], rendition["height"])
        assert image.size == fit_within(*reference.size, long_edge), image.size
        for got, want in zip(means(image), means(reference), strict=True):
            assert abs(got - want) < 4, (name, means(image), means(reference))
        shown = reference.resize(image.size, Image.Resampling.LANCZOS)
        assert mean_abs_diff(image, shown) < 8, rendition["key"]
        # Turned the wrong way, the same photo is far from it.
        wrong = shown.transpose(Image.Transpose.ROTATE_180)
        assert mean_abs_diff(image, wrong) > 2 * mean_abs_diff(image, shown)


def test_animated_webp_with_alpha_shows_its_first_frame_on_white(
    results: dict[str, dict[str, Any]],
) -> None:
    record = results["sticker.webp"]
    assert record["status"] == "PROCESSED", record
    assert (record["metadata"]["format"], record["metadata"]["mode"]) == ("WEBP", "RGBA")
    preview = max(record["thumbnails"], key=lambda r: r["width"])
    image = _fetch(preview).convert("RGB")
    w, h = image.size
    corners = [image.getpixel((x * w // 4, y * h // 4)) for y in (1, 3) for x in (1, 3)]
    expected = [RED, BLUE, BLUE, (255, 255, 255)]
    for got, want in zip(corners, expected, strict=True):
        assert isinstance(got, tuple)
        assert all(abs(a - b) <= 12 for a, b in zip(got, want, strict=True)), (corners, expected)
