"""How much a queue holds: one reading and one meaning for every view of it (the operators'
queue report, the dead-letter views and purges, the local scaler)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from types_aiobotocore_sqs import SQSClient

DepthAttribute = Literal[
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
]
DEPTH_ATTRIBUTES: tuple[DepthAttribute, ...] = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


@dataclass(frozen=True)
class Depth:
    """SQS's approximate counts of one queue."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def held(self) -> int:
        """Messages the queue still holds for someone: waiting plus being worked on (or looked
        at). A dead-letter queue's `held` is its number of dead letters, in every view."""
        return self.visible + self.in_flight


async def queue_depth(sqs: SQSClient, queue_url: str) -> Depth:
    response = await sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=list(DEPTH_ATTRIBUTES)
    )
    attributes = response.get("Attributes", {})
    return Depth(
        visible=int(attributes.get("ApproximateNumberOfMessages", 0)),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        delayed=int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


async def queue_arn(sqs: SQSClient, queue_url: str) -> str:
    """A queue's ARN from its URL (redrive policies, subscriptions and move tasks name ARNs)."""
    response = await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return response["Attributes"]["QueueArn"]
