"""The labelled photo set that `make bench` scores the tagger on: complete, small, licensed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

LABELLED = Path(__file__).resolve().parents[2] / "fixtures" / "labelled"
CATEGORIES = {"people", "animals", "vehicles", "food", "indoor", "outdoor"}
ORIENTATION_TAG = 0x0112


def _photos() -> list[dict[str, Any]]:
    document = json.loads((LABELLED / "labels.json").read_text("utf-8"))
    photos: list[dict[str, Any]] = document["photos"]
    return photos


PHOTOS = _photos()


def _licence_rows(folder: Path) -> str:
    return (folder / "LICENSES.md").read_text("utf-8")


def test_the_set_is_big_enough_and_covers_every_category() -> None:
    assert 25 <= len(PHOTOS) <= 40
    files = [photo["file"] for photo in PHOTOS]
    assert len(set(files)) == len(files), "a photo is listed twice"
    categories = {photo["category"] for photo in PHOTOS}
    assert categories == CATEGORIES
    for category in CATEGORIES:
        assert sum(photo["category"] == category for photo in PHOTOS) >= 3, category
    assert sum(photo["main_subject_is_person"] for photo in PHOTOS) >= 6
    assert sum(bool(photo.get("hard")) for photo in PHOTOS) >= 3
    assert sum("region" in photo for photo in PHOTOS) >= 5


@pytest.mark.parametrize("photo", PHOTOS, ids=[Path(p["file"]).name for p in PHOTOS])
def test_every_photo_is_there_decodes_and_is_small(photo: dict[str, Any]) -> None:
    path = LABELLED / photo["file"]
    assert path.is_file(), path
    with Image.open(path) as image:
        assert image.format == "JPEG"
        image.load()
        assert max(image.size) <= 800, image.size
    assert photo["expected"], "no expected label"
    assert all(isinstance(name, str) and name for name in photo["expected"])
    assert isinstance(photo["main_subject_is_person"], bool)
    if photo["main_subject_is_person"]:
        assert "Person" in photo["expected"]


@pytest.mark.parametrize("photo", PHOTOS, ids=[Path(p["file"]).name for p in PHOTOS])
def test_every_photo_has_its_licence_row(photo: dict[str, Any]) -> None:
    path = LABELLED / photo["file"]
    # Photos shared with the tagger's own fixtures are licensed beside them.
    assert f"`{path.name}`" in _licence_rows(path.parent)


def test_every_photo_in_the_folder_is_labelled_and_the_set_stays_small() -> None:
    listed = {(LABELLED / photo["file"]).resolve() for photo in PHOTOS}
    on_disk = {path.resolve() for path in LABELLED.glob("*.jpg")}
    assert on_disk <= listed, f"unlabelled: {sorted(p.name for p in on_disk - listed)}"
    assert sum(path.stat().st_size for path in listed) < 3_500_000


def test_regions_are_fractions_of_the_image_and_name_an_expected_label() -> None:
    for photo in PHOTOS:
        region = photo.get("region")
        if region is None:
            continue
        assert region["label"] in photo["expected"], photo["file"]
        assert 0 <= region["left"] and 0 <= region["top"], photo["file"]
        assert 0 < region["width"] and 0 < region["height"], photo["file"]
        assert region["left"] + region["width"] <= 1.0001, photo["file"]
        assert region["top"] + region["height"] <= 1.0001, photo["file"]


def _orientation(path: Path) -> int:
    with Image.open(path) as image:
        return int(image.getexif().get(ORIENTATION_TAG, 1))


def test_one_photo_is_stored_rotated_with_orientation_6_and_a_region() -> None:
    rotated = [photo for photo in PHOTOS if _orientation(LABELLED / photo["file"]) == 6]
    assert len(rotated) == 1
    photo = rotated[0]
    assert "region" in photo
    with Image.open(LABELLED / photo["file"]) as image:
        stored = image.size
        upright = ImageOps.exif_transpose(image).size
    # A portrait photo stored landscape: the region is given in the upright frame.
    assert stored == (upright[1], upright[0]) and upright[1] > upright[0]
