"""The operators' dead-letter endpoints against the real moto server (the operations themselves
are tested in tests/integration/test_dead_letters.py; here: the HTTP surface)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from botocore.exceptions import ClientError

from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.resources import Queue, ResourceNames

from api_harness import ApiHarness, bootstrapped_stack, running_api


@pytest_asyncio.fixture
async def api(embedded_aws: EmbeddedAws) -> AsyncIterator[ApiHarness]:
    async with bootstrapped_stack(embedded_aws.endpoint_url) as stack:
        async with running_api(stack) as harness:
            yield harness


async def _dead_letter(api: ApiHarness, image_id: str) -> None:
    names = ResourceNames.from_settings(api.settings)
    url = (await api.aws.sqs.get_queue_url(QueueName=names.dead_letter_queue(Queue.TAG)))[
        "QueueUrl"
    ]
    body = {
        "task_token": "t",
        "stage": "tag",
        "image_id": image_id,
        "bucket": names.bucket,
        "key": f"incoming/u/a/{image_id}.jpg",
    }
    await api.aws.sqs.send_message(
        QueueUrl=url,
        MessageBody=json.dumps(body),
        MessageAttributes={"stage": {"DataType": "String", "StringValue": "tag"}},
    )


async def test_dead_letters_are_counted_listed_replayed_and_purged(api: ApiHarness) -> None:
    headers = await api.sign_in("operator")
    assert (await api.client.get("/api/operators/dead-letters")).status_code == 401
    for image_id in ("api-a", "api-b", "api-c"):
        await _dead_letter(api, image_id)

    counts = (await api.client.get("/api/operators/dead-letters", headers=headers)).json()
    by_queue: dict[str, Any] = {q["queue"]: q for q in counts["queues"]}
    assert by_queue["tag"]["dead_letters"] == 3
    assert set(by_queue) == {q.value for q in Queue}

    listed = (await api.client.get("/api/operators/dead-letters/tag", headers=headers)).json()
    assert sorted(m["image_id"] for m in listed["messages"]) == ["api-a", "api-b", "api-c"]
    assert all(m["stage"] == "tag" for m in listed["messages"])

    dry = await api.client.post(
        "/api/operators/dead-letters/tag/replay",
        json={"image_id": "api-b", "dry_run": True},
        headers=headers,
    )
    assert dry.status_code == 200, dry.text
    assert (dry.json()["selected"], dry.json()["moved"]) == (1, 0)
    # The body's JSON types are the document's: `true` is no count, nor is `"2"`; nothing moves.
    for wrong in ({"max": True}, {"max": "2"}, {"max": 1.5}, {"max": 2, "limit": 2}):
        answer = await api.client.post(
            "/api/operators/dead-letters/tag/replay", json=wrong, headers=headers
        )
        assert answer.status_code == 422, (wrong, answer.text)
        assert answer.json()["code"] == "validation_error"
    # 2.0 is an integer in JSON Schema.
    moved = await api.client.post(
        "/api/operators/dead-letters/tag/replay", json={"max": 2.0}, headers=headers
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["moved"] == 2

    for wrong in ({"confirm": 1}, {"confirm": "true"}):
        answer = await api.client.post(
            "/api/operators/dead-letters/tag/purge", json=wrong, headers=headers
        )
        assert answer.status_code == 422, (wrong, answer.text)
    refused = await api.client.post(
        "/api/operators/dead-letters/tag/purge", json={"confirm": False}, headers=headers
    )
    assert refused.status_code == 400 and refused.json()["code"] == "confirmation_required"
    purged = await api.client.post(
        "/api/operators/dead-letters/tag/purge", json={"confirm": True}, headers=headers
    )
    assert purged.json() == {"queue": "tag", "purged": 1}

    unknown = await api.client.get("/api/operators/dead-letters/nope", headers=headers)
    assert unknown.status_code == 404 and unknown.json()["code"] == "queue_not_found"


async def test_operators_act_through_the_operations_role_which_the_api_itself_lacks(
    api: ApiHarness,
) -> None:
    """The public API's own identity may not purge (or read) a dead-letter queue; an operator's
    replay and purge work, signed with the operations role's temporary credentials."""
    from helpers import as_service

    from imgproc_local import moto_iam
    from imgproc_shared.aws import AwsClients
    from imgproc_shared.errors import access_denial
    from imgproc_shared.permissions import Principal

    if not moto_iam.enforcement_enabled():
        pytest.skip("IAM enforcement is off in this session")
    names = ResourceNames.from_settings(api.settings)
    api_identity = as_service(api.settings, Principal.STATUS_API)
    assert api_identity.operations_role_arn == (
        f"arn:aws:iam::123456789012:role/{names.prefix}-operations"
    )
    url = (await api.aws.sqs.get_queue_url(QueueName=names.dead_letter_queue(Queue.TAG)))[
        "QueueUrl"
    ]
    async with AwsClients(api_identity) as public:
        with pytest.raises(ClientError) as denied:
            await public.sqs.purge_queue(QueueUrl=url)
    denial = access_denial(denied.value)
    assert denial is not None and denial.action == "sqs:PurgeQueue"

    headers = await api.sign_in("operator")
    await _dead_letter(api, "img-role-1")
    replayed = await api.client.post(
        "/api/operators/dead-letters/tag/replay", json={}, headers=headers
    )
    assert replayed.status_code == 200 and replayed.json()["moved"] == 1, replayed.text
    await _dead_letter(api, "img-role-2")
    purged = await api.client.post(
        "/api/operators/dead-letters/tag/purge", json={"confirm": True}, headers=headers
    )
    assert purged.status_code == 200 and purged.json()["purged"] == 1, purged.text
