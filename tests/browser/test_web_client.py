"""The web client in a real browser (Debian's Chromium, headless, driven by Playwright) against
the whole stack as `make up` starts it: sign in, create an album, upload three photos (one not
an image at all), and watch statuses, labels and thumbnails arrive without reloading."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "tests" / "fixtures" / "images"
TAGGER_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "tagger"
ARTIFACTS = REPO_ROOT / "test-artifacts"
PROCESSING_TIMEOUT_MS = 90_000


def camera_photo(source: Path, target: Path) -> Path:
    """`source` re-saved with camera EXIF and a GPS position (48.8584 N, 2.2945 E)."""
    with Image.open(source) as image:
        exif = Image.Exif()
        exif[0x010F] = "Canon"  # Make
        exif[0x0110] = "Canon EOS R6"  # Model
        exif.get_ifd(0x8769)[0x9003] = "2024:06:01 14:30:05"  # DateTimeOriginal
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = "N", (48.0, 51.0, 30.24)
        gps[3], gps[4] = "E", (2.0, 17.0, 40.2)
        image.convert("RGB").save(target, "JPEG", quality=90, exif=exif)
    return target


def photo_card(page: Page, file_name: str) -> Any:
    gallery = page.get_by_role("list", name="Photos")
    return gallery.get_by_role("listitem").filter(has=page.get_by_role("img", name=file_name))


def test_only_the_sign_in_form_shows_until_signed_in_and_after_sign_out(
    local_stack: Any, browser: Browser
) -> None:
    page = browser.new_page()
    page.goto(local_stack.api_url)
    expect(page.get_by_label("Username")).to_be_visible()
    # Nothing of the signed-in app is on screen (nor usable before the album list is loaded).
    expect(page.get_by_label("Album name")).to_be_hidden()
    expect(page.get_by_role("navigation", name="Albums")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()

    page.get_by_label("Username").fill("gatekeeper")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Album name")).to_be_visible()
    expect(page.get_by_label("Username")).to_be_hidden()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Username")).to_be_visible()
    expect(page.get_by_label("Album name")).to_be_hidden()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    page.close()


def test_a_file_named_with_control_characters_uploads_under_the_name_it_shows(
    local_stack: Any, browser: Browser, tmp_path: Path
) -> None:
    # Linux allows any byte but "/" in a name; the API refuses control characters in one.
    odd = tmp_path / "tab\there\x85.jpg"
    odd.write_bytes((FIXTURES / "r_sony.jpg").read_bytes())
    page = browser.new_page()
    page.goto(local_stack.api_url)
    page.get_by_label("Username").fill("odd-names")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Album name").fill("Odd names")
    page.get_by_role("button", name="Create album").click()
    expect(page.get_by_role("heading", name="Odd names")).to_be_visible()
    page.get_by_label("Upload photos").set_input_files([str(odd)])
    expect(photo_card(page, "tabhere.jpg")).to_have_count(1, timeout=15_000)
    expect(page.get_by_role("list", name="Uploads in progress").locator(".error")).to_have_count(0)
    page.close()


def test_walkthrough_uploads_and_live_results(
    local_stack: Any, browser: Browser, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.jpg"
    notes.write_text("a shopping list, not a photo\n")
    cat_photo = camera_photo(TAGGER_FIXTURES / "cat_chelsea.jpg", tmp_path / "cat_chelsea.jpg")
    photos = [cat_photo, FIXTURES / "r_sony.jpg", notes]

    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(local_stack.api_url)

    page.get_by_label("Username").fill("walker")
    page.get_by_role("button", name="Sign in").click()
    # A hostile album name is shown as text and never runs.
    hostile = '<img src=x onerror="window.__xss=1">'
    page.get_by_label("Album name").fill(hostile)
    page.get_by_role("button", name="Create album").click()
    expect(page.get_by_role("link", name=hostile)).to_be_visible()
    album_name = "Summer 2024"
    page.get_by_label("Album name").fill(album_name)
    page.get_by_role("button", name="Create album").click()
    page.get_by_role("link", name=album_name).click()
    expect(page.get_by_role("heading", name=album_name)).to_be_visible()
    expect(page.get_by_text("● live")).to_be_visible()
    # Set after the page loaded: still there at the end means nothing reloaded the page.
    page.evaluate("window.__noReload = true")

    page.get_by_label("Upload photos").set_input_files([str(p) for p in photos])

    # Every photo appears at once, then moves on by itself.
    for photo in photos:
        expect(photo_card(page, photo.name)).to_have_count(1, timeout=15_000)
    cat = photo_card(page, "cat_chelsea.jpg")
    other = photo_card(page, "r_sony.jpg")
    rejected = photo_card(page, "notes.jpg")
    expect(cat.get_by_text("Processed", exact=True)).to_be_visible(timeout=PROCESSING_TIMEOUT_MS)
    expect(other.get_by_text("Processed", exact=True)).to_be_visible(timeout=PROCESSING_TIMEOUT_MS)
    expect(rejected.get_by_text("Rejected", exact=True)).to_be_visible(
        timeout=PROCESSING_TIMEOUT_MS
    )

    # Labels with confidence, and metadata on the card.
    labels = cat.get_by_role("list", name="Labels").get_by_role("listitem")
    expect(labels.first).to_have_text(re.compile(r"^.+ \d+%$"))
    expect(cat.get_by_role("link", name=re.compile(r"-?\d+\.\d+, -?\d+\.\d+"))).to_have_count(1)
    expect(cat.get_by_text("Canon EOS R6")).to_be_visible()
    expect(rejected.locator(".reason")).not_to_be_empty()

    # Real thumbnails, loaded from the renditions' URLs.
    for card in (cat, other):
        thumb = card.get_by_role("img")
        expect(thumb).to_have_attribute("src", re.compile(r"thumbnails/"))
        page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=thumb.element_handle()
        )

    assert page.evaluate("window.__noReload") is True
    assert page.evaluate("window.__xss") is None
    assert page_errors == []

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery.png"), full_page=True)

    # The detail view: preview, all metadata, the execution timeline; closes with Escape.
    cat.get_by_role("button", name="Details of cat_chelsea.jpg").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("table")).to_be_visible()
    expect(dialog.get_by_role("cell", name="Extract", exact=True)).to_be_visible()
    expect(dialog.get_by_text("SHA-256")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "detail.png"))
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Phone width: the gallery still fits the screen.
    page.set_viewport_size({"width": 390, "height": 844})
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390
    page.screenshot(path=str(ARTIFACTS / "gallery-phone.png"))
    page.close()
