"""The web client shows what users and files say as text, and runs none of it.

A photo whose EXIF (make, model, lens) and file name carry HTML and script goes into an album
whose name does too, through the whole stack in a real browser (Debian's Chromium). The page's
Content-Security-Policy would already stop inline script, so the browser context bypasses it:
what is checked here is the client's escaping itself. Nothing may run (`window.__xss` stays
undefined), no element of the payloads may appear in the page, and each string must be shown
literally in the gallery card and in the detail view.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESSING_TIMEOUT_MS = 90_000
# Generous: the machine running the suite may be busy.
UI_TIMEOUT_MS = 15_000

ALBUM_NAME = "<script>window.__xss='album'</script><b>bold</b>"
MAKE = "<img src=x onerror=window.__xss='make'>"
MODEL = "<script>window.__xss='model'</script>"
LENS = "\"><svg onload=window.__xss='lens'></svg>&amp;"
# No '/' in a file name; everything else a file system allows.
FILE_NAME = "<img src=x onerror=window.__xss='file'>&lt;b&gt;.jpg"
# Elements that only exist in the page if a payload was parsed as HTML.
INJECTED = "img[src='x'], svg, b, script:not([src]), [onerror], [onload]"


def hostile_photo(target: Path) -> Path:
    """A real JPEG whose EXIF text fields are HTML and script."""
    exif = Image.Exif()
    exif[0x010F] = MAKE  # Make
    exif[0x0110] = MODEL  # Model
    exif.get_ifd(0x8769)[0xA434] = LENS  # LensModel
    exif.get_ifd(0x8769)[0x9003] = "2024:06:01 14:30:05"  # DateTimeOriginal
    gradient = Image.linear_gradient("L").resize((320, 240))
    Image.merge("RGB", (gradient, gradient.rotate(90), gradient.rotate(180))).save(
        target, "JPEG", quality=85, exif=exif
    )
    return target


def assert_nothing_ran(page: Page) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined", page.evaluate("window.__xss")
    injected = page.evaluate(
        "(selector) => [...document.querySelectorAll(selector)].map((e) => e.outerHTML)",
        INJECTED,
    )
    assert injected == []


def test_user_and_exif_strings_are_shown_as_text(
    local_stack: Any, browser: Browser, tmp_path: Path
) -> None:
    photo = hostile_photo(tmp_path / FILE_NAME)
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(local_stack.api_url)

    page.get_by_label("Username").fill("xss-tester")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Album name").fill(ALBUM_NAME)
    page.get_by_role("button", name="Create album").click()
    page.get_by_role("link", name=ALBUM_NAME).click()
    expect(page.get_by_role("heading", name=ALBUM_NAME)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(page.get_by_text("● live")).to_be_visible(timeout=UI_TIMEOUT_MS)

    page.get_by_label("Upload photos").set_input_files(str(photo))
    gallery = page.get_by_role("list", name="Photos")
    card = gallery.get_by_role("listitem").filter(has=page.get_by_role("img", name=FILE_NAME))
    expect(card).to_have_count(1, timeout=15_000)
    expect(card.get_by_text("Processed", exact=True)).to_be_visible(timeout=PROCESSING_TIMEOUT_MS)

    # The gallery card: file name and camera, literally.
    expect(card.locator(".file-name")).to_have_text(FILE_NAME, timeout=UI_TIMEOUT_MS)
    expect(card.get_by_text(f"{MAKE} {MODEL}", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert_nothing_ran(page)

    # The detail view: title, camera and lens, literally.
    card.get_by_role("button", name=f"Details of {FILE_NAME}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=FILE_NAME)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_text(f"{MAKE} {MODEL}", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_text(LENS, exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(dialog.get_by_role("cell", name="Extract", exact=True)).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    assert_nothing_ran(page)

    # The album list, after a reload (rendered from the API rather than from the form).
    page.keyboard.press("Escape")
    page.reload()
    expect(page.get_by_role("link", name=ALBUM_NAME)).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(card.locator(".file-name")).to_have_text(FILE_NAME, timeout=UI_TIMEOUT_MS)
    assert_nothing_ran(page)
    assert page_errors == []
    context.close()
