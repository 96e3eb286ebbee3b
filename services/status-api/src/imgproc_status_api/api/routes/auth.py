"""Sign-in (local mode), sign-out (revokes the token) and who am I."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response

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
        user=UserOut(
            id=body.username,
            name=body.username,
            operator=state.api_settings.is_operator(body.username),
        ),
    )


@router.post(
    "/sign-out", status_code=204, response_class=Response, responses={401: ERROR_RESPONSES[401]}
)
async def sign_out(user: CurrentUser, state: State) -> Response:
    """Revoke the token this request carries: every later request with it is answered 401
    `token_revoked` (until it would have expired anyway). A token without an id (`jti`) cannot
    be revoked; it is answered the same and expires as issued."""
    if user.token_id is not None:
        expires_at = user.expires_at or int(time.time()) + state.api_settings.token_ttl_s
        await state.revocations.revoke(user.token_id, expires_at)
    return Response(status_code=204)


@router.get("/me", responses={401: ERROR_RESPONSES[401]})
async def me(user: CurrentUser, state: State) -> UserOut:
    """The signed-in user, and whether they are an operator."""
    return UserOut(
        id=user.id, name=user.name, operator=state.api_settings.is_operator(user.id, user.groups)
    )
