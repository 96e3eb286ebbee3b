"""Issue 6's acceptance for dead letters, as an operator would do it with `imgproc`.

A stage that fails until a fault is cleared sends its message to the dead-letter queue and the
image becomes FAILED; after the fault is cleared, `imgproc dlq replay` brings it to PROCESSED.
The fault is the runtime's test-only switch: while `IMGPROC_FAULT_FILE` exists and names the
thumbnail stage, the thumbnailer's handler raises.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.dead_letters import DeadLetters
from imgproc_shared.resources import Queue, ResourceNames

from stack_process import IMGPROC, RunningStack, start_stack

pytestmark = pytest.mark.e2e


def imgproc(stack: RunningStack, *args: str, timeout: float = 60) -> Any:
    result = subprocess.run(
        [str(IMGPROC), *args],
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"imgproc {' '.join(args)}: {result.stderr}{result.stdout}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def poll(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)  # polling with a deadline
    raise AssertionError(f"timed out waiting for {what}; last={last!r}")


def _dead_letter_count(stack: RunningStack) -> int:
    async def count() -> int:
        async with AwsClients(stack.settings) as aws:
            return (await DeadLetters(aws, stack.settings).depth(Queue.THUMBNAIL)).dead_letters

    return asyncio.run(count())


def _status(stack: RunningStack, image_id: str) -> str | None:
    async def status() -> str | None:
        async with AwsClients(stack.settings) as aws:
            names = ResourceNames.from_settings(stack.settings)
            record = await Catalog(aws, names).get_image(image_id)
            return record.status if record else None

    return asyncio.run(status())


def test_dead_lettered_image_is_processed_after_the_fault_is_cleared_and_replayed(
    tmp_path: Path,
) -> None:
    fault = tmp_path / "fault"
    fault.write_text("thumbnail\n")
    photo = tmp_path / "photo.jpg"
    Image.linear_gradient("L").resize((640, 480)).convert("RGB").save(photo, "JPEG")
    stack = start_stack(
        tmp_path / "home",
        tagger="rekognition",
        extra_env={"IMGPROC_FAULT_FILE": str(fault), "IMGPROC_MAX_RECEIVE_COUNT": "2"},
    )
    try:
        failed = imgproc(stack, "upload", str(photo), "--wait", "--timeout", "60", "--json")
        image_id = failed["image_id"]
        assert failed["status"] == "FAILED", failed
        assert failed["error"]["stage"] == "thumbnail"

        # Wait in-process (cheap); the operator's commands below run as the CLI.
        poll(lambda: _dead_letter_count(stack) == 1, 30, "the message in its dead-letter queue")
        [letter] = imgproc(stack, "dlq", "list", "thumbnail", "--json")["messages"]
        assert (letter["image_id"], letter["stage"], letter["image_status"]) == (
            image_id,
            "thumbnail",
            "FAILED",
        )
        assert "injected fault" in letter["last_error"]["message"]
        shown = imgproc(stack, "dlq", "show", "thumbnail", letter["message_id"], "--json")
        assert json.loads(shown["body"])["image_id"] == image_id
        assert shown["message_attributes"]["stage"]["StringValue"] == "thumbnail"
        counts = {q["queue"]: q for q in imgproc(stack, "dlq", "list", "--json")["queues"]}
        assert counts["thumbnail"]["dead_letters"] == 1
        workers = {s["service"]: s for s in imgproc(stack, "workers", "--json")["services"]}
        assert workers["thumbnailer"]["dead_letters"] == 1
        assert all(s["workers"] >= 1 and s["pids"] for s in workers.values()), workers

        fault.unlink()  # the fault is cleared
        report = imgproc(stack, "dlq", "replay", "thumbnail", "--json")
        assert (report["moved"], report["failed"]) == (1, 0)
        assert list(report["reran"]) == [image_id]

        poll(lambda: _status(stack, image_id) == "PROCESSED", 60, f"{image_id} PROCESSED")
        view = imgproc(stack, "status", image_id, "--json")
        assert view["status"] == "PROCESSED"
        assert view["error"] is None
        assert view["thumbnails"] and view["tags"] is not None
        assert view["execution_arn"].endswith(f":{image_id}-r1")
        assert imgproc(stack, "dlq", "list", "thumbnail", "--json")["messages"] == []
    finally:
        took = stack.stop(timeout=20)
    assert took < 15
