"""End to end, as a user: `imgproc up` running, `imgproc upload --wait --json` in another process.

A JPEG with EXIF and GPS comes back PROCESSED with metadata, labels and a thumbnail that can be
fetched; everything that is not a supported image is REJECTED with a reason a person can read.
Every supported file of the corpus (its orientation,
format and EXIF sets) comes through the whole workflow with both renditions upright, in the
colours a browser shows, never upscaled, without metadata, and with a placeholder that decodes.
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
from rendition_checks import (
    EXIF_FILES,
    FORMAT_FILES,
    IMAGES,
    ORIENTATION_FILES,
    mean_abs_diff,
    means,
    reference_colours,
)

from imgproc_shared.settings import Settings
from imgproc_thumbnailer.config import ThumbnailSettings
from imgproc_thumbnailer.renditions import fit_within
from imgproc_thumbnailer.thumbhash import decode_placeholder

from stack_process import IMGPROC, RunningStack

pytestmark = pytest.mark.e2e


CAT_PHOTO = Path(__file__).parents[1] / "fixtures" / "tagger" / "cat_chelsea.jpg"
# darknet's sample photo: a person with a dog and a horse.
PERSON_WITH_DOG = Path(__file__).parents[1] / "fixtures" / "tagger" / "person_dog_horse.jpg"
CORPUS = sorted(
    {*ORIENTATION_FILES, "orientation_rectangle_2x1_o8.jpg", *FORMAT_FILES, *EXIF_FILES}
)
# The defaults the stack runs with: the thumbnail's and the preview's long edges.
RENDITION_EDGES = (Settings(_env_file=None).thumbnail_size, ThumbnailSettings().preview_size)
PRIVATE_MARKERS = (b"Exif\x00\x00", b"ICC_PROFILE", b"ns.adobe.com/xap", b"Photoshop 3.0")


def _photo_with_exif_and_gps(path: Path) -> None:
    """A real photo of a cat (CC0, 451x300) given camera EXIF and a GPS position
    (48.8584 N, 2.2945 E, 35 m)."""
    image = Image.open(CAT_PHOTO).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0110] = "Canon EOS R6"  # Model
    exif[0x0112] = 1  # Orientation
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0x9003] = "2024:06:01 14:30:05"  # DateTimeOriginal
    exif_ifd[0x9011] = "+02:00"  # OffsetTimeOriginal
    exif_ifd[0x829A] = 1 / 250  # ExposureTime
    exif_ifd[0x829D] = 4.0  # FNumber
    exif_ifd[0x8827] = 200  # ISOSpeedRatings
    exif_ifd[0x920A] = 35.0  # FocalLength
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 30.24)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.2)
    gps[5] = 0
    gps[6] = 35.0
    image.save(path, "JPEG", quality=90, exif=exif)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("uploads")
    paths = {
        name: root / name
        for name in (
            "camera.jpg",
            "screenshot.png",
            "png_named.jpg",
            "animation.gif",
            "notes.jpg",
            "truncated.jpg",
            "person_with_dog.jpg",
        )
    }
    paths["person_with_dog.jpg"].write_bytes(PERSON_WITH_DOG.read_bytes())
    _photo_with_exif_and_gps(paths["camera.jpg"])
    Image.new("RGBA", (300, 200), (10, 120, 200, 255)).save(paths["screenshot.png"], "PNG")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(paths["png_named.jpg"], "PNG")
    Image.new("P", (32, 32)).save(paths["animation.gif"], "GIF")
    paths["notes.jpg"].write_text("these are my notes, not a photo\n")
    buffer = io.BytesIO()
    Image.effect_noise((800, 600), 64).convert("RGB").save(buffer, "JPEG", quality=95)
    paths["truncated.jpg"].write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return paths


def _upload(stack: RunningStack, *paths: Path) -> dict[str, dict[str, Any]]:
    result = subprocess.run(
        [str(IMGPROC), "upload", *map(str, paths), "--wait", "--json", "--timeout", "90"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    outputs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {Path(o["file"]).name: o for o in outputs}


@pytest.fixture(scope="module")
def results(local_stack: RunningStack, files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    return _upload(local_stack, *files.values())


@pytest.fixture(scope="module")
def corpus_results(local_stack: RunningStack) -> dict[str, dict[str, Any]]:
    return _upload(local_stack, *(IMAGES / name for name in CORPUS))


@pytest.mark.parametrize("name", CORPUS)
def test_every_supported_corpus_file_gets_correct_renditions(
    corpus_results: dict[str, dict[str, Any]], name: str
) -> None:
    record = corpus_results[name]
    assert record["status"] == "PROCESSED", record
    # Upright, full size, composited on white and in sRGB, made without our code.
    reference = reference_colours(IMAGES / name)
    renditions = sorted(record["thumbnails"], key=lambda r: max(r["width"], r["height"]))
    assert len(renditions) == len(RENDITION_EDGES), renditions
    for rendition, long_edge in zip(renditions, RENDITION_EDGES, strict=True):
        with urllib.request.urlopen(rendition["url"], timeout=10) as response:
            data = response.read()
        image = Image.open(io.BytesIO(data))
        image.load()
        assert (image.format, image.mode) == ("JPEG", "RGB")
        # The upright shape, never larger than the original.
        assert image.size == (rendition["width"], rendition["height"])
        assert image.size == fit_within(*reference.size, long_edge), (image.size, reference.size)
        assert not image.getexif()
        assert not [marker for marker in PRIVATE_MARKERS if marker in data]
        for got, want in zip(means(image), means(reference), strict=True):
            assert abs(got - want) < 4, (rendition["key"], means(image), means(reference))
        shown = reference.resize(image.size, Image.Resampling.LANCZOS)
        assert mean_abs_diff(image, shown) < 8, rendition["key"]
    placeholder = decode_placeholder(record["placeholder"])
    assert placeholder.mode == "RGBA" and 0 < max(placeholder.size) <= 32


def test_photo_with_exif_and_gps_is_processed(results: dict[str, dict[str, Any]]) -> None:
    photo = results["camera.jpg"]
    assert photo["status"] == "PROCESSED", photo
    assert photo["error"] is None
    metadata = photo["metadata"]
    assert (metadata["format"], metadata["width"], metadata["height"]) == ("JPEG", 451, 300)
    assert metadata["bytes"] > 0 and len(metadata["sha256"]) == 64
    assert metadata["exif"]["make"] == "Canon" and metadata["exif"]["model"] == "Canon EOS R6"
    assert metadata["exif"]["iso"] == 200
    assert metadata["gps"]["latitude"] == pytest.approx(48.8584, abs=1e-4)
    assert metadata["gps"]["longitude"] == pytest.approx(2.2945, abs=1e-4)
    assert metadata["gps"]["altitude"] == pytest.approx(35.0)
    assert metadata["taken_at"].startswith("2024-06-01T14:30:05")
    assert all({"name", "confidence", "parents"} <= set(t) for t in photo["tags"])
    cat = next((t for t in photo["tags"] if t["name"] == "Cat"), None)
    assert cat is not None, f"a photo of a cat should be labelled Cat: {photo['tags']}"
    assert cat["confidence"] >= 60 and "Animal" in cat["parents"]
    assert photo["execution_arn"].endswith(":" + photo["image_id"])
    thumbnail = next(t for t in photo["thumbnails"] if max(t["width"], t["height"]) <= 256)
    assert max(thumbnail["width"], thumbnail["height"]) == 256
    with urllib.request.urlopen(thumbnail["url"], timeout=10) as response:
        served = Image.open(io.BytesIO(response.read()))
    assert served.format == "JPEG" and served.size == (thumbnail["width"], thumbnail["height"])
    assert not served.getexif(), "thumbnails must not carry EXIF (GPS)"


def test_a_person_with_a_dog_gets_both_labels_with_boxes_inside_the_image(
    results: dict[str, dict[str, Any]],
) -> None:
    photo = results["person_with_dog.jpg"]
    assert photo["status"] == "PROCESSED", photo
    tags = {tag["name"]: tag for tag in photo["tags"]}
    for name in ("Person", "Dog"):
        assert name in tags, f"{name} missing from {sorted(tags)}"
        assert tags[name]["instances"], tags[name]
        for instance in tags[name]["instances"]:
            box = instance["bounding_box"]
            assert 0 <= box["left"] and box["left"] + box["width"] <= 1 + 1e-6, box
            assert 0 <= box["top"] and box["top"] + box["height"] <= 1 + 1e-6, box
            assert box["width"] > 0.05 and box["height"] > 0.05, box
    assert tags["Person"]["parents"] == []
    assert tags["Dog"]["parents"] == ["Mammal", "Animal"]


def test_png_is_processed(results: dict[str, dict[str, Any]]) -> None:
    png = results["screenshot.png"]
    assert png["status"] == "PROCESSED", png
    assert png["metadata"]["format"] == "PNG"
    assert png["thumbnails"]


def test_png_named_jpg_is_identified_by_content(results: dict[str, dict[str, Any]]) -> None:
    named = results["png_named.jpg"]
    assert named["status"] == "PROCESSED", named
    assert named["metadata"]["format"] == "PNG"


@pytest.mark.parametrize(
    ("name", "code", "words"),
    [
        ("animation.gif", "ImageProc.UnsupportedFormat", "GIF"),
        ("notes.jpg", "ImageProc.CorruptImage", "not an image"),
        ("truncated.jpg", "ImageProc.CorruptImage", "truncated"),
    ],
)
def test_unsupported_and_broken_files_are_rejected(
    results: dict[str, dict[str, Any]], name: str, code: str, words: str
) -> None:
    rejected = results[name]
    assert rejected["status"] == "REJECTED", rejected
    assert rejected["error"]["code"] == code
    assert words.lower() in rejected["error"]["message"].lower()
    assert rejected["thumbnails"] == [] and rejected["tags"] == []


def test_status_command_shows_an_image(
    local_stack: RunningStack, results: dict[str, dict[str, Any]]
) -> None:
    image_id = results["camera.jpg"]["image_id"]
    shown = subprocess.run(
        [str(IMGPROC), "status", image_id, "--json"],
        env=local_stack.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "PROCESSED"


def test_missing_file_is_a_clear_error(local_stack: RunningStack, tmp_path: Path) -> None:
    missing = subprocess.run(
        [str(IMGPROC), "upload", str(tmp_path / "nope.jpg")],
        env=local_stack.env(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2
    assert "nope.jpg: no such file" in missing.stderr
    assert "Traceback" not in missing.stderr
