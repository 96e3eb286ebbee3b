"""The embedded S3 enforces presigned POST policies as AWS does.

moto 5.2.5 stores whatever a browser-style POST upload sends, whatever its policy says, so on
one machine a user could edit the `key` of an upload grant into another user's album, or send
any size or content type. As on AWS, a form upload now needs a policy that is unexpired, signed
(SigV4: `x-amz-signature` is the HMAC of the base64 policy under the key derived from the
secret, date, region and `s3`), whose every condition holds (`eq`/exact and `starts-with` on
fields, `content-length-range` on the file) and that covers every form field sent; otherwise
S3's XML error: 403 AccessDenied ("Invalid according to Policy: ..."), 403
SignatureDoesNotMatch or InvalidAccessKeyId, 400 EntityTooLarge/EntityTooSmall (what AWS
answers for a file outside `content-length-range`) or 400 InvalidPolicyDocument.

Its secret is looked up among the endpoint's IAM access keys (moto_iam), and the dummy pair
`testing`/`testing` (imgproc_shared.aws) always works; with IAM enforcement on, moto_iam then
authorizes `s3:PutObject` on the form's key for the signer.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from xml.sax.saxutils import escape

EMBEDDED_CREDENTIALS = {"testing": "testing"}
# Form fields that no condition needs to cover (AWS: the signature, the file, the policy itself
# and anything prefixed `x-ignore-`).
_UNCOVERED = {"policy", "x-amz-signature", "file"}


@dataclass(frozen=True)
class Refusal:
    status: int
    code: str
    message: str

    def response(self) -> tuple[int, dict[str, str], str]:
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f"<Error><Code>{self.code}</Code><Message>{escape(self.message)}</Message>"
            f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
        )
        return self.status, {"Content-Type": "application/xml"}, body


def _denied(message: str) -> Refusal:
    return Refusal(403, "AccessDenied", message)


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = f"AWS4{secret}".encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _secret_for(access_key: str) -> str | None:
    """The key's secret: an IAM access key of the endpoint (moto_iam), or the dummy pair."""
    from imgproc_local import moto_iam

    return moto_iam.secret_for(access_key) or EMBEDDED_CREDENTIALS.get(access_key)


def _parse_expiration(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _signature_refusal(fields: Mapping[str, str], policy_b64: str) -> Refusal | None:
    if fields.get("x-amz-algorithm") != "AWS4-HMAC-SHA256":
        return _denied("only AWS4-HMAC-SHA256 signed POST policies are accepted")
    parts = fields.get("x-amz-credential", "").split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        return Refusal(400, "InvalidArgument", "the x-amz-credential field is malformed")
    access_key, date, region, service, _ = parts
    secret = _secret_for(access_key)
    if secret is None:
        return Refusal(
            403,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        )
    expected = hmac.new(
        _signing_key(secret, date, region, service), policy_b64.encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, fields.get("x-amz-signature", "")):
        return Refusal(
            403,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        )
    return None


def _condition_refusal(
    condition: Any, fields: Mapping[str, str], size: int, covered: set[str]
) -> Refusal | None:
    """None when `condition` holds; fields it names are added to `covered`."""
    if isinstance(condition, dict) and len(condition) == 1:
        ((name, wanted),) = condition.items()
        operator, field = "eq", str(name).lower()
    elif isinstance(condition, list) and len(condition) == 3:
        operator = str(condition[0]).lower()
        if operator == "content-length-range":
            low, high = int(condition[1]), int(condition[2])
            if size > high:
                return Refusal(
                    400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
                )
            if size < low:
                return Refusal(
                    400, "EntityTooSmall", "Your proposed upload is smaller than the minimum size"
                )
            return None
        field, wanted = str(condition[1]).lower().removeprefix("$"), condition[2]
    else:
        return Refusal(400, "InvalidPolicyDocument", f"Invalid Policy: condition {condition!r}")
    covered.add(field)
    value = fields.get(field, "")
    holds = (
        value == wanted
        if operator == "eq"
        else (operator == "starts-with" and isinstance(wanted, str) and value.startswith(wanted))
    )
    if holds:
        return None
    shown = json.dumps([operator, f"${field}", wanted])
    return _denied(f"Invalid according to Policy: Policy Condition failed: {shown}")


def policy_refusal(
    form: Mapping[str, str], size: int, bucket: str, now: datetime | None = None
) -> Refusal | None:
    """Why S3 would refuse this POST upload (form fields, the file's size in bytes, the bucket
    it is sent to); None when it would store it."""
    fields = {name.lower(): value for name, value in form.items()}
    fields["bucket"] = bucket
    policy_b64 = fields.get("policy")
    if not policy_b64:
        # Without a policy the request is anonymous: only a bucket open to public writes takes
        # it, and ours never are.
        return _denied("Access Denied")
    try:
        policy = json.loads(base64.b64decode(policy_b64, validate=True))
    except (binascii.Error, ValueError):
        return Refusal(400, "InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
    if not isinstance(policy, dict) or not isinstance(policy.get("conditions"), list):
        return Refusal(400, "InvalidPolicyDocument", "Invalid Policy: no conditions")
    expiration = _parse_expiration(policy.get("expiration"))
    if expiration is None:
        return Refusal(400, "InvalidPolicyDocument", "Invalid Policy: Invalid 'expiration' value")
    if (now or datetime.now(UTC)) > expiration:
        return _denied("Invalid according to Policy: Policy expired.")
    refusal = _signature_refusal(fields, policy_b64)
    if refusal is not None:
        return refusal
    covered: set[str] = set()
    for condition in policy["conditions"]:
        refusal = _condition_refusal(condition, fields, size, covered)
        if refusal is not None:
            return refusal
    extra = sorted(
        name
        for name in form
        if name.lower() not in covered | _UNCOVERED and not name.lower().startswith("x-ignore-")
    )
    if extra:
        return _denied(f"Invalid according to Policy: Extra input fields: {', '.join(extra)}")
    return None


def patch_post_policy() -> None:
    """Refuse, before moto stores it, a POST upload whose policy S3 would refuse."""
    from moto.s3.responses import S3Response

    original = S3Response._bucket_response_post

    def bucket_response_post(self: Any, request: Any, bucket_name: str) -> Any:
        form = getattr(self, "form_data", None) or {}
        # What the original does first: `is_delete_keys` reads the query of `self.path`.
        self.path = self._get_path(request)
        if not self.is_delete_keys() and request.headers.get("Content-Length"):
            body = self.body if isinstance(self.body, bytes) else str(self.body or "").encode()
            fields = {name: str(value) for name, value in form.items()}
            refusal = policy_refusal(fields, len(body), bucket_name)
            if refusal is not None:
                return refusal.response()
        return original(self, request, bucket_name)

    S3Response._bucket_response_post = bucket_response_post  # type: ignore[method-assign]
