"""The one definition of each service's permissions: its renderers and its isolation rules."""

from __future__ import annotations

import re

import pytest

from imgproc_shared.permissions import (
    ANY,
    ASSUMED_ROLES,
    BucketArn,
    ExecutionsArn,
    LocalArns,
    Machine,
    ObjectsArn,
    Principal,
    QueueArn,
    RoleArn,
    StateMachineArn,
    TableArn,
    TableIndexesArn,
    TopicArn,
    policy_document,
    render_statements,
    statements,
    trust_policy,
)
from imgproc_shared.resources import (
    INCOMING_PREFIX,
    STAGE_QUEUES,
    THUMBNAILS_PREFIX,
    Queue,
    ResourceNames,
    Stage,
    Table,
    Topic,
)

NAMES = ResourceNames("permtest")
REGION = "eu-west-1"
ARNS = LocalArns(NAMES, REGION)
ACCOUNT = "123456789012"
WORKERS = {
    Principal.EXTRACTOR: Stage.EXTRACT,
    Principal.TAGGER: Stage.TAG,
    Principal.THUMBNAILER: Stage.THUMBNAIL,
}
S3_WRITES = ("s3:PutObject", "s3:DeleteObject")


def grants(principal: Principal, *, rekognition: bool = True) -> set[tuple[str, str]]:
    """(action, local ARN) for every statement of `principal`."""
    return {
        (action, resource)
        for statement in render_statements(principal, ARNS, rekognition=rekognition)
        for action in statement["Action"]
        for resource in statement["Resource"]
    }


def test_local_arns_have_each_service_format() -> None:
    assert ARNS(QueueArn(Queue.TAG)) == f"arn:aws:sqs:{REGION}:{ACCOUNT}:permtest-tag"
    assert ARNS(QueueArn(Queue.TAG, dead_letter=True)) == (
        f"arn:aws:sqs:{REGION}:{ACCOUNT}:permtest-tag-dlq"
    )
    assert ARNS(TableArn(Table.IMAGES)) == (
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/permtest-Images"
    )
    assert ARNS(TableIndexesArn(Table.IMAGES)) == (
        f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/permtest-Images/index/*"
    )
    assert ARNS(BucketArn()) == "arn:aws:s3:::permtest-images"
    assert ARNS(ObjectsArn(THUMBNAILS_PREFIX)) == "arn:aws:s3:::permtest-images/thumbnails/*"
    assert ARNS(TopicArn(Topic.STORED)) == f"arn:aws:sns:{REGION}:{ACCOUNT}:permtest-stored"
    assert ARNS(StateMachineArn(Machine.IMAGE_PROC)) == (
        f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:permtest-ImageProc"
    )
    assert ARNS(StateMachineArn(Machine.RETAG)) == (
        f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:permtest-ImageRetag"
    )
    assert ARNS(ExecutionsArn(Machine.RETAG)) == (
        f"arn:aws:states:{REGION}:{ACCOUNT}:execution:permtest-ImageRetag:*"
    )
    assert ARNS(ANY) == "*"
    assert LocalArns(NAMES, "cn-north-1", "000000000000", "aws-cn")(BucketArn()) == (
        "arn:aws-cn:s3:::permtest-images"
    )


def test_a_policy_document_is_iam_json() -> None:
    document = policy_document(Principal.STATUS_API, ARNS, rekognition=False)
    assert document["Version"] == "2012-10-17"
    listing = [s for s in document["Statement"] if "s3:ListBucket" in s["Action"]]
    assert listing == [
        {
            "Sid": "ListBucket",
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": ["arn:aws:s3:::permtest-images"],
        }
    ]
    assert all(
        set(s) <= {"Sid", "Effect", "Action", "Resource", "Condition"}
        for s in document["Statement"]
    )


def test_only_the_roles_that_must_tell_a_missing_object_from_a_denial_may_list() -> None:
    # S3 answers 404 (not 403) for a missing key only to a caller allowed to list the bucket.
    bucket = ARNS(BucketArn())
    listers = {p for p in Principal if ("s3:ListBucket", bucket) in grants(p)}
    assert listers == {Principal.STATUS_API, Principal.EXTRACTOR}


@pytest.mark.parametrize("principal", list(Principal))
def test_sids_are_unique_alphanumeric_and_every_statement_says_why(principal: Principal) -> None:
    sids = [s.sid for s in statements(principal)]
    assert len(sids) == len(set(sids))
    assert all(re.fullmatch(r"[A-Za-z0-9]+", sid) for sid in sids)
    for statement in statements(principal):
        assert statement.actions and statement.resources and statement.why.strip()


def test_rekognition_is_granted_to_the_tagger_only_and_only_with_that_backend() -> None:
    detect = ("rekognition:DetectLabels", "*")
    assert detect in grants(Principal.TAGGER, rekognition=True)
    assert detect not in grants(Principal.TAGGER, rekognition=False)
    for principal in Principal:
        if principal is not Principal.TAGGER:
            assert not [g for g in grants(principal) if g[0].startswith("rekognition:")]
    # `*` is for actions without resource-level permissions, never a data action.
    for principal in Principal:
        assert {a for a, r in grants(principal) if r == "*"} <= {"rekognition:DetectLabels"}


def test_only_the_thumbnailer_and_the_api_write_objects_each_under_its_prefix() -> None:
    thumbnails = ARNS(ObjectsArn(THUMBNAILS_PREFIX))
    incoming = ARNS(ObjectsArn(INCOMING_PREFIX))
    assert {g for g in grants(Principal.THUMBNAILER) if g[0].startswith("s3:")} == {
        ("s3:GetObject", incoming),
        ("s3:PutObject", thumbnails),
    }
    for principal in (Principal.EXTRACTOR, Principal.TAGGER):
        assert {g for g in grants(principal) if g[0] in ("s3:GetObject", *S3_WRITES)} == {
            ("s3:GetObject", incoming)
        }
    assert not [g for g in grants(Principal.WORKFLOW) if g[0].startswith("s3:")]
    # The API writes originals (uploads) and deletes what deleting an image removes.
    api_writes = {g for g in grants(Principal.STATUS_API) if g[0] in S3_WRITES}
    assert api_writes == {
        ("s3:PutObject", incoming),
        ("s3:DeleteObject", incoming),
        ("s3:DeleteObject", thumbnails),
    }
    # Only the thumbnailer writes a thumbnail.
    writers = {
        p for p in Principal for a, r in grants(p) if a == "s3:PutObject" and r == thumbnails
    }
    assert writers == {Principal.THUMBNAILER}


def test_each_worker_reaches_only_its_own_queue() -> None:
    for principal, stage in WORKERS.items():
        queues = {r for a, r in grants(principal) if a.startswith("sqs:")}
        assert queues == {ARNS(QueueArn(STAGE_QUEUES[stage]))}, principal
        # Nothing sends or publishes: the workflow moves work on.
        assert not [a for a, _ in grants(principal) if a in ("sqs:SendMessage", "sns:Publish")]


def test_no_service_reads_a_table_it_does_not_use() -> None:
    images, dead_letters = ARNS(TableArn(Table.IMAGES)), ARNS(TableArn(Table.DEAD_LETTERS))
    for principal in WORKERS:
        assert {g for g in grants(principal) if g[0].startswith("dynamodb:")} == {
            ("dynamodb:UpdateItem", images),
            ("dynamodb:UpdateItem", dead_letters),
        }
    assert {g for g in grants(Principal.WORKFLOW) if g[0].startswith("dynamodb:")} == {
        ("dynamodb:UpdateItem", images)
    }
    # The search index alone is written in batches; only operators scan (a re-tag of every
    # image), and only Images.
    api = grants(Principal.STATUS_API)
    assert {r for a, r in api if a == "dynamodb:BatchWriteItem"} == {ARNS(TableArn(Table.SEARCH))}
    assert not {r for a, r in api if a == "dynamodb:Scan"}
    assert {r for a, r in grants(Principal.OPERATIONS) if a == "dynamodb:Scan"} == {images}


# What only an operator may do: none of it is the internet-facing API's own.
OPERATOR_POWERS = {
    "sqs:PurgeQueue",
    "sqs:StartMessageMoveTask",
    "sqs:SendMessage",
    "sqs:GetQueueAttributes",
    "states:ListExecutions",
    "dynamodb:Scan",
}


def test_operator_powers_are_the_operations_roles_and_not_the_public_apis() -> None:
    api = grants(Principal.STATUS_API)
    operations = grants(Principal.OPERATIONS)
    assert not {a for a, _ in api} & OPERATOR_POWERS
    assert OPERATOR_POWERS <= {a for a, _ in operations}
    dead_letter_queues = {ARNS(QueueArn(q, dead_letter=True)) for q in Queue}
    # The API touches no dead-letter queue and no re-tag execution at all.
    assert not {r for _, r in api} & dead_letter_queues
    assert not [r for _, r in api if "ImageRetag" in r]
    # Of the dead-letter mirror, only the starter's note of why an ingest message gave up.
    mirror = ARNS(TableArn(Table.DEAD_LETTERS))
    assert {a for a, r in api if r == mirror} == {"dynamodb:UpdateItem"}
    # It may assume the operations role, and nothing else may.
    role = ARNS(RoleArn(Principal.OPERATIONS))
    assert ("sts:AssumeRole", role) in api
    assert role == f"arn:aws:iam::123456789012:role/{NAMES.prefix}-operations"
    for principal in Principal:
        if principal is not Principal.STATUS_API:
            assert not [a for a, _ in grants(principal) if a.startswith("sts:")], principal
    assert ASSUMED_ROLES == {Principal.OPERATIONS: Principal.STATUS_API}
    assert trust_policy("arn:x")["Statement"] == [
        {"Effect": "Allow", "Principal": {"AWS": "arn:x"}, "Action": "sts:AssumeRole"}
    ]


def test_the_status_api_cannot_answer_task_tokens() -> None:
    actions = {a for a, _ in grants(Principal.STATUS_API)}
    assert not [a for a in actions if a.startswith("states:SendTask")]
    # The workers answer them, each for the machines whose tasks it runs.
    for principal in WORKERS:
        answered = {r for a, r in grants(principal) if a == "states:SendTaskSuccess"}
        machines = (
            {Machine.IMAGE_PROC, Machine.RETAG}
            if principal is Principal.TAGGER
            else {Machine.IMAGE_PROC}
        )
        assert answered == {ARNS(StateMachineArn(m)) for m in machines}, principal


def test_the_workflow_role_calls_only_its_tasks() -> None:
    assert grants(Principal.WORKFLOW) == {
        ("sqs:SendMessage", ARNS(QueueArn(Queue.EXTRACT))),
        ("sns:Publish", ARNS(TopicArn(Topic.VALIDATED))),
        ("sns:Publish", ARNS(TopicArn(Topic.STORED))),
        ("dynamodb:UpdateItem", ARNS(TableArn(Table.IMAGES))),
    }
