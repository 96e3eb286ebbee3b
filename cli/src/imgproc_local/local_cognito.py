"""Cognito sign-in on one machine: `imgproc up --auth cognito` and `imgproc users add`.

`up --auth cognito` makes a user pool in the embedded endpoint (moto's Cognito), named as the
stack names its pool on AWS, with a web app client for SRP sign-in (as `infra/` configures it)
and the `operators` group, and gives the status API the settings that make it verify that
pool's tokens and tell the web client where to sign in. moto has no hosted UI, which the web
client does not use anyway: it signs in with SRP against the user pool API. moto does not check
the SRP proof (any password signs in a user who exists); the proof's math is tested against a
verifier of our own (tests/browser/test_cognito_sign_in.py).

The pool lives in the endpoint's memory: users are added again after each `up`.
`imgproc users add NAME [--password P] [--operator]` adds one; against a deployed stack
(`imgproc --stack NAME users add ...`, with AWS credentials allowed to administer the pool) it
does the same with the stack's pool.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from imgproc_local.local_stack import target_settings
from imgproc_shared.aws import AwsClients
from imgproc_shared.settings import Settings

OPERATORS_GROUP = "operators"  # as infra/ names it and the status API reads it
# What a browser calls without AWS credentials, as on AWS. moto lists InitiateAuth as public
# but not the rest of the sign-in, so the embedded endpoint's IAM check would refuse them.
PUBLIC_SIGN_IN_OPERATIONS = frozenset(
    {
        "AWSCognitoIdentityProviderService.InitiateAuth",
        "AWSCognitoIdentityProviderService.RespondToAuthChallenge",
        "AWSCognitoIdentityProviderService.GlobalSignOut",
        "AWSCognitoIdentityProviderService.RevokeToken",
    }
)


def pool_name(settings: Settings) -> str:
    return f"{settings.resource_prefix}-users"


@dataclass(frozen=True)
class LocalUserPool:
    user_pool_id: str
    client_id: str
    endpoint_url: str
    region: str

    @property
    def issuer(self) -> str:
        # moto names its tokens' issuer as AWS does; its keys are served by the endpoint itself.
        return f"https://cognito-idp.{self.region}.amazonaws.com/{self.user_pool_id}"

    def api_environment(self) -> dict[str, str]:
        """The status API's settings for this pool (see its config.py)."""
        endpoint = self.endpoint_url.rstrip("/")
        return {
            "IMGPROC_COGNITO_ISSUER": self.issuer,
            "IMGPROC_COGNITO_AUDIENCE": self.client_id,
            "IMGPROC_COGNITO_JWKS_URL": f"{endpoint}/{self.user_pool_id}/.well-known/jwks.json",
            "IMGPROC_COGNITO_ENDPOINT": f"{endpoint}/",
        }


def allow_public_sign_in() -> None:
    """Let the browser's sign-in through the embedded endpoint's IAM check (in this process,
    where the endpoint runs), as AWS does: the user pool's public operations, and the CORS
    preflight before them (the page's origin is not the endpoint's; a preflight never carries
    credentials, and moto's server answers it with CORS headers when it is not refused)."""
    from moto.core.authorization import ActionAuthenticatorMixin

    check = ActionAuthenticatorMixin._authenticate_and_authorize_action
    if getattr(check, "allows_public_sign_in", False):
        return

    def check_unless_public(self: Any, iam_request_cls: type, resource: str = "*") -> None:
        if getattr(self, "method", None) == "OPTIONS":
            return
        if self.headers.get("X-Amz-Target") in PUBLIC_SIGN_IN_OPERATIONS:
            return
        check(self, iam_request_cls, resource)

    check_unless_public.allows_public_sign_in = True  # type: ignore[attr-defined]
    ActionAuthenticatorMixin._authenticate_and_authorize_action = (  # type: ignore[method-assign]
        check_unless_public
    )


async def create_user_pool(settings: Settings) -> LocalUserPool:
    """A user pool, its web app client and the operators' group in the embedded endpoint."""
    assert settings.endpoint_url, "a local user pool needs the embedded endpoint"
    async with AwsClients(settings) as aws:
        cognito = await aws.client("cognito-idp")
        pool = await cognito.create_user_pool(
            PoolName=pool_name(settings),
            AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
        )
        pool_id = pool["UserPool"]["Id"]
        client = await cognito.create_user_pool_client(
            UserPoolId=pool_id,
            ClientName=f"{settings.resource_prefix}-web",
            GenerateSecret=False,
            ExplicitAuthFlows=["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
            PreventUserExistenceErrors="ENABLED",
        )
        await cognito.create_group(GroupName=OPERATORS_GROUP, UserPoolId=pool_id)
    return LocalUserPool(
        user_pool_id=pool_id,
        client_id=client["UserPoolClient"]["ClientId"],
        endpoint_url=settings.endpoint_url,
        region=settings.region,
    )


def set_up(settings: Settings) -> dict[str, str]:
    """For `imgproc up --auth cognito`: the pool, and the status API's environment for it."""
    allow_public_sign_in()
    pool = asyncio.run(create_user_pool(settings))
    print(
        f"Cognito sign-in: user pool {pool.user_pool_id} in the embedded endpoint "
        "(users last until this stack stops).\n"
        "  add a user:      .venv/bin/imgproc users add NAME [--password P]\n"
        "  add an operator: .venv/bin/imgproc users add NAME --operator",
        flush=True,
    )
    return pool.api_environment()


async def _find_pool_id(cognito: Any, name: str) -> str:
    paginator = cognito.get_paginator("list_user_pools")
    async for page in paginator.paginate(MaxResults=60):
        for pool in page["UserPools"]:
            if pool["Name"] == name:
                return str(pool["Id"])
    raise LookupError(f"no user pool named {name} (is the stack up with --auth cognito?)")


async def add_user(settings: Settings, username: str, password: str, *, operator: bool) -> str:
    """A user who can sign in with `password` at once (no temporary password); returns their
    id (`sub`), the owner id of their albums."""
    async with AwsClients(settings) as aws:
        cognito = await aws.client("cognito-idp")
        pool_id = await _find_pool_id(cognito, pool_name(settings))
        created = await cognito.admin_create_user(
            UserPoolId=pool_id, Username=username, MessageAction="SUPPRESS"
        )
        await cognito.admin_set_user_password(
            UserPoolId=pool_id, Username=username, Password=password, Permanent=True
        )
        if operator:
            await cognito.admin_add_user_to_group(
                UserPoolId=pool_id, Username=username, GroupName=OPERATORS_GROUP
            )
    attributes = {a["Name"]: a["Value"] for a in created["User"].get("Attributes", [])}
    return str(attributes.get("sub", username))


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("users", help="add users to the stack's Cognito user pool")
    actions = parser.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user who can sign in with a password")
    add.add_argument("name", help="the username (what the user types to sign in)")
    add.add_argument("--password", help="their password (asked for when not given)")
    add.add_argument("--operator", action="store_true", help="also in the operators group")
    add.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    password = args.password or getpass.getpass(f"password for {args.name}: ")
    try:
        user_id = asyncio.run(
            add_user(target_settings(settings), args.name, password, operator=args.operator)
        )
    except LookupError as exc:
        print(f"imgproc: {exc}", file=sys.stderr)
        return 1
    except ClientError as exc:  # an existing name, a password the pool's policy refuses...
        error = exc.response["Error"]
        print(f"imgproc: {error.get('Code')}: {error.get('Message')}", file=sys.stderr)
        return 1
    role = "operator" if args.operator else "user"
    print(f"added {role} {args.name} (id {user_id})")
    return 0
