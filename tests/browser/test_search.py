"""Search and duplicates in the web client, in a real browser (Debian's Chromium) against the
whole stack: photos in two albums are found by a label chosen from the suggestions (a combobox
whose suggestions are options in a listbox), by a parent label across both albums, an empty
result says what was searched, clearing the search returns to the album; the same file
uploaded twice is listed in the "Duplicates" view, and "Keep this one" deletes the other."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from playwright.sync_api import Browser, Dialog, Locator, Page, expect

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
TAGGER_FIXTURES = REPO_ROOT / "tests" / "fixtures" / "tagger"
CAT = TAGGER_FIXTURES / "cat_chelsea.jpg"
DOG = TAGGER_FIXTURES / "person_dog_horse.jpg"  # a person with a dog and a horse
TWICE = REPO_ROOT / "tests" / "fixtures" / "images" / "r_sony.jpg"
PROCESSING_TIMEOUT_S = 90
UI_TIMEOUT_MS = 15_000
SEARCHER = "searcher"
ARTIFACTS = REPO_ROOT / "test-artifacts"
# Typed into the camera filter and shown back in the empty state: as text, never as HTML.
HOSTILE_CAMERA = "<img src=x onerror=window.__xss=1>"


@dataclass
class Library:
    """Two processed photos in two albums of one user, both in the search index."""

    cat_album: str
    dog_album: str
    cat_id: str
    dog_id: str


def _sign_in(page: Page, stack: Any, user: str) -> None:
    page.goto(stack.api_url)
    page.get_by_label("Username").fill(user)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Album name")).to_be_visible()


def _album_with(page: Page, name: str, photo: Path) -> str:
    """A new album with `photo` uploaded into it; the album's id."""
    page.get_by_label("Album name").fill(name)
    page.get_by_role("button", name="Create album").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    expect(page.get_by_text("● live")).to_be_visible(timeout=UI_TIMEOUT_MS)
    page.get_by_label("Upload photos").set_input_files([str(photo)])
    expect(_cards(page.get_by_role("list", name="Photos"))).to_have_count(1, timeout=UI_TIMEOUT_MS)
    album_id = re.sub(r"^#/albums/", "", page.evaluate("location.hash"))
    assert album_id
    return album_id


def _cards(gallery: Locator) -> Locator:
    """The photo cards of a gallery list (not the label items inside them)."""
    return gallery.locator(":scope > li.photo")


def _get(page: Page, path: str) -> tuple[int, Any]:
    """GET `path` from the API with the page's own token: (status, JSON body or None)."""
    answer: list[Any] = page.evaluate(
        """async (path) => {
            const token = localStorage.getItem("imgproc.token");
            const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
            let body = null;
            try { body = await response.json(); } catch { body = null; }
            return [response.status, body];
        }""",
        path,
    )
    return answer[0], answer[1]


def _wait_for(what: str, check: Any, timeout_s: float = PROCESSING_TIMEOUT_S) -> Any:
    """Poll `check()` until it returns something truthy, or fail saying `what` never happened."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout_s} s (last: {last!r})")


def _found_ids(page: Page, query: str) -> set[str] | None:
    status, body = _get(page, f"/api/images?{query}")
    return {item["image_id"] for item in body["items"]} if status == 200 else None


def _taken_in_paris(source: Path, target: Path) -> Path:
    """`source` re-saved with a GPS position by the Eiffel Tower (48.8584 N, 2.2945 E)."""
    with Image.open(source) as image:
        exif = Image.Exif()
        gps = exif.get_ifd(0x8825)
        gps[1], gps[2] = "N", (48.0, 51.0, 30.24)
        gps[3], gps[4] = "E", (2.0, 17.0, 40.2)
        image.convert("RGB").save(target, "JPEG", quality=90, exif=exif)
    return target


@pytest.fixture(scope="module")
def library(
    local_stack: Any, browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Library]:
    page = browser.new_page()
    _sign_in(page, local_stack, SEARCHER)
    # The cat was photographed in Paris; the dog photo has no position.
    cat_album = _album_with(
        page, "Cats", _taken_in_paris(CAT, tmp_path_factory.mktemp("paris") / CAT.name)
    )
    dog_album = _album_with(page, "Outdoors", DOG)
    # Both processed and indexed (the index follows the pipeline's events): "Animal", a parent
    # of both photos' labels, finds both.
    status, listing = _get(page, "/api/albums/" + cat_album + "/images")
    assert status == 200, listing
    cat_id = listing["items"][0]["image_id"]
    status, listing = _get(page, "/api/albums/" + dog_album + "/images")
    assert status == 200, listing
    dog_id = listing["items"][0]["image_id"]
    _wait_for(
        "both photos found by the label Animal",
        lambda: (_found_ids(page, "label=Animal") or set()) >= {cat_id, dog_id},
    )
    page.context.close()
    yield Library(cat_album, dog_album, cat_id, dog_id)


def _watched_page(browser: Browser) -> tuple[Page, list[str]]:
    # The page's Content-Security-Policy would stop injected script anyway: bypassed, so that
    # what is checked is the client's own escaping.
    context = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    return page, errors


def test_a_label_chosen_from_the_suggestions_finds_photos_across_albums(
    local_stack: Any, browser: Browser, library: Library
) -> None:
    page, page_errors = _watched_page(browser)
    _sign_in(page, local_stack, SEARCHER)
    page.goto(f"{local_stack.api_url}/#/albums/{library.dog_album}")
    expect(page.get_by_role("heading", name="Outdoors")).to_be_visible()

    box = page.get_by_role("combobox", name="Search photos")
    suggestions = page.get_by_role("listbox", name="Label suggestions")
    results = page.get_by_role("list", name="Search results")
    expect(box).to_have_attribute("aria-expanded", "false")
    expect(box).to_have_attribute("aria-controls", "search-suggestions")

    # Typing suggests the labels that start with it, with how many photos have each.
    box.press_sequentially("Do", delay=60)
    expect(suggestions).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(box).to_have_attribute("aria-expanded", "true")
    dog_option = suggestions.get_by_role("option", name=re.compile(r"^Dog\b"))
    expect(dog_option).to_have_accessible_name("Dog 1 photo")
    expect(suggestions.get_by_role("option", name=re.compile(r"^Cat\b"))).to_have_count(0)

    # Escape closes the list; the arrow keys open it and move the highlight, Enter chooses.
    box.press("Escape")
    expect(suggestions).to_be_hidden()
    expect(box).to_have_attribute("aria-expanded", "false")
    expect(box).to_have_value("Do")
    box.press("ArrowDown")
    expect(suggestions).to_be_visible(timeout=UI_TIMEOUT_MS)
    for _ in range(suggestions.get_by_role("option").count()):
        box.press("ArrowDown")
        if dog_option.get_attribute("aria-selected") == "true":
            break
    expect(dog_option).to_have_attribute("aria-selected", "true")
    dog_option_id = dog_option.get_attribute("id")
    expect(box).to_have_attribute("aria-activedescendant", dog_option_id or "")
    box.press("Enter")

    # The label became a removable filter, and only the dog photo is found.
    expect(suggestions).to_be_hidden()
    expect(box).to_have_value("")
    expect(page.get_by_role("list", name="Label filters").get_by_text("Dog")).to_be_visible()
    expect(page.get_by_role("heading", name="Outdoors")).to_be_hidden()
    expect(_cards(results)).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(_cards(results)).to_have_attribute("data-image-id", library.dog_id)
    expect(results.get_by_role("img", name=DOG.name)).to_be_visible()
    expect(page.get_by_text("Photos with Dog", exact=True)).to_be_visible()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search.png"))

    # A parent label finds the photos of both albums, in the gallery's cards.
    page.get_by_role("button", name="Remove Dog").click()
    box.fill("animal")
    box.press("Enter")
    expect(page.get_by_role("button", name="Remove Animal")).to_be_visible(timeout=UI_TIMEOUT_MS)
    expect(_cards(results)).to_have_count(2, timeout=UI_TIMEOUT_MS)
    for file_name in (CAT.name, DOG.name):
        found = _cards(results).filter(has=page.get_by_role("img", name=file_name))
        expect(found.get_by_text("Processed", exact=True)).to_be_visible()
        expect(found.get_by_role("button", name=f"Details of {file_name}")).to_be_visible()

    # A card's details open from the results as from the album.
    _cards(results).filter(has=page.get_by_role("img", name=CAT.name)).get_by_role(
        "button", name=f"Details of {CAT.name}"
    ).click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=CAT.name)).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()

    # Clearing the search returns to the album.
    page.get_by_role("button", name="Clear search").click()
    expect(page.get_by_role("heading", name="Outdoors")).to_be_visible()
    expect(results).to_be_hidden()
    expect(page.get_by_role("list", name="Label filters").get_by_role("listitem")).to_have_count(0)
    assert page_errors == []
    page.context.close()


def test_a_place_finds_the_photos_taken_near_it(
    local_stack: Any, browser: Browser, library: Library
) -> None:
    page = browser.new_page()
    _sign_in(page, local_stack, SEARCHER)
    results = page.get_by_role("list", name="Search results")
    near = page.get_by_label("Near")
    near.fill("48.86, 2.29")  # not yet a place: no search, and the field says so
    expect(near).to_have_attribute("aria-invalid", "true")
    near.fill("48.86, 2.29, 5")
    expect(near).to_have_attribute("aria-invalid", "false")
    expect(_cards(results)).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(results.get_by_role("img", name=CAT.name)).to_be_visible()
    # Far from anything photographed: the empty state names the place.
    near.fill("-33.86, 151.21, 5")
    expect(page.get_by_text(re.compile(r"within 5 km of -33\.86, 151\.21"))).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    page.get_by_role("button", name="Clear search").click()
    # From a photo's details: the photos taken near it.
    page.goto(f"{local_stack.api_url}#/albums/{library.cat_album}")
    gallery = page.get_by_role("list", name="Photos")
    _cards(gallery).get_by_role("button", name=f"Details of {CAT.name}").click()
    page.get_by_role("button", name="Photos taken near here").click()
    expect(near).to_have_value(re.compile(r"^48\.858\d, 2\.294\d, 10$"))
    expect(_cards(results)).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(results.get_by_role("img", name=CAT.name)).to_be_visible()
    page.close()


def test_an_album_filter_combines_with_a_label(
    local_stack: Any, browser: Browser, library: Library
) -> None:
    page = browser.new_page()
    _sign_in(page, local_stack, SEARCHER)
    results = page.get_by_role("list", name="Search results")
    page.get_by_label("In album").select_option(label="Outdoors")
    expect(_cards(results)).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(results.get_by_role("img", name=DOG.name)).to_be_visible()
    # With a label the album does not hold: nothing, and the empty state names both.
    box = page.get_by_label("Search photos")
    box.fill("Cat")
    box.press("Enter")
    expect(page.get_by_text(re.compile(r"with Cat.*in the album “Outdoors”"))).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(_cards(results)).to_have_count(0)
    page.close()


def test_an_empty_result_says_what_was_searched(
    local_stack: Any, browser: Browser, library: Library
) -> None:
    page, page_errors = _watched_page(browser)
    _sign_in(page, local_stack, SEARCHER)
    box = page.get_by_role("combobox", name="Search photos")
    box.press_sequentially("Dog", delay=60)
    page.get_by_role("listbox", name="Label suggestions").get_by_role(
        "option", name=re.compile(r"^Dog\b")
    ).click()
    results = page.get_by_role("list", name="Search results")
    expect(_cards(results)).to_have_count(1, timeout=UI_TIMEOUT_MS)

    # Nothing taken after 2100: the page says so, naming every filter.
    page.get_by_label("From").fill("2100-01-01")
    expect(page.get_by_text("No photos with Dog, from 2100-01-01", exact=True)).to_be_visible(
        timeout=UI_TIMEOUT_MS
    )
    expect(_cards(results)).to_have_count(0)
    page.get_by_label("Camera").fill(HOSTILE_CAMERA)
    expect(
        page.get_by_text(
            f"No photos with Dog, from 2100-01-01, camera “{HOSTILE_CAMERA}”", exact=True
        )
    ).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator("img[src='x']").count() == 0

    # Clearing it returns to the album view (here: no album chosen yet).
    page.get_by_role("button", name="Clear search").click()
    expect(page.get_by_text("Create or choose an album.")).to_be_visible()
    expect(page.get_by_label("From")).to_have_value("")
    expect(page.get_by_label("Camera")).to_have_value("")
    assert page_errors == []
    page.context.close()


def test_the_duplicates_view_lists_the_same_file_twice_and_keeps_one(
    local_stack: Any, browser: Browser
) -> None:
    page, page_errors = _watched_page(browser)
    _sign_in(page, local_stack, "dup-keeper")
    _album_with(page, "Twice", TWICE)
    gallery = page.get_by_role("list", name="Photos")
    original = _cards(gallery).first
    expect(original.get_by_text("Processed", exact=True)).to_be_visible(
        timeout=PROCESSING_TIMEOUT_S * 1000
    )
    original_id = original.get_attribute("data-image-id")
    assert original_id

    # The same bytes again: recorded as a duplicate of the first, linked to it.
    page.get_by_label("Upload photos").set_input_files([str(TWICE)])
    copy = gallery.locator(f':scope > li.photo:not([data-image-id="{original_id}"])')
    expect(copy).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(copy.get_by_text("Duplicate", exact=True)).to_be_visible(
        timeout=PROCESSING_TIMEOUT_S * 1000
    )
    copy_id = copy.get_attribute("data-image-id")
    assert copy_id
    copy.get_by_role("button", name=f"Duplicate of {TWICE.name}").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_have_attribute("data-image-id", original_id)
    expect(dialog.get_by_text("Processed", exact=True)).to_be_visible()
    page.keyboard.press("Escape")

    # The Duplicates view lists them as one group of exact copies.
    page.get_by_role("navigation", name="Albums").get_by_role("link", name="Duplicates").click()
    expect(page.get_by_role("heading", name="Duplicates", exact=True)).to_be_visible()
    group = page.get_by_role("region", name=re.compile(r"^Same file")).filter(
        has=page.locator(f'[data-image-id="{copy_id}"]')
    )
    expect(group).to_have_count(1, timeout=UI_TIMEOUT_MS)
    expect(group.locator("li.photo")).to_have_count(2)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "duplicates.png"), full_page=True)
    kept = group.locator(f'li.photo[data-image-id="{original_id}"]')

    # "Keep this one" on the original asks first, then deletes the copy.
    questions: list[str] = []

    def accept(dialog: Dialog) -> None:
        questions.append(dialog.message)
        dialog.accept()

    page.once("dialog", accept)
    kept.get_by_role("button", name="Keep this one").click()
    expect(page.get_by_text("No duplicates", exact=False)).to_be_visible(timeout=UI_TIMEOUT_MS)
    assert questions and "delete" in questions[0]
    assert _get(page, f"/api/images/{copy_id}")[0] == 404
    assert _get(page, f"/api/images/{original_id}")[0] == 200
    expect(page.get_by_role("alert").filter(has_text="could not be deleted")).to_have_count(0)
    assert page_errors == []
    page.context.close()
