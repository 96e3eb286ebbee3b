"""AWS mode: Cognito-issued JWTs, verified against a JWKS served by a local stub (no network)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_status_api.config import ApiSettings

from api_harness import ApiHarness, bootstrapped_stack, running_api

pytestmark = pytest.mark.asyncio(loop_scope="module")

CLIENT_ID = "app-client-123"
KID = "test-key-1"


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


SIGNING_KEY = _rsa_key()
OTHER_KEY = _rsa_key()


class _JwksHandler(BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        if self.path != "/pool/.well-known/jwks.json":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    """A stub of the user pool's issuer URL, publishing the signing key's JWKS."""
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING_KEY.public_key()))
    _JwksHandler.body = json.dumps(
        {"keys": [{**public, "kid": KID, "alg": "RS256", "use": "sig"}]}
    ).encode()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JwksHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/pool"
    server.shutdown()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(embedded_aws: EmbeddedAws, issuer: str) -> AsyncIterator[ApiHarness]:
    async with (
        bootstrapped_stack(embedded_aws.endpoint_url) as stack,
        running_api(stack, cognito_issuer=issuer, cognito_audience=CLIENT_ID) as harness,
    ):
        yield harness


def token(issuer: str, **overrides: Any) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": "8f0c2a1e-1111-4c3b-9d2e-0123456789ab",
        "iss": issuer,
        "aud": CLIENT_ID,
        "token_use": "id",
        "cognito:username": "carol",
        "iat": now,
        "exp": now + 600,
    }
    key = overrides.pop("key", SIGNING_KEY)
    kid = overrides.pop("kid", KID)
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


async def test_a_valid_cognito_token_identifies_the_user_by_sub(
    api: ApiHarness, issuer: str
) -> None:
    me = await api.client.get("/api/auth/me", headers=bearer(token(issuer)))
    assert me.status_code == 200, me.text
    assert me.json() == {
        "id": "8f0c2a1e-1111-4c3b-9d2e-0123456789ab",
        "name": "carol",
        "operator": False,
    }
    # An access token names the app client in `client_id` instead of `aud`.
    access = token(issuer, aud=None, client_id=CLIENT_ID, token_use="access", username="carol")
    assert (await api.client.get("/api/auth/me", headers=bearer(access))).status_code == 200
    # The owner id works for albums like any other.
    response = await api.client.post("/api/albums", json={"name": "Cloud"}, headers=bearer(access))
    assert response.status_code == 201
    assert response.json()["owner"] == "8f0c2a1e-1111-4c3b-9d2e-0123456789ab"


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"exp": int(time.time()) - 60}, "token_expired"),
        ({"aud": "another-client"}, "unauthorized"),
        ({"iss": "https://cognito-idp.example/other-pool"}, "unauthorized"),
        ({"key": OTHER_KEY}, "unauthorized"),
        ({"kid": "unknown-kid"}, "unauthorized"),
        ({"sub": "../escape"}, "unauthorized"),
        ({"exp": None}, "unauthorized"),
    ],
)
async def test_bad_cognito_tokens_are_refused(
    api: ApiHarness, issuer: str, overrides: dict[str, Any], code: str
) -> None:
    response = await api.client.get("/api/auth/me", headers=bearer(token(issuer, **overrides)))
    assert response.status_code == 401, response.text
    assert response.json()["code"] == code


def hs256_token(claims: dict[str, Any], key: bytes) -> str:
    def part(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "HS256", "typ": "JWT", "kid": KID}
    signing_input = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    signature = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(signature)}"


async def test_hmac_tokens_and_local_sign_in_are_refused_in_cognito_mode(
    api: ApiHarness, issuer: str
) -> None:
    response = await api.client.post("/api/auth/sign-in", json={"username": "carol"})
    assert response.status_code == 400
    assert response.json()["code"] == "sign_in_unavailable"
    # Algorithm confusion: an HS256 token whose HMAC key is the public key everyone can fetch
    # (as PEM and as the JWK's JSON) must not pass. Signed by hand: PyJWT refuses such keys.
    claims = {"sub": "carol", "iss": issuer, "aud": CLIENT_ID, "exp": int(time.time()) + 60}
    public_pem = SIGNING_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public_jwk = jwt.algorithms.RSAAlgorithm.to_jwk(SIGNING_KEY.public_key()).encode()
    for public_key in (public_pem, public_jwk):
        forged = hs256_token(claims, public_key)
        answer = await api.client.get("/api/auth/me", headers=bearer(forged))
        assert answer.status_code == 401, answer.text


async def test_auth_config_tells_the_client_to_sign_in_with_the_user_pool(
    api: ApiHarness, issuer: str
) -> None:
    response = await api.client.get("/api/auth-config")
    assert response.status_code == 200, response.text
    # The pool id is the issuer's last segment; the app client is the audience.
    assert response.json()["mode"] == "cognito"
    assert response.json()["user_pool_id"] == "pool"
    assert response.json()["client_id"] == CLIENT_ID
    # On AWS the endpoint is the issuer's regional user pool API; `up` names its own.
    on_aws = ApiSettings(
        cognito_issuer="https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123"
    )
    assert on_aws.cognito_user_pool_id == "eu-west-1_AbC123"
    assert on_aws.cognito_sign_in_endpoint == "https://cognito-idp.eu-west-1.amazonaws.com/"
    local = on_aws.model_copy(update={"cognito_endpoint": "http://127.0.0.1:4566/"})
    assert local.cognito_sign_in_endpoint == "http://127.0.0.1:4566/"


async def test_members_of_the_operators_group_are_operators_and_others_are_not(
    api: ApiHarness, issuer: str
) -> None:
    member = token(issuer, sub="opsuser1", **{"cognito:groups": ["staff", "operators"]})
    other = token(issuer, sub="plainuser1", **{"cognito:groups": ["staff"]})
    none = token(issuer, sub="plainuser2")
    me = await api.client.get("/api/auth/me", headers=bearer(member))
    assert me.json()["operator"] is True
    assert (
        await api.client.get("/api/operators/queues", headers=bearer(member))
    ).status_code == 200
    for plain in (other, none):
        assert (await api.client.get("/api/auth/me", headers=bearer(plain))).json()[
            "operator"
        ] is False
        refused = await api.client.get("/api/operators/queues", headers=bearer(plain))
        assert refused.status_code == 403, refused.text
        assert refused.json()["code"] == "operator_only"
