"""What an image costs: list prices, the model of one image's calls and CPU (for targets the
load test cannot measure), and the estimate per 1,000 images."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from imgproc_cli.uploads import UsageError


@dataclass(frozen=True)
class Prices:
    """List prices the cost estimate uses; the defaults are us-east-1's."""

    sfn_per_transition: float = 0.025 / 1000
    sqs_per_request: float = 0.40 / 1_000_000
    sns_per_publish: float = 0.50 / 1_000_000
    dynamodb_per_write: float = 1.25 / 1_000_000
    dynamodb_per_read: float = 0.25 / 1_000_000
    s3_per_put: float = 0.005 / 1000
    s3_per_get: float = 0.0004 / 1000
    fargate_per_vcpu_hour: float = 0.04048
    fargate_per_gb_hour: float = 0.004445
    # Worker tasks are sized 1 vCPU : 2 GB, and billed only while busy (they follow the load).
    fargate_gb_per_vcpu: float = 2.0
    # DetectLabels, first tier (the first million images a month); the local backend's price is
    # its tagger's Fargate time, in the line above.
    rekognition_per_image: float = 1.00 / 1000


LIST_PRICES = Prices()


# The tagger backends as `IMGPROC_TAGGER_BACKEND` names them.
TAGGER_LOCAL = "local"
TAGGER_REKOGNITION = "rekognition"

# CPU seconds per image where the load test cannot read them (a deployed stack), as this load
# test measured them on the local stack with 2400x1600 JPEGs; the local tagger's at the budget
# `make bench` holds it to for a 20 MP photo (a draft decode, EfficientNet-Lite0 and NanoDet),
# the Rekognition tagger's as one call and its answer.
MODELLED_CPU_S_PER_IMAGE = {"extractor": 0.02, "thumbnailer": 0.07, "status_api": 0.015}
MODELLED_TAGGER_CPU_S_PER_IMAGE = {TAGGER_LOCAL: 0.15, TAGGER_REKOGNITION: 0.012}


DYNAMODB_WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)
DYNAMODB_READS = frozenset(
    {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems", "DescribeTable"}
)
S3_GET_CLASS = frozenset({"GetObject", "HeadObject", "HEADBucket", "HeadBucket"})


def calls_per_image(requests: Mapping[str, Mapping[str, int]], images: int) -> dict[str, float]:
    """Request counts by `service.Action`, divided by the number of images."""
    if images <= 0:
        return {}
    return {
        f"{service}.{action}": round(count / images, 3)
        for service, actions in sorted(requests.items())
        for action, count in sorted(actions.items())
        if count
    }


def cost_per_1000(
    requests_per_image: Mapping[str, float],
    transitions_per_image: float,
    cpu_seconds_per_image: float | None,
    *,
    sns_publishes_per_image_extra: float = 1.0,
    prices: Prices = Prices(),
) -> dict[str, float]:
    """Estimated USD per 1,000 images by service, at list prices.

    `requests_per_image` is keyed `service.Action`. Step Functions bills transitions only (its
    API calls are free); every SQS request counts, empty receives included; SNS bills publishes
    (deliveries to SQS are free) and S3's event notifications to SNS are publishes too
    (`sns_publishes_per_image_extra`, one per upload); DynamoDB counts one unit per request
    (items under 1 KB written, 4 KB read); S3 splits PUT/POST/LIST from GET/HEAD; Fargate bills
    the workers' CPU seconds at the vCPU rate plus the matching memory (the local tagger's
    models run there); Rekognition bills each DetectLabels call.
    """

    def total(service: str, actions: frozenset[str] | None = None, exclude: bool = False) -> float:
        sum_ = 0.0
        for key, count in requests_per_image.items():
            svc, _, action = key.partition(".")
            if svc != service:
                continue
            if actions is not None and ((action in actions) == exclude):
                continue
            sum_ += count
        return sum_

    sns_publishes = total("sns", frozenset({"Publish", "PublishBatch"})) + (
        sns_publishes_per_image_extra
    )
    cost = {
        "stepfunctions": transitions_per_image * prices.sfn_per_transition,
        "sqs": total("sqs") * prices.sqs_per_request,
        "sns": sns_publishes * prices.sns_per_publish,
        "dynamodb": total("dynamodb", DYNAMODB_WRITES) * prices.dynamodb_per_write
        + total("dynamodb", DYNAMODB_READS) * prices.dynamodb_per_read,
        "s3": total("s3", S3_GET_CLASS, exclude=True) * prices.s3_per_put
        + total("s3", S3_GET_CLASS) * prices.s3_per_get,
        "fargate": 0.0
        if cpu_seconds_per_image is None
        else cpu_seconds_per_image
        / 3600
        * (prices.fargate_per_vcpu_hour + prices.fargate_gb_per_vcpu * prices.fargate_per_gb_hour),
        "rekognition": total("rekognition", frozenset({"DetectLabels"}))
        * prices.rekognition_per_image,
    }
    per_1000 = {name: round(usd * 1000, 5) for name, usd in cost.items()}
    per_1000["total"] = round(sum(cost.values()) * 1000, 5)
    return per_1000


def modelled_requests(
    images: int, stages: int = 3, *, tagger_backend: str = TAGGER_LOCAL
) -> dict[str, dict[str, int]]:
    """The API calls of `images` images as the code makes them (for targets we cannot count).

    Upload: the record and the object. Starter: a receive and a batched delete per message at
    worst, the PROCESSING write, the start. Workflow: the extract message, the tag and thumbnail
    publishes, the results write, the announcement. Each stage at worst: a receive, its finished
    write (the extractor's carries the metadata; a stage over `stage_started_note_s` also
    writes when it started), the object read (the extractor: a HEAD and the head and tail of a
    large object), the answer and a batched delete; the thumbnailer writes its renditions
    (two). The status consumer: a receive, an existence read and a batched delete. The
    Rekognition backend adds one DetectLabels call; the local one none.
    """
    per_image: dict[str, dict[str, int]] = {
        "dynamodb": {"PutItem": 1, "UpdateItem": 1 + 1 + stages, "GetItem": 1},
        "s3": {"PutObject": 1 + 2, "GetObject": stages + 1, "HeadObject": 1},
        "sqs": {
            "ReceiveMessage": 1 + stages + 1,
            "DeleteMessageBatch": 1 + stages + 1,
            "SendMessage": 1,
        },
        "sns": {"Publish": 3},
        "stepfunctions": {"StartExecution": 1, "SendTaskSuccess": stages},
    }
    if tagger_backend == TAGGER_REKOGNITION:
        per_image["rekognition"] = {"DetectLabels": 1}
    return {
        service: {action: count * images for action, count in actions.items()}
        for service, actions in per_image.items()
    }


def modelled_cpu_seconds(images: int, tagger_backend: str) -> dict[str, float]:
    """Each worker's CPU seconds for `images` images (for targets whose CPU we cannot read)."""
    if tagger_backend not in MODELLED_TAGGER_CPU_S_PER_IMAGE:
        raise UsageError(
            f"unknown tagger backend {tagger_backend!r}: expected one of "
            f"{', '.join(MODELLED_TAGGER_CPU_S_PER_IMAGE)}"
        )
    per_image = {
        **MODELLED_CPU_S_PER_IMAGE,
        "tagger": MODELLED_TAGGER_CPU_S_PER_IMAGE[tagger_backend],
    }
    return {worker: seconds * images for worker, seconds in per_image.items()}


def subtract_requests(
    after: Mapping[str, Mapping[str, int]], before: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    delta: dict[str, dict[str, int]] = {}
    for service, actions in after.items():
        for action, count in actions.items():
            diff = count - before.get(service, {}).get(action, 0)
            if diff > 0:
                delta.setdefault(service, {})[action] = diff
    return delta
