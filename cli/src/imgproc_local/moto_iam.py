"""The embedded endpoint checks each request against its caller's IAM policy, the way AWS does.

moto 5.2.5 can enforce IAM (`INITIAL_NO_AUTH_ACTION_COUNT`), but not as AWS evaluates it
(docs/FACTS.md, "moto 5.2.5"): it checked every DynamoDB, SNS and Step Functions request
against the resource `*`, so a policy naming a table, topic or state machine never matched and
everything was denied; it treated every `Condition` as false (an explicit deny); it crashed on
S3 presigned URLs (query-string auth, no `Authorization` header); it listed every IAM user and
re-parsed every policy on each request; and its denials named no resource. This module replaces
moto's check (`ActionAuthenticatorMixin._authenticate_and_authorize_action`) with one that:

- resolves each request to the actions and resources AWS evaluates (`_checks`): DynamoDB
  tables and indexes (every table of a batch; each item's own action in a transaction), SNS
  topics, SQS queues by URL or name (moto missed `GetQueueUrl`), a `*Batch` call as its single
  action, Step Functions state machines and executions (a task token: the state machine of the
  execution that issued it), S3 buckets and objects (every key of a DeleteObjects, the source of
  a CopyObject); and, as AWS, a GET/HEAD of a missing object is a 403 without `s3:ListBucket`;
- evaluates `StringEquals`/`StringLike`/`ArnLike` conditions (and their `Not`/`IfExists`
  forms) on the keys a request carries (`s3:prefix`, `s3:delimiter`); a policy with any other
  condition is refused when it is installed, and denied loudly if it arrives another way;
- authenticates presigned S3 URLs (SigV4 query auth: signature and expiry) and browser POST
  uploads (signature checked by `s3_post_policy`), then authorizes them as their signer;
- answers a denial as the service does: `AccessDeniedException` (JSON protocols), SNS's
  `AuthorizationError`, S3's `AccessDenied`, each naming the caller, the action and the resource;
- caches each access key's parsed policy, re-checked against the user's current policies on use;
- authenticates temporary credentials from `sts:AssumeRole` (an `ASIA...` key with its
  `X-Amz-Security-Token`, until it expires) as the role, checked against the role's policies;
  and `sts:AssumeRole` itself needs the caller's policy to allow it on the role AND the role's
  trust policy to name the caller (moto checked neither).

The state machines' own service-task calls run as the workflow identity (`set_workflow_identity`)
like a state machine's role on AWS: the interpreter's HTTP clients sign with its key, and its
in-process clients (moto_speedups) mark their calls with `as_workflow`.

Enforcement is process-wide (`set_enforcement`). The administrator (`ensure_admin`) holds the
dummy key pair `testing`/`testing` that the CLI and tests use.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import re
import sys
import threading
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlparse

EMBEDDED_ACCOUNT = "123456789012"  # moto's default account (embedded_aws.EMBEDDED_ACCOUNT)
ADMIN_USER = "imgproc-admin"
ADMIN_ACCESS_KEY = "testing"
ADMIN_SECRET = "testing"
IDENTITY_PREFIX = "imgproc-"
POLICY_NAME = "imgproc"
_PARTITION = "aws"
_ADMIN_POLICY: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [{"Sid": "Administrator", "Effect": "Allow", "Action": "*", "Resource": "*"}],
}

log = logging.getLogger(__name__)


# --- enforcement switch ---------------------------------------------------------------------


def set_enforcement(enabled: bool) -> None:
    """Check every request from now on (True), or none (False); for the whole process."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    settings.INITIAL_NO_AUTH_ACTION_COUNT = 0 if enabled else float("inf")
    ActionAuthenticatorMixin.request_count = 0


def enforcement_enabled() -> bool:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    return bool(ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT)


# --- policies -------------------------------------------------------------------------------


class UnsupportedCondition(ValueError):
    """A policy condition this endpoint cannot evaluate: refused, never silently allowed."""


# Condition keys a request carries here, and the operators evaluated on them.
SUPPORTED_CONDITION_KEYS = frozenset({"s3:prefix", "s3:delimiter"})
_OPERATORS = {
    "StringEquals": (False, False, False),  # (like, negated, ignore case)
    "StringNotEquals": (False, True, False),
    "StringEqualsIgnoreCase": (False, False, True),
    "StringNotEqualsIgnoreCase": (False, True, True),
    "StringLike": (True, False, False),
    "StringNotLike": (True, True, False),
    "ArnEquals": (False, False, False),
    "ArnNotEquals": (False, True, False),
    "ArnLike": (True, False, False),
    "ArnNotLike": (True, True, False),
}


def _wildcard(pattern: str, *, ignore_case: bool = False) -> re.Pattern[str]:
    """IAM's glob: `*` any run of characters, `?` one character, the rest literal."""
    body = "".join(
        ".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern
    )
    return re.compile(f"^{body}$", re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def _as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@dataclass(frozen=True)
class _Condition:
    key: str
    patterns: tuple[re.Pattern[str], ...]
    negated: bool
    if_exists: bool

    def holds(self, context: Mapping[str, str]) -> bool:
        value = context.get(self.key)
        if value is None:  # AWS: a positive operator fails, a negated one holds
            return self.if_exists or self.negated
        matched = any(pattern.match(value) for pattern in self.patterns)
        return matched != self.negated


def _conditions(block: Any) -> tuple[_Condition, ...]:
    if not block:
        return ()
    if not isinstance(block, dict):
        raise UnsupportedCondition(f"a Condition must be an object, not {block!r}")
    compiled = []
    for operator, tests in block.items():
        base = operator.removesuffix("IfExists")
        if base not in _OPERATORS or not isinstance(tests, dict):
            raise UnsupportedCondition(
                f"condition operator {operator!r} is not evaluated by the embedded endpoint "
                f"(supported: {', '.join(sorted(_OPERATORS))}, optionally ...IfExists)"
            )
        like, negated, ignore_case = _OPERATORS[base]
        for key, values in tests.items():
            if key.lower() not in SUPPORTED_CONDITION_KEYS:
                raise UnsupportedCondition(
                    f"condition key {key!r} is not known to the embedded endpoint "
                    f"(supported: {', '.join(sorted(SUPPORTED_CONDITION_KEYS))})"
                )
            patterns = tuple(
                _wildcard(v, ignore_case=ignore_case)
                if like
                else re.compile(f"^{re.escape(v)}$", re.IGNORECASE if ignore_case else 0)
                for v in _as_list(values)
            )
            compiled.append(
                _Condition(key.lower(), patterns, negated, operator.endswith("IfExists"))
            )
    return tuple(compiled)


@dataclass(frozen=True)
class _Rule:
    """One policy statement, compiled."""

    allow: bool
    actions: tuple[re.Pattern[str], ...]
    not_action: bool
    resources: tuple[re.Pattern[str], ...]
    not_resource: bool
    conditions: tuple[_Condition, ...]

    def concerns(self, action: str) -> bool:
        return any(p.match(action) for p in self.actions) != self.not_action

    def applies(self, action: str, resource: str, context: Mapping[str, str]) -> bool:
        return (
            self.concerns(action)
            and any(p.match(resource) for p in self.resources) != self.not_resource
            and all(condition.holds(context) for condition in self.conditions)
        )


def compile_policy(document: Mapping[str, Any] | str) -> tuple[_Rule, ...]:
    """A policy document's statements, ready to evaluate; UnsupportedCondition if it has a
    condition this endpoint cannot evaluate."""
    parsed = json.loads(document) if isinstance(document, str) else document
    statements = parsed.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    rules = []
    for statement in statements:
        not_action = "NotAction" in statement
        not_resource = "NotResource" in statement
        rules.append(
            _Rule(
                allow=statement.get("Effect") == "Allow",
                actions=tuple(
                    _wildcard(a, ignore_case=True)
                    for a in _as_list(statement["NotAction" if not_action else "Action"])
                ),
                not_action=not_action,
                resources=tuple(
                    _wildcard(r)
                    for r in _as_list(
                        statement.get("NotResource" if not_resource else "Resource", "*")
                    )
                ),
                not_resource=not_resource,
                conditions=_conditions(statement.get("Condition")),
            )
        )
    return tuple(rules)


# --- identities -----------------------------------------------------------------------------


@dataclass
class _Identity:
    user_name: str
    arn: str
    access_key_id: str
    secret: str
    rules: tuple[_Rule, ...]
    problem: str | None  # why its policy cannot be evaluated (then every request is denied)
    user: Any  # moto's User (or Role): the cache entry holds while it is the same, same policies
    policies: dict[str, str]
    attached: tuple[str, ...]
    everywhere: dict[str, bool] = field(default_factory=dict)  # action -> allowed on any resource
    # Temporary credentials of an assumed role: their session token and expiry.
    session_token: str | None = None
    expires: dt.datetime | None = None

    def still_current(self, backend: Any) -> bool:
        if self.session_token is not None:
            role = backend.roles.get(self.user.id)
            return (
                role is self.user
                and role.policies == self.policies
                and tuple(role.managed_policies) == self.attached
                and self.expires is not None
                and dt.datetime.now(dt.UTC) < self.expires
            )
        user = backend.users.get(self.user_name)
        return (
            user is self.user
            and user.policies == self.policies
            and tuple(user.managed_policies) == self.attached
            and any(
                key.access_key_id == self.access_key_id and key.status == "Active"
                for key in user.access_keys
            )
        )

    def allowed_everywhere(self, action: str) -> bool:
        """Allowed by a statement on every resource with no condition, and never denied: no
        need to work out the request's resources."""
        known = self.everywhere.get(action)
        if known is None:
            known = self.problem is None and not any(
                not rule.allow and rule.concerns(action) for rule in self.rules
            )
            known = known and any(
                rule.allow
                and rule.concerns(action)
                and not rule.not_resource
                and not rule.conditions
                and any(p.pattern == "^.*$" for p in rule.resources)
                for rule in self.rules
            )
            self.everywhere[action] = known
        return known

    def permits(self, action: str, resource: str, context: Mapping[str, str]) -> bool:
        allowed = False
        for rule in self.rules:
            if rule.applies(action, resource, context):
                if not rule.allow:
                    return False
                allowed = True
        return allowed

    def permits_somewhere(self, action: str) -> bool:
        return any(rule.allow and rule.concerns(action) for rule in self.rules)


_identities: dict[tuple[str, str], _Identity] = {}
_identities_lock = threading.Lock()
# The workflow's key; None: the state machines' calls run as the administrator.
_workflow_key: list[tuple[str, str] | None] = [None]
_acting_as_workflow = threading.local()


def _iam_backend(account_id: str) -> Any:
    from moto.iam.models import iam_backends

    return iam_backends[account_id][_PARTITION]


def _user_policies(backend: Any, user: Any) -> list[str]:
    documents = list(user.policies.values())
    for arn in user.managed_policies:
        policy = backend.managed_policies.get(arn) or user.managed_policies[arn]
        documents += [v.document for v in policy.versions if v.is_default]
    return documents


def _identity_for(
    account_id: str, access_key_id: str, session_token: str | None = None
) -> _Identity | None:
    """The identity of an access key: an IAM user's, or an assumed role's temporary key (its
    session token must match, as AWS requires)."""
    cache_key = (account_id, access_key_id)
    backend = _iam_backend(account_id)
    cached = _identities.get(cache_key)
    if cached is not None and cached.still_current(backend):
        if cached.session_token is not None and cached.session_token != session_token:
            return None
        return cached
    if access_key_id.startswith("ASIA"):
        return _assumed_role_identity(backend, account_id, access_key_id, session_token)
    for user in list(backend.users.values()):
        for key in user.access_keys:
            if key.access_key_id == access_key_id and key.status == "Active":
                identity = _compile_identity(backend, user, key)
                with _identities_lock:
                    _identities[cache_key] = identity
                return identity
    return None


def _compile_identity(backend: Any, user: Any, key: Any) -> _Identity:
    rules: list[_Rule] = []
    problem = None
    for document in _user_policies(backend, user):
        try:
            rules += compile_policy(document)
        except UnsupportedCondition as error:
            problem = f"the policy of {user.arn} cannot be evaluated here: {error}"
            log.error(problem)
    return _Identity(
        user_name=user.name,
        arn=user.arn,
        access_key_id=key.access_key_id,
        secret=key.secret_access_key,
        rules=tuple(rules),
        problem=problem,
        user=user,
        policies=dict(user.policies),
        attached=tuple(user.managed_policies),
    )


def _assumed_role_identity(
    backend: Any, account_id: str, access_key_id: str, session_token: str | None
) -> _Identity | None:
    """The role behind temporary credentials (moto's STS records each AssumeRole), checked
    against the role's current policies; None: unknown, wrong token, expired or role gone."""
    from moto.sts.models import sts_backends

    assumed = sts_backends[account_id][_PARTITION].get_assumed_role_from_access_key(access_key_id)
    if assumed is None or session_token is None:
        return None
    if not hmac.compare_digest(str(assumed.session_token), session_token):
        return None
    expires = assumed.expiration.replace(tzinfo=dt.UTC)
    if dt.datetime.now(dt.UTC) >= expires:
        return None
    role = next((r for r in list(backend.roles.values()) if r.arn == assumed.role_arn), None)
    if role is None:
        return None
    rules: list[_Rule] = []
    problem = None
    documents = list(role.policies.values())
    for policy in role.managed_policies.values():
        documents += [v.document for v in policy.versions if v.is_default]
    for document in documents:
        try:
            rules += compile_policy(document)
        except UnsupportedCondition as error:
            problem = f"the policy of {role.arn} cannot be evaluated here: {error}"
            log.error(problem)
    identity = _Identity(
        user_name=role.name,
        arn=str(assumed.arn),
        access_key_id=access_key_id,
        secret=str(assumed.secret_access_key),
        rules=tuple(rules),
        problem=problem,
        user=role,
        policies=dict(role.policies),
        attached=tuple(role.managed_policies),
        session_token=session_token,
        expires=expires,
    )
    with _identities_lock:
        _identities[(account_id, access_key_id)] = identity
    return identity


def secret_for(access_key_id: str, account_id: str = EMBEDDED_ACCOUNT) -> str | None:
    """The secret of an active IAM access key of the embedded endpoint (None: no such key)."""
    identity = _identity_for(account_id, access_key_id)
    return identity.secret if identity else None


def _put_user(account_id: str, user_name: str, document: Mapping[str, Any]) -> tuple[Any, Any]:
    from moto.iam.exceptions import NoSuchEntity

    compile_policy(document)  # an unsupported condition fails here, before anything changes
    backend = _iam_backend(account_id)
    try:
        user = backend.get_user(user_name)
    except NoSuchEntity:
        user = backend.create_user(region_name="us-east-1", user_name=user_name)
    if document.get("Statement"):
        backend.put_user_policy(user_name, POLICY_NAME, json.dumps(document))
    for name in [n for n in user.policies if n != POLICY_NAME or not document.get("Statement")]:
        backend.delete_user_policy(user_name, name)
    key = next((k for k in user.access_keys if k.status == "Active"), None)
    return backend, (user, key)


def ensure_admin(account_id: str = EMBEDDED_ACCOUNT) -> None:
    """The administrator: every action on every resource, with the dummy key pair
    `testing`/`testing`. Idempotent; touches moto's IAM backend in process."""
    backend, (user, key) = _put_user(account_id, ADMIN_USER, _ADMIN_POLICY)
    if key is None or key.access_key_id != ADMIN_ACCESS_KEY:
        key = user.create_access_key(prefix="AKIA")
        key.access_key_id = ADMIN_ACCESS_KEY
        key.secret_access_key = ADMIN_SECRET
        backend.access_keys[ADMIN_ACCESS_KEY] = key
    _forget(account_id)


def put_identity(
    name: str, policy_document: dict[str, Any], account_id: str = EMBEDDED_ACCOUNT
) -> tuple[str, str]:
    """The IAM user `imgproc-<name>` with exactly this inline policy and one access key:
    (access key id, secret). Again with another policy: the policy is replaced, the key kept."""
    backend, (user, key) = _put_user(account_id, f"{IDENTITY_PREFIX}{name}", policy_document)
    if key is None:
        key = backend.create_access_key(user.name)
    _forget(account_id)
    return str(key.access_key_id), str(key.secret_access_key)


def user_arn(name: str, account_id: str = EMBEDDED_ACCOUNT) -> str:
    """The ARN of `put_identity(name, ...)`'s user."""
    return f"arn:{_PARTITION}:iam::{account_id}:user/{IDENTITY_PREFIX}{name}"


def put_role(
    role_name: str,
    policy_document: dict[str, Any],
    trust_document: dict[str, Any],
    account_id: str = EMBEDDED_ACCOUNT,
) -> str:
    """The role `role_name` with exactly this inline policy and trust policy; its ARN. Again:
    both are replaced (sessions already issued are checked against the new policy)."""
    compile_policy(policy_document)
    backend = _iam_backend(account_id)
    trust = json.dumps(trust_document)
    role = next((r for r in list(backend.roles.values()) if r.name == role_name), None)
    if role is not None:
        backend.update_assume_role_policy(role_name, trust)
    else:
        role = backend.create_role(
            role_name=role_name,
            assume_role_policy_document=trust,
            path="/",
            permissions_boundary=None,
            description="",
            tags=[],
            max_session_duration="3600",
        )
    if policy_document.get("Statement"):
        backend.put_role_policy(role_name, POLICY_NAME, json.dumps(policy_document))
    for name in [
        n for n in role.policies if n != POLICY_NAME or not policy_document.get("Statement")
    ]:
        backend.delete_role_policy(role_name, name)
    _forget(account_id)
    return str(role.arn)


def _forget(account_id: str) -> None:
    with _identities_lock:
        for cache_key in [k for k in _identities if k[0] == account_id]:
            del _identities[cache_key]


def set_workflow_identity(access_key_id: str, secret: str) -> None:
    """The state machines' service-task calls are made, and authorized, as this key."""
    _workflow_key[0] = (access_key_id, secret)


def workflow_identity() -> tuple[str, str] | None:
    """The key set by `set_workflow_identity` (None: the workflow runs as the administrator)."""
    return _workflow_key[0]


def workflow_credentials() -> tuple[str, str]:
    return _workflow_key[0] or (ADMIN_ACCESS_KEY, ADMIN_SECRET)


@contextlib.contextmanager
def as_workflow() -> Iterator[None]:
    """Calls this thread makes inside are the state machines' own (in-process, unsigned)."""
    previous = getattr(_acting_as_workflow, "on", False)
    _acting_as_workflow.on = True
    try:
        yield
    finally:
        _acting_as_workflow.on = previous


# --- what a request touches -----------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One (action, resource) the request needs, with the condition keys it carries."""

    action: str
    resource: str
    context: Mapping[str, str] = field(default_factory=dict)


_IAM_SERVICE = {"stepfunctions": "states"}


def _service_of(handler: Any) -> str:
    module = type(handler).__module__.split(".")
    return _IAM_SERVICE.get(module[1], module[1]) if len(module) > 1 else "unknown"


def _json_body(handler: Any) -> dict[str, Any]:
    body = handler.body if isinstance(handler.body, str | bytes) else handler.raw_body
    try:
        parsed = json.loads(body or "{}")
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _table_arn(region: str, account: str, name: str) -> str:
    if name.startswith("arn:"):
        return name
    return f"arn:{_PARTITION}:dynamodb:{region}:{account}:table/{name}"


_TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}


def _dynamodb_checks(handler: Any, action: str, account: str) -> list[Check]:
    """AWS checks the table (or `<table>/index/<name>`), every table of a batch, and each
    item's own action (PutItem, UpdateItem...) for a transaction (there is no
    `dynamodb:TransactWriteItems` permission)."""
    body = _json_body(handler)
    region = handler.region
    if action in ("TransactWriteItems", "TransactGetItems"):
        checks = []
        for item in body.get("TransactItems", []):
            for kind, request in item.items():
                if kind in _TRANSACT_ACTIONS and isinstance(request, dict):
                    table = _table_arn(region, account, str(request.get("TableName", "")))
                    checks.append(Check(f"dynamodb:{_TRANSACT_ACTIONS[kind]}", table))
        return checks
    if action in ("BatchGetItem", "BatchWriteItem"):
        return [
            Check(f"dynamodb:{action}", _table_arn(region, account, name))
            for name in body.get("RequestItems", {})
        ]
    name = body.get("TableName") or body.get("TableArn") or body.get("ResourceArn")
    if not name:
        return [Check(f"dynamodb:{action}", "*")]
    table = _table_arn(region, account, str(name))
    if body.get("IndexName"):
        table = f"{table}/index/{body['IndexName']}"
    return [Check(f"dynamodb:{action}", table)]


def _sns_checks(handler: Any, action: str, account: str) -> list[Check]:
    topic = handler._get_param("TopicArn") or handler._get_param("TargetArn")
    if not topic and action == "CreateTopic" and handler._get_param("Name"):
        topic = f"arn:{_PARTITION}:sns:{handler.region}:{account}:{handler._get_param('Name')}"
    if not topic and handler._get_param("SubscriptionArn"):
        topic = str(handler._get_param("SubscriptionArn")).rsplit(":", 1)[0]
    return [Check(f"sns:{action}", str(topic) if topic else "*")]


def _token_state_machine(handler: Any, token: str) -> str | None:
    """The state machine of the execution that issued `token` (None: no live execution)."""
    speedups = sys.modules.get("imgproc_local.moto_speedups")
    owner = getattr(speedups, "_token_owner", {}).get(token) if speedups else None
    if owner is not None:
        return str(owner.state_machine_arn)
    backend = getattr(handler, "stepfunction_backend", None)
    for machine in list(getattr(backend, "state_machines", [])):
        for execution in list(machine.executions):
            worker = getattr(execution, "exec_worker", None)
            env = getattr(worker, "env", None)
            if env is not None and env.callback_pool_manager.get(token) is not None:
                return str(execution.state_machine_arn)
    return None


def _states_checks(handler: Any, action: str, account: str) -> list[Check]:
    body = _json_body(handler)
    resource = body.get("stateMachineArn") or body.get("executionArn") or body.get("resourceArn")
    if not resource and action == "CreateStateMachine" and body.get("name"):
        resource = f"arn:{_PARTITION}:states:{handler.region}:{account}:stateMachine:{body['name']}"
    if not resource and "taskToken" in body:
        resource = _token_state_machine(handler, str(body["taskToken"]))
        if resource is None:
            # No live execution issued it: AWS answers InvalidToken/TaskTimedOut to a caller
            # that may answer tokens at all; only the action is checked.
            return [Check(f"states:{action}", "")]
    return [Check(f"states:{action}", str(resource) if resource else "*")]


def _s3_checks(handler: Any, resource: str) -> list[Check]:
    action = _iam_action("s3", str(handler.data.get("Action")))
    bucket = resource.split(":::", 1)[-1].split("/", 1)[0]
    if action == "s3:ListBucket":
        context = {
            key: str(handler.querystring[key][0])
            for key in ("prefix", "delimiter")
            if handler.querystring.get(key)
        }
        return [Check(action, resource, {f"s3:{k}": v for k, v in context.items()})]
    if action == "s3:DeleteObject" and "/" not in resource.split(":::", 1)[-1]:
        # DeleteObjects: s3:DeleteObject on every key it names.
        body = handler.body if isinstance(handler.body, bytes) else str(handler.body).encode()
        keys = [
            element.text or ""
            for element in ElementTree.fromstring(body).iter()
            if element.tag.rsplit("}", 1)[-1] == "Key"
        ]
        return [Check(action, f"arn:{_PARTITION}:s3:::{bucket}/{key}") for key in keys]
    if action == "s3:PutObject" and "/" not in resource.split(":::", 1)[-1]:
        # A browser POST upload: the key is a form field.
        key = handler.querystring.get("key", [""])[0]
        return [Check(action, f"{resource}/{key}")]
    checks = [Check(action, resource)]
    source = handler.headers.get("x-amz-copy-source")
    if action == "s3:PutObject" and source:
        path = unquote(source.split("?", 1)[0]).lstrip("/")
        checks.append(Check("s3:GetObject", f"arn:{_PARTITION}:s3:::{path}"))
    return checks


# API operations that IAM authorizes as another action (there is no `sqs:SendMessageBatch`).
_IAM_ACTIONS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sns:PublishBatch": "sns:Publish",
    "s3:HeadBucket": "s3:ListBucket",
}


def _iam_action(service: str, operation: str) -> str:
    action = f"{service}:{operation}"
    return _IAM_ACTIONS.get(action, action)


def _sqs_checks(handler: Any, action: str, account: str) -> list[Check]:
    """The queue named by `QueueUrl` or `QueueName`: moto resolved only an existing queue's
    URL, so `GetQueueUrl` and `CreateQueue` were checked against `*`."""
    named = handler._get_param("QueueUrl") or handler._get_param("QueueName")
    if not named:
        return [Check(f"sqs:{action}", "*")]
    name = str(named).rstrip("/").rsplit("/", 1)[-1]
    return [Check(f"sqs:{action}", f"arn:{_PARTITION}:sqs:{handler.region}:{account}:{name}")]


def _role_trusts(role_arn: str, account: str, caller_arn: str) -> bool:
    """Whether the role's trust policy lets `caller_arn` assume it: an Allow of
    sts:AssumeRole naming the caller (or the account, which leaves it to the caller's policy)."""
    try:
        role = _iam_backend(account).get_role_by_arn(role_arn)
    except Exception:  # moto's NotFoundException: AWS answers AccessDenied for a missing role
        return False
    document = json.loads(role.assume_role_policy_document or "{}")
    statements = document.get("Statement", [])
    trusted = (caller_arn, f"arn:{_PARTITION}:iam::{account}:root", account)
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal", {})
        named = _as_list(principal.get("AWS")) if isinstance(principal, dict) else []
        if (
            statement.get("Effect") == "Allow"
            and "sts:AssumeRole" in _as_list(statement.get("Action"))
            and any(arn in trusted for arn in named)
        ):
            return True
    return False


def _checks(handler: Any, service: str, resource: str, account: str) -> list[Check]:
    if service == "s3":
        return _s3_checks(handler, resource)
    if service == "sts" and handler._get_action() == "AssumeRole":
        return [Check("sts:AssumeRole", str(handler._get_param("RoleArn") or "*"))]
    action = _iam_action(service, str(handler._get_action())).split(":", 1)[1]
    resolver: Callable[[Any, str, str], list[Check]] | None = {
        "sqs": _sqs_checks,
        "dynamodb": _dynamodb_checks,
        "sns": _sns_checks,
        "states": _states_checks,
    }.get(service)
    return resolver(handler, action, account) if resolver else [Check(f"{service}:{action}", "*")]


# --- authentication -------------------------------------------------------------------------


class _Refused(Exception):
    def __init__(self, kind: str, message: str = "") -> None:
        super().__init__(message)
        self.kind = kind  # "denied", "invalid_key", "signature", "expired"
        self.message = message


def _between(first: str, second: str, text: str) -> str:
    return text.partition(first)[2].partition(second)[0]


def _header_signature(handler: Any, secret: str, scope: list[str]) -> str:
    """What moto computes for a header-signed request (the same canonical request)."""
    from botocore.auth import S3SigV4Auth, SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    authorization = handler.headers["Authorization"]
    signed = _between("SignedHeaders=", ",", authorization).split(";")
    headers = {k: v for k, v in handler.headers.items() if k.lower() in signed}
    # The path as the client sent and signed it (REQUEST_URI, from `http_server`): `raw_path`
    # has been decoded once, so a key holding `%2F` would not match.
    environ = getattr(getattr(handler, "request", None), "environ", None) or {}
    sent_uri = environ.get("REQUEST_URI")
    path = str(sent_uri).split("?", 1)[0] if sent_uri else handler.raw_path
    query = urlparse(handler.uri).query
    if query:
        path += "?" + query
    request = AWSRequest(
        method=handler.method, url=path, data=handler.raw_body or handler.data, headers=headers
    )
    request.context["timestamp"] = headers.get("X-Amz-Date") or headers.get("x-amz-date")
    auth_class = S3SigV4Auth if scope[3] == "s3" else SigV4Auth
    auth = auth_class(Credentials(scope[0], secret), scope[3], scope[2])
    canonical = auth.canonical_request(request)
    return str(auth.signature(auth.string_to_sign(request, canonical), request))


@functools.lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _direct_signature(handler: Any, secret: str, scope: list[str], authorization: str) -> str:
    """SigV4 of a header-signed request, computed from the request as received."""
    signed = _between("SignedHeaders=", ",", authorization).split(";")
    headers = {k.lower(): " ".join(str(v).split()) for k, v in handler.headers.items()}
    query = parse_qsl(urlparse(handler.uri).query, keep_blank_values=True)
    body = handler.raw_body if isinstance(handler.raw_body, bytes) else b""
    payload = headers.get("x-amz-content-sha256") or hashlib.sha256(body).hexdigest()
    canonical = "\n".join(
        [
            handler.method,
            quote(unquote(handler.raw_path), safe="/~") or "/",
            "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(query)),
            "".join(f"{name}:{headers.get(name, '')}\n" for name in signed),
            ";".join(signed),
            payload,
        ]
    )
    _, date, region, service, _ = scope
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            headers.get("x-amz-date", ""),
            f"{date}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    return hmac.new(
        _signing_key(secret, date, region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()


def _presigned_refusal(handler: Any, secret: str, query: list[tuple[str, str]]) -> str | None:
    """Why a presigned (SigV4 query) request is not authentic: None when it is."""
    params = dict(query)
    if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256":
        return "signature"
    try:
        signed_at = dt.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(
            tzinfo=dt.UTC
        )
        expires = int(params.get("X-Amz-Expires", "604800"))
    except (KeyError, ValueError):
        return "signature"
    if dt.datetime.now(dt.UTC) > signed_at + dt.timedelta(seconds=expires):
        return "expired"
    signed_headers = params.get("X-Amz-SignedHeaders", "host").split(";")
    canonical_query = "&".join(
        f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
        for k, v in sorted(query)
        if k != "X-Amz-Signature"
    )
    headers = {k.lower(): " ".join(str(v).split()) for k, v in handler.headers.items()}
    canonical_headers = "".join(f"{name}:{headers.get(name, '')}\n" for name in signed_headers)
    canonical = "\n".join(
        [
            handler.method,
            quote(unquote(handler.raw_path), safe="/~"),
            canonical_query,
            canonical_headers,
            ";".join(signed_headers),
            "UNSIGNED-PAYLOAD",
        ]
    )
    _, date, region, service, _ = params["X-Amz-Credential"].split("/")
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            params["X-Amz-Date"],
            f"{date}/{region}/{service}/aws4_request",
            hashlib.sha256(canonical.encode()).hexdigest(),
        ]
    )
    expected = hmac.new(
        _signing_key(secret, date, region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return None if hmac.compare_digest(expected, params.get("X-Amz-Signature", "")) else "signature"


def _authenticate(handler: Any, account: str) -> _Identity:
    """Who sent the request, its signature checked; _Refused otherwise."""
    if getattr(_acting_as_workflow, "on", False):
        key = workflow_credentials()[0]
        identity = _identity_for(account, key)
        if identity is None:
            raise _Refused("invalid_key", f"the workflow's access key {key} does not exist")
        return identity
    authorization = handler.headers.get("Authorization")
    if authorization:
        scope = _between("Credential=", ",", authorization).split("/")
        if len(scope) != 5:
            raise _Refused("signature")
        identity = _identity_for(account, scope[0], handler.headers.get("X-Amz-Security-Token"))
        if identity is None:
            raise _Refused("invalid_key")
        signature = _between("Signature=", ",", authorization)
        # The direct computation is about four times cheaper than botocore's; a request it
        # disagrees with (an unusual path or query encoding) gets botocore's before a refusal.
        if not hmac.compare_digest(
            signature, _direct_signature(handler, identity.secret, scope, authorization)
        ) and not hmac.compare_digest(
            signature, _header_signature(handler, identity.secret, scope)
        ):
            raise _Refused("signature")
        return identity
    query = parse_qsl(urlparse(handler.uri).query, keep_blank_values=True)
    credential = dict(query).get("X-Amz-Credential")
    if credential:
        token = dict(query).get("X-Amz-Security-Token")
        identity = _identity_for(account, credential.split("/", 1)[0], token)
        if identity is None:
            raise _Refused("invalid_key")
        refusal = _presigned_refusal(handler, identity.secret, query)
        if refusal is not None:
            raise _Refused(refusal, "Request has expired" if refusal == "expired" else "")
        return identity
    form = getattr(handler, "form_data", None) or {}
    form_credential = next((v for k, v in form.items() if k.lower() == "x-amz-credential"), None)
    if form_credential and handler.method == "POST":
        # A browser POST upload: its signature was checked with its policy (s3_post_policy).
        identity = _identity_for(account, str(form_credential).split("/", 1)[0])
        if identity is None:
            raise _Refused("invalid_key")
        return identity
    if "AWSAccessKeyId" in dict(query):
        raise _Refused("denied", "SigV2 presigned URLs are not accepted: sign with s3v4")
    raise _Refused("denied", "Anonymous requests are not accepted by this endpoint")


# --- the check itself -----------------------------------------------------------------------


def _denial_message(identity: _Identity, check: Check) -> str:
    if identity.problem:
        return f"User: {identity.arn} is not authorized: {identity.problem}"
    where = check.resource or "(the execution that issued the task token)"
    return (
        f"User: {identity.arn} is not authorized to perform: {check.action} on resource: "
        f"{where} because no identity-based policy allows the {check.action} action"
    )


def _refuse_missing_object_without_list(handler: Any, identity: _Identity, check: Check) -> None:
    """AWS answers a GET/HEAD of a missing object with 403, not 404, to a caller without
    `s3:ListBucket` on the bucket (evaluated here with `s3:prefix` = the key): code that
    expects a 404 then needs that permission, locally as on AWS."""
    bucket, _, key = check.resource.split(":::", 1)[-1].partition("/")
    if handler.data.get("Action") != "GetObject" or not key:  # not a copy's source
        return
    bucket_arn = f"arn:{_PARTITION}:s3:::{bucket}"
    if identity.permits("s3:ListBucket", bucket_arn, {"s3:prefix": key}):
        return
    from moto.s3.exceptions import S3ClientError

    try:
        found = handler.backend.get_object(bucket, key)
    except S3ClientError:  # no such bucket
        found = None
    if found is None:
        raise _Refused(
            "denied",
            _denial_message(identity, Check("s3:ListBucket", bucket_arn))
            + " (AWS answers a missing object with 403 instead of 404 without it)",
        )


def authorize(handler: Any, resource: str = "*") -> None:
    """Authenticate the request and check each (action, resource) it needs; raise the
    service's own error otherwise."""
    service = _service_of(handler)
    if service == "s3" and handler.method == "OPTIONS":
        return  # a CORS preflight is never signed: AWS answers it from the bucket's CORS rules
    account = handler.current_account
    try:
        identity = _authenticate(handler, account)
        operation = handler.data.get("Action") if service == "s3" else handler._get_action()
        action = _iam_action(service, str(operation))
        if action == "sts:AssumeRole":
            role_arn = str(handler._get_param("RoleArn") or "")
            if not _role_trusts(role_arn, account, identity.arn):
                raise _Refused(
                    "denied",
                    f"User: {identity.arn} is not authorized to perform: sts:AssumeRole on "
                    f"resource: {role_arn} because the role's trust policy does not name it",
                )
        if action in ("sts:GetCallerIdentity",) or identity.allowed_everywhere(action):
            return
        for check in _checks(handler, service, resource, account):
            allowed = (
                identity.permits_somewhere(check.action)
                if check.resource == ""
                else identity.permits(check.action, check.resource, check.context)
            )
            if identity.problem or not allowed:
                raise _Refused("denied", _denial_message(identity, check))
            if check.action == "s3:GetObject":
                _refuse_missing_object_without_list(handler, identity, check)
    except _Refused as refused:
        if refused.kind == "denied":
            log.info("embedded IAM denied: %s", refused.message)
        raise _service_error(handler, service, refused) from None


def _service_error(handler: Any, service: str, refused: _Refused) -> Exception:
    from moto.core.exceptions import (
        InvalidClientTokenIdError,
        JsonRESTError,
        SignatureDoesNotMatchError,
        _RESTError,
    )
    from moto.s3.exceptions import (
        BucketAccessDeniedError,
        BucketInvalidAccessKeyIdError,
        BucketSignatureDoesNotMatchError,
    )

    if service == "s3":
        bucket = handler.data.get("BucketName") or ""
        if refused.kind == "invalid_key":
            return BucketInvalidAccessKeyIdError(bucket=bucket)
        if refused.kind == "signature":
            return BucketSignatureDoesNotMatchError(bucket=bucket)
        # A BucketAccessDeniedError: moto's DeleteObjects catches it and answers AccessDenied
        # for each key (all of them: AWS would still delete the keys that are allowed).
        denied = BucketAccessDeniedError(bucket=bucket)
        denied.message = refused.message or "Access Denied"
        return denied
    if handler.headers.get("X-Amz-Target"):  # JSON protocols: the codes their clients see
        query_compatible = service == "sqs"
        code = {
            "invalid_key": "InvalidClientTokenId"
            if query_compatible
            else "UnrecognizedClientException",
            "signature": "SignatureDoesNotMatch"
            if query_compatible
            else "InvalidSignatureException",
        }.get(refused.kind, "AccessDenied" if query_compatible else "AccessDeniedException")
        message = refused.message or {
            "invalid_key": "The security token included in the request is invalid.",
            "signature": "The request signature we calculated does not match the signature "
            "you provided.",
        }.get(refused.kind, "")
        return JsonRESTError(code, message)
    if refused.kind == "invalid_key":
        return InvalidClientTokenIdError()
    if refused.kind == "signature":
        return SignatureDoesNotMatchError()
    error: Any = _RESTError(
        "AuthorizationError" if service == "sns" else "AccessDenied", refused.message
    )
    error.code = 403  # the HTTP status (moto's class default is 400)
    assert isinstance(error, Exception)
    return error


def patch_authorization() -> None:
    """Replace moto's request check with `authorize` (while enforcement is on)."""
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin

    original = ActionAuthenticatorMixin._authenticate_and_authorize_action

    def authenticate_and_authorize_action(
        self: Any, iam_request_cls: type, resource: str = "*"
    ) -> None:
        if ActionAuthenticatorMixin.request_count < settings.INITIAL_NO_AUTH_ACTION_COUNT:
            original(self, iam_request_cls, resource)
            return
        if self.headers.get("X-Amz-Target") in ActionAuthenticatorMixin.PUBLIC_OPERATIONS:
            return
        authorize(self, resource)

    ActionAuthenticatorMixin._authenticate_and_authorize_action = (  # type: ignore[method-assign]
        authenticate_and_authorize_action
    )


def patch_workflow_clients() -> None:
    """The interpreter's HTTP clients sign with the workflow's key (moto's: a dummy "ak")."""
    import boto3
    from botocore.config import Config
    from moto.stepfunctions.parser.asl.utils import boto_client as boto_client_module

    original = boto_client_module.boto_client_for

    def boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        from moto.core.models import botocore_stubber
        from moto.settings import moto_server_port

        if botocore_stubber.enabled:  # inside mock_aws: moto's own client
            return original(region, service, state_credentials)
        key, secret = workflow_credentials()
        return boto3.client(  # type: ignore[call-overload]
            service_name=service,
            region_name=region,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            endpoint_url=f"http://localhost:{moto_server_port()}",
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                connect_timeout=60,
                read_timeout=60,
            ),
        )

    boto_client_module.boto_client_for = boto_client_for
    # Modules that imported the function by name keep their own reference: rebind those too.
    for module in list(sys.modules.values()):
        if getattr(module, "boto_client_for", None) is original:
            setattr(module, "boto_client_for", boto_client_for)  # noqa: B010
