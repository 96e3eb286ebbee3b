"""The embedded endpoint's HTTP server serving moto: connections are kept alive, and an empty
`PutObject` with `Expect: 100-continue` is answered (`test_http_server` tests the server alone)."""

from __future__ import annotations

import http.client
import threading
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config

from imgproc_local import request_counter
from imgproc_local.embedded_aws import EmbeddedAws


def test_one_connection_serves_many_requests(embedded_aws: EmbeddedAws) -> None:
    connection = http.client.HTTPConnection(embedded_aws.host, embedded_aws.port, timeout=10)
    sockets = set()
    for _ in range(3):
        connection.request("GET", request_counter.STATS_PATH)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        assert (response.getheader("Connection") or "").lower() != "close"
        sockets.add(id(connection.sock))
    assert len(sockets) == 1  # werkzeug's server closed every connection after one request
    connection.close()


def test_an_empty_put_with_expect_continue_is_answered(embedded_aws: EmbeddedAws) -> None:
    # botocore sends `Expect: 100-continue` with `Content-Length: 0` for an empty body; waitress
    # 3.0.2 (the server before ours) answered "100 Continue" and then never served the request.
    s3: Any = boto3.client(
        "s3",
        endpoint_url=embedded_aws.endpoint_url,
        region_name="us-east-1",
        config=Config(read_timeout=10, retries={"max_attempts": 1}),
    )
    bucket = f"empty-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="empty.jpg", Body=b"")
    assert s3.get_object(Bucket=bucket, Key="empty.jpg")["Body"].read() == b""
    s3.put_object(Bucket=bucket, Key="some.jpg", Body=b"x" * 100_000)
    assert len(s3.get_object(Bucket=bucket, Key="some.jpg")["Body"].read()) == 100_000


def test_an_item_update_is_read_whole_or_not_at_all(
    embedded_aws: EmbeddedAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto applies an UpdateItem's SET actions one by one to the stored item, and a GetItem
    # serializes the live item: a read between two of them saw some attributes of the update
    # and not others (found as a PROCESSED image without the renditions written with it).
    # DynamoDB writes an item atomically; so must the embedded endpoint. Here the update is
    # held after its first attribute is written (the item's attribute dict, which moto's
    # executors and the update-expression fast path both write through) while a read is made.
    from moto.dynamodb.models.dynamo_type import LimitedSizeDict

    dynamodb: Any = boto3.client(
        "dynamodb", endpoint_url=embedded_aws.endpoint_url, region_name="us-east-1"
    )
    table = f"whole-{uuid.uuid4().hex[:12]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    names = {"#a": "a", "#b": "b"}
    key = {"id": {"S": "one"}}

    def update(version: str) -> None:
        dynamodb.update_item(
            TableName=table,
            Key=key,
            UpdateExpression="SET #a = :v, #b = :v",
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={":v": {"N": version}},
        )

    update("1")
    armed, held, release = threading.Event(), threading.Event(), threading.Event()
    original = LimitedSizeDict.__setitem__

    def set_and_hold(self: Any, name: str, value: Any) -> None:
        original(self, name, value)
        if armed.is_set():
            armed.clear()
            held.set()
            release.wait(10)

    monkeypatch.setattr(LimitedSizeDict, "__setitem__", set_and_hold)
    read: list[dict[str, Any]] = []
    writer = threading.Thread(target=update, args=("2",))
    reader = threading.Thread(
        target=lambda: read.append(dynamodb.get_item(TableName=table, Key=key)["Item"])
    )
    armed.set()
    writer.start()
    try:
        assert held.wait(10), "the update never reached its first action"
        reader.start()
        reader.join(1.0)
        assert reader.is_alive(), "the read was answered in the middle of the update"
    finally:
        release.set()
        writer.join(10)
        reader.join(10)
        dynamodb.delete_table(TableName=table)
    assert [(item["a"]["N"], item["b"]["N"]) for item in read] == [("2", "2")], read
