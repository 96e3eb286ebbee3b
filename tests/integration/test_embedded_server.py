"""The embedded endpoint's HTTP server: connections are kept alive, and requests that waitress
would leave hanging are answered."""

from __future__ import annotations

import http.client
import uuid
from typing import Any

import boto3
from botocore.config import Config

from imgproc_cli import moto_speedups
from imgproc_cli.embedded_aws import EmbeddedAws


def test_one_connection_serves_many_requests(embedded_aws: EmbeddedAws) -> None:
    connection = http.client.HTTPConnection(embedded_aws.host, embedded_aws.port, timeout=10)
    sockets = set()
    for _ in range(3):
        connection.request("GET", moto_speedups.STATS_PATH)
        response = connection.getresponse()
        response.read()
        assert response.status == 200
        assert (response.getheader("Connection") or "").lower() != "close"
        sockets.add(id(connection.sock))
    assert len(sockets) == 1  # werkzeug's server closed every connection after one request
    connection.close()


def test_an_empty_put_with_expect_continue_is_answered(embedded_aws: EmbeddedAws) -> None:
    # botocore sends `Expect: 100-continue` with `Content-Length: 0` for an empty body; waitress
    # 3.0.2 on its own answered "100 Continue" and then never served the request.
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
