"""The embedded endpoint's speedups change nothing that executions compute, and are used.

Runs on the session's embedded moto (started through `start_embedded_aws`, so with every patch
installed): concurrent executions of one definition share a parsed program, yet each keeps its
own retry counters, callbacks reach the right execution through the token index, stale and
unknown tokens are refused as before, and the request counter sees each call once.
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
import uuid
from collections import Counter
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from helpers import eventually

from imgproc_local import moto_speedups, request_counter
from imgproc_local.bootstrap import STATE_MACHINE_ROLE
from imgproc_local.embedded_aws import EMBEDDED_ACCOUNT, EmbeddedAws
from imgproc_shared.aws import AwsClients
from imgproc_shared.settings import Settings


def _definition(queue_url: str, missing_table: str = "imgproc-no-such-table") -> str:
    return json.dumps(
        {
            "StartAt": "Ask",
            "States": {
                "Ask": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {
                        "QueueUrl": queue_url,
                        "MessageBody": {"token.$": "$$.Task.Token", "id.$": "$.id"},
                    },
                    "HeartbeatSeconds": 30,
                    # No Retry here: moto 5.2.5 retries a callback task with its first token
                    # and outcome (a separate bug, stock moto too).
                    "ResultPath": "$.answer",
                    "Next": "Shape",
                },
                "Shape": {
                    "Type": "Parallel",
                    "Branches": [
                        {
                            "StartAt": "Twice",
                            "States": {
                                "Twice": {
                                    "Type": "Pass",
                                    "Parameters": {"n.$": "States.MathAdd($.answer.n, $.answer.n)"},
                                    "End": True,
                                }
                            },
                        },
                        {
                            "StartAt": "Label",
                            "States": {
                                "Label": {
                                    "Type": "Pass",
                                    "Parameters": {"label.$": "States.Format('image {}', $.id)"},
                                    "End": True,
                                }
                            },
                        },
                    ],
                    "ResultSelector": {
                        "twice.$": "States.ArrayGetItem($, 0)",
                        "label.$": "States.ArrayGetItem($, 1)",
                    },
                    "Next": "Probe",
                },
                # Fails every time (no such table): retried twice, then caught.
                "Probe": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::dynamodb:getItem",
                    "Parameters": {"TableName": missing_table, "Key": {"k": {"S": "v"}}},
                    "Retry": [
                        {
                            "ErrorEquals": ["States.ALL"],
                            "IntervalSeconds": 1,
                            "MaxAttempts": 2,
                            "BackoffRate": 1.0,
                        }
                    ],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": None, "Next": "Done"}],
                    "ResultPath": None,
                    "Next": "Done",
                },
                "Done": {"Type": "Pass", "End": True},
            },
        }
    )


async def test_executions_sharing_a_program_keep_their_own_retries_and_callbacks(
    settings_factory: Any,
) -> None:
    settings: Settings = settings_factory()
    assert settings.endpoint_url
    in_process_before = _count(
        _stats(settings.endpoint_url), "served_in_process", "sqs", "SendMessage"
    )
    program_hits = moto_speedups.program_cache_stats["hits"]
    token_hits = moto_speedups.token_index_stats["hits"]
    jsonpath_before = moto_speedups.jsonpath_cache_info()

    async with AwsClients(settings) as aws:
        queue_url = (await aws.sqs.create_queue(QueueName=f"{settings.resource_prefix}-ask"))[
            "QueueUrl"
        ]
        machine = await aws.stepfunctions.create_state_machine(
            name=f"{settings.resource_prefix}-shared",
            definition=_definition(queue_url),
            roleArn=STATE_MACHINE_ROLE,
        )
        # x0 and x1 succeed; x2's task fails.
        ids = [f"x{i}" for i in range(3)]
        arns = {}
        for image_id in ids:
            started = await aws.stepfunctions.start_execution(
                stateMachineArn=machine["stateMachineArn"],
                name=f"{settings.resource_prefix}-{image_id}",
                input=json.dumps({"id": image_id}),
            )
            arns[image_id] = started["executionArn"]

        attempts: Counter[str] = Counter()
        answered_tokens: list[str] = []

        async def answer_all() -> bool:
            response = await aws.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            for message in response.get("Messages", []):
                body = json.loads(message["Body"])
                image_id, token = body["id"], body["token"]
                attempts[image_id] += 1
                await aws.stepfunctions.send_task_heartbeat(taskToken=token)
                if image_id == "x2":
                    await aws.stepfunctions.send_task_failure(
                        taskToken=token, error="Again", cause=f"attempt {attempts[image_id]}"
                    )
                else:
                    n = int(image_id[1:]) + 1
                    await aws.stepfunctions.send_task_success(
                        taskToken=token, output=json.dumps({"n": n})
                    )
                    answered_tokens.append(token)
                await aws.sqs.delete_message(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
            statuses = [
                (await aws.stepfunctions.describe_execution(executionArn=arn))["status"]
                for arn in arns.values()
            ]
            return all(status != "RUNNING" for status in statuses)

        await eventually(answer_all, timeout=90, interval=0.05, what="every execution to end")

        for image_id in ids[:2]:
            described = await aws.stepfunctions.describe_execution(executionArn=arns[image_id])
            assert described["status"] == "SUCCEEDED", described
            n = int(image_id[1:]) + 1
            assert json.loads(described["output"]) == {
                "twice": {"n": 2 * n},
                "label": {"label": f"image {image_id}"},
            }
            assert attempts[image_id] == 1
            history = await aws.stepfunctions.get_execution_history(executionArn=arns[image_id])
            # The probe failed once and was retried exactly MaxAttempts (2) times: the retry
            # counter lives per execution although the program is shared.
            assert [e["type"] for e in history["events"]].count("TaskFailed") == 3
        failed = await aws.stepfunctions.describe_execution(executionArn=arns["x2"])
        assert failed["status"] == "FAILED"
        assert (failed.get("error"), failed.get("cause")) == ("Again", "attempt 1")

        # A token whose task is over, and one that never existed, are refused as before.
        with pytest.raises(ClientError) as stale:
            await aws.stepfunctions.send_task_success(
                taskToken=answered_tokens[0], output=json.dumps({"n": 0})
            )
        assert stale.value.response["Error"]["Code"] in ("InvalidToken", "TaskTimedOut")
        with pytest.raises(ClientError) as unknown:
            await aws.stepfunctions.send_task_success(taskToken=uuid.uuid4().hex, output="{}")
        assert unknown.value.response["Error"]["Code"] == "InvalidToken"

    if not moto_speedups.speedups_enabled():
        return  # IMGPROC_MOTO_SPEEDUPS=0: the same behaviour from stock moto, nothing cached
    # Three executions of one definition: at most the first parsed it.
    assert moto_speedups.program_cache_stats["hits"] - program_hits >= 2
    # 3 heartbeats, 3 answers and the stale answer, all through the index.
    assert moto_speedups.token_index_stats["hits"] - token_hits >= 7
    jsonpath_after = moto_speedups.jsonpath_cache_info()
    assert jsonpath_before is not None and jsonpath_after is not None
    assert jsonpath_after.hits > jsonpath_before.hits
    # Each execution's task message (3 first tries + x2's retries) was sent in process, and
    # counted as the SendMessage it is, yet reached the queue the worker loop above reads.
    stats = _stats(settings.endpoint_url)
    assert _count(stats, "served_in_process", "sqs", "SendMessage") - in_process_before >= 3


def _stats(endpoint_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(endpoint_url + request_counter.STATS_PATH, timeout=5) as response:
        stats: dict[str, Any] = json.loads(response.read())
    return stats


def _count(stats: dict[str, Any], group: str, service: str, action: str) -> int:
    return int(stats[group].get(service, {}).get(action, 0))


async def test_request_counter_sees_each_call_once(
    embedded_aws: EmbeddedAws, settings_factory: Any
) -> None:
    settings: Settings = settings_factory()
    endpoint = embedded_aws.endpoint_url
    # A plain boto3 client (like moto's own interpreter) is counted as a real API call.
    kwargs: dict[str, Any] = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    sqs: Any = boto3.client("sqs", **kwargs)
    sns: Any = boto3.client("sns", **kwargs)
    s3: Any = boto3.client("s3", **kwargs)
    bucket = f"{settings.resource_prefix}-counted"
    before = _stats(endpoint)
    queue_url = sqs.create_queue(QueueName=f"{settings.resource_prefix}-counted")["QueueUrl"]
    for _ in range(3):
        sqs.list_queue_tags(QueueUrl=queue_url)
    sns.list_topics()
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="a/b.txt", Body=b"x")
    s3.get_object(Bucket=bucket, Key="a/b.txt")
    # This process hosts the endpoint: its own aiobotocore clients count as housekeeping.
    async with AwsClients(settings) as aws:
        await aws.sqs.list_queue_tags(QueueUrl=queue_url)
    after = _stats(endpoint)

    def delta(group: str, service: str, action: str) -> int:
        return _count(after, group, service, action) - _count(before, group, service, action)

    assert delta("requests", "sqs", "ListQueueTags") == 3
    assert delta("housekeeping_requests", "sqs", "ListQueueTags") == 1
    assert delta("requests", "sns", "ListTopics") == 1
    assert delta("requests", "s3", "PUTBucket") == 1
    assert delta("requests", "s3", "PutObject") == 1
    assert delta("requests", "s3", "GetObject") == 1
    if not moto_speedups.speedups_enabled():
        return
    assert set(after["speedups"]) >= {
        "program_cache",
        "jsonpath_cache",
        "client_cache",
        "token_index",
        "backend_lookup_cache",
    }


def test_speedups_switch() -> None:
    import os

    saved = os.environ.get(moto_speedups.SPEEDUPS_ENV)
    try:
        os.environ[moto_speedups.SPEEDUPS_ENV] = "0"
        assert not moto_speedups.speedups_enabled()
        os.environ[moto_speedups.SPEEDUPS_ENV] = "1"
        assert moto_speedups.speedups_enabled()
        del os.environ[moto_speedups.SPEEDUPS_ENV]
        assert moto_speedups.speedups_enabled()
    finally:
        if saved is not None:
            os.environ[moto_speedups.SPEEDUPS_ENV] = saved


async def test_concurrent_callbacks_do_not_block_each_other(settings_factory: Any) -> None:
    """Many executions answered at once all finish (the index is shared between threads)."""
    settings: Settings = settings_factory()
    async with AwsClients(settings) as aws:
        queue_url = (await aws.sqs.create_queue(QueueName=f"{settings.resource_prefix}-many"))[
            "QueueUrl"
        ]
        machine = await aws.stepfunctions.create_state_machine(
            name=f"{settings.resource_prefix}-many",
            definition=_definition(queue_url),
            roleArn=STATE_MACHINE_ROLE,
        )
        arns = [
            (
                await aws.stepfunctions.start_execution(
                    stateMachineArn=machine["stateMachineArn"],
                    name=f"{settings.resource_prefix}-m{i}",
                    input=json.dumps({"id": f"m{i}"}),
                )
            )["executionArn"]
            for i in range(8)
        ]
        seen: set[str] = set()

        async def answer() -> bool:
            response = await aws.sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
            )
            messages = response.get("Messages", [])
            await asyncio.gather(
                *(
                    aws.stepfunctions.send_task_success(
                        taskToken=json.loads(m["Body"])["token"], output=json.dumps({"n": 1})
                    )
                    for m in messages
                )
            )
            seen.update(json.loads(m["Body"])["id"] for m in messages)
            for m in messages:
                await aws.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            return len(seen) == len(arns)

        await eventually(answer, timeout=60, interval=0.05, what="every task to be sent")

        async def all_succeeded() -> bool:
            statuses = [
                (await aws.stepfunctions.describe_execution(executionArn=arn))["status"]
                for arn in arns
            ]
            return all(s == "SUCCEEDED" for s in statuses)

        await eventually(all_succeeded, timeout=60, what="every execution to succeed")


def _create_ranged_table(dynamodb: Any, name: str, *, sort_key_type: str) -> None:
    """An on-demand table keyed by a string `pk` and a `sk` of the given type."""
    dynamodb.create_table(
        TableName=name,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": sort_key_type},
        ],
        BillingMode="PAY_PER_REQUEST",
    )


def test_a_transaction_backs_up_and_restores_only_the_items_it_names(
    embedded_aws: EmbeddedAws, settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancelled transaction leaves every item as it was (a new one absent, an updated and a
    deleted one as before, its neighbours untouched) and a committed one writes them all,
    without a copy of the whole table (moto's own backup, 92 ms a call at ~500 items)."""
    if not moto_speedups.speedups_enabled():
        pytest.skip("the stock-moto baseline copies whole tables")
    from moto.dynamodb.models.table import Table

    def no_table_copies(self: Any, memo: Any) -> Any:
        raise AssertionError("a transaction deep-copied a whole table")

    monkeypatch.setattr(Table, "__deepcopy__", no_table_copies, raising=False)
    settings: Settings = settings_factory()
    dynamodb: Any = boto3.client(
        "dynamodb", endpoint_url=embedded_aws.endpoint_url, region_name="us-east-1"
    )
    ranged = f"{settings.resource_prefix}-tx-ranged-{uuid.uuid4().hex[:6]}"
    plain = f"{settings.resource_prefix}-tx-plain-{uuid.uuid4().hex[:6]}"
    _create_ranged_table(dynamodb, ranged, sort_key_type="S")
    dynamodb.create_table(
        TableName=plain,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    def key(pk: str, sk: str | None = None) -> dict[str, Any]:
        return {"pk": {"S": pk}, **({"sk": {"S": sk}} if sk is not None else {})}

    for sk in ("a", "b", "c"):
        dynamodb.put_item(TableName=ranged, Item={**key("p", sk), "n": {"N": "1"}})
    dynamodb.put_item(TableName=plain, Item={**key("x"), "n": {"N": "1"}})
    dynamodb.put_item(TableName=plain, Item={**key("y"), "n": {"N": "1"}})

    def everything() -> dict[str, Any]:
        return {
            table: sorted(
                dynamodb.scan(TableName=table)["Items"], key=lambda item: json.dumps(item)
            )
            for table in (ranged, plain)
        }

    def writes(guard: str) -> list[dict[str, Any]]:
        return [
            {"Put": {"TableName": ranged, "Item": {**key("p", "new"), "n": {"N": "9"}}}},
            {
                "Update": {
                    "TableName": ranged,
                    "Key": key("p", "a"),
                    "UpdateExpression": "SET n = n + :one, extra = :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}},
                }
            },
            {"Delete": {"TableName": ranged, "Key": key("p", "b")}},
            {"Put": {"TableName": plain, "Item": {**key("x"), "n": {"N": "5"}}}},
            {"Delete": {"TableName": plain, "Key": key("y")}},
            {
                "ConditionCheck": {
                    "TableName": plain,
                    "Key": key("z"),
                    "ConditionExpression": guard,
                }
            },
        ]

    before = everything()
    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(TransactItems=writes("attribute_exists(pk)"))
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert everything() == before

    dynamodb.transact_write_items(TransactItems=writes("attribute_not_exists(pk)"))
    after = everything()
    assert [item["sk"]["S"] for item in after[ranged]] == ["a", "c", "new"]
    updated = next(item for item in after[ranged] if item["sk"]["S"] == "a")
    assert updated["n"] == {"N": "2"} and updated["extra"] == {"N": "1"}
    assert after[plain] == [{**key("x"), "n": {"N": "5"}}]
    for table in (ranged, plain):
        dynamodb.delete_table(TableName=table)


def test_responses_are_serialized_byte_for_byte_as_moto_does(
    embedded_aws: EmbeddedAws, settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The serializer's remembered member names give the same bytes as moto's own picking, for
    items of every attribute type, pages with keys, table descriptions and other services."""
    if not moto_speedups.speedups_enabled():
        pytest.skip("the stock-moto baseline serializes with moto's own picker only")
    from moto.core import serialize

    patched = serialize.ResponseSerializer.get_value
    original = patched.__wrapped__  # type: ignore[attr-defined]
    assert original is not patched
    settings: Settings = settings_factory()
    kwargs: dict[str, Any] = {"endpoint_url": embedded_aws.endpoint_url, "region_name": "us-east-1"}
    dynamodb: Any = boto3.client("dynamodb", **kwargs)
    sqs: Any = boto3.client("sqs", **kwargs)
    table = f"{settings.resource_prefix}-serialized-{uuid.uuid4().hex[:6]}"
    _create_ranged_table(dynamodb, table, sort_key_type="N")
    every_type = {
        "s": {"S": "text"},
        "n": {"N": "12.5"},
        "b": {"B": b"\x00\x01bytes"},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "2"]},
        "bs": {"BS": [b"x", b"y"]},
        "m": {"M": {"inner": {"L": [{"S": "x"}, {"N": "1"}, {"NULL": True}, {"BOOL": False}]}}},
        "l": {"L": [{"M": {"deep": {"M": {"deeper": {"SS": ["z"]}}}}}]},
        "null": {"NULL": True},
        "bool": {"BOOL": True},
    }
    for sk in range(3):
        dynamodb.put_item(
            TableName=table, Item={"pk": {"S": "p"}, "sk": {"N": str(sk)}, **every_type}
        )
    queue_url = sqs.create_queue(QueueName=f"{settings.resource_prefix}-serialized")["QueueUrl"]
    key = {"pk": {"S": "p"}, "sk": {"N": "1"}}
    calls: list[tuple[Any, str, dict[str, Any]]] = [
        (dynamodb, "get_item", {"TableName": table, "Key": key}),
        (
            dynamodb,
            "query",
            {
                "TableName": table,
                "KeyConditionExpression": "pk = :p",
                "ExpressionAttributeValues": {":p": {"S": "p"}},
                "Limit": 2,
            },
        ),
        (dynamodb, "scan", {"TableName": table}),
        (dynamodb, "batch_get_item", {"RequestItems": {table: {"Keys": [key]}}}),
        (
            dynamodb,
            "transact_get_items",
            {"TransactItems": [{"Get": {"TableName": table, "Key": key}}]},
        ),
        (dynamodb, "describe_table", {"TableName": table}),
        (dynamodb, "list_tables", {}),
        (sqs, "get_queue_attributes", {"QueueUrl": queue_url, "AttributeNames": ["All"]}),
    ]
    bodies: dict[str, list[bytes]] = {"patched": [], "moto": []}
    current: list[bytes] = []

    def keep_body(http_response: Any, **_: Any) -> None:
        current.append(http_response.content)

    for client in (dynamodb, sqs):
        client.meta.events.register("after-call", keep_body)
    for label in ("patched", "moto"):
        if label == "moto":
            monkeypatch.setattr(serialize.ResponseSerializer, "get_value", original)
        for client, operation, arguments in calls:
            current.clear()
            getattr(client, operation)(**arguments)
            bodies[label].append(current[-1])
    monkeypatch.setattr(serialize.ResponseSerializer, "get_value", patched)
    for (_, operation, _), ours, theirs in zip(
        calls, bodies["patched"], bodies["moto"], strict=True
    ):
        assert ours == theirs, operation
    assert b"deeper" in bodies["patched"][0] and b"LastEvaluatedKey" in bodies["patched"][1]
    dynamodb.delete_table(TableName=table)
    sqs.delete_queue(QueueUrl=queue_url)


def _sqs_backend() -> Any:
    from moto.sqs.models import sqs_backends

    return sqs_backends[EMBEDDED_ACCOUNT]["us-east-1"]


def test_sqs_reads_a_queues_attributes_once_per_call_and_never_per_message_received(
    embedded_aws: EmbeddedAws, settings_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receive hands out messages without computing the queue's attributes (moto computed
    them three times per message, each walking every message held), still refuses a message past
    its retention period, and `GetQueueAttributes` answers as moto does from one computation."""
    if not moto_speedups.speedups_enabled():
        pytest.skip("the stock-moto baseline computes the attributes per message")
    from moto.sqs.models import Queue, SQSBackend

    settings: Settings = settings_factory()
    sqs: Any = boto3.client("sqs", endpoint_url=embedded_aws.endpoint_url, region_name="us-east-1")
    name = f"{settings.resource_prefix}-attributes-{uuid.uuid4().hex[:6]}"
    queue_url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "60"})[
        "QueueUrl"
    ]
    for index in range(6):
        sqs.send_message(QueueUrl=queue_url, MessageBody=f"message {index}")

    computed = Counter[str]()
    attributes = Queue.attributes

    def counted(self: Any) -> dict[str, Any]:
        computed["attributes"] += 1
        return attributes.fget(self)  # type: ignore[attr-defined,no-any-return]

    monkeypatch.setattr(Queue, "attributes", property(counted))
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=5, VisibilityTimeout=30)
    assert len(received["Messages"]) == 5
    assert computed["attributes"] == 0

    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "Policy"]
    answered = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    assert answered == {
        "ApproximateNumberOfMessages": "1",
        "ApproximateNumberOfMessagesNotVisible": "5",
    }
    assert computed["attributes"] == 1
    monkeypatch.setattr(Queue, "attributes", attributes)

    # The same answers as moto's own functions, asked directly of the backend.
    backend = _sqs_backend()
    ours, theirs = SQSBackend.get_queue_attributes, SQSBackend.get_queue_attributes.__wrapped__  # type: ignore[attr-defined]
    for asked in (names, ["All"], ["VisibilityTimeout", "VisibilityTimeout"], ["FifoQueue"], []):
        assert ours(backend, name, asked) == theirs(backend, name, asked), asked
    with pytest.raises(ClientError) as invalid:
        sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["NoSuchAttribute"])
    assert invalid.value.response["Error"]["Code"] == "InvalidAttributeName"

    check = SQSBackend.is_message_valid_based_on_retention_period
    moto_check = check.__wrapped__  # type: ignore[attr-defined]
    held = backend.get_queue(name)._messages[-1]
    assert check(backend, name, held) is moto_check(backend, name, held) is True
    held.sent_timestamp -= 61_000  # sent 61 s ago: past the 60 s retention period
    assert check(backend, name, held) is moto_check(backend, name, held) is False
    assert "Messages" not in sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=5)
    sqs.delete_queue(QueueUrl=queue_url)
