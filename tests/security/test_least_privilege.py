"""Least privilege, proved against the embedded endpoint with IAM enforcement on.

Every action the shared definition (`imgproc_shared.permissions`) grants is needed: for each
(principal, statement, action) a probe makes the call the code makes for it (permission_probes)
as that principal; with the full policy it is allowed, and with only that action taken out of
its statement it is denied, the denial naming the action. A permission added without a probe
fails the coverage test.

And the services are kept apart: a worker cannot touch another worker's queue, write objects
outside its own prefix (the thumbnailer: `thumbnails/`; the extractor and the tagger: nowhere)
or read the tables that are not its own; the status API cannot answer task tokens.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from botocore.exceptions import ClientError
from helpers import iam_enforced, make_settings
from permission_probes import PROBES, WORKER_QUEUES, WORKERS, Grant, ProbeEnv
from pydantic import SecretStr

from imgproc_local import moto_iam
from imgproc_local.bootstrap import bootstrap, create_identity
from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import to_item
from imgproc_shared.errors import Denial, access_denial
from imgproc_shared.permissions import (
    ASSUMED_ROLES,
    LocalArns,
    Principal,
    policy_document,
    role_name,
    statements,
    trust_policy,
)
from imgproc_shared.resources import Queue, ResourceNames, Table, incoming_key, thumbnail_key
from imgproc_status_api.operations import AssumedRoleClients, operations_session

pytestmark = pytest.mark.asyncio(loop_scope="module")

# Granted where another statement of the same principal grants it too, on every resource the
# probe's code path touches: taking it out of this statement denies nothing.
REDUNDANT: dict[Grant, str] = {}
# Permissions the embedded endpoint cannot show to be needed (docs/FACTS.md, "IAM enforcement").
ENDPOINT_GAPS: dict[Grant, str] = {
    (Principal.OPERATIONS, "HandleDeadLetters", "sqs:StartMessageMoveTask"): (
        "moto 5.2.5 has no StartMessageMoveTask (a local replay moves messages one by one), and "
        "the endpoint checks it against `*`, not the SourceArn AWS authorizes it on: the full "
        "policy is denied too"
    ),
}


def _expected_failure(grant: Grant) -> Any:
    """A redundant grant: the reduced policy still allows the probe (pytest.raises fails);
    an endpoint gap: the full policy is denied as well (the ClientError escapes)."""
    if grant in REDUNDANT:
        return pytest.mark.xfail(strict=True, raises=pytest.fail.Exception, reason=REDUNDANT[grant])
    return pytest.mark.xfail(strict=True, raises=ClientError, reason=ENDPOINT_GAPS[grant])


def granted() -> set[Grant]:
    """Every (principal, statement sid, action) of the definition, both tagger backends."""
    return {
        (principal, statement.sid, action)
        for principal in Principal
        for statement in statements(principal)
        for action in statement.actions
    }


@dataclass
class Caller:
    """A principal's probe identity: its key signs `aws`; its policy is swapped by the tests."""

    principal: Principal
    identity: str
    aws: AwsClients
    full_policy: dict[str, Any]
    # A role's (the operations role): its trust policy; `identity` is the role's name.
    trust: dict[str, Any] | None = None

    def allow(self, document: dict[str, Any]) -> None:
        if self.trust is not None:
            moto_iam.put_role(self.identity, document, self.trust)
        else:
            moto_iam.put_identity(self.identity, document)

    def without(self, sid: str, action: str) -> dict[str, Any]:
        """The full policy less `action` in the statement `sid` (an emptied statement goes)."""
        kept = []
        for statement in self.full_policy["Statement"]:
            if statement["Sid"] == sid:
                assert action in statement["Action"], (sid, action)
                statement = {**statement, "Action": [a for a in statement["Action"] if a != action]}
            if statement["Action"]:
                kept.append(statement)
        return {**self.full_policy, "Statement": kept}


@pytest.fixture(scope="module")
def enforcement() -> Iterator[None]:
    """IAM enforcement on for this module; the session's previous state restored after."""
    with iam_enforced():
        yield


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(embedded_aws: EmbeddedAws, enforcement: None) -> AsyncIterator[ProbeEnv]:
    """One stack for the module: an album, a PROCESSING image with its original; ImageProc's
    own calls made as the stack's workflow identity. Tasks wait long enough for a probe to
    answer a token taken minutes before."""
    settings = make_settings(embedded_aws.endpoint_url, task_heartbeat_s=600, task_timeout_s=900)
    with ThreadPoolExecutor(max_workers=1) as executor:
        async with AwsClients(settings) as admin:
            outputs = await bootstrap(admin, settings)
            settings = settings.model_copy(
                update={"state_machine_arn": outputs["state_machine_arn"]}
            )
            workflow = create_identity(settings, Principal.WORKFLOW)
            moto_iam.set_workflow_identity(workflow.access_key_id, workflow.secret_access_key)
            names = ResourceNames.from_settings(settings)
            owner, album_id, image_id = "prober", uuid.uuid4().hex, f"img{uuid.uuid4().hex[:12]}"
            original_key = incoming_key(owner, album_id, image_id, "jpg")
            await admin.s3.put_object(Bucket=names.bucket, Key=original_key, Body=b"\xff\xd8jpeg")
            probe_env = ProbeEnv(
                settings=settings,
                admin=admin,
                executor=executor,
                owner=owner,
                album_id=album_id,
                image_id=image_id,
                original_key=original_key,
            )
            await probe_env.put_record(probe_env.record(image_id))
            await admin.dynamodb.put_item(
                TableName=names.table(Table.ALBUMS),
                Item=to_item(
                    {"album_id": album_id, "owner": owner, "name": "probes", "created_at": "x"}
                ),
            )
            for queue in Queue:
                probe_env.queue_urls[queue] = (
                    await admin.sqs.get_queue_url(QueueName=names.queue(queue))
                )["QueueUrl"]
                probe_env.dead_letter_urls[queue] = (
                    await admin.sqs.get_queue_url(QueueName=names.dead_letter_queue(queue))
                )["QueueUrl"]
            yield probe_env


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def callers(env: ProbeEnv) -> AsyncIterator[dict[Principal, Caller]]:
    """Each principal's probe identity with its full policy (the tagger's with Rekognition),
    and clients signing as it; the operations role assumed by the status API's probe identity,
    as the status API does (its credentials are refreshed by the same code)."""
    arns = LocalArns(names=env.names, region=env.settings.region)
    made: dict[Principal, Caller] = {}
    try:
        for principal in Principal:
            document = policy_document(principal, arns, rekognition=True)
            assumer = ASSUMED_ROLES.get(principal)
            if assumer is not None:
                name = role_name(env.names.prefix, principal)
                trust = trust_policy(moto_iam.user_arn(made[assumer].identity))
                role_arn = moto_iam.put_role(name, document, trust)
                session = operations_session(made[assumer].aws, role_arn)
                role_aws = await AssumedRoleClients(env.settings, session).__aenter__()
                made[principal] = Caller(principal, name, role_aws, document, trust)
                continue
            identity = f"{env.names.prefix}-probe-{principal.value}"
            key, secret = moto_iam.put_identity(identity, document)
            settings = env.settings.model_copy(
                update={
                    "endpoint_access_key_id": key,
                    "endpoint_secret_access_key": SecretStr(secret),
                }
            )
            aws = await AwsClients(settings).__aenter__()
            made[principal] = Caller(principal, identity, aws, document)
        yield made
    finally:
        for caller in made.values():
            await caller.aws.__aexit__(None, None, None)


def denial_of(exc: BaseException) -> Denial:
    denial = access_denial(exc)
    assert denial is not None, f"not a denial: {exc!r}"
    return denial


@pytest.mark.asyncio(loop_scope="module")
async def test_every_granted_action_has_a_probe() -> None:
    """A permission added to the definition needs a probe here (and a removed one loses it)."""
    assert set(PROBES) == granted()


def _grant_id(grant: Grant) -> str:
    principal, sid, action = grant
    return f"{principal.value}-{sid}-{action}"


@pytest.mark.parametrize(
    "grant",
    [
        pytest.param(grant, marks=_expected_failure(grant))
        if grant in REDUNDANT or grant in ENDPOINT_GAPS
        else grant
        for grant in sorted(granted())
    ],
    ids=_grant_id,
)
async def test_each_granted_action_is_needed(
    grant: Grant, env: ProbeEnv, callers: dict[Principal, Caller]
) -> None:
    principal, sid, action = grant
    probe = PROBES.get(grant)
    assert probe is not None, f"no probe for {grant}: add one to permission_probes"
    caller = callers[principal]
    try:
        caller.allow(caller.without(sid, action))
        with pytest.raises(ClientError) as denied:
            await probe(env, caller.aws, principal)
        assert denial_of(denied.value).action == action, denied.value
    finally:
        caller.allow(caller.full_policy)
    await probe(env, caller.aws, principal)


# -- Isolation --------------------------------------------------------------------------------


async def test_a_worker_cannot_touch_another_workers_queue(
    env: ProbeEnv, callers: dict[Principal, Caller]
) -> None:
    for worker in WORKERS:
        sqs = callers[worker].aws.sqs
        for other in WORKERS:
            if other is worker:
                continue
            queue = WORKER_QUEUES[other]
            queue_arn = env.arn("sqs", env.names.queue(queue))
            with pytest.raises(ClientError) as denied:
                await sqs.receive_message(QueueUrl=env.queue_urls[queue], WaitTimeSeconds=0)
            denial = denial_of(denied.value)
            assert (denial.action, denial.resource) == ("sqs:ReceiveMessage", queue_arn)
            with pytest.raises(ClientError) as denied:
                await sqs.delete_message(QueueUrl=env.queue_urls[queue], ReceiptHandle="r")
            denial = denial_of(denied.value)
            assert (denial.action, denial.resource) == ("sqs:DeleteMessage", queue_arn)


async def test_workers_write_objects_only_under_their_own_prefix(
    env: ProbeEnv, callers: dict[Principal, Caller]
) -> None:
    bucket = env.names.bucket
    outside_thumbnails = [
        incoming_key(env.owner, env.album_id, "forged", "jpg"),
        f"other/{env.image_id}.jpg",
    ]
    everywhere = [*outside_thumbnails, thumbnail_key(env.image_id, "forged", "webp")]
    allowed_nowhere = {Principal.EXTRACTOR: everywhere, Principal.TAGGER: everywhere}
    for worker, keys in {**allowed_nowhere, Principal.THUMBNAILER: outside_thumbnails}.items():
        for key in keys:
            with pytest.raises(ClientError) as denied:
                await callers[worker].aws.s3.put_object(Bucket=bucket, Key=key, Body=b"x")
            denial = denial_of(denied.value)
            assert (denial.action, denial.resource) == (
                "s3:PutObject",
                f"arn:aws:s3:::{bucket}/{key}",
            ), worker


async def test_a_worker_reads_no_table(env: ProbeEnv, callers: dict[Principal, Caller]) -> None:
    """Workers only write their stage's progress (and give-up notes): no GetItem on Images,
    nothing at all of Albums, Search or DeadLetters."""
    keys = {
        Table.IMAGES: {"image_id": {"S": env.image_id}},
        Table.ALBUMS: {"album_id": {"S": env.album_id}},
        Table.SEARCH: {"pk": {"S": "x"}, "sk": {"S": "x"}},
        Table.DEAD_LETTERS: {"queue": {"S": "extract"}, "message_id": {"S": "x"}},
    }
    hash_keys = {Table.ALBUMS: "album_id", Table.SEARCH: "pk", Table.DEAD_LETTERS: "queue"}
    for worker in WORKERS:
        dynamodb = callers[worker].aws.dynamodb
        for table, key in keys.items():
            name = env.names.table(table)
            table_arn = env.arn("dynamodb", f"table/{name}")
            with pytest.raises(ClientError) as denied:
                await dynamodb.get_item(TableName=name, Key=key)
            denial = denial_of(denied.value)
            assert (denial.action, denial.resource) == ("dynamodb:GetItem", table_arn), worker
            if table not in hash_keys:
                continue
            with pytest.raises(ClientError) as denied:
                await dynamodb.query(
                    TableName=name,
                    KeyConditionExpression="#k = :k",
                    ExpressionAttributeNames={"#k": hash_keys[table]},
                    ExpressionAttributeValues={":k": {"S": "x"}},
                )
            denial = denial_of(denied.value)
            assert (denial.action, denial.resource) == ("dynamodb:Query", table_arn), worker


async def test_the_status_api_cannot_answer_task_tokens(
    env: ProbeEnv, callers: dict[Principal, Caller]
) -> None:
    task = await env.tokens.live()
    sfn = callers[Principal.STATUS_API].aws.stepfunctions
    answers = {
        "states:SendTaskSuccess": sfn.send_task_success(taskToken=task.task_token, output="{}"),
        "states:SendTaskFailure": sfn.send_task_failure(taskToken=task.task_token, error="x"),
        "states:SendTaskHeartbeat": sfn.send_task_heartbeat(taskToken=task.task_token),
    }
    for action, answer in answers.items():
        with pytest.raises(ClientError) as denied:
            await answer
        denial = denial_of(denied.value)
        assert (denial.action, denial.resource) == (action, env.state_machine_arn)
    # Still waiting: a worker's heartbeat on the same token is accepted.
    worker_sfn = callers[Principal.EXTRACTOR].aws.stepfunctions
    await worker_sfn.send_task_heartbeat(taskToken=task.task_token)
