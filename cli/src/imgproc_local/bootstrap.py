"""Create every resource of one stack on the embedded endpoint, idempotently.

Names, queues, subscriptions, tables and the workflow definition all come from `imgproc_shared`
(the same source `infra/` renders for AWS); this module only issues the API calls.
"""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from imgproc_cli.embedded_aws import EMBEDDED_ACCOUNT
from imgproc_shared.aws import AwsClients
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
    retag_state_machine_name,
)

STATE_MACHINE_ROLE = f"arn:aws:iam::{EMBEDDED_ACCOUNT}:role/imgproc-state-machine"


def workflow_limits(settings: Settings) -> WorkflowLimits:
    return WorkflowLimits(
        accepted_formats=tuple(settings.accepted_formats()),
        task_timeout_s=settings.task_timeout_s,
        task_heartbeat_s=settings.task_heartbeat_s,
    )


async def _queue_arn(aws: AwsClients, url: str) -> str:
    attrs = await aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


async def _put_state_machine(aws: AwsClients, name: str, definition: dict[str, Any]) -> str:
    """Create the named state machine, or give an existing one this definition; its ARN."""
    text = json.dumps(definition)
    kwargs: dict[str, Any] = {}
    while True:
        page = await aws.stepfunctions.list_state_machines(**kwargs)
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                arn = str(machine["stateMachineArn"])
                await aws.stepfunctions.update_state_machine(stateMachineArn=arn, definition=text)
                return arn
        if not page.get("nextToken"):
            break
        kwargs["nextToken"] = page["nextToken"]
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
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise

    topic_arns = {
        topic: (await aws.sns.create_topic(Name=names.topic(topic)))["TopicArn"] for topic in Topic
    }

    queue_urls: dict[Queue, str] = {}
    queue_arns: dict[Queue, str] = {}
    for queue in Queue:
        dlq_url = (await aws.sqs.create_queue(QueueName=names.dead_letter_queue(queue)))["QueueUrl"]
        redrive = {
            "deadLetterTargetArn": await _queue_arn(aws, dlq_url),
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
        queue_arns[queue] = await _queue_arn(aws, url)

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
            if exc.response["Error"]["Code"] != "ResourceInUseException":
                raise

    targets = WorkflowTargets(
        extract_queue_url=queue_urls[Queue.EXTRACT],
        validated_topic_arn=topic_arns[Topic.VALIDATED],
        stored_topic_arn=topic_arns[Topic.STORED],
        images_table=names.table(Table.IMAGES),
    )
    limits = workflow_limits(settings)
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
