"""Presigned S3 GETs for many keys at once, the same URLs botocore makes, signed here.

botocore resolves the endpoint and runs its event hooks for every URL (about 0.2 ms each; a page
of 50 images needs 100). A presigned GET of one bucket differs from another made in the same
second only in its key and signature (SigV4 query auth: the date, credential scope, expiry and
token are the same), so botocore makes the first URL of each bucket and second, and the others
reuse its query string, signed with the key derived from the same credentials. That first URL
also checks this code: ours for its key must be botocore's to the byte, else botocore signs
every URL of that template itself. Keys other than plain path characters always go to botocore.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

# Keys whose URL form is themselves (rendition keys: `thumbnails/{image id}/{name}.jpg`).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9/_.~-]+")
_TEMPLATE_TTL_S = 1.0  # X-Amz-Date has a resolution of one second


@dataclass(frozen=True)
class _Template:
    made_at: float
    expires_in: int
    prefix: str  # scheme://host/bucket/
    host: str
    path_prefix: str  # /bucket/
    query: str  # botocore's query string, without the signature
    canonical_query: str
    amz_date: str
    scope: str
    signing_key: bytes

    def url(self, key: str) -> str:
        return f"{self.prefix}{key}?{self.query}&X-Amz-Signature={self.signature(key)}"

    def signature(self, key: str) -> str:
        canonical = "\n".join(
            (
                "GET",
                self.path_prefix + key,
                self.canonical_query,
                f"host:{self.host}",
                "",
                "host",
                "UNSIGNED-PAYLOAD",
            )
        )
        to_sign = "\n".join(
            (
                "AWS4-HMAC-SHA256",
                self.amz_date,
                self.scope,
                hashlib.sha256(canonical.encode()).hexdigest(),
            )
        )
        return hmac.new(self.signing_key, to_sign.encode(), hashlib.sha256).hexdigest()


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _template(url: str, bucket: str, key: str, secret: str, expires_in: int) -> _Template | None:
    """The template botocore's `url` for `key` gives, or None when it is not of the form this
    code signs (path-style, SigV4 query auth, signed `host` only) or ours differs from it."""
    parts = urlsplit(url)
    path_prefix = f"/{bucket}/"
    if parts.path != path_prefix + key or parts.fragment:
        return None
    query, _, signature = parts.query.rpartition("&X-Amz-Signature=")
    params = dict(parse_qsl(query, keep_blank_values=True))
    credential = params.get("X-Amz-Credential", "").split("/", 1)
    if (
        not signature
        or params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256"
        or params.get("X-Amz-SignedHeaders") != "host"
        or len(credential) != 2
    ):
        return None
    scope = credential[1]
    fields = scope.split("/")
    if len(fields) != 4 or fields[3] != "aws4_request":
        return None
    day, region, service, terminator = fields
    signing_key = _hmac(
        _hmac(_hmac(_hmac(f"AWS4{secret}".encode(), day), region), service), terminator
    )
    template = _Template(
        made_at=time.monotonic(),
        expires_in=expires_in,
        prefix=f"{parts.scheme}://{parts.netloc}{path_prefix}",
        host=parts.netloc,
        path_prefix=path_prefix,
        query=query,
        canonical_query="&".join(
            f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items())
        ),
        amz_date=params.get("X-Amz-Date", ""),
        scope=scope,
        signing_key=signing_key,
    )
    return template if template.url(key) == url else None


class GetUrlSigner:
    """Presigned GETs through one S3 client (an aiobotocore client)."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self._templates: dict[str, _Template | None] = {}
        self._made_at: dict[str, float] = {}

    async def url(self, bucket: str, key: str, expires_in: int) -> str:
        now = time.monotonic()
        template = self._templates.get(bucket)
        fresh = now - self._made_at.get(bucket, -1e9) < _TEMPLATE_TTL_S
        if fresh and _PLAIN_KEY.fullmatch(key):
            if template is not None and template.expires_in == expires_in:
                return template.url(key)
        url = await self._botocore_url(bucket, key, expires_in)
        if not fresh and _PLAIN_KEY.fullmatch(key):
            # botocore keeps the client's credentials here (refreshed as they expire).
            credentials = getattr(self.s3._request_signer, "_credentials", None)
            frozen = await credentials.get_frozen_credentials() if credentials else None
            self._templates[bucket] = (
                _template(url, bucket, key, frozen.secret_key, expires_in) if frozen else None
            )
            self._made_at[bucket] = now
        return url

    async def _botocore_url(self, bucket: str, key: str, expires_in: int) -> str:
        url: str = await self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )
        return url
