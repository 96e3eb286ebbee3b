"""Create every resource of one stack on the embedded endpoint, idempotently.

Names, queues, subscriptions, tables and the workflow definition all come from `imgproc_shared`
(the same source `infra/` renders for AWS); this module only issues the API calls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError
from pydantic import SecretStr

from imgproc_local.embedded_aws import EMBEDDED_ACCOUNT
from imgproc_shared.aws import AwsClients
from imgproc_shared.errors import error_code
from imgproc_shared.permissions import (
    ASSUMED_ROLES,
    LocalArns,
    Principal,
    RoleArn,
    policy_document,
    role_name,
    trust_policy,
)
from imgproc_shared.queues import queue_arn
from imgproc_shared.resources import (
    INCOMING_PREFIX,
    SUBSCRIPTIONS,
    TABLES,
    Queue,
    ResourceNames,
    Table,
    Topic,
)
from imgproc_shared.settings import Settings
from imgproc_shared.workflow import (
    WorkflowLimits,
    WorkflowTargets,
    build_definition,
    build_retag_definition,
    find_state_machine_arn,
    retag_state_machine_name,
)

STATE_MACHINE_ROLE = f"arn:aws:iam::{EMBEDDED_ACCOUNT}:role/imgproc-state-machine"


async def _put_state_machine(aws: AwsClients, name: str, definition: dict[str, Any]) -> str:
    """Create the named state machine, or give an existing one this definition; its ARN."""
    text = json.dumps(definition)
    if arn := await find_state_machine_arn(aws.stepfunctions, name):
        await aws.stepfunctions.update_state_machine(stateMachineArn=arn, definition=text)
        return arn
    created = await aws.stepfunctions.create_state_machine(
        name=name, definition=text, roleArn=STATE_MACHINE_ROLE, type="STANDARD"
    )
    return str(created["stateMachineArn"])


async def bootstrap(aws: AwsClients, settings: Settings) -> dict[str, Any]:
    """Create (or confirm) every resource; returns what clients need to find them."""
    names = ResourceNames.from_settings(settings)

    try:
        await aws.s3.create_bucket(Bucket=names.bucket)
    except ClientError as exc:
        if error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise

    topic_arns = {
        topic: (await aws.sns.create_topic(Name=names.topic(topic)))["TopicArn"] for topic in Topic
    }

    queue_urls: dict[Queue, str] = {}
    queue_arns: dict[Queue, str] = {}
    for queue in Queue:
        dlq_url = (await aws.sqs.create_queue(QueueName=names.dead_letter_queue(queue)))["QueueUrl"]
        redrive = {
            "deadLetterTargetArn": await queue_arn(aws.sqs, dlq_url),
            "maxReceiveCount": str(settings.max_receive_count),
        }
        url = (
            await aws.sqs.create_queue(
                QueueName=names.queue(queue),
                Attributes={
                    "VisibilityTimeout": str(settings.visibility_timeout_s),
                    "RedrivePolicy": json.dumps(redrive),
                },
            )
        )["QueueUrl"]
        queue_urls[queue] = url
        queue_arns[queue] = await queue_arn(aws.sqs, url)

    for sub in SUBSCRIPTIONS:
        topic_arn = topic_arns[sub.topic]
        existing = await aws.sns.list_subscriptions_by_topic(TopicArn=topic_arn)
        if any(s["Endpoint"] == queue_arns[sub.queue] for s in existing.get("Subscriptions", [])):
            continue
        attributes = {"RawMessageDelivery": "true"}
        if sub.filter_policy:
            attributes["FilterPolicy"] = sub.filter_policy_json() or ""
        await aws.sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=queue_arns[sub.queue],
            Attributes=attributes,
        )

    await aws.s3.put_bucket_notification_configuration(
        Bucket=names.bucket,
        NotificationConfiguration={
            "TopicConfigurations": [
                {
                    "TopicArn": topic_arns[Topic.UPLOAD],
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {
                        "Key": {"FilterRules": [{"Name": "prefix", "Value": INCOMING_PREFIX}]}
                    },
                }
            ]
        },
    )

    for spec in TABLES:
        kwargs: dict[str, Any] = {
            "TableName": names.table(spec.table),
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": spec.hash_key.name, "KeyType": "HASH"}]
            + (
                [{"AttributeName": spec.range_key.name, "KeyType": "RANGE"}]
                if spec.range_key
                else []
            ),
            "AttributeDefinitions": [
                {"AttributeName": a.name, "AttributeType": a.type} for a in spec.attributes()
            ],
        }
        if spec.indexes:
            kwargs["GlobalSecondaryIndexes"] = [
                {
                    "IndexName": index.name,
                    "KeySchema": [{"AttributeName": index.hash_key.name, "KeyType": "HASH"}]
                    + (
                        [{"AttributeName": index.range_key.name, "KeyType": "RANGE"}]
                        if index.range_key
                        else []
                    ),
                    "Projection": {"ProjectionType": "ALL"},
                }
                for index in spec.indexes
            ]
        try:
            await aws.dynamodb.create_table(**kwargs)
        except ClientError as exc:
            if error_code(exc) != "ResourceInUseException":
                raise

    targets = WorkflowTargets(
        extract_queue_url=queue_urls[Queue.EXTRACT],
        validated_topic_arn=topic_arns[Topic.VALIDATED],
        stored_topic_arn=topic_arns[Topic.STORED],
        images_table=names.table(Table.IMAGES),
    )
    limits = WorkflowLimits.from_settings(settings)
    state_machine_arn = await _put_state_machine(
        aws, names.state_machine, build_definition(targets, limits)
    )
    # Re-tagging existing images (`imgproc_shared.retag`) runs on its own, smaller machine.
    retag_arn = await _put_state_machine(
        aws, retag_state_machine_name(names.prefix), build_retag_definition(targets, limits)
    )

    return {
        "bucket": names.bucket,
        "state_machine_arn": state_machine_arn,
        "retag_state_machine_arn": retag_arn,
        "queues": {q.value: u for q, u in queue_urls.items()},
        "topics": {t.value: a for t, a in topic_arns.items()},
    }


@dataclass(frozen=True)
class Identity:
    """A principal's IAM user on the embedded endpoint and its key."""

    principal: Principal
    user_name: str
    access_key_id: str
    secret_access_key: str
    # The status API's: the operations role it assumes for operator endpoints.
    operations_role_arn: str | None = None

    def env(self) -> dict[str, str]:
        """The settings that make a service process sign its calls with this key."""
        env = {
            "IMGPROC_ENDPOINT_ACCESS_KEY_ID": self.access_key_id,
            "IMGPROC_ENDPOINT_SECRET_ACCESS_KEY": self.secret_access_key,
        }
        if self.operations_role_arn:
            env["IMGPROC_OPERATIONS_ROLE_ARN"] = self.operations_role_arn
        return env

    def settings(self, base: Settings) -> Settings:
        """`base` signing its calls with this key (an in-process service in a test)."""
        return base.model_copy(
            update={
                "endpoint_access_key_id": self.access_key_id,
                "endpoint_secret_access_key": SecretStr(self.secret_access_key),
                "operations_role_arn": self.operations_role_arn,
            }
        )


def identity_name(resource_prefix: str, principal: Principal) -> str:
    """Per stack, so that stacks sharing one endpoint (the tests) keep their own users."""
    return f"{resource_prefix}-{principal.value}"


def create_identity(
    settings: Settings, principal: Principal, *, account_id: str = EMBEDDED_ACCOUNT
) -> Identity:
    """The principal's IAM user on the embedded endpoint (in this process), with exactly its
    deployed policy resolved to this stack's ARNs, and the roles only it may assume (the status
    API's operations role, as on AWS). Idempotent: a user that exists keeps its key."""
    from imgproc_local import moto_iam

    assert principal not in ASSUMED_ROLES, f"{principal} is a role: made with who assumes it"
    names = ResourceNames.from_settings(settings)
    arns = LocalArns(names=names, region=settings.region, account=account_id)
    rekognition = settings.tagger_backend == "rekognition"
    document = policy_document(principal, arns, rekognition=rekognition)
    name = identity_name(names.prefix, principal)
    moto_iam.ensure_admin(account_id)
    key_id, secret = moto_iam.put_identity(name, document, account_id)
    role_arns = {
        role: moto_iam.put_role(
            role_name(names.prefix, role),
            policy_document(role, arns, rekognition=rekognition),
            trust_policy(moto_iam.user_arn(name, account_id)),
            account_id,
        )
        for role, assumer in ASSUMED_ROLES.items()
        if assumer is principal
    }
    assert all(arn == arns(RoleArn(role)) for role, arn in role_arns.items()), role_arns
    return Identity(
        principal,
        f"imgproc-{name}",
        key_id,
        secret,
        operations_role_arn=role_arns.get(Principal.OPERATIONS),
    )


def create_identities(
    settings: Settings, *, account_id: str = EMBEDDED_ACCOUNT
) -> dict[Principal, Identity]:
    """Every principal's identity (`create_identity`); the state machines' own calls run as the
    workflow's (one per endpoint: stacks sharing an endpoint, in tests, leave it alone)."""
    from imgproc_local import moto_iam

    identities = {
        principal: create_identity(settings, principal, account_id=account_id)
        for principal in Principal
        if principal not in ASSUMED_ROLES
    }
    workflow = identities[Principal.WORKFLOW]
    moto_iam.set_workflow_identity(workflow.access_key_id, workflow.secret_access_key)
    return identities
