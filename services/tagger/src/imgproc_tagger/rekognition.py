"""The AWS backend: Rekognition `DetectLabels` on the S3 object, through aiobotocore."""

from __future__ import annotations

import io
from typing import Any

from botocore.exceptions import ClientError
from PIL import Image

from imgproc_shared import errors
from imgproc_shared.models import BoundingBox, Instance, Label, StageTask
from imgproc_shared.worker.runtime import WorkContext
from imgproc_tagger.preprocess import orientation_of, to_rgb, upright

# Rekognition's own limits: an S3 object up to 15 MB, inline bytes up to 5 MB. Larger uploads
# (we accept up to 50 MiB) are sent as a downscaled JPEG instead.
_S3_OBJECT_LIMIT = 15 * 1024 * 1024
_INLINE_EDGE = 1920
_TRANSIENT_CODES = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "InternalServerError",
    "ServiceUnavailableException",
}


def _fraction(value: Any) -> float:
    return round(min(max(float(value), 0.0), 1.0), 4)


def instances_from_response(item: dict[str, Any]) -> list[Instance]:
    """Rekognition's `Instances` of one label → ours (boxes are already in the upright frame:
    Rekognition applies a JPEG's EXIF orientation, and inline images are sent upright)."""
    instances = []
    for instance in item.get("Instances", []):
        box = instance.get("BoundingBox") or {}
        left, top = _fraction(box.get("Left", 0.0)), _fraction(box.get("Top", 0.0))
        instances.append(
            Instance(
                bounding_box=BoundingBox(
                    left=left,
                    top=top,
                    width=min(_fraction(box.get("Width", 0.0)), 1.0 - left),
                    height=min(_fraction(box.get("Height", 0.0)), 1.0 - top),
                ),
                confidence=round(float(instance.get("Confidence", item["Confidence"])), 3),
            )
        )
    return instances


def labels_from_response(
    response: dict[str, Any], *, max_labels: int, min_confidence: float
) -> list[Label]:
    """Rekognition's `Labels` → ours; the limits are applied again (they are requests to the
    service, and an emulator may ignore them)."""
    labels = [
        Label(
            name=item["Name"],
            confidence=round(float(item["Confidence"]), 3),
            parents=[parent["Name"] for parent in item.get("Parents", [])],
            instances=instances_from_response(item),
        )
        for item in response.get("Labels", [])
        if float(item.get("Confidence", 0.0)) >= min_confidence
    ]
    labels.sort(key=lambda label: -label.confidence)
    return labels[:max_labels]


def downscaled_jpeg(data: bytes, edge: int = _INLINE_EDGE) -> bytes:
    """A JPEG of at most `edge` px on its long side, small enough to send inline."""
    with Image.open(io.BytesIO(data)) as image:
        image.draft("RGB", (edge, edge))
        small = upright(to_rgb(image), orientation_of(image))
        small.thumbnail((edge, edge), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        small.save(out, "JPEG", quality=85)
    return out.getvalue()


class RekognitionBackend:
    """Labels from Amazon Rekognition (`IMGPROC_TAGGER_BACKEND=rekognition`)."""

    name = "rekognition"

    async def detect(self, task: StageTask, ctx: WorkContext) -> list[Label]:
        settings = ctx.settings
        client = await ctx.aws.client("rekognition")
        size = task.metadata.bytes if task.metadata else None
        if size is not None and size > _S3_OBJECT_LIMIT:
            data = await ctx.read_object(task.bucket, task.key)
            image: dict[str, Any] = {"Bytes": await ctx.run_cpu(downscaled_jpeg, data)}
        else:
            image = {"S3Object": {"Bucket": task.bucket, "Name": task.key}}
        try:
            response = await client.detect_labels(
                Image=image,
                MaxLabels=settings.tagger_max_labels,
                MinConfidence=settings.tagger_min_confidence,
            )
        except ClientError as exc:
            code = errors.error_code(exc) or ""
            message = exc.response.get("Error", {}).get("Message", str(exc))
            if code in _TRANSIENT_CODES:
                raise errors.TransientError(f"Rekognition is busy: {code}: {message}") from exc
            if code == "InvalidImageFormatException":
                raise errors.CorruptImage(f"Rekognition cannot read the image: {message}") from exc
            if code == "ImageTooLargeException":
                raise errors.TooLarge(f"Rekognition refused the image: {message}") from exc
            raise
        return labels_from_response(
            response,
            max_labels=settings.tagger_max_labels,
            min_confidence=settings.tagger_min_confidence,
        )
