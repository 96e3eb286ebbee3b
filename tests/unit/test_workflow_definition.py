from __future__ import annotations

from imgproc_shared import errors
from imgproc_shared.settings import Settings
from imgproc_shared.workflow import (
    NOT_SUPPORTED_IMAGE_TYPE,
    WorkflowLimits,
    WorkflowTargets,
    build_definition,
    happy_path_states,
)

TARGETS = WorkflowTargets(
    extract_queue_url="https://sqs/extract",
    validated_topic_arn="arn:validated",
    stored_topic_arn="arn:stored",
    images_table="Images",
)


def test_happy_path_is_seven_transitions() -> None:
    # No StoreMetadata state: the extract worker stores the metadata with its progress.
    path = happy_path_states(build_definition(TARGETS))
    assert path == [
        "Extract",
        "Validate",
        "Process",
        "Tag",
        "Thumbnail",
        "StoreResults",
        "Announce",
    ]


def test_extract_is_a_callback_on_the_extract_queue_with_timeout_and_heartbeat() -> None:
    extract = build_definition(TARGETS, WorkflowLimits(task_timeout_s=300, task_heartbeat_s=30))[
        "States"
    ]["Extract"]
    assert extract["Resource"] == "arn:aws:states:::sqs:sendMessage.waitForTaskToken"
    assert extract["Parameters"]["QueueUrl"] == "https://sqs/extract"
    assert extract["Parameters"]["MessageBody"]["task_token.$"] == "$$.Task.Token"
    assert (extract["TimeoutSeconds"], extract["HeartbeatSeconds"]) == (300, 30)
    assert extract["Retry"][0]["ErrorEquals"] == ["States.Timeout", errors.TRANSIENT]
    assert extract["Catch"][0]["ErrorEquals"] == list(errors.REJECTIONS)
    assert extract["Catch"][0]["Next"] == "Reject"


def test_validate_accepts_the_configured_formats_and_mpo_as_jpeg() -> None:
    settings = Settings(supported_formats="jpeg, png")
    assert settings.accepted_formats() == ["JPEG", "PNG", "MPO"]
    limits = WorkflowLimits(accepted_formats=tuple(settings.accepted_formats()))
    choice = build_definition(TARGETS, limits)["States"]["Validate"]
    accepted = [rule["StringEquals"] for rule in choice["Choices"][0]["Or"]]
    assert accepted == ["JPEG", "PNG", "MPO"]
    assert choice["Default"] == "Unsupported"


def test_rejection_ends_in_not_supported_image_type() -> None:
    states = build_definition(TARGETS)["States"]
    assert states["Reject"]["Next"] == "AnnounceRejection"
    assert states["AnnounceRejection"]["Next"] == NOT_SUPPORTED_IMAGE_TYPE
    assert states[NOT_SUPPORTED_IMAGE_TYPE] == {
        "Type": "Fail",
        "Error": NOT_SUPPORTED_IMAGE_TYPE,
        "Cause": states[NOT_SUPPORTED_IMAGE_TYPE]["Cause"],
    }


def test_stage_branches_publish_on_validated_with_a_stage_attribute() -> None:
    process = build_definition(TARGETS)["States"]["Process"]
    stages = []
    for branch in process["Branches"]:
        task = branch["States"][branch["StartAt"]]
        assert task["Resource"] == "arn:aws:states:::sns:publish.waitForTaskToken"
        assert task["Parameters"]["TopicArn"] == "arn:validated"
        stages.append(task["Parameters"]["MessageAttributes"]["stage"]["StringValue"])
        # A stage that still fails after retries records itself on the image.
        failed = branch["States"][task["Catch"][0]["Next"]]
        assert failed["Parameters"]["ExpressionAttributeValues"][":stage"]["S"] == stages[-1]
    assert stages == ["tag", "thumbnail"]
    assert process["ResultSelector"] == {
        "tags.$": "States.ArrayGetItem($, 0)",
        "thumbnails.$": "States.ArrayGetItem($, 1)",
    }
