"""How the web client signs in: the one-machine sign-in endpoint, or the Cognito user pool."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from imgproc_status_api.api.deps import State

router = APIRouter(prefix="/api", tags=["auth"])


class AuthConfigOut(BaseModel):
    mode: Literal["local", "cognito"]
    # Cognito only: what the browser needs to sign in with SRP against the user pool API (the
    # pool's public operations, which take no AWS credentials).
    user_pool_id: str | None = None
    client_id: str | None = None
    endpoint: str | None = None


@router.get("/auth-config")
async def auth_config(state: State) -> AuthConfigOut:
    """How to sign in (no token needed): `local` is `POST /api/auth/sign-in` with a username;
    `cognito` is SRP against `endpoint` with the user pool's app client."""
    settings = state.api_settings
    if not settings.cognito_enabled:
        return AuthConfigOut(mode="local")
    return AuthConfigOut(
        mode="cognito",
        user_pool_id=settings.cognito_user_pool_id,
        client_id=settings.cognito_audience,
        endpoint=settings.cognito_sign_in_endpoint,
    )
