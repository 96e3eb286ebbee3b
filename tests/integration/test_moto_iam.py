"""The embedded endpoint authorizes each call as AWS does (moto_iam), over HTTP with aiobotocore.

One service identity, whose policy names one table (and its indexes), one topic, one state
machine, one queue and two S3 prefixes, calls the session's embedded moto with IAM enforcement
on: each call on what the policy names is allowed, the same call on a neighbour is denied with
the service's own error naming the action and the resource. Before moto_iam every call below
on a table, topic or state machine was denied (moto checked them against `*`), conditions
denied, and presigned URLs bypassed the check.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiobotocore.session import get_session
from botocore.config import Config
from botocore.exceptions import ClientError
from helpers import eventually, iam_enforced

from imgproc_local import moto_iam
from imgproc_local.embedded_aws import EMBEDDED_ACCOUNT, EmbeddedAws

REGION = "us-east-1"
ARN = f"{REGION}:{EMBEDDED_ACCOUNT}"
ROLE = f"arn:aws:iam::{EMBEDDED_ACCOUNT}:role/imgproc-test-workflow"


# One set of resources and one service identity for the module; a test that changes a policy
# makes its own identity.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(autouse=True)
def enforcement() -> Iterator[None]:
    """IAM enforcement on for these tests; the session's previous state restored after."""
    with iam_enforced():
        yield


@asynccontextmanager
async def client(
    endpoint: str, service: str, key: str = "testing", secret: str = "testing"
) -> AsyncIterator[Any]:
    async with get_session().create_client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=Config(signature_version="s3v4"),  # as imgproc_shared.aws signs
    ) as made:
        yield made


@dataclass
class World:
    endpoint: str
    name: str  # prefix of every resource here
    key: str
    secret: str
    bucket: str
    queue_url: str
    machine: str
    other_machine: str

    def table(self, which: str) -> str:
        return f"{self.name}-{which}"


def _policy(name: str, bucket: str) -> dict[str, Any]:
    table = f"arn:aws:dynamodb:{ARN}:table/{name}-a"
    machine = f"arn:aws:states:{ARN}:stateMachine:{name}-m"
    statements = [
        ("Items", ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"], [table]),
        ("Index", ["dynamodb:Query"], [f"{table}/index/*"]),
        ("Transact", ["dynamodb:PutItem"], [table]),
        ("Topic", ["sns:Publish"], [f"arn:aws:sns:{ARN}:{name}-a"]),
        ("Start", ["states:StartExecution", "states:SendTaskSuccess"], [machine]),
        ("Describe", ["states:DescribeExecution"], [f"arn:aws:states:{ARN}:execution:{name}-m:*"]),
        (
            "Tokens",
            ["sqs:ReceiveMessage", "sqs:GetQueueUrl", "sqs:DeleteMessage"],
            [f"arn:aws:sqs:{ARN}:{name}-q"],
        ),
        ("Incoming", ["s3:GetObject", "s3:PutObject"], [f"arn:aws:s3:::{bucket}/incoming/*"]),
        ("Thumbnails", ["s3:GetObject"], [f"arn:aws:s3:::{bucket}/thumbnails/*"]),
    ]
    rendered: list[dict[str, Any]] = [
        {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources}
        for sid, actions, resources in statements
    ]
    rendered.append(
        {
            "Sid": "ListThumbnails",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": [f"arn:aws:s3:::{bucket}"],
            "Condition": {"StringLike": {"s3:prefix": ["thumbnails/*"]}},
        }
    )
    return {"Version": "2012-10-17", "Statement": rendered}


def _definition(queue_url: str) -> str:
    return json.dumps(
        {
            "StartAt": "Ask",
            "States": {
                "Ask": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken",
                    "Parameters": {"QueueUrl": queue_url, "MessageBody": {"t.$": "$$.Task.Token"}},
                    "End": True,
                }
            },
        }
    )


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def world(embedded_aws: EmbeddedAws) -> World:
    endpoint = embedded_aws.endpoint_url
    name = f"iam{uuid.uuid4().hex[:8]}"
    bucket = f"{name}-bucket"
    key, secret = moto_iam.put_identity(name, _policy(name, bucket))
    async with (
        client(endpoint, "dynamodb") as dynamodb,
        client(endpoint, "sns") as sns,
        client(endpoint, "sqs") as sqs,
        client(endpoint, "s3") as s3,
        client(endpoint, "stepfunctions") as sfn,
    ):
        for which in ("a", "b"):
            await dynamodb.create_table(
                TableName=f"{name}-{which}",
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                AttributeDefinitions=[
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "g", "AttributeType": "S"},
                ],
                GlobalSecondaryIndexes=[
                    {
                        "IndexName": "by-g",
                        "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                ],
                BillingMode="PAY_PER_REQUEST",
            )
            await sns.create_topic(Name=f"{name}-{which}")
        queue_url = (await sqs.create_queue(QueueName=f"{name}-q"))["QueueUrl"]
        await s3.create_bucket(Bucket=bucket)
        for prefix in ("incoming", "thumbnails", "other"):
            await s3.put_object(Bucket=bucket, Key=f"{prefix}/x.jpg", Body=b"jpeg")
        machines = [
            (
                await sfn.create_state_machine(
                    name=n, definition=_definition(queue_url), roleArn=ROLE
                )
            )["stateMachineArn"]
            for n in (f"{name}-m", f"{name}-other")
        ]
    return World(endpoint, name, key, secret, bucket, queue_url, *machines)


def _denied(error: ClientError, code: str, action: str, resource: str) -> None:
    assert error.response["Error"]["Code"] == code, error.response
    message = error.response["Error"]["Message"]
    assert f"is not authorized to perform: {action} on resource: {resource}" in message, message
    assert f"user/{moto_iam.IDENTITY_PREFIX}" in message, message


async def test_dynamodb_checks_the_table_and_its_indexes(world: World) -> None:
    table_b = f"arn:aws:dynamodb:{ARN}:table/{world.table('b')}"
    async with client(world.endpoint, "dynamodb", world.key, world.secret) as dynamodb:
        await dynamodb.get_item(TableName=world.table("a"), Key={"pk": {"S": "1"}})
        await dynamodb.query(
            TableName=world.table("a"),
            IndexName="by-g",
            KeyConditionExpression="g = :g",
            ExpressionAttributeValues={":g": {"S": "x"}},
        )
        with pytest.raises(ClientError) as denied:
            await dynamodb.get_item(TableName=world.table("b"), Key={"pk": {"S": "1"}})
        _denied(denied.value, "AccessDeniedException", "dynamodb:GetItem", table_b)
        with pytest.raises(ClientError) as denied:
            await dynamodb.query(
                TableName=world.table("b"),
                IndexName="by-g",
                KeyConditionExpression="g = :g",
                ExpressionAttributeValues={":g": {"S": "x"}},
            )
        _denied(denied.value, "AccessDeniedException", "dynamodb:Query", f"{table_b}/index/by-g")
        # A batch needs every table it names; a transaction each item's own action.
        keys = {"Keys": [{"pk": {"S": "1"}}]}
        await dynamodb.batch_get_item(RequestItems={world.table("a"): keys})
        with pytest.raises(ClientError) as denied:
            await dynamodb.batch_get_item(
                RequestItems={world.table("a"): keys, world.table("b"): keys}
            )
        _denied(denied.value, "AccessDeniedException", "dynamodb:BatchGetItem", table_b)
        put = {"Put": {"TableName": world.table("a"), "Item": {"pk": {"S": "2"}}}}
        await dynamodb.transact_write_items(TransactItems=[put])
        delete = {"Delete": {"TableName": world.table("a"), "Key": {"pk": {"S": "2"}}}}
        with pytest.raises(ClientError) as denied:
            await dynamodb.transact_write_items(TransactItems=[delete])
        _denied(
            denied.value,
            "AccessDeniedException",
            "dynamodb:DeleteItem",
            f"arn:aws:dynamodb:{ARN}:table/{world.table('a')}",
        )


async def test_sns_and_sqs_check_the_topic_and_the_queue(world: World) -> None:
    async with (
        client(world.endpoint, "sns", world.key, world.secret) as sns,
        client(world.endpoint, "sqs", world.key, world.secret) as sqs,
    ):
        await sns.publish(TopicArn=f"arn:aws:sns:{ARN}:{world.name}-a", Message="m")
        topic_b = f"arn:aws:sns:{ARN}:{world.name}-b"
        with pytest.raises(ClientError) as denied:
            await sns.publish(TopicArn=topic_b, Message="m")
        _denied(denied.value, "AuthorizationError", "sns:Publish", topic_b)
        await sqs.receive_message(QueueUrl=world.queue_url, WaitTimeSeconds=0)
        assert (await sqs.get_queue_url(QueueName=f"{world.name}-q"))["QueueUrl"]
        other_queue = f"arn:aws:sqs:{ARN}:{world.name}-other"
        with pytest.raises(ClientError) as denied:
            await sqs.get_queue_url(QueueName=f"{world.name}-other")
        _denied(denied.value, "AccessDenied", "sqs:GetQueueUrl", other_queue)
        # A batch is authorized as its single action: there is no sqs:DeleteMessageBatch.
        entries = [{"Id": "1", "ReceiptHandle": "gone"}]
        await sqs.delete_message_batch(QueueUrl=world.queue_url, Entries=entries)
        with pytest.raises(ClientError) as denied:
            await sqs.send_message_batch(
                QueueUrl=world.queue_url, Entries=[{"Id": "1", "MessageBody": "m"}]
            )
        _denied(
            denied.value, "AccessDenied", "sqs:SendMessage", f"arn:aws:sqs:{ARN}:{world.name}-q"
        )


async def test_states_check_the_machine_its_executions_and_task_tokens(world: World) -> None:
    # The state machine's own SendMessage runs as the workflow identity.
    workflow = moto_iam.put_identity(
        f"{world.name}-workflow",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Ask",
                    "Effect": "Allow",
                    "Action": "sqs:SendMessage",
                    "Resource": f"arn:aws:sqs:{ARN}:{world.name}-q",
                }
            ],
        },
    )
    moto_iam.set_workflow_identity(*workflow)
    no_tokens = moto_iam.put_identity(
        f"{world.name}-api",
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "Start",
                    "Effect": "Allow",
                    "Action": "states:*",
                    "Resource": world.other_machine,
                }
            ],
        },
    )
    async with (
        client(world.endpoint, "stepfunctions", world.key, world.secret) as sfn,
        client(world.endpoint, "stepfunctions", *no_tokens) as api_sfn,
        client(world.endpoint, "sqs", world.key, world.secret) as sqs,
    ):
        execution = (
            await sfn.start_execution(
                stateMachineArn=world.machine, name=uuid.uuid4().hex, input="{}"
            )
        )["executionArn"]
        await sfn.describe_execution(executionArn=execution)
        with pytest.raises(ClientError) as denied:
            await sfn.start_execution(stateMachineArn=world.other_machine, input="{}")
        _denied(denied.value, "AccessDeniedException", "states:StartExecution", world.other_machine)

        async def token() -> str | None:
            answer = await sqs.receive_message(QueueUrl=world.queue_url, WaitTimeSeconds=1)
            messages = answer.get("Messages", [])
            return str(json.loads(messages[0]["Body"])["t"]) if messages else None

        task_token = await eventually(token, timeout=20, what="the task token")
        with pytest.raises(ClientError) as denied:
            await api_sfn.send_task_success(taskToken=task_token, output="{}")
        _denied(denied.value, "AccessDeniedException", "states:SendTaskSuccess", world.machine)
        await sfn.send_task_success(taskToken=task_token, output="{}")

        async def succeeded() -> bool:
            described = await sfn.describe_execution(executionArn=execution)
            return described["status"] == "SUCCEEDED"

        await eventually(succeeded, timeout=20, what="the execution to succeed")


async def test_s3_list_needs_the_allowed_prefix(world: World) -> None:
    async with client(world.endpoint, "s3", world.key, world.secret) as s3:
        listed = await s3.list_objects_v2(Bucket=world.bucket, Prefix="thumbnails/")
        assert "thumbnails/x.jpg" in [o["Key"] for o in listed["Contents"]]
        for prefix in ("incoming/", None):
            with pytest.raises(ClientError) as denied:
                await s3.list_objects_v2(
                    Bucket=world.bucket, **({"Prefix": prefix} if prefix else {})
                )
            _denied(denied.value, "AccessDenied", "s3:ListBucket", f"arn:aws:s3:::{world.bucket}")
        await s3.get_object(Bucket=world.bucket, Key="incoming/x.jpg")
        await s3.head_object(Bucket=world.bucket, Key="incoming/x.jpg")
        # A missing object: 403 without s3:ListBucket (incoming/), 404 with it (thumbnails/).
        with pytest.raises(ClientError) as denied:
            await s3.get_object(Bucket=world.bucket, Key="incoming/missing.jpg")
        _denied(denied.value, "AccessDenied", "s3:ListBucket", f"arn:aws:s3:::{world.bucket}")
        with pytest.raises(ClientError) as missing:
            await s3.head_object(Bucket=world.bucket, Key="thumbnails/missing.jpg")
        assert missing.value.response["Error"]["Code"] == "404"
        with pytest.raises(ClientError) as denied:
            await s3.delete_object(Bucket=world.bucket, Key="incoming/x.jpg")
        _denied(
            denied.value,
            "AccessDenied",
            "s3:DeleteObject",
            f"arn:aws:s3:::{world.bucket}/incoming/x.jpg",
        )
        with pytest.raises(ClientError) as denied:
            await s3.copy_object(
                Bucket=world.bucket,
                Key="incoming/copy.jpg",
                CopySource={"Bucket": world.bucket, "Key": "other/x.jpg"},
            )
        _denied(
            denied.value, "AccessDenied", "s3:GetObject", f"arn:aws:s3:::{world.bucket}/other/x.jpg"
        )


async def test_presigned_urls_are_authorized_as_their_signer(world: World) -> None:
    async with (
        client(world.endpoint, "s3", world.key, world.secret) as s3,
        aiohttp.ClientSession() as http,
    ):

        async def fetch(method: str, key: str, body: bytes | None = None) -> tuple[int, str]:
            operation = "get_object" if method == "GET" else "put_object"
            url = await s3.generate_presigned_url(
                operation, Params={"Bucket": world.bucket, "Key": key}, ExpiresIn=60
            )
            async with http.request(method, url, data=body) as response:
                return response.status, await response.text()

        assert await fetch("GET", "incoming/x.jpg") == (200, "jpeg")
        status, body = await fetch("GET", "other/x.jpg")
        assert status == 403 and "s3:GetObject" in body and "other/x.jpg" in body, body
        assert (await fetch("PUT", "incoming/new.jpg", b"new"))[0] == 200
        status, body = await fetch("PUT", "other/new.jpg", b"new")
        assert status == 403 and "s3:PutObject" in body, body
        url = await s3.generate_presigned_url(
            "get_object", Params={"Bucket": world.bucket, "Key": "incoming/x.jpg"}
        )
        async with http.get(url.replace("incoming/x.jpg", "incoming/new.jpg")) as response:
            assert response.status == 403
            assert "SignatureDoesNotMatch" in await response.text()


async def test_post_uploads_are_authorized_as_their_signer(world: World) -> None:
    async with (
        client(world.endpoint, "s3", world.key, world.secret) as s3,
        aiohttp.ClientSession() as http,
    ):

        async def upload(key: str) -> tuple[int, str]:
            post = await s3.generate_presigned_post(Bucket=world.bucket, Key=key, ExpiresIn=60)
            form = aiohttp.FormData(post["fields"])
            form.add_field("file", b"jpeg", filename="x.jpg")
            async with http.post(post["url"], data=form) as response:
                return response.status, await response.text()

        assert (await upload("incoming/posted.jpg"))[0] in (200, 204)
        status, body = await upload("other/posted.jpg")
        assert status == 403 and "s3:PutObject" in body and "other/posted.jpg" in body, body


async def test_the_administrator_may_do_anything_and_unknown_keys_are_refused(
    world: World,
) -> None:
    async with client(world.endpoint, "dynamodb") as admin:
        await admin.get_item(TableName=world.table("b"), Key={"pk": {"S": "1"}})
    stranger = ("AKIANOSUCHKEY0000000", "x")
    async with (
        client(world.endpoint, "dynamodb", *stranger) as dynamodb,
        client(world.endpoint, "sns", *stranger) as sns,
    ):
        with pytest.raises(ClientError) as refused:
            await sns.list_topics()
        assert refused.value.response["Error"]["Code"] == "InvalidClientTokenId"
        with pytest.raises(ClientError) as refused:  # DynamoDB's name for it (JSON protocol)
            await dynamodb.get_item(TableName=world.table("a"), Key={"pk": {"S": "1"}})
        assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    async with client(world.endpoint, "sns", world.key, "wrong-secret") as forger:
        with pytest.raises(ClientError) as refused:
            await forger.publish(TopicArn=f"arn:aws:sns:{ARN}:{world.name}-a", Message="m")
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"


async def test_a_condition_the_endpoint_cannot_evaluate_is_refused_at_once() -> None:
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": "*",
                "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}},
            }
        ],
    }
    with pytest.raises(moto_iam.UnsupportedCondition, match="IpAddress"):
        moto_iam.put_identity(f"iam{uuid.uuid4().hex[:8]}", policy)


async def test_a_new_policy_replaces_the_old_and_keeps_the_key(world: World) -> None:
    name = f"{world.name}-changing"
    key, secret = moto_iam.put_identity(name, _policy(world.name, world.bucket))
    async with client(world.endpoint, "dynamodb", key, secret) as dynamodb:
        await dynamodb.get_item(TableName=world.table("a"), Key={"pk": {"S": "1"}})
        only_topics = {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": "sns:Publish", "Resource": "*"}],
        }
        assert moto_iam.put_identity(name, only_topics) == (key, secret)
        with pytest.raises(ClientError) as denied:
            await dynamodb.get_item(TableName=world.table("a"), Key={"pk": {"S": "1"}})
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"


async def test_the_state_machines_own_calls_run_as_the_workflow_identity(world: World) -> None:
    # Allowed nothing: the Task state's SendMessage is denied, and the execution fails on it.
    nothing = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sns:ListTopics", "Resource": "*"}],
    }
    moto_iam.set_workflow_identity(*moto_iam.put_identity(f"{world.name}-wf", nothing))
    async with client(world.endpoint, "stepfunctions") as sfn:
        execution = (
            await sfn.start_execution(
                stateMachineArn=world.machine, name=uuid.uuid4().hex, input="{}"
            )
        )["executionArn"]

        async def failed() -> dict[str, Any] | None:
            described: dict[str, Any] = await sfn.describe_execution(executionArn=execution)
            return described if described["status"] == "FAILED" else None

        described = await eventually(failed, timeout=20, what="the execution to fail")
        history = await sfn.get_execution_history(executionArn=execution)
    assert "sqs:SendMessage" in json.dumps(history["events"], default=str), described


async def test_a_token_no_live_execution_issued_gets_the_service_answer(world: World) -> None:
    async with client(world.endpoint, "stepfunctions", world.key, world.secret) as sfn:
        with pytest.raises(ClientError) as refused:
            await sfn.send_task_success(taskToken="no-such-token", output="{}")
        assert refused.value.response["Error"]["Code"] == "InvalidToken"
    async with client(world.endpoint, "stepfunctions", world.key, world.secret) as sfn:
        with pytest.raises(ClientError) as refused:
            await sfn.send_task_failure(taskToken="no-such-token")
        assert refused.value.response["Error"]["Code"] == "AccessDeniedException"


async def test_gap_delete_objects_is_all_or_nothing(world: World) -> None:
    """Known gap: AWS deletes the keys a DeleteObjects may delete and refuses the others; this
    endpoint refuses every key when any one is not allowed (moto answers the request whole)."""
    allowed_and_not = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "s3:DeleteObject",
                "Resource": f"arn:aws:s3:::{world.bucket}/thumbnails/*",
            }
        ],
    }
    deleter = moto_iam.put_identity(f"{world.name}-deleter", allowed_and_not)
    async with client(world.endpoint, "s3", *deleter) as s3:
        for key in ("thumbnails/gap.jpg", "other/gap.jpg"):
            async with client(world.endpoint, "s3") as admin:
                await admin.put_object(Bucket=world.bucket, Key=key, Body=b"jpeg")
        both = {"Objects": [{"Key": "thumbnails/gap.jpg"}, {"Key": "other/gap.jpg"}]}
        answer = await s3.delete_objects(Bucket=world.bucket, Delete=both)
        assert sorted(e["Key"] for e in answer["Errors"]) == ["other/gap.jpg", "thumbnails/gap.jpg"]
        assert not answer.get("Deleted")
        answer = await s3.delete_objects(
            Bucket=world.bucket, Delete={"Objects": [{"Key": "thumbnails/gap.jpg"}]}
        )
        assert [d["Key"] for d in answer["Deleted"]] == ["thumbnails/gap.jpg"]


async def test_assumed_role_credentials_act_as_the_role_and_only_the_trusted_may_assume(
    world: World,
) -> None:
    """sts:AssumeRole needs the caller's policy AND the role's trust; the temporary key then
    signs as the role (its policy, not the caller's), and only with its session token."""
    table = world.table("a")
    key_a = {"pk": {"S": "1"}}
    role_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": "dynamodb:GetItem",
                "Resource": f"arn:aws:dynamodb:{ARN}:table/{table}",
            }
        ],
    }
    role_name = f"{world.name}-ops"
    role_arn = f"arn:aws:iam::{EMBEDDED_ACCOUNT}:role/{role_name}"
    may_assume = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": role_arn}],
    }
    trusted_name, other_name = f"{world.name}-trusted", f"{world.name}-other"
    trusted = moto_iam.put_identity(trusted_name, may_assume)
    other = moto_iam.put_identity(other_name, may_assume)  # allowed by policy, not trusted
    nothing = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sns:ListTopics", "Resource": "*"}],
    }
    unallowed = moto_iam.put_identity(f"{world.name}-unallowed", nothing)
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {
                    "AWS": [
                        moto_iam.user_arn(trusted_name),
                        moto_iam.user_arn(f"{world.name}-unallowed"),
                    ]
                },
                "Action": "sts:AssumeRole",
            }
        ],
    }
    assert moto_iam.put_role(role_name, role_policy, trust) == role_arn

    for denied_caller in (other, unallowed):
        async with client(world.endpoint, "sts", *denied_caller) as sts:
            with pytest.raises(ClientError) as refused:
                await sts.assume_role(RoleArn=role_arn, RoleSessionName="ops")
        assert refused.value.response["Error"]["Code"] == "AccessDenied"
        assert "sts:AssumeRole" in refused.value.response["Error"]["Message"]

    async with client(world.endpoint, "sts", *trusted) as sts:
        credentials = (await sts.assume_role(RoleArn=role_arn, RoleSessionName="ops"))[
            "Credentials"
        ]
    assert credentials["AccessKeyId"].startswith("ASIA")
    async with get_session().create_client(
        "dynamodb",
        endpoint_url=world.endpoint,
        region_name=REGION,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ) as as_role:
        await as_role.get_item(TableName=table, Key=key_a)
        with pytest.raises(ClientError) as denied:
            await as_role.get_item(TableName=world.table("b"), Key=key_a)
        message = denied.value.response["Error"]["Message"]
        assert f"assumed-role/{role_name}/ops" in message and "dynamodb:GetItem" in message
        # A changed role policy holds at once for sessions already issued.
        moto_iam.put_role(role_name, nothing, trust)
        with pytest.raises(ClientError) as denied:
            await as_role.get_item(TableName=table, Key=key_a)
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
    # The key without its session token (or with another) is no credential at all.
    async with get_session().create_client(
        "dynamodb",
        endpoint_url=world.endpoint,
        region_name=REGION,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token="forged",
    ) as forged:
        with pytest.raises(ClientError) as refused:
            await forged.get_item(TableName=table, Key=key_a)
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
