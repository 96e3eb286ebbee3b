from __future__ import annotations

import json

import pytest

from imgproc_shared.s3_events import MalformedEvent, parse_s3_event


def _record(key: str, event: str = "ObjectCreated:Put", size: int = 10) -> dict[str, object]:
    return {
        "eventName": event,
        "eventTime": "2026-01-01T00:00:00.000Z",
        "s3": {"bucket": {"name": "b"}, "object": {"key": key, "size": size}},
    }


def test_several_records_and_encoded_keys() -> None:
    body = json.dumps(
        {
            "Records": [
                _record("incoming%2Falice%2Fa1%2Fimg1.jpg"),  # moto encodes '/'
                _record("incoming/bob/a2/my+holiday+photo.jpg"),  # '+' is a space
                _record("incoming/x/y/z.jpg", event="ObjectRemoved:Delete"),
            ]
        }
    )
    created = parse_s3_event(body)
    assert [c.key for c in created] == [
        "incoming/alice/a1/img1.jpg",
        "incoming/bob/a2/my holiday photo.jpg",
    ]
    assert created[0].bucket == "b" and created[0].size == 10


def test_test_event_is_ignored() -> None:
    assert parse_s3_event(json.dumps({"Event": "s3:TestEvent", "Bucket": "b"})) == []


def test_sns_envelope_without_raw_delivery() -> None:
    inner = json.dumps({"Records": [_record("incoming/a/b/c.png")]})
    assert parse_s3_event(json.dumps({"Type": "Notification", "Message": inner}))[0].key == (
        "incoming/a/b/c.png"
    )


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        json.dumps({"Records": "x"}),
        json.dumps({"Records": [{"eventName": "ObjectCreated:Put"}]}),
    ],
)
def test_malformed_events_say_why(body: str) -> None:
    with pytest.raises(MalformedEvent):
        parse_s3_event(body)
