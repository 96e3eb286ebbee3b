"""The status API's own settings (`IMGPROC_*`), beside the shared ones every service reads."""

from __future__ import annotations

import secrets
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from imgproc_shared.settings import check_auth_secret

# The Cognito group whose members are operators (created by infra/ and `imgproc up --auth
# cognito`).
OPERATORS_GROUP = "operators"


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGPROC_", extra="ignore")

    # Signs local sign-in tokens (HS256). Unset: a random secret per process, which is enough
    # for one machine (tokens then die with the process); `imgproc up` passes a stable one.
    auth_secret: str = Field(default="", repr=False)
    token_ttl_s: int = Field(default=12 * 3600, ge=1)

    # AWS mode: verify Cognito-issued JWTs instead of offering local sign-in.
    cognito_issuer: str | None = None
    cognito_audience: str | None = None
    # Defaults to `{issuer}/.well-known/jwks.json`, where Cognito publishes its keys.
    cognito_jwks_url: str | None = None
    # Where the web client signs in (the user pool API, `GET /api/auth-config`). Defaults to
    # the issuer's regional endpoint, `https://cognito-idp.{region}.amazonaws.com/`; `imgproc up
    # --auth cognito` sets the embedded endpoint's URL.
    cognito_endpoint: str | None = None

    # Who may see and act on queues and dead letters (which name every user's images): user ids,
    # comma-separated. Unset: every signed-in user on one machine (where the users are the
    # machine's owner), nobody with Cognito until listed. With Cognito, members of the user
    # pool's `operators` group are operators too (the token's `cognito:groups` claim).
    operators: Annotated[list[str] | None, NoDecode] = None

    # Origins allowed to call the API from a browser (the web client itself is same-origin).
    cors_origins: list[str] = Field(default_factory=list)

    # How often the live-update stream re-reads the records of an album's unfinished images.
    events_poll_interval_s: float = Field(default=0.5, gt=0)
    # How often it looks for images that arrived without going through this API.
    events_discovery_interval_s: float = Field(default=5.0, gt=0)
    events_keepalive_s: float = Field(default=15.0, gt=0)

    presigned_url_ttl_s: int = Field(default=3600, ge=60)
    upload_url_ttl_s: int = Field(default=900, ge=1)
    # An upload still not arrived this long after its grant expired is abandoned (a slow upload
    # begun just before expiry may still finish); a deleted image's tombstone is kept as long.
    upload_sweep_margin_s: int = Field(default=900, ge=0)
    # How often the sweep (imgproc_status_api.sweeper) looks for abandoned uploads and tombstones.
    sweep_interval_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _secret_long_enough(self) -> ApiSettings:
        # Only where it signs: with Cognito, local tokens are neither issued nor accepted.
        if not self.cognito_enabled:
            check_auth_secret(self.auth_secret)
        return self

    @field_validator("operators", mode="before")
    @classmethod
    def _split_operators(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def is_operator(self, user_id: str, groups: frozenset[str] = frozenset()) -> bool:
        if self.cognito_enabled and OPERATORS_GROUP in groups:
            return True
        if self.operators is None:
            return not self.cognito_enabled
        return user_id in self.operators

    @property
    def cognito_user_pool_id(self) -> str | None:
        """The pool id: the issuer's last path segment (`{region}_{id}`)."""
        if not self.cognito_issuer:
            return None
        return self.cognito_issuer.rstrip("/").rsplit("/", 1)[-1]

    @property
    def cognito_sign_in_endpoint(self) -> str | None:
        if self.cognito_endpoint:
            return self.cognito_endpoint
        pool_id = self.cognito_user_pool_id
        if not pool_id or "_" not in pool_id:
            return None
        region = pool_id.split("_", 1)[0]
        return f"https://cognito-idp.{region}.amazonaws.com/"

    @property
    def cognito_enabled(self) -> bool:
        return bool(self.cognito_issuer)

    def with_secret(self) -> ApiSettings:
        """A copy whose signing secret is set: the given one, or a fresh random one."""
        if self.auth_secret or self.cognito_enabled:
            return self
        return self.model_copy(update={"auth_secret": secrets.token_urlsafe(32)})
