"""Who is calling: local sign-in tokens on one machine, Cognito JWTs on AWS.

A user's id becomes the owner of their albums and images and a segment of S3 keys, so it must
match the id pattern; local usernames are validated against it at sign-in.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from imgproc_shared.models import is_valid_id
from imgproc_shared.settings import check_auth_secret
from imgproc_status_api.config import ApiSettings
from imgproc_status_api.errors import ApiError

LOCAL_ISSUER = "imgproc-local"
LOCAL_AUDIENCE = "imgproc-status-api"


@dataclass(frozen=True)
class User:
    id: str  # the owner id stored on albums and images
    name: str  # what the client shows
    # The token's `jti` and `exp`: what signing out revokes, and until when (None: no id, so it
    # cannot be revoked before it expires).
    token_id: str | None = None
    expires_at: int | None = None
    # Cognito groups (`cognito:groups`): membership of `operators` makes an operator.
    groups: frozenset[str] = frozenset()


def _token_id(claims: dict[str, Any]) -> str | None:
    value = claims.get("jti")
    return value if isinstance(value, str) and 0 < len(value) <= 128 else None


def _expiry(claims: dict[str, Any]) -> int | None:
    value = claims.get("exp")
    return int(value) if isinstance(value, int | float) else None


def _groups(claims: dict[str, Any]) -> frozenset[str]:
    value = claims.get("cognito:groups")
    if not isinstance(value, list):
        return frozenset()
    return frozenset(group for group in value if isinstance(group, str))


def unauthorized(message: str) -> ApiError:
    return ApiError(401, "unauthorized", message)


class TokenVerifier(Protocol):
    async def verify(self, token: str) -> User: ...


class LocalTokens:
    """HMAC-signed JWTs issued by `POST /api/auth/sign-in` with a username."""

    def __init__(self, secret: str, ttl_s: int) -> None:
        if not secret:
            raise ValueError("local tokens need a secret")
        check_auth_secret(secret)
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(self, username: str, *, now: float | None = None) -> str:
        if not is_valid_id(username):
            raise ValueError("invalid username")
        issued = int(now if now is not None else time.time())
        claims = {
            "sub": username,
            "iss": LOCAL_ISSUER,
            "aud": LOCAL_AUDIENCE,
            "iat": issued,
            "exp": issued + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    async def verify(self, token: str) -> User:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=LOCAL_ISSUER,
                audience=LOCAL_AUDIENCE,
                options={"require": ["exp", "sub", "iss", "aud", "jti"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise ApiError(401, "token_expired", "the token has expired; sign in again") from exc
        except jwt.PyJWTError as exc:
            raise unauthorized("invalid token") from exc
        subject = claims.get("sub")
        if not isinstance(subject, str) or not is_valid_id(subject):
            raise unauthorized("invalid token subject")
        return User(
            id=subject, name=subject, token_id=_token_id(claims), expires_at=_expiry(claims)
        )


class CognitoTokens:
    """Verifies Cognito-issued JWTs: RS256 signature from the pool's JWKS, issuer, expiry and
    audience (`aud` of an ID token, or `client_id` of an access token)."""

    def __init__(self, issuer: str, audience: str | None, jwks_url: str | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.jwks_url = jwks_url or f"{self.issuer}/.well-known/jwks.json"
        # Caches keys and refetches on an unknown `kid` (key rotation).
        self._jwks = jwt.PyJWKClient(self.jwks_url, cache_keys=True, lifespan=3600, timeout=5)

    async def verify(self, token: str) -> User:
        try:
            # PyJWKClient fetches with urllib: keep that off the event loop.
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = jwt.decode(
                token,
                signing_key.key,
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"require": ["exp", "sub", "iss"], "verify_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise ApiError(401, "token_expired", "the token has expired; sign in again") from exc
        except jwt.PyJWKClientConnectionError as exc:
            raise ApiError(
                503, "identity_unavailable", "cannot reach the identity provider"
            ) from exc
        except jwt.PyJWTError as exc:
            raise unauthorized("invalid token") from exc
        if self.audience is not None:
            audiences = claims.get("aud") or claims.get("client_id")
            if isinstance(audiences, str):
                audiences = [audiences]
            if not isinstance(audiences, list) or self.audience not in audiences:
                raise unauthorized("token not issued for this application")
        token_use = claims.get("token_use")
        if token_use is not None and token_use not in ("id", "access"):
            raise unauthorized("unexpected token use")
        subject = claims["sub"]
        if not isinstance(subject, str) or not is_valid_id(subject):
            raise unauthorized("invalid token subject")
        name = claims.get("cognito:username") or claims.get("username") or subject
        return User(
            id=subject,
            name=str(name),
            token_id=_token_id(claims),
            expires_at=_expiry(claims),
            groups=_groups(claims),
        )


def make_verifier(settings: ApiSettings) -> LocalTokens | CognitoTokens:
    if settings.cognito_issuer:
        return CognitoTokens(
            settings.cognito_issuer, settings.cognito_audience, settings.cognito_jwks_url
        )
    return LocalTokens(settings.auth_secret, settings.token_ttl_s)
