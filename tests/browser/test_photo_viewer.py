"""The gallery as a photo viewer, in a real browser (Debian's Chromium) against the whole stack:
an MPO camera file uploads and is processed, at least 8 thumbnails show at 1280×800, sorting by
capture time, the full-screen viewer (arrow keys, Escape, focus kept inside and given back), the
original downloaded under its name, many photos deleted at once (a failure said in words per
photo), failures in plain words, a phone layout with the photos first, a session a new tab
shares and a sign-out that revokes the token."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Dialog, Locator, Page, Route, expect

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
MPO = REPO_ROOT / "tests" / "fixtures" / "images" / "sugarshack_3ds.mpo"
ARTIFACTS = REPO_ROOT / "test-artifacts"
PROCESSING_TIMEOUT_MS = 120_000
UI_TIMEOUT_MS = 15_000
# Named out of capture order: sorting by capture time must reorder them.
TAKEN = {
    "c-harbour.jpg": "2021:03:01 10:00:00",
    "a-market.jpg": "2021:07:14 09:30:00",
    "h-bridge.jpg": "2021:01:20 16:45:00",
    "b-garden.jpg": "2021:05:05 12:00:00",
    "f-street.jpg": "2021:02:11 08:15:00",
    "d-beach.jpg": "2021:09:30 18:20:00",
    "e-hills.jpg": "2021:04:02 07:00:00",
    "g-square.jpg": "2021:08:08 13:10:00",
}


@dataclass
class Gallery:
    context: BrowserContext
    page: Page
    photos: dict[str, Path]  # file name -> file


def make_photo(path: Path, index: int, taken: str) -> Path:
    """A small JPEG of its own colours (no two the same bytes) taken at `taken`."""
    base = Image.linear_gradient("L").resize((320, 240))
    colour = Image.merge("RGB", (base, base.rotate(90 * (index % 4)), base.point(lambda v: v // 2)))
    colour = colour.point(lambda v: (v + 29 * index) % 256)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9003] = taken  # DateTimeOriginal
    colour.save(path, "JPEG", quality=85, exif=exif)
    return path


def cards(page: Page) -> Locator:
    return page.get_by_role("list", name="Photos").locator(":scope > li.photo")


def card(page: Page, file_name: str) -> Locator:
    return cards(page).filter(has=page.get_by_role("img", name=file_name, exact=True))


def shown_names(page: Page) -> list[str]:
    names: list[str] = cards(page).locator(".file-name").all_text_contents()
    return names


def sign_in(page: Page, stack: Any, user: str) -> None:
    page.goto(stack.api_url)
    page.get_by_label("Username").fill(user)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Album name")).to_be_visible()


def token_of(page: Page) -> str:
    token: str = page.evaluate("localStorage.getItem('imgproc.token')")
    assert token
    return token


@pytest.fixture(scope="module")
def gallery(
    local_stack: Any, browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gallery]:
    folder = tmp_path_factory.mktemp("viewer-photos")
    photos = {
        name: make_photo(folder / name, index, taken)
        for index, (name, taken) in enumerate(TAKEN.items())
    }
    photos[MPO.name] = MPO
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    sign_in(page, local_stack, "viewer")
    page.get_by_label("Album name").fill("Trip")
    page.get_by_role("button", name="Create album").click()
    expect(page.get_by_role("heading", name="Trip")).to_be_visible()
    expect(page.get_by_text("● live")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_label("Upload photos").set_input_files([str(p) for p in photos.values()])
    expect(cards(page)).to_have_count(len(photos), timeout=UI_TIMEOUT_MS)
    expect(page.get_by_role("list", name="Uploads in progress").locator(".error")).to_have_count(0)
    expect(cards(page).and_(page.locator(".status-processed"))).to_have_count(
        len(photos), timeout=PROCESSING_TIMEOUT_MS
    )
    yield Gallery(context, page, photos)
    context.close()


def test_an_mpo_camera_file_is_accepted_and_processed(gallery: Gallery) -> None:
    mpo = card(gallery.page, MPO.name)
    expect(mpo.get_by_text("Processed", exact=True)).to_be_visible()
    expect(mpo.locator(".reason")).to_have_count(0)


def test_at_least_eight_thumbnails_fit_a_1280_by_800_screen(gallery: Gallery) -> None:
    page = gallery.page
    page.evaluate("window.scrollTo(0, 0)")
    whole = page.evaluate(
        """() => [...document.querySelectorAll('#gallery .thumb')].filter((img) => {
            const box = img.getBoundingClientRect();
            return box.width >= 100 && box.top >= 0 && box.bottom <= innerHeight
                && box.left >= 0 && box.right <= innerWidth;
        }).length"""
    )
    assert whole >= 8, whole
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "gallery-dense.png"))


def test_sorted_by_capture_time(gallery: Gallery) -> None:
    page = gallery.page
    by_taken = sorted(TAKEN, key=lambda name: TAKEN[name])
    page.get_by_label("Sort").select_option(label="Oldest taken first")
    assert [n for n in shown_names(page) if n in TAKEN] == by_taken
    page.get_by_label("Sort").select_option(label="Newest taken first")
    assert [n for n in shown_names(page) if n in TAKEN] == by_taken[::-1]
    page.get_by_label("Sort").select_option(label="Newest uploads first")


def test_the_viewer_goes_through_the_photos_with_the_keyboard(gallery: Gallery) -> None:
    page = gallery.page
    page.get_by_label("Sort").select_option(label="Oldest taken first")
    order = shown_names(page)
    first = card(page, order[0]).get_by_role("link", name=f"View {order[0]}")
    first.click()
    viewer = page.get_by_role("dialog", name=order[0])
    expect(viewer).to_be_visible()
    large = viewer.get_by_role("img", name=order[0])
    expect(large).to_have_attribute("src", re.compile(r"preview"))
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=large.element_handle()
    )
    # As large as the screen allows: far wider than its thumbnail.
    assert large.bounding_box()["width"] > 2 * first.bounding_box()["width"]
    expect(viewer.get_by_text(f"1 of {len(order)}")).to_be_visible()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("dialog", name=order[1])).to_be_visible()
    expect(page.get_by_role("dialog").get_by_text(f"2 of {len(order)}")).to_be_visible()
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("dialog", name=order[2])).to_be_visible()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("dialog", name=order[1])).to_be_visible()
    # Focus stays inside the viewer, however far one tabs.
    for _ in range(8):
        page.keyboard.press("Tab")
        assert page.evaluate("document.getElementById('viewer').contains(document.activeElement)")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)
    # Focus is back on the photo shown last, in the gallery.
    focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused == f"View {order[1]}"
    page.get_by_label("Sort").select_option(label="Newest uploads first")


def test_the_original_downloads_under_its_name(gallery: Gallery) -> None:
    page = gallery.page
    name = "b-garden.jpg"
    card(page, name).get_by_role("link", name=f"View {name}").click()
    viewer = page.get_by_role("dialog", name=name)
    with page.expect_download() as download_info:
        viewer.get_by_role("button", name="Download original").click()
    download = download_info.value
    assert download.suggested_filename == name
    assert Path(download.path()).read_bytes() == gallery.photos[name].read_bytes()
    expect(viewer.locator(".error")).to_be_empty()
    page.keyboard.press("Escape")


def test_details_show_no_null_and_failures_read_as_words(gallery: Gallery, tmp_path: Path) -> None:
    page = gallery.page
    # Every details dialog, field by field: never the text "null" or "undefined".
    for name in ("a-market.jpg", MPO.name):
        card(page, name).get_by_role("button", name=f"Details of {name}").click()
        dialog = page.get_by_role("dialog", name=name)
        expect(dialog.get_by_role("table")).to_be_visible()
        text = dialog.inner_text()
        assert not re.search(r"\bnull\b|\bundefined\b", text), text
        page.keyboard.press("Escape")

    # A file over the upload limit: said with the limit in megabytes, before any upload.
    huge = tmp_path / "huge.jpg"
    with huge.open("wb") as out:
        out.truncate(50 * 1024 * 1024 + 1)
    page.get_by_label("Upload photos").set_input_files([str(huge)])
    refused = page.get_by_role("list", name="Uploads in progress").get_by_role("listitem")
    expect(refused.filter(has_text="huge.jpg")).to_contain_text(
        "The file is larger than the 50 MB upload limit."
    )

    # A text file named .jpg: rejected, with the real reason in words (not the workflow's name).
    notes = tmp_path / "notes.jpg"
    notes.write_text("a shopping list, not a photo\n")
    page.get_by_label("Upload photos").set_input_files([str(notes)])
    reason = card(page, "notes.jpg").locator(".reason")
    expect(reason).to_have_text(
        re.compile(r"^(Not a supported format|Damaged or incomplete file): \S"),
        timeout=PROCESSING_TIMEOUT_MS,
    )
    expect(reason).not_to_contain_text("NotSupportedImageType")
    expect(reason).not_to_contain_text("ImageProc.")

    # An album name the API refuses: a sentence, no pattern, and the sidebar keeps its width.
    sidebar = page.get_by_role("navigation", name="Albums")
    width = sidebar.bounding_box()["width"]
    page.get_by_label("Album name").fill("   ")
    page.get_by_role("button", name="Create album").click()
    error = sidebar.get_by_role("alert")
    expect(error).to_contain_text("The album could not be created.")
    expect(error).to_contain_text("An album name is 1 to 100 characters")
    assert not re.search(r"[\^$\\\[\]]|pattern", error.inner_text()), error.inner_text()
    assert sidebar.bounding_box()["width"] == width
    page.get_by_label("Album name").fill("")


def test_select_many_and_delete_them(gallery: Gallery) -> None:
    page = gallery.page
    doomed = ["e-hills.jpg", "f-street.jpg", "g-square.jpg"]
    ids = {name: card(page, name).get_attribute("data-image-id") for name in doomed}
    for name in doomed:
        card(page, name).get_by_role("checkbox", name=f"Select {name}").check()
    toolbar = page.get_by_role("toolbar", name="Selected photos")
    expect(toolbar.get_by_text("3 selected")).to_be_visible()

    # The server fails one of them: that photo stays, selected, and the page says why.
    stuck = ids["g-square.jpg"]

    def fail_once(route: Route) -> None:
        if route.request.method != "DELETE":
            route.fallback()
            return
        route.fulfill(
            status=503,
            content_type="application/json",
            body='{"code": "internal_error", "message": "internal error"}',
        )

    page.route(f"**/api/images/{stuck}", fail_once)
    asked: list[str] = []

    def accept(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    toolbar.get_by_role("button", name="Delete 3 photos").click()
    expect(card(page, "e-hills.jpg")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    expect(card(page, "f-street.jpg")).to_have_count(0)
    assert asked == ["Delete these 3 photos? This cannot be undone."]
    failure = page.locator("#selection-error")
    expect(failure).to_contain_text("1 photo could not be deleted")
    expect(failure).to_contain_text(
        "“g-square.jpg”: The server had a problem. Try again in a moment."
    )
    expect(card(page, "g-square.jpg")).to_have_count(1)
    expect(toolbar.get_by_role("button", name="Delete 1 photo")).to_be_visible()
    page.unroute(f"**/api/images/{stuck}")

    # Really gone on the server.
    for name in ("e-hills.jpg", "f-street.jpg"):
        status = page.evaluate(
            """async (id) => (await fetch(`/api/images/${id}`, {headers: {
                Authorization: `Bearer ${localStorage.getItem('imgproc.token')}`}})).status""",
            ids[name],
        )
        assert status == 404, name

    page.once("dialog", lambda dialog: dialog.accept())
    toolbar.get_by_role("button", name="Delete 1 photo").click()
    expect(card(page, "g-square.jpg")).to_have_count(0, timeout=UI_TIMEOUT_MS)
    expect(toolbar).to_be_hidden()
    expect(failure).to_be_empty()


def test_a_phone_shows_the_photos_first(gallery: Gallery) -> None:
    page = gallery.page
    page.set_viewport_size({"width": 390, "height": 844})
    try:
        page.evaluate("window.scrollTo(0, 0)")
        first = cards(page).first.locator(".thumb")
        photo_top = first.bounding_box()["y"]
        albums_top = page.get_by_role("navigation", name="Albums").bounding_box()["y"]
        assert photo_top < albums_top
        assert photo_top + first.bounding_box()["height"] <= 844  # on the first screen
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        # The albums are one tap away.
        page.get_by_role("button", name="Albums", exact=True).click()
        expect(page.get_by_role("link", name="Trip")).to_be_focused()
        page.screenshot(path=str(ARTIFACTS / "gallery-phone-photos-first.png"))
    finally:
        page.set_viewport_size({"width": 1280, "height": 800})


def test_a_new_tab_stays_signed_in_and_sign_out_revokes_the_token(
    local_stack: Any, browser: Browser
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        sign_in(page, local_stack, "tabber")
        token = token_of(page)
        other_tab = context.new_page()
        other_tab.goto(local_stack.api_url)
        expect(other_tab.get_by_label("Album name")).to_be_visible()
        expect(other_tab.get_by_label("Username")).to_be_hidden()

        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("Username")).to_be_visible()
        # The other tab follows, and the old token is refused by the server.
        expect(other_tab.get_by_label("Username")).to_be_visible(timeout=UI_TIMEOUT_MS)
        answer = context.request.get(
            f"{local_stack.api_url}/api/auth/me", headers={"Authorization": f"Bearer {token}"}
        )
        assert answer.status == 401
        assert answer.json()["code"] == "token_revoked"
    finally:
        context.close()
