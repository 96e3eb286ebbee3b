"""Topics, queues (each with a dead-letter queue and an alarm) and the subscriptions between them.

Every name, subscription and filter policy comes from `imgproc_shared.resources`, the same
definitions the local bootstrap creates.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_notifications as s3n
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from imgproc_shared.resources import (
    INCOMING_PREFIX,
    SUBSCRIPTIONS,
    Queue,
    ResourceNames,
    Topic,
)
from imgproc_shared.settings import Settings

# A dead letter is kept long enough for an operator to look at it and replay it.
DEAD_LETTER_RETENTION = Duration.days(14)


class Messaging(Construct):
    """SNS topics (KMS-encrypted) and SQS queues (SQS-managed encryption) with their DLQs."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        settings: Settings,
        bucket: s3.IBucket,
    ) -> None:
        super().__init__(scope, construct_id)
        # S3 cannot publish to a topic encrypted with the AWS-managed SNS key (its key policy
        # cannot name S3), so the topics share a customer-managed key that S3 may use.
        self.topic_key = kms.Key(
            self,
            "TopicKey",
            description=f"{names.prefix}: encrypts the imgproc SNS topics",
            enable_key_rotation=True,
        )
        self.topic_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="S3EventNotifications",
                principals=[iam.ServicePrincipal("s3.amazonaws.com")],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"ArnLike": {"aws:SourceArn": bucket.bucket_arn}},
            )
        )
        self.topics: dict[Topic, sns.Topic] = {
            topic: sns.Topic(
                self,
                f"{topic.value.capitalize()}Topic",
                topic_name=names.topic(topic),
                master_key=self.topic_key,
                enforce_ssl=True,
            )
            for topic in Topic
        }

        self.queues: dict[Queue, sqs.Queue] = {}
        self.dead_letter_queues: dict[Queue, sqs.Queue] = {}
        self.dead_letter_alarms: dict[Queue, cloudwatch.Alarm] = {}
        for queue in Queue:
            self._queue(queue, names, settings)

        for sub in SUBSCRIPTIONS:
            filter_policy = (
                {
                    attribute: sns.SubscriptionFilter.string_filter(allowlist=values)
                    for attribute, values in sub.filter_policy.items()
                }
                if sub.filter_policy
                else None
            )
            self.topics[sub.topic].add_subscription(
                subscriptions.SqsSubscription(
                    self.queues[sub.queue], raw_message_delivery=True, filter_policy=filter_policy
                )
            )

        bucket.add_event_notification(
            s3.EventType.OBJECT_CREATED,
            s3n.SnsDestination(self.topics[Topic.UPLOAD]),
            s3.NotificationKeyFilter(prefix=INCOMING_PREFIX),
        )

    def _queue(self, queue: Queue, names: ResourceNames, settings: Settings) -> None:
        label = "".join(part.capitalize() for part in queue.value.split("-"))
        dead_letter_queue = sqs.Queue(
            self,
            f"{label}DeadLetterQueue",
            queue_name=names.dead_letter_queue(queue),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
        )
        self.dead_letter_queues[queue] = dead_letter_queue
        self.queues[queue] = sqs.Queue(
            self,
            f"{label}Queue",
            queue_name=names.queue(queue),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(settings.visibility_timeout_s),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dead_letter_queue, max_receive_count=settings.max_receive_count
            ),
        )
        self.dead_letter_alarms[queue] = cloudwatch.Alarm(
            self,
            f"{label}DeadLettersAlarm",
            alarm_name=f"{names.dead_letter_queue(queue)}-not-empty",
            alarm_description=(
                f"Messages from {names.queue(queue)} failed {settings.max_receive_count} times: "
                "inspect and replay with `imgproc dlq`."
            ),
            metric=dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(1), statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
