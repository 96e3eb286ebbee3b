"""The worker runtime's two call savers, against recording fakes: answered messages are deleted
in batches, and a stage writes its "started" note only when it runs long."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import eventually

from imgproc_shared.worker.runtime import _Deletions, _StartedNote


class RecordingSqs:
    def __init__(self, fail_first: bool = False) -> None:
        self.batches: list[list[str]] = []
        self._fail_first = fail_first

    async def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:
        self.batches.append([entry["ReceiptHandle"] for entry in Entries])
        assert len({entry["Id"] for entry in Entries}) == len(Entries)
        if self._fail_first and len(self.batches) == 1:
            return {"Failed": [{"Id": Entries[0]["Id"], "Message": "receipt expired"}]}
        return {"Successful": [{"Id": entry["Id"]} for entry in Entries]}


class RecordingLog:
    def __init__(self) -> None:
        self.warnings: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.warnings.append((event, fields))


class RecordingCatalog:
    def __init__(self) -> None:
        self.writes: list[tuple[str, str, dict[str, Any]]] = []

    async def record_stage(self, image_id: str, stage: str, progress: dict[str, Any]) -> bool:
        self.writes.append((image_id, stage, progress))
        return True


async def test_answers_close_together_are_deleted_in_one_batch() -> None:
    sqs = RecordingSqs()
    deletions = _Deletions(sqs, "queue-url", linger_s=0.2, log=RecordingLog())
    for receipt in ("r1", "r2", "r3"):
        deletions.add(receipt)
    assert sqs.batches == []  # lingering for more
    await eventually(lambda: sqs.batches == [["r1", "r2", "r3"]], timeout=5, what="one batch")
    deletions.add("r4")
    await eventually(lambda: sqs.batches[-1:] == [["r4"]], timeout=5, what="a second batch")
    await deletions.close()
    assert sqs.batches == [["r1", "r2", "r3"], ["r4"]]


async def test_a_full_batch_goes_at_once_and_stop_sends_the_rest() -> None:
    sqs = RecordingSqs()
    deletions = _Deletions(sqs, "queue-url", linger_s=60, log=RecordingLog())
    receipts = [f"r{i}" for i in range(13)]
    for receipt in receipts:
        deletions.add(receipt)
    await eventually(lambda: len(sqs.batches) == 1, timeout=5, what="the full batch")
    assert sqs.batches == [receipts[:10]]
    await deletions.close()  # does not wait out the 60 s linger
    assert sqs.batches == [receipts[:10], receipts[10:]]


async def test_a_failed_delete_is_logged_not_raised() -> None:
    sqs, log = RecordingSqs(fail_first=True), RecordingLog()
    deletions = _Deletions(sqs, "queue-url", linger_s=0, log=log)
    deletions.add("r1")
    await deletions.close()
    assert sqs.batches == [["r1"]]
    assert log.warnings == [("delete failed", {"error": "receipt expired"})]


async def test_a_quick_stage_writes_no_started_note() -> None:
    catalog = RecordingCatalog()
    note = _StartedNote(catalog, "img", "tag", "2026-01-01T00:00:00Z", delay_s=0.5)  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the stage's work, quicker than the delay
    await note.settle()
    assert note._timer.cancelled()  # nothing can write it later
    assert catalog.writes == []


async def test_a_long_stage_notes_when_it_started_before_it_ends() -> None:
    catalog = RecordingCatalog()
    note = _StartedNote(catalog, "img", "tag", "2026-01-01T00:00:00Z", delay_s=0.05)  # type: ignore[arg-type]
    await eventually(lambda: len(catalog.writes) == 1, timeout=5, what="the started note")
    await note.settle()
    assert catalog.writes == [("img", "tag", {"started_at": "2026-01-01T00:00:00Z"})]
