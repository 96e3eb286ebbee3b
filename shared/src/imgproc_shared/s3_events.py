"""S3 event notifications, as delivered through SNS with raw delivery onto `ingest`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int | None
    event_time: str | None


class MalformedEvent(ValueError):
    """The message is not an S3 event notification we can read."""


def parse_s3_event(body: str | dict[str, Any]) -> list[ObjectCreated]:
    """Every ObjectCreated record of one notification; `s3:TestEvent` gives none.

    Keys arrive URL-encoded (`+` for spaces; moto also encodes `/` as `%2F`): always unquote.
    """
    try:
        event = json.loads(body) if isinstance(body, str) else body
    except json.JSONDecodeError as exc:
        raise MalformedEvent(f"not JSON: {exc}") from exc
    if not isinstance(event, dict):
        raise MalformedEvent("not a JSON object")
    # A notification wrapped by SNS without raw delivery: the S3 event is in `Message`.
    if "Records" not in event and isinstance(event.get("Message"), str):
        return parse_s3_event(event["Message"])
    if event.get("Event") == "s3:TestEvent":
        return []
    records = event.get("Records")
    if not isinstance(records, list):
        raise MalformedEvent("no Records list")
    created: list[ObjectCreated] = []
    for record in records:
        try:
            if not str(record.get("eventName", "")).startswith("ObjectCreated"):
                continue
            s3 = record["s3"]
            obj = s3["object"]
            created.append(
                ObjectCreated(
                    bucket=s3["bucket"]["name"],
                    key=unquote_plus(obj["key"]),
                    size=obj.get("size"),
                    event_time=record.get("eventTime"),
                )
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise MalformedEvent(f"record without bucket or key: {exc!r}") from exc
    return created
