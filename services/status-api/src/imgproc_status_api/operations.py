"""Operators' AWS clients: the operations role's temporary credentials, never the API's own.

The status API's own identity holds only what any user's request needs; dead-letter handling,
replays, purges, re-tagging and any image's re-run are the operations role's
(`imgproc_shared.permissions.Principal.OPERATIONS`). Operator endpoints get these clients
through `api.deps.OperatorAws`, which checks the caller is an operator first; the rest of the
process never sees them.

The credentials come from `sts:AssumeRole` signed by the API's own identity, and are refreshed
by botocore before they expire (15 minutes ahead, and at once under 10 minutes), so a long
re-tag that keeps starting executions never signs with expired ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiobotocore.credentials import AioDeferredRefreshableCredentials
from aiobotocore.session import AioSession, get_session

from imgproc_shared.aws import AwsClients
from imgproc_shared.logging import get_logger
from imgproc_shared.settings import Settings

log = get_logger(component="operations")

# One hour: AWS's default and a role's default maximum session duration.
SESSION_DURATION_S = 3600
SESSION_NAME = "imgproc-operator"


class AssumedRoleClients(AwsClients):
    """AwsClients signing with a session's own (refreshable) credentials: no static key is
    passed, not even on the embedded endpoint."""

    def _static_credentials(self) -> dict[str, str]:
        return {}


def operations_session(api_aws: AwsClients, role_arn: str) -> AioSession:
    """A session whose credentials are the role's, assumed with `api_aws` (the API's own
    identity) when first needed and again before they expire."""

    async def assume() -> dict[str, str]:
        sts = await api_aws.client("sts")
        answer = await sts.assume_role(
            RoleArn=role_arn, RoleSessionName=SESSION_NAME, DurationSeconds=SESSION_DURATION_S
        )
        credentials = answer["Credentials"]
        log.info("operations role assumed", role_arn=role_arn, expires=credentials["Expiration"])
        return {
            "access_key": credentials["AccessKeyId"],
            "secret_key": credentials["SecretAccessKey"],
            "token": credentials["SessionToken"],
            "expiry_time": credentials["Expiration"].isoformat(),
        }

    session = get_session()
    # botocore has no public setter for refreshable credentials (set_credentials: static ones).
    session._credentials = AioDeferredRefreshableCredentials(  # type: ignore[attr-defined]
        refresh_using=assume, method="sts-assume-role"
    )
    return session


@asynccontextmanager
async def operator_clients(settings: Settings, api_aws: AwsClients) -> AsyncIterator[AwsClients]:
    """The clients operator endpoints use, open while inside: the operations role's when one is
    configured; without one (the local stack with IAM checks off), the API's own."""
    if not settings.operations_role_arn:
        log.info("no operations role: operator endpoints use the API's own identity")
        yield api_aws
        return
    session = operations_session(api_aws, settings.operations_role_arn)
    async with AssumedRoleClients(settings, session) as clients:
        yield clients
