"""Failures as values with names: each name maps to one behaviour in the workflow.

A task answered with one of these names is caught by the state machine:
- `ImageProc.CorruptImage` / `ImageProc.TooLarge` / `ImageProc.UnsupportedFormat`: the image is
  REJECTED (the file is at fault; retrying cannot help).
- `ImageProc.Transient`: retried with backoff by the workflow.
- anything else: the image is FAILED with the stage and the error. `ImageProc.AccessDenied` is
  one of these: a permission is missing, and retrying cannot grant it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import ClientError

CORRUPT_IMAGE = "ImageProc.CorruptImage"
TOO_LARGE = "ImageProc.TooLarge"
UNSUPPORTED_FORMAT = "ImageProc.UnsupportedFormat"
TRANSIENT = "ImageProc.Transient"
STAGE_FAILED = "ImageProc.StageFailed"
ACCESS_DENIED = "ImageProc.AccessDenied"

REJECTIONS = (CORRUPT_IMAGE, TOO_LARGE)

# A service exits with this when it cannot work until someone fixes its setup (a broken model
# file, say): restarting it would only loop, so the local supervisor leaves it stopped.
EXIT_UNRECOVERABLE = 3


class TaskError(Exception):
    """A task failed with a named error and a cause a person can read."""

    error: str = STAGE_FAILED

    def __init__(self, cause: str, *, error: str | None = None) -> None:
        super().__init__(cause)
        self.cause = cause
        if error is not None:
            self.error = error


class CorruptImage(TaskError):
    error = CORRUPT_IMAGE


class TooLarge(TaskError):
    error = TOO_LARGE


class TransientError(TaskError):
    error = TRANSIENT


# What AWS answers when a caller's policies do not allow a call: each service names it its own
# way (SNS: AuthorizationError; an S3 HEAD has no body, so only its status: "403").
DENIAL_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "AuthorizationError",
        "AuthorizationErrorException",
        "UnauthorizedOperation",
        "Forbidden",
        "403",
    }
)
# "User: arn:... is not authorized to perform: sqs:SendMessage on resource: arn:... because ..."
# (S3 quotes the resource; moto leaves the resource out).
_ACTION = re.compile(r"not authorized to perform:?\s*(?P<action>[\w-]+:[\w*-]+)", re.IGNORECASE)
_RESOURCE = re.compile(r"on resource:?\s*\"?(?P<resource>[^\s\"]+)", re.IGNORECASE)
# The key `note_request` files the request's service and resource under in an error response.
_REQUEST_NOTE = "ImgprocRequest"
# IAM's name for a service where it differs from botocore's, and for operations that IAM
# authorizes under another action.
_IAM_PREFIX = {"sfn": "states"}
_IAM_ACTION = {("s3", "HeadObject"): "GetObject", ("s3", "HeadBucket"): "ListBucket"}


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a botocore `ClientError` (None for anything else)."""
    if not isinstance(exc, ClientError):
        return None
    code = exc.response.get("Error", {}).get("Code")
    return str(code) if code is not None else None


@dataclass(frozen=True)
class Denial:
    """An AWS call refused for want of a permission: which action, on which resource."""

    action: str
    resource: str
    code: str
    message: str

    def cause(self, who: str) -> str:
        """The reason an image shows, e.g. "thumbnailer was denied s3:PutObject on arn:..."."""
        return f"{who} was denied {self.action} on {self.resource}"

    def log_fields(self) -> dict[str, str]:
        """What every log line of a denial carries, so each names the action and resource."""
        return {
            "error": ACCESS_DENIED,
            "action": self.action,
            "resource": self.resource,
            "code": self.code,
        }


def access_denial(exc: BaseException) -> Denial | None:
    """The denial a `ClientError` reports, or None when it is another error.

    The action and resource come from AWS's message; where it lacks them (S3, moto), from the
    request itself as `note_request` filed it: the operation as an IAM action, and the
    bucket/key, queue, topic, table or state machine it named."""
    code = error_code(exc)
    if code not in DENIAL_CODES or not isinstance(exc, ClientError):
        return None
    message = str(exc.response.get("Error", {}).get("Message") or "")
    noted = dict(exc.response).get(_REQUEST_NOTE)
    request: dict[str, Any] = noted if isinstance(noted, dict) else {}
    action_match, resource_match = _ACTION.search(message), _RESOURCE.search(message)
    if action_match:
        action = action_match["action"]
    else:
        service = str(request.get("service") or "")
        operation = exc.operation_name
        prefix = _IAM_PREFIX.get(service, service)
        action = (
            f"{prefix}:{_IAM_ACTION.get((service, operation), operation)}" if prefix else operation
        )
    if resource_match:
        resource = resource_match["resource"].rstrip(".,;")
    else:
        resource = str(request.get("resource") or "an unnamed resource")
    return Denial(action=action, resource=resource, code=code, message=message)


def note_request(client: Any) -> None:
    """Make every error response of `client` (an aiobotocore client) carry the service and the
    resource its request named, so that `access_denial` can name them when AWS does not."""
    client.meta.events.register("before-parameter-build", _keep_resource)
    client.meta.events.register("after-call", _note_on_error)


def _keep_resource(params: dict[str, Any], context: dict[str, Any], **kwargs: Any) -> None:
    # Every request passes here: keep what names the resource, work it out only on an error.
    context[_REQUEST_NOTE] = (str(kwargs.get("event_name", "")), params)


def _note_on_error(
    http_response: Any, parsed: dict[str, Any], context: dict[str, Any], **kwargs: Any
) -> None:
    if getattr(http_response, "status_code", 200) < 300 or _REQUEST_NOTE not in context:
        return
    event_name, params = context[_REQUEST_NOTE]
    service = event_name.split(".")[1:2]
    parsed[_REQUEST_NOTE] = {
        "service": service[0] if service else "",
        "resource": _resource_of(params, str(context.get("client_region") or "")),
    }


def _resource_of(params: dict[str, Any], region: str) -> str | None:
    """The ARN (or the name, where the ARN needs what the request lacks) of what a request is
    about."""
    if bucket := params.get("Bucket"):
        key = params.get("Key")
        return f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
    if url := params.get("QueueUrl"):
        parts = [p for p in urlsplit(str(url)).path.split("/") if p]
        if len(parts) >= 2:
            return f"arn:aws:sqs:{region}:{parts[-2]}:{parts[-1]}"
        return str(url)
    for name in ("TopicArn", "TargetArn", "stateMachineArn", "executionArn", "resourceArn"):
        if arn := params.get(name):
            return str(arn)
    if table := params.get("TableName"):
        return f"table/{table}"
    if queue := params.get("QueueName"):
        return f"queue {queue}"
    if "taskToken" in params:
        return "a task token"
    tables = set(params.get("RequestItems") or {})
    for item in params.get("TransactItems") or ():
        tables.update(str(op["TableName"]) for op in item.values() if "TableName" in op)
    if tables:
        return ", ".join(f"table/{t}" for t in sorted(tables))
    return None
