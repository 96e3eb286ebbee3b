"""The operator page in a real browser against the whole stack: dead-letter counts, the
messages of one queue, replay and purge buttons."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from playwright.sync_api import Browser, expect

from imgproc_shared.resources import Queue, ResourceNames

pytestmark = pytest.mark.e2e


def _dead_letter(stack: Any, queue: Queue, image_id: str) -> None:
    """Put one message straight into a dead-letter queue, as a redrive would (plain boto3:
    Playwright's sync API owns this thread's event loop)."""
    names = ResourceNames.from_settings(stack.settings)
    sqs = boto3.client(
        "sqs",
        endpoint_url=stack.endpoint_url,
        region_name=stack.settings.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    url = sqs.get_queue_url(QueueName=names.dead_letter_queue(queue))["QueueUrl"]
    body = {"image_id": image_id, "status": "PROCESSED"}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))


def test_operator_page_shows_dead_letters_and_purges_them(
    local_stack: Any, browser: Browser
) -> None:
    _dead_letter(local_stack, Queue.STATUS_EVENTS, "opsimage1")
    page = browser.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    page.goto(local_stack.api_url)
    page.get_by_label("Username").fill("operator")
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("link", name="Operations").click()
    expect(page.get_by_role("heading", name="Operations")).to_be_visible()

    row = page.get_by_role("row").filter(has_text="status-events")
    expect(row.get_by_role("cell").nth(3)).to_have_text("1")
    row.get_by_role("button", name="Show").click()
    expect(page.get_by_role("heading", name="Dead letters in status-events")).to_be_visible()
    expect(page.get_by_role("cell", name="opsimage1", exact=True)).to_be_visible()
    # Each dead letter says why and what it holds; looking twice receives nothing more.
    expect(page.get_by_role("cell", name="Malformed: unknown image opsimage1")).to_be_visible()
    page.get_by_text("Body (").click()
    expect(page.locator("pre.body")).to_contain_text('"image_id": "opsimage1"')
    receives = page.locator("table.dead-letters tr").nth(1).get_by_role("cell").nth(4)
    expect(receives).to_have_text("0")
    row.get_by_role("button", name="Show").click()
    expect(receives).to_have_text("0")

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Purge").click()
    expect(page.get_by_role("status")).to_contain_text("status-events: purged")
    expect(row.get_by_role("cell").nth(3)).to_have_text("0")
    assert page_errors == []
