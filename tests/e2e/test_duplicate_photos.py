"""End to end, as a user: `imgproc up` running; the same photo uploaded twice is processed once
(the second is a DUPLICATE of the first, with no execution); a resized and re-encoded copy and a
slightly cropped copy are grouped with it by `imgproc duplicates` and `GET /api/duplicates`; an
unrelated photo is not."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stack_process import IMGPROC, RunningStack

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).parents[1] / "fixtures"
PHOTO = FIXTURES / "labelled" / "outdoor_forest_stream.jpg"
UNRELATED = FIXTURES / "labelled" / "animals_horses.jpg"
USER = "e2e-duplicates"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("duplicates")
    image = Image.open(PHOTO).convert("RGB")
    width, height = image.size
    paths = {
        "original": root / "original.jpg",
        "again": root / "again.jpg",
        "smaller": root / "smaller.webp",
        "cropped": root / "cropped.jpg",
        "unrelated": root / "unrelated.jpg",
    }
    paths["original"].write_bytes(PHOTO.read_bytes())
    paths["again"].write_bytes(PHOTO.read_bytes())
    image.resize((width // 3, height // 3), Image.Resampling.LANCZOS).save(
        paths["smaller"], "WEBP", quality=70
    )
    dx, dy = width // 50, height // 50
    image.crop((dx, dy, width - dx, height - dy)).save(paths["cropped"], "JPEG", quality=80)
    paths["unrelated"].write_bytes(UNRELATED.read_bytes())
    return paths


def _imgproc(stack: RunningStack, *args: str) -> list[dict[str, Any]]:
    result = subprocess.run(
        [str(IMGPROC), *args, "--json"],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=200,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def uploaded(local_stack: RunningStack, files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    first = _imgproc(local_stack, "upload", str(files["original"]), "--user", USER, "--wait")
    rest = [files[n] for n in ("again", "smaller", "cropped", "unrelated")]
    later = _imgproc(
        local_stack, "upload", *map(str, rest), "--user", USER, "--album", "Other", "--wait"
    )
    return {Path(o["file"]).stem: o for o in first + later}


def test_the_same_file_again_is_a_duplicate_that_was_never_processed(
    uploaded: dict[str, dict[str, Any]],
) -> None:
    original, again = uploaded["original"], uploaded["again"]
    assert original["status"] == "PROCESSED", original
    assert again["status"] == "DUPLICATE", again
    assert again["duplicate_of"] == original["image_id"]
    assert again["album_id"] != original["album_id"]
    assert again["execution_arn"] is None and again["stages"] == {}


def test_copies_are_grouped_with_the_original_and_the_unrelated_photo_is_not(
    local_stack: RunningStack, uploaded: dict[str, dict[str, Any]]
) -> None:
    ids = {name: record["image_id"] for name, record in uploaded.items()}
    assert all(r["status"] in ("PROCESSED", "DUPLICATE") for r in uploaded.values()), uploaded
    (result,) = _imgproc(local_stack, "duplicates", "--user", USER)
    groups = [(g["kind"], {i["image_id"] for i in g["images"]}) for g in result["groups"]]
    assert ("exact", {ids["original"], ids["again"]}) in groups
    assert ("near", {ids["original"], ids["smaller"], ids["cropped"]}) in groups
    assert len(groups) == 2, result
    assert ids["unrelated"] not in json.dumps(result)
    exact = next(g for g in result["groups"] if g["kind"] == "exact")
    # The duplicate shows the original's metadata and renditions through it.
    shown = next(i for i in exact["images"] if i["image_id"] == ids["again"])
    assert shown["metadata"]["sha256"] == uploaded["original"]["metadata"]["sha256"]
    assert shown["thumbnails"] and shown["tags"]

    # The API answers the same groups to the signed-in owner.
    sign_in = urllib.request.Request(
        f"{local_stack.api_url}/api/auth/sign-in",
        data=json.dumps({"username": USER}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(sign_in, timeout=10) as response:
        token = json.load(response)["access_token"]
    request = urllib.request.Request(
        f"{local_stack.api_url}/api/duplicates", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.load(response)
    assert [(g["kind"], {i["image_id"] for i in g["images"]}) for g in body["groups"]] == groups
    near = next(g for g in body["groups"] if g["kind"] == "near")
    assert 0 < near["distance"] <= 12


def test_human_output_names_each_group(
    local_stack: RunningStack, uploaded: dict[str, dict[str, Any]]
) -> None:
    result = subprocess.run(
        [str(IMGPROC), "duplicates", "--user", USER],
        env=local_stack.env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "exact: 2 uploads of the same file" in result.stdout
    assert "near: 3 images" in result.stdout
