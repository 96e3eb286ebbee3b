"""A stage denied by AWS fails at once with a named error, and the image shows why: against the
real embedded endpoint and workflow, with a stand-in handler whose AWS call is refused."""

from __future__ import annotations

from collections import Counter
from typing import Any

from botocore.exceptions import ClientError
from structlog.testing import capture_logs

from imgproc_shared import errors
from imgproc_shared.models import StageTask, ThumbnailResult
from imgproc_shared.resources import Queue, ResourceNames, Stage
from imgproc_shared.worker import WorkContext

from workflow_harness import pipeline, queue_depth, terminal, upload

DENIED_KEY_ARN = "arn:aws:s3:::imgproc-test/thumbnails/img-denied/thumbnail.jpg"


def _denied_put() -> ClientError:
    """What botocore raises for a PutObject the caller's policy does not allow."""
    return ClientError(
        {
            "Error": {
                "Code": "AccessDenied",
                "Message": "User: arn:aws:iam::123456789012:user/imgproc-thumbnailer is not "
                f'authorized to perform: s3:PutObject on resource: "{DENIED_KEY_ARN}" because '
                "no identity-based policy allows the s3:PutObject action",
            },
            "ResponseMetadata": {"HTTPStatusCode": 403},
        },
        "PutObject",
    )


async def test_denied_stage_fails_the_image_once_with_the_action_and_resource(stack: Any) -> None:
    settings, aws, _ = stack
    calls: Counter[str] = Counter()

    async def denied_thumbnail(task: StageTask, ctx: WorkContext) -> ThumbnailResult:
        calls[task.image_id] += 1
        raise _denied_put()

    with capture_logs() as logs:
        async with pipeline(settings, aws, {Stage.THUMBNAIL: denied_thumbnail}) as workers:
            await upload(settings, aws, "img-denied")
            record = await terminal(settings, aws, "img-denied", timeout=30)
    # Read once the workers have stopped: answered messages are deleted in batches.
    depth = await queue_depth(
        settings, aws, ResourceNames.from_settings(settings).queue(Queue.THUMBNAIL)
    )

    reason = f"the thumbnail worker was denied s3:PutObject on {DENIED_KEY_ARN}"
    assert record["status"] == "FAILED", record
    assert record["failed_stage"] == "thumbnail"
    assert record["error_code"] == errors.ACCESS_DENIED
    assert record["error_message"] == reason
    assert record["stage_thumbnail"]["error"] == {"code": errors.ACCESS_DENIED, "message": reason}
    # Answered on the first receive, not released for a retry: one call, the message deleted.
    assert calls["img-denied"] == 1
    assert workers[Stage.THUMBNAIL].counters["denied"] == 1
    assert workers[Stage.THUMBNAIL].counters["errored"] == 0
    assert depth == 0
    denials = [entry for entry in logs if entry["event"] == "access denied"]
    assert len(denials) == 1, denials
    assert denials[0]["log_level"] == "error"
    assert denials[0]["image_id"] == "img-denied" and denials[0]["stage"] == "thumbnail"
    assert (denials[0]["action"], denials[0]["resource"]) == ("s3:PutObject", DENIED_KEY_ARN)
