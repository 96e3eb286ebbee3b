"""What each service may do, as data: the one definition of the stack's IAM permissions.

`infra/` renders the deployed roles from these statements (resources as CloudFormation
references) and the local stack runs each service under the same statements (resources as the
embedded endpoint's ARNs), so a permission the code needs and lacks shows on every test run.

Each statement grants exactly what a code path calls, and says which one. Plain Python: no AWS
imports, as the services, the CLI and the CDK app all read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeAlias

from imgproc_shared.resources import (
    INCOMING_PREFIX,
    THUMBNAILS_PREFIX,
    Queue,
    ResourceNames,
    Table,
    Topic,
)
from imgproc_shared.workflow import retag_state_machine_name

POLICY_VERSION = "2012-10-17"
# moto's account, which every local ARN carries.
LOCAL_ACCOUNT = "123456789012"


class Principal(StrEnum):
    """Who holds the permissions: one identity per process (and the state machines' role)."""

    EXTRACTOR = "extractor"
    TAGGER = "tagger"
    THUMBNAILER = "thumbnailer"
    # The public API with the starter, the live-events consumer, the search indexer and the
    # sweeper: everything the status-api process does for any signed-in user.
    STATUS_API = "status-api"
    # Operators' powers (dead-letter views, replay, delete and purge, re-tagging, any image's
    # re-run): a role that the status API assumes only for operator endpoints, so a request of
    # an ordinary user never runs with them (on AWS `<prefix>-operations`, trusting only the
    # status API's task role).
    OPERATIONS = "operations"
    # ImageProc and ImageRetag share it.
    WORKFLOW = "workflow"


class Machine(StrEnum):
    IMAGE_PROC = "ImageProc"
    RETAG = "ImageRetag"


@dataclass(frozen=True)
class QueueArn:
    queue: Queue
    dead_letter: bool = False


@dataclass(frozen=True)
class TableArn:
    """The table itself."""

    table: Table


@dataclass(frozen=True)
class TableIndexesArn:
    """Every index of the table (`<table arn>/index/*`): a Query on an index is checked there."""

    table: Table


@dataclass(frozen=True)
class BucketArn:
    """The bucket itself (s3:ListBucket)."""


@dataclass(frozen=True)
class ObjectsArn:
    """The objects under `prefix` (`<bucket arn>/<prefix>*`)."""

    prefix: str


@dataclass(frozen=True)
class TopicArn:
    topic: Topic


@dataclass(frozen=True)
class StateMachineArn:
    machine: Machine


@dataclass(frozen=True)
class ExecutionsArn:
    """Every execution of the state machine (`...:execution:<machine name>:*`)."""

    machine: Machine


@dataclass(frozen=True)
class RoleArn:
    """The IAM role of a principal that is assumed (`ASSUMED_ROLES`), named by `role_name`."""

    principal: Principal


@dataclass(frozen=True)
class AnyResource:
    """`*`: only for actions without resource-level permissions (rekognition:DetectLabels)."""


ANY = AnyResource()

Resource: TypeAlias = (
    QueueArn
    | TableArn
    | TableIndexesArn
    | BucketArn
    | ObjectsArn
    | TopicArn
    | StateMachineArn
    | ExecutionsArn
    | RoleArn
    | AnyResource
)

# Principals that are roles, each with the one principal its trust policy names.
ASSUMED_ROLES: dict[Principal, Principal] = {Principal.OPERATIONS: Principal.STATUS_API}


def role_name(resource_prefix: str, principal: Principal) -> str:
    """The same name on AWS and on the embedded endpoint: the status API's policy names it."""
    return f"{resource_prefix}-{principal.value}"


def trust_policy(trusted_arn: Any) -> dict[str, Any]:
    """A role's trust policy: only `trusted_arn` (a role's or a user's ARN) may assume it."""
    return {
        "Version": POLICY_VERSION,
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": trusted_arn},
                "Action": "sts:AssumeRole",
            }
        ],
    }


@dataclass(frozen=True)
class Statement:
    # Stable and unique within a principal; alphanumeric (IAM's Sid rule).
    sid: str
    actions: tuple[str, ...]
    resources: tuple[Resource, ...]
    # Which code path needs it.
    why: str
    # An IAM Condition block, rendered as it is.
    condition: dict[str, dict[str, list[str]]] | None = None
    # Granted only when the tagger backend is `rekognition`.
    only_with_rekognition: bool = False


INCOMING = ObjectsArn(INCOMING_PREFIX)
THUMBNAILS = ObjectsArn(THUMBNAILS_PREFIX)
ALL_QUEUES = tuple(QueueArn(q) for q in Queue)
ALL_DEAD_LETTER_QUEUES = tuple(QueueArn(q, dead_letter=True) for q in Queue)
TASK_RESPONSE_ACTIONS = (
    "states:SendTaskSuccess",
    "states:SendTaskFailure",
    "states:SendTaskHeartbeat",
)


def _worker(queue: Queue, machines: tuple[Machine, ...]) -> tuple[Statement, ...]:
    """What every worker's runtime (imgproc_shared.worker.runtime) calls."""
    return (
        Statement(
            "OwnQueue",
            (
                "sqs:GetQueueUrl",
                "sqs:ReceiveMessage",
                "sqs:DeleteMessage",
                "sqs:ChangeMessageVisibility",
            ),
            (QueueArn(queue),),
            "the runtime looks its queue up, long-polls it, deletes done messages (batched) "
            "and extends or releases the ones in hand",
        ),
        Statement(
            "ReadOriginals",
            ("s3:GetObject",),
            (INCOMING,),
            "WorkContext.read_object (and the extractor's HeadObject) reads the uploaded original",
        ),
        Statement(
            "RecordStage",
            ("dynamodb:UpdateItem",),
            (TableArn(Table.IMAGES),),
            "Catalog.record_stage writes the stage's progress on the image record",
        ),
        Statement(
            "NoteGiveUp",
            ("dynamodb:UpdateItem",),
            (TableArn(Table.DEAD_LETTERS),),
            "DeadLetters.note_give_up notes why a message's last try failed",
        ),
        Statement(
            "AnswerTaskTokens",
            TASK_RESPONSE_ACTIONS,
            tuple(StateMachineArn(m) for m in machines),
            "TaskToken answers the workflow's task (success, failure, heartbeat)",
        ),
    )


_EXTRACTOR = (
    *_worker(Queue.EXTRACT, (Machine.IMAGE_PROC,)),
    Statement(
        "TellMissingOriginals",
        ("s3:ListBucket",),
        (BucketArn(),),
        "S3 answers 404 for a missing object only to a caller allowed to list the bucket (403 "
        "otherwise): the extractor rejects a vanished original instead of retrying a denial",
    ),
)

_TAGGER = (
    # ImageRetag re-runs the tag stage: the tagger answers its tokens too.
    *_worker(Queue.TAG, (Machine.IMAGE_PROC, Machine.RETAG)),
    Statement(
        "DetectLabels",
        ("rekognition:DetectLabels",),
        (ANY,),
        "RekognitionBackend sends the image bytes to DetectLabels (no resource-level "
        "permissions: `*` is its only resource)",
        only_with_rekognition=True,
    ),
)

_THUMBNAILER = (
    *_worker(Queue.THUMBNAIL, (Machine.IMAGE_PROC,)),
    Statement(
        "WriteThumbnails",
        ("s3:PutObject",),
        (THUMBNAILS,),
        "the handler stores each rendition under thumbnails/<image id>/",
    ),
)

_STATUS_API = (
    # -- Tables ------------------------------------------------------------------------------
    Statement(
        "Images",
        (
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
        ),
        (TableArn(Table.IMAGES),),
        "Catalog: records, uploads, tombstones, purges and an owner's retry; ExactDuplicates "
        "marks images",
    ),
    Statement(
        "ImagesIndexes",
        ("dynamodb:Query",),
        (TableIndexesArn(Table.IMAGES),),
        "Catalog lists an album's images (by_album) and the sweeper's due records (by_sweep)",
    ),
    Statement(
        "Albums",
        ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"),
        (TableArn(Table.ALBUMS),),
        "Catalog albums and name guards (transactions), ExactDuplicates content claims and "
        "TokenRevocations, all kept in the Albums table",
    ),
    Statement(
        "AlbumsIndexes",
        ("dynamodb:Query",),
        (TableIndexesArn(Table.ALBUMS),),
        "Catalog.list_albums reads an owner's albums (by_owner)",
    ),
    Statement(
        "Search",
        (
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:Query",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:BatchWriteItem",
        ),
        (TableArn(Table.SEARCH),),
        "SearchIndex: the indexer's manifests, entries and counters (transactions and "
        "batches) and the search queries",
    ),
    Statement(
        "NoteGiveUp",
        ("dynamodb:UpdateItem",),
        (TableArn(Table.DEAD_LETTERS),),
        "the starter notes why an ingest message gave up (DeadLetters.note_give_up)",
    ),
    # -- Objects -----------------------------------------------------------------------------
    Statement(
        "WriteOriginals",
        ("s3:PutObject",),
        (INCOMING,),
        "presigned PUT/POST uploads are signed with this identity; uploads through the API "
        "and promoting a duplicate (CopyObject) write the original",
    ),
    Statement(
        "ReadObjects",
        ("s3:GetObject",),
        (INCOMING, THUMBNAILS),
        "HeadObject of originals (starter, sweeper, downloads), ExactDuplicates' checksum "
        "read and copy source, and the presigned GETs of originals and renditions",
    ),
    Statement(
        "DeleteObjects",
        ("s3:DeleteObject",),
        (INCOMING, THUMBNAILS),
        "deleting an image removes its original and renditions; the starter and "
        "ExactDuplicates delete refused or duplicate originals",
    ),
    Statement(
        "ListBucket",
        ("s3:ListBucket",),
        (BucketArn(),),
        "deleting an image lists thumbnails/<image id>/ for renditions not yet recorded; and "
        "S3 answers 404 for a missing object only to a caller allowed to list the bucket "
        "(403 otherwise), which the starter, the sweeper and the duplicate check need to tell "
        "a vanished upload from a denial (a prefix condition would not count for HeadObject)",
    ),
    # -- Queues ------------------------------------------------------------------------------
    Statement(
        "ConsumeOwnQueues",
        ("sqs:ReceiveMessage", "sqs:DeleteMessage"),
        (QueueArn(Queue.INGEST), QueueArn(Queue.STATUS_EVENTS), QueueArn(Queue.SEARCH_INDEX)),
        "the starter, the live-events consumer and the search indexer long-poll their queues "
        "and delete what they handled",
    ),
    Statement(
        "ReleaseIngest",
        ("sqs:ChangeMessageVisibility",),
        (QueueArn(Queue.INGEST),),
        "the starter puts back an upload event it cannot start yet",
    ),
    Statement(
        "OwnQueueUrls",
        ("sqs:GetQueueUrl",),
        (QueueArn(Queue.INGEST), QueueArn(Queue.STATUS_EVENTS), QueueArn(Queue.SEARCH_INDEX)),
        "the starter, the live-events consumer and the search indexer look their queues up",
    ),
    # -- Workflows ---------------------------------------------------------------------------
    Statement(
        "StartImageProc",
        ("states:StartExecution",),
        (StateMachineArn(Machine.IMAGE_PROC),),
        "the starter starts ImageProc; an owner's retry of a FAILED image re-runs it",
    ),
    Statement(
        "ImageExecutions",
        ("states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution"),
        (ExecutionsArn(Machine.IMAGE_PROC),),
        "an image's execution view (describe, history); deleting an image stops its execution; "
        "a retry checks whether one still runs",
    ),
    # -- Operators ---------------------------------------------------------------------------
    Statement(
        "AssumeOperations",
        ("sts:AssumeRole",),
        (RoleArn(Principal.OPERATIONS),),
        "operator endpoints act with the operations role's temporary credentials "
        "(OperatorAws); nothing else in the process uses them",
    ),
)

_OPERATIONS = (
    # -- Queues ------------------------------------------------------------------------------
    Statement(
        "QueueDepths",
        ("sqs:GetQueueUrl", "sqs:GetQueueAttributes"),
        (*ALL_QUEUES, *ALL_DEAD_LETTER_QUEUES),
        "the Operations page reads every queue's depths; a move task needs both queues' ARNs",
    ),
    Statement(
        "HandleDeadLetters",
        (
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:PurgeQueue",
            "sqs:StartMessageMoveTask",
        ),
        ALL_DEAD_LETTER_QUEUES,
        "DeadLetters reads (and releases), deletes, purges and replays dead letters (a "
        "whole-queue replay on AWS is a move task)",
    ),
    Statement(
        "ReplayToSource",
        ("sqs:SendMessage",),
        ALL_QUEUES,
        "a replay returns each dead letter to its source queue",
    ),
    # -- Tables ------------------------------------------------------------------------------
    Statement(
        "DeadLetterMirror",
        ("dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:DeleteItem"),
        (TableArn(Table.DEAD_LETTERS),),
        "DeadLetters mirrors each dead letter, lists, shows and forgets them",
    ),
    Statement(
        "Images",
        ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:UpdateItem", "dynamodb:Scan"),
        (TableArn(Table.IMAGES),),
        "dead letters show their images' status (get_images); a re-run reads and marks the "
        "image (get_image, mark_rerun); a re-tag of every image scans the table",
    ),
    Statement(
        "ImagesIndexes",
        ("dynamodb:Query",),
        (TableIndexesArn(Table.IMAGES),),
        "a re-tag of an album (or of an owner's albums) lists its images (by_album)",
    ),
    Statement(
        "AlbumsIndexes",
        ("dynamodb:Query",),
        (TableIndexesArn(Table.ALBUMS),),
        "a re-tag of one owner's images lists their albums (by_owner)",
    ),
    # -- Workflows ---------------------------------------------------------------------------
    Statement(
        "StartExecutions",
        ("states:StartExecution",),
        (StateMachineArn(Machine.IMAGE_PROC), StateMachineArn(Machine.RETAG)),
        "replays and operators' retries re-run ImageProc; re-tagging starts ImageRetag",
    ),
    Statement(
        "ListRetagExecutions",
        ("states:ListExecutions",),
        (StateMachineArn(Machine.RETAG),),
        "Retagger lists a request's ImageRetag executions",
    ),
    Statement(
        "ImageExecutions",
        ("states:DescribeExecution",),
        (ExecutionsArn(Machine.IMAGE_PROC),),
        "a re-run checks whether the image's execution still runs",
    ),
    Statement(
        "RetagExecutions",
        ("states:DescribeExecution",),
        (ExecutionsArn(Machine.RETAG),),
        "Retagger reads a request's progress",
    ),
)

_WORKFLOW = (
    Statement(
        "SendExtract",
        ("sqs:SendMessage",),
        (QueueArn(Queue.EXTRACT),),
        "ImageProc's extract task (sqs:sendMessage.waitForTaskToken)",
    ),
    Statement(
        "PublishStages",
        ("sns:Publish",),
        (TopicArn(Topic.VALIDATED), TopicArn(Topic.STORED)),
        "the tag and thumbnail tasks publish on `validated`; the end announces on `stored` "
        "(ImageRetag: the same two)",
    ),
    Statement(
        "UpdateImages",
        ("dynamodb:UpdateItem",),
        (TableArn(Table.IMAGES),),
        "the dynamodb:updateItem tasks record status and results on the image",
    ),
)

_STATEMENTS: dict[Principal, tuple[Statement, ...]] = {
    Principal.EXTRACTOR: _EXTRACTOR,
    Principal.TAGGER: _TAGGER,
    Principal.THUMBNAILER: _THUMBNAILER,
    Principal.STATUS_API: _STATUS_API,
    Principal.OPERATIONS: _OPERATIONS,
    Principal.WORKFLOW: _WORKFLOW,
}


def statements(principal: Principal) -> tuple[Statement, ...]:
    return _STATEMENTS[principal]


def render_statements(
    principal: Principal, resolve: Callable[[Resource], Any], *, rekognition: bool
) -> list[dict[str, Any]]:
    """IAM JSON statements for `principal`, each resource mapped by `resolve` (an ARN string
    locally, a CloudFormation token in infra); the Rekognition grants only if `rekognition`."""
    rendered = []
    for statement in statements(principal):
        if statement.only_with_rekognition and not rekognition:
            continue
        document: dict[str, Any] = {
            "Sid": statement.sid,
            "Effect": "Allow",
            "Action": list(statement.actions),
            "Resource": [resolve(resource) for resource in statement.resources],
        }
        if statement.condition is not None:
            document["Condition"] = statement.condition
        rendered.append(document)
    return rendered


@dataclass(frozen=True)
class LocalArns:
    """The embedded endpoint's ARN of each symbolic resource."""

    names: ResourceNames
    region: str
    account: str = LOCAL_ACCOUNT
    partition: str = "aws"

    def machine_name(self, machine: Machine) -> str:
        if machine is Machine.RETAG:
            return retag_state_machine_name(self.names.prefix)
        return self.names.state_machine

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"

    def __call__(self, resource: Resource) -> str:
        names = self.names
        bucket = f"arn:{self.partition}:s3:::{names.bucket}"
        match resource:
            case QueueArn(queue, dead_letter):
                name = names.dead_letter_queue(queue) if dead_letter else names.queue(queue)
                return self._arn("sqs", name)
            case TableArn(table):
                return self._arn("dynamodb", f"table/{names.table(table)}")
            case TableIndexesArn(table):
                return self._arn("dynamodb", f"table/{names.table(table)}/index/*")
            case BucketArn():
                return bucket
            case ObjectsArn(prefix):
                return f"{bucket}/{prefix}*"
            case TopicArn(topic):
                return self._arn("sns", names.topic(topic))
            case StateMachineArn(machine):
                return self._arn("states", f"stateMachine:{self.machine_name(machine)}")
            case ExecutionsArn(machine):
                return self._arn("states", f"execution:{self.machine_name(machine)}:*")
            case RoleArn(principal):
                role = role_name(names.prefix, principal)
                return f"arn:{self.partition}:iam::{self.account}:role/{role}"
            case AnyResource():
                return "*"
        raise TypeError(f"not a resource: {resource!r}")


def policy_document(principal: Principal, arns: LocalArns, *, rekognition: bool) -> dict[str, Any]:
    return {
        "Version": POLICY_VERSION,
        "Statement": render_statements(principal, arns, rekognition=rekognition),
    }
