"""In a real browser against the whole stack: the API docs load from this origin under the
content security policy, and a FAILED photo retried from its details ends PROCESSED."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, expect

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"


@pytest.mark.parametrize(
    ("path", "operation"),
    [("/docs", ".opblock-summary-path"), ("/redoc", "[data-section-id] h2")],
)
def test_api_docs_render_every_operation_without_csp_violations(
    local_stack: Any, browser: Browser, path: str, operation: str
) -> None:
    page = browser.new_page()
    problems: list[str] = []

    def note(message: ConsoleMessage) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", note)
    page.on("pageerror", lambda error: problems.append(str(error)))
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(local_stack.api_url + path)
    expect(page.locator(operation).first).to_be_visible(timeout=30_000)
    # Operations of the API are listed (one route of each kind is enough to know it rendered).
    expect(page.get_by_text("/api/images/{image_id}/retry").first).to_be_attached()
    page.wait_for_load_state("networkidle")
    assert problems == [] and failed == []
    page.close()


def test_a_failed_photo_retried_from_its_details_ends_processed(
    local_stack: Any, browser: Browser
) -> None:
    fault = local_stack.home / "fault-injection"
    page = browser.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(local_stack.api_url)
    page.get_by_label("Username").fill("retrier")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Album name").fill("Retries")
    page.get_by_role("button", name="Create album").click()
    expect(page.get_by_role("heading", name="Retries")).to_be_visible()
    fault.write_text("thumbnail\n")  # every try of the thumbnail stage fails
    try:
        page.get_by_label("Upload photos").set_input_files([str(FIXTURES / "r_sony.jpg")])
        details = page.get_by_role("button", name="Details of r_sony.jpg")
        expect(details).to_be_visible(timeout=15_000)
        details.click()
        dialog = page.get_by_role("dialog")
        expect(dialog.locator(".status .badge")).to_have_text("Failed", timeout=90_000)
    finally:
        fault.unlink(missing_ok=True)
    dialog.get_by_role("button", name="Retry").click()
    expect(dialog.locator(".status .badge")).to_have_text("Processed", timeout=90_000)
    expect(dialog.get_by_role("button", name="Retry")).to_have_count(0)
    assert page_errors == []
    page.close()
