"""Recognizing an AWS denial and naming its action and resource, over the error responses each
protocol really sends (parsed by botocore's own clients, with canned HTTP answers; no network)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.config import Config
from botocore.exceptions import ClientError

from imgproc_shared import errors

ACCOUNT = "123456789012"
REGION = "us-east-1"
QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/imgproc-thumbnail"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:imgproc-validated"
USER = f"arn:aws:iam::{ACCOUNT}:user/imgproc-thumbnailer"


class _Body:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


def _answering(service: str, status: int, body: bytes, headers: dict[str, str]) -> Any:
    """A real botocore client whose every request is answered with this HTTP response."""
    client = boto3.session.Session().client(
        service,  # type: ignore[call-overload]
        region_name=REGION,
        aws_access_key_id="key",
        aws_secret_access_key="secret",
        config=Config(retries={"max_attempts": 1}),
    )
    errors.note_request(client)

    def answer(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, status, headers, _Body(body))

    client.meta.events.register("before-send", answer)
    return client


def _raised(call: Any, **params: Any) -> ClientError:
    with pytest.raises(ClientError) as caught:
        call(**params)
    return caught.value


def test_sqs_json_protocol_names_action_and_resource_from_the_message() -> None:
    message = (
        f"User: {USER} is not authorized to perform: sqs:sendmessage on resource: "
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:imgproc-tag because no identity-based policy allows "
        "the sqs:sendmessage action"
    )
    body = json.dumps(
        {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}
    )
    sqs = _answering(
        "sqs",
        400,
        body.encode(),
        {"x-amzn-query-error": "AccessDenied;Sender", "Content-Type": "application/x-amz-json-1.0"},
    )
    exc = _raised(sqs.send_message, QueueUrl=QUEUE_URL, MessageBody="{}")
    denial = errors.access_denial(exc)
    assert denial is not None
    assert denial.code == "AccessDenied"
    assert (denial.action, denial.resource) == (
        "sqs:sendmessage",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:imgproc-tag",
    )


def test_sns_query_protocol_authorization_error() -> None:
    message = (
        f"User: {USER} is not authorized to perform: SNS:Publish on resource: {TOPIC_ARN} "
        "because no identity-based policy allows the SNS:Publish action"
    )
    body = (
        "<ErrorResponse><Error><Type>Sender</Type><Code>AuthorizationError</Code>"
        f"<Message>{message}</Message></Error><RequestId>r1</RequestId></ErrorResponse>"
    )
    sns = _answering("sns", 403, body.encode(), {"Content-Type": "text/xml"})
    denial = errors.access_denial(_raised(sns.publish, TopicArn=TOPIC_ARN, Message="{}"))
    assert denial is not None
    assert denial.code == "AuthorizationError"
    assert (denial.action, denial.resource) == ("SNS:Publish", TOPIC_ARN)


def test_dynamodb_and_step_functions_json_access_denied_exception() -> None:
    table_arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/imgproc-images"
    body = json.dumps(
        {
            "__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException",
            "Message": f"User: {USER} is not authorized to perform: dynamodb:UpdateItem on "
            f"resource: {table_arn} because no identity-based policy allows it",
        }
    )
    dynamodb = _answering(
        "dynamodb", 400, body.encode(), {"Content-Type": "application/x-amz-json-1.0"}
    )
    exc = _raised(
        dynamodb.update_item,
        TableName="imgproc-images",
        Key={"image_id": {"S": "i1"}},
        UpdateExpression="SET a = :a",
        ExpressionAttributeValues={":a": {"S": "b"}},
    )
    denial = errors.access_denial(exc)
    assert denial is not None and denial.code == "AccessDeniedException"
    assert (denial.action, denial.resource) == ("dynamodb:UpdateItem", table_arn)

    # moto's message names the action only: the resource comes from the request.
    body = json.dumps(
        {
            "__type": "AccessDeniedException",
            "message": f"User: {USER} is not authorized to perform: states:SendTaskFailure",
        }
    )
    sfn = _answering("stepfunctions", 400, body.encode(), {})
    exc = _raised(sfn.send_task_failure, taskToken="t", error="e", cause="c")
    denial = errors.access_denial(exc)
    assert denial is not None
    assert (denial.action, denial.resource) == ("states:SendTaskFailure", "a task token")


def test_s3_denial_without_details_is_named_from_the_request() -> None:
    body = b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
    s3 = _answering("s3", 403, body, {"Content-Type": "application/xml"})
    exc = _raised(s3.put_object, Bucket="imgproc-images", Key="thumbnails/i1/t.jpg", Body=b"x")
    denial = errors.access_denial(exc)
    assert denial is not None
    assert (denial.action, denial.resource) == (
        "s3:PutObject",
        "arn:aws:s3:::imgproc-images/thumbnails/i1/t.jpg",
    )
    assert denial.cause("thumbnailer") == (
        "thumbnailer was denied s3:PutObject on arn:aws:s3:::imgproc-images/thumbnails/i1/t.jpg"
    )

    # A HEAD answer has no body: only its status says it was forbidden.
    head = _answering("s3", 403, b"", {})
    denial = errors.access_denial(_raised(head.head_object, Bucket="b", Key="incoming/k.jpg"))
    assert denial is not None and denial.code == "403"
    assert (denial.action, denial.resource) == ("s3:GetObject", "arn:aws:s3:::b/incoming/k.jpg")


def test_s3_quoted_resource_and_moto_queue_message() -> None:
    message = (
        f'User: {USER} is not authorized to perform: s3:GetObject on resource: "arn:aws:s3:::b/'
        'incoming/a.jpg" because no identity-based policy allows the s3:GetObject action'
    )
    body = f"<Error><Code>AccessDenied</Code><Message>{message}</Message></Error>".encode()
    s3 = _answering("s3", 403, body, {"Content-Type": "application/xml"})
    denial = errors.access_denial(_raised(s3.get_object, Bucket="b", Key="incoming/a.jpg"))
    assert denial is not None
    assert (denial.action, denial.resource) == ("s3:GetObject", "arn:aws:s3:::b/incoming/a.jpg")

    body = (
        "<ErrorResponse><Error><Code>AccessDenied</Code><Message>User: "
        f"{USER} is not authorized to perform: sqs:ReceiveMessage</Message></Error>"
        "</ErrorResponse>"
    ).encode()
    sqs = _answering("sqs", 403, body, {"Content-Type": "text/xml"})
    exc = _raised(sqs.receive_message, QueueUrl=QUEUE_URL)
    denial = errors.access_denial(exc)
    assert denial is not None
    assert (denial.action, denial.resource) == (
        "sqs:ReceiveMessage",
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:imgproc-thumbnail",
    )


@pytest.mark.parametrize(
    "code", ["ConditionalCheckFailedException", "NoSuchKey", "InvalidClientTokenId", "404"]
)
def test_other_errors_are_not_denials(code: str) -> None:
    exc = ClientError({"Error": {"Code": code, "Message": "no"}}, "GetItem")
    assert errors.error_code(exc) == code
    assert errors.access_denial(exc) is None


def test_non_aws_exceptions_are_not_denials() -> None:
    assert errors.access_denial(RuntimeError("AccessDenied")) is None
    assert errors.error_code(ValueError("x")) is None
