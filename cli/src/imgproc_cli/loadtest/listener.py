"""The workflow's terminal announcements, heard through a queue the run subscribes to the
`stored` topic (and deletes at the end): polling every record would load the endpoint measured."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from imgproc_shared.aws import AwsClients
from imgproc_shared.long_poll import MAX_BATCH, delete_batch, receive_batches
from imgproc_shared.models import ImageStatus
from imgproc_shared.queues import queue_arn as find_queue_arn
from imgproc_shared.resources import ResourceNames, Topic

if TYPE_CHECKING:
    from imgproc_cli.loadtest.runner import RunState


class AnnouncementListener:
    """The workflow's terminal announcements (`stored` topic), through a queue of the run's own."""

    def __init__(self, aws: AwsClients, queue_url: str, subscription_arn: str) -> None:
        self.aws = aws
        self.queue_url = queue_url
        self.subscription_arn = subscription_arn

    @classmethod
    async def open(cls, aws: AwsClients, names: ResourceNames) -> AnnouncementListener | None:
        """Subscribe a new queue to `stored`; None (the caller polls) where that is refused."""
        queue_url: str | None = None
        try:
            topic_arn = await _topic_arn(aws, names.topic(Topic.STORED))
            if topic_arn is None:
                return None
            queue_name = f"{names.prefix}-loadtest-{uuid.uuid4().hex[:12]}"
            queue_url = (await aws.sqs.create_queue(QueueName=queue_name))["QueueUrl"]
            queue_arn = await find_queue_arn(aws.sqs, queue_url)
            # On AWS the topic may only deliver to a queue whose policy lets it.
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": queue_arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                    }
                ],
            }
            await aws.sqs.set_queue_attributes(
                QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)}
            )
            subscription = await aws.sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=queue_arn,
                Attributes={"RawMessageDelivery": "true"},
                ReturnSubscriptionArn=True,
            )
            return cls(aws, queue_url, subscription["SubscriptionArn"])
        except ClientError as exc:
            print(f"warning: cannot listen to announcements ({exc}); polling", file=sys.stderr)
            if queue_url is not None:
                await aws.sqs.delete_queue(QueueUrl=queue_url)
            return None

    async def run(self, run: RunState, stop: asyncio.Event) -> None:
        def each_poll() -> int:
            # Counted, so the report can tell the workflow's requests from the listener's.
            run.own_requests[("sqs", "ReceiveMessage")] += 1
            return MAX_BATCH

        # A failed receive is logged and retried there; the safety poll sees every image anyway.
        async for messages in receive_batches(
            self.aws.sqs, self.queue_url, stop, wait_time_s=1, batch_size=each_poll
        ):
            for message in messages:
                try:
                    event = json.loads(message["Body"])
                    status = ImageStatus(event["status"])
                except (ValueError, KeyError, TypeError):
                    continue  # not an announcement of ours; deleted below all the same
                if status.terminal:
                    run.ended(str(event.get("image_id")))
            receipts = [m["ReceiptHandle"] for m in messages]
            await delete_batch(self.aws.sqs, self.queue_url, receipts)
            run.own_requests[("sqs", "DeleteMessageBatch")] += 1

    async def close(self) -> None:
        try:
            await self.aws.sns.unsubscribe(SubscriptionArn=self.subscription_arn)
        finally:
            await self.aws.sqs.delete_queue(QueueUrl=self.queue_url)


async def _topic_arn(aws: AwsClients, name: str) -> str | None:
    kwargs: dict[str, Any] = {}
    while True:
        page = await aws.sns.list_topics(**kwargs)
        for topic in page.get("Topics", []):
            if str(topic["TopicArn"]).rsplit(":", 1)[-1] == name:
                return str(topic["TopicArn"])
        if not page.get("NextToken"):
            return None
        kwargs["NextToken"] = page["NextToken"]
