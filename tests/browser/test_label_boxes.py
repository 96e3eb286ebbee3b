"""Label boxes in the web client, in a real browser against the whole stack: in an image's
details, a label with instances outlines its boxes over the preview when hovered or focused by
keyboard, at the place the box's fractions say; a gallery card shows at most four labels, the
most confident ones."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

pytestmark = pytest.mark.e2e

TAGGER_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "tagger"
# A person with a dog and a horse: the tagger gives each a box, and more labels than a card shows.
PHOTO = TAGGER_FIXTURES / "person_dog_horse.jpg"
PROCESSING_TIMEOUT_MS = 90_000
CARD_LABELS = 4
# The largest gap, in CSS pixels, between a drawn box's edge and where its fractions put it.
TOLERANCE_PX = 2.0
USER = "box-viewer"


@dataclass
class ProcessedPhoto:
    album_id: str
    image_id: str
    file_name: str


def _sign_in(page: Page, stack: Any) -> None:
    page.goto(stack.api_url)
    page.get_by_label("Username").fill(USER)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Album name")).to_be_visible()


def _card(page: Page, file_name: str) -> Locator:
    gallery = page.get_by_role("list", name="Photos")
    return gallery.get_by_role("listitem").filter(has=page.get_by_role("img", name=file_name))


@pytest.fixture(scope="module")
def processed_photo(local_stack: Any, browser: Browser) -> Iterator[ProcessedPhoto]:
    """A real photo uploaded through the web client and labelled by the stack's own tagger."""
    page = browser.new_page()
    _sign_in(page, local_stack)
    page.get_by_label("Album name").fill("Boxes")
    page.get_by_role("button", name="Create album").click()
    expect(page.get_by_role("heading", name="Boxes")).to_be_visible()
    page.get_by_label("Upload photos").set_input_files([str(PHOTO)])
    card = _card(page, PHOTO.name)
    expect(card.get_by_text("Processed", exact=True)).to_be_visible(timeout=PROCESSING_TIMEOUT_MS)
    image_id = card.get_attribute("data-image-id")
    album_id = re.sub(r"^#/albums/", "", page.evaluate("location.hash"))
    assert image_id and album_id
    page.close()
    yield ProcessedPhoto(album_id, image_id, PHOTO.name)


def _open_album(browser: Browser, stack: Any, photo: ProcessedPhoto) -> Page:
    """A fresh page on the photo's album: the gallery is listed from the API."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    _sign_in(page, stack)
    page.goto(f"{stack.api_url}/#/albums/{photo.album_id}")
    expect(_card(page, photo.file_name).get_by_text("Processed", exact=True)).to_be_visible()
    return page


def _api_labels(page: Page, image_id: str) -> list[dict[str, Any]]:
    """The image's labels as the API returns them, with the page's own token."""
    image = page.evaluate(
        """async (id) => {
            const token = localStorage.getItem("imgproc.token");
            const response = await fetch(`/api/images/${encodeURIComponent(id)}`, {
                headers: { Authorization: `Bearer ${token}` },
            });
            return response.json();
        }""",
        image_id,
    )
    labels: list[dict[str, Any]] = image["tags"]
    return labels


def _shown_as(label: dict[str, Any]) -> str:
    """A label's text as the client writes it (JavaScript's Math.round)."""
    return f"{label['name']} {math.floor(label['confidence'] + 0.5)}%"


def _by_confidence(labels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(labels, key=lambda label: -label["confidence"])


def _open_details(page: Page, file_name: str) -> tuple[Locator, Locator]:
    """The details dialog and its preview, loaded, with the execution timeline in place."""
    _card(page, file_name).get_by_role("button", name=f"Details of {file_name}").click()
    dialog = page.get_by_role("dialog")
    preview = dialog.get_by_role("img", name=file_name)
    expect(preview).to_be_visible()
    page.wait_for_function(
        "(img) => img.complete && img.naturalWidth > 0", arg=preview.element_handle()
    )
    # The execution timeline loads after the dialog opens and makes it taller, which moves
    # the (centred) dialog: the preview rests only once it is there.
    timeline = dialog.get_by_role("region", name="Execution timeline")
    expect(timeline.get_by_role("table")).to_be_visible()
    return dialog, preview


def _assert_boxes_drawn(dialog: Locator, preview: Locator, label: dict[str, Any]) -> None:
    """Each of the label's instances is outlined over the preview where its fractions say."""
    drawn = dialog.locator(".boxes .box")
    expect(drawn).to_have_count(len(label["instances"]))
    image = preview.bounding_box()
    assert image is not None and image["width"] > 0 and image["height"] > 0
    for outline, instance in zip(drawn.all(), label["instances"], strict=True):
        rect = outline.bounding_box()
        assert rect is not None
        box = instance["bounding_box"]
        expected = (
            image["x"] + box["left"] * image["width"],
            image["y"] + box["top"] * image["height"],
            box["width"] * image["width"],
            box["height"] * image["height"],
        )
        actual = (rect["x"], rect["y"], rect["width"], rect["height"])
        assert all(abs(a - e) <= TOLERANCE_PX for a, e in zip(actual, expected, strict=True)), (
            label["name"],
            actual,
            expected,
        )


def test_a_label_with_instances_outlines_them_on_hover_and_on_keyboard_focus(
    local_stack: Any, browser: Browser, processed_photo: ProcessedPhoto
) -> None:
    page = _open_album(browser, local_stack, processed_photo)
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    labels = _by_confidence(_api_labels(page, processed_photo.image_id))
    boxed = [label for label in labels if label["instances"]]
    assert {"Person", "Dog"} <= {label["name"] for label in boxed}, json.dumps(labels)

    dialog, preview = _open_details(page, processed_photo.file_name)
    overlay = dialog.locator(".boxes")
    expect(overlay).to_have_attribute("aria-hidden", "true")
    expect(overlay.locator(".box")).to_have_count(0)
    # Accessible names as before: a "Labels" list, each item "Name NN%", all of them.
    items = dialog.get_by_role("list", name="Labels").get_by_role("listitem")
    expect(items).to_have_text([_shown_as(label) for label in labels])
    resting = preview.bounding_box()

    # Hover: the label's boxes show, in place, without moving the preview; leaving hides them.
    for label in boxed:
        items.nth(labels.index(label)).hover()
        _assert_boxes_drawn(dialog, preview, label)
        assert preview.bounding_box() == resting
    page.mouse.move(1, 1)
    expect(overlay.locator(".box")).to_have_count(0)

    # A label without instances outlines nothing and takes no focus.
    for label in labels:
        if not label["instances"]:
            plain = items.nth(labels.index(label))
            expect(plain).not_to_have_attribute("tabindex", re.compile(".*"))
            plain.hover()
            expect(overlay.locator(".box")).to_have_count(0)
    page.mouse.move(1, 1)

    # Keyboard: Tab from the dialog's first control reaches the first boxed label, which shows
    # its boxes as hover does; moving focus away hides them.
    first = items.nth(labels.index(boxed[0]))
    dialog.get_by_role("button", name="Close").focus()
    for _ in range(10):
        if first.evaluate("(item) => item === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(first).to_be_focused()
    _assert_boxes_drawn(dialog, preview, boxed[0])
    page.keyboard.press("Shift+Tab")
    expect(first).not_to_be_focused()
    expect(overlay.locator(".box")).to_have_count(0)
    assert page_errors == []
    page.close()


def test_a_card_shows_at_most_the_four_most_confident_labels(
    local_stack: Any, browser: Browser, processed_photo: ProcessedPhoto
) -> None:
    page = _open_album(browser, local_stack, processed_photo)
    labels = _by_confidence(_api_labels(page, processed_photo.image_id))
    assert len(labels) > CARD_LABELS, labels  # so that the card must leave some out
    card = _card(page, processed_photo.file_name)
    shown = card.get_by_role("list", name="Labels").get_by_role("listitem")
    expect(shown).to_have_text([_shown_as(label) for label in labels[:CARD_LABELS]])
    # The details show them all.
    dialog, _ = _open_details(page, processed_photo.file_name)
    in_details = dialog.get_by_role("list", name="Labels").get_by_role("listitem")
    expect(in_details).to_have_count(len(labels))
    page.close()
