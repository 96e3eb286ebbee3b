"""Sign-in (local mode) and who am I."""

from __future__ import annotations

from fastapi import APIRouter

from imgproc_status_api.api.deps import CurrentUser, State
from imgproc_status_api.auth import LocalTokens
from imgproc_status_api.errors import ERROR_RESPONSES, ApiError, ErrorBody
from imgproc_status_api.schemas import SignIn, TokenOut, UserOut

router = APIRouter(prefix="/api/auth", tags=["auth"])


@router.post(
    "/sign-in",
    responses={400: {"model": ErrorBody}, 422: ERROR_RESPONSES[422]},
)
async def sign_in(body: SignIn, state: State) -> TokenOut:
    """Sign in with a username and get a signed, expiring token (one-machine mode only)."""
    verifier = state.verifier
    if not isinstance(verifier, LocalTokens):
        raise ApiError(400, "sign_in_unavailable", "sign in through the identity provider")
    return TokenOut(
        access_token=verifier.issue(body.username),
        expires_in=verifier.ttl_s,
        user=UserOut(id=body.username, name=body.username),
    )


@router.get("/me", responses={401: ERROR_RESPONSES[401]})
async def me(user: CurrentUser) -> UserOut:
    """The signed-in user."""
    return UserOut(id=user.id, name=user.name)
