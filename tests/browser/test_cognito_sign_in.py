"""Cognito sign-in in a real browser against `imgproc up --auth cognito`: the page signs in
with SRP (InitiateAuth USER_SRP_AUTH, then the PASSWORD_VERIFIER challenge) against the
embedded endpoint's user pool, with the browser's own fetch, BigInt and WebCrypto; the status
API verifies the pool's tokens; a user uploads and sees the photo; an operator (a member of the
`operators` group) sees the Operations page and a plain user does not.

What this does not cover, and how: moto has no hosted UI, and the web client does not use one
(the app client has no OAuth flow), so there is no hosted-UI step to test. moto does not check
the SRP proof either (any password signs in an existing user), so the proof the page computes
is checked separately, against an SRP verifier written here from the protocol (the server's
side of the same math: S = (A * v^u)^b), which accepts the right password and refuses a wrong
one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
PHOTO = REPO_ROOT / "tests" / "fixtures" / "images" / "r_sony.jpg"
PASSWORD = "Correct-Horse-42-battery"

N = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA4836"
    "1C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804"
    "F1746C08CA18217C32905E462E36CE3BE39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6"
    "955817183995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33A85521ABDF1CBA64"
    "ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7ABF5AE8CDB0933D71E8C94E04A25619DCEE3D226"
    "1AD2EE6BF12FFA06D98A0864D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2"
    "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    16,
)
G = 2


@pytest.fixture(scope="module")
def cognito_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The stack as `imgproc up --auth cognito` starts it (idle workers stopped: only the
    API matters here), with a user and an operator added by `imgproc users add`."""
    from stack_process import IMGPROC, start_stack

    stack = start_stack(
        tmp_path_factory.mktemp("imgproc-cognito"),
        extra_args=["--auth", "cognito", "--min-workers", "0"],
    )
    try:
        for name, extra in (("plainuser", []), ("opsperson", ["--operator"])):
            subprocess.run(
                [str(IMGPROC), "users", "add", name, "--password", PASSWORD, *extra],
                env=stack.env(),
                check=True,
                capture_output=True,
                timeout=60,
            )
        yield stack
    finally:
        stack.stop()


def sign_in(page: Page, stack: Any, username: str) -> None:
    page.goto(stack.api_url)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Album name")).to_be_visible()


def cognito_client(stack: Any) -> Any:
    return boto3.client(
        "cognito-idp",
        endpoint_url=stack.endpoint_url,
        region_name=stack.settings.region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_a_user_signs_in_with_srp_uploads_and_sees_no_operations_page(
    cognito_stack: Any, browser: Browser
) -> None:
    page = browser.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    calls: list[str] = []
    page.on(
        "request",
        lambda request: (
            calls.append(request.headers.get("x-amz-target", ""))
            if request.url.startswith(cognito_stack.endpoint_url)
            else None
        ),
    )
    sign_in(page, cognito_stack, "plainuser")
    # The whole SRP exchange ran in the page, against the embedded endpoint's user pool.
    assert [c for c in calls if c] == [
        "AWSCognitoIdentityProviderService.InitiateAuth",
        "AWSCognitoIdentityProviderService.RespondToAuthChallenge",
    ]
    expect(page.get_by_text("plainuser", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="Operations")).to_be_hidden()

    # The access token is in memory only; the refresh token in this tab's sessionStorage.
    stored = page.evaluate("() => [Object.keys(localStorage), Object.keys(sessionStorage)]")
    assert stored == [[], ["imgproc.cognito.refresh"]]
    refresh_token = page.evaluate("() => sessionStorage.getItem('imgproc.cognito.refresh')")

    page.get_by_label("Album name").fill("Cloud trip")
    page.get_by_role("button", name="Create album").click()
    expect(page.get_by_role("heading", name="Cloud trip")).to_be_visible()
    page.get_by_label("Upload photos").set_input_files([str(PHOTO)])
    gallery = page.get_by_role("list", name="Photos")
    expect(gallery.get_by_role("img", name="r_sony.jpg")).to_have_count(1, timeout=30_000)

    # A reload keeps the session: new tokens from the refresh token (REFRESH_TOKEN_AUTH).
    page.reload()
    expect(page.get_by_role("heading", name="Cloud trip")).to_be_visible()
    expect(gallery.get_by_role("img", name="r_sony.jpg")).to_have_count(1)
    # The Operations page is not shown to a plain user, even when asked for by its address.
    page.goto(f"{cognito_stack.api_url}/#/operators")
    expect(page.get_by_label("Album name")).to_be_visible()
    expect(page.get_by_role("heading", name="Operations")).to_be_hidden()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Password", exact=True)).to_be_visible()
    assert page.evaluate("() => Object.keys(sessionStorage)") == []
    # Signing out ended the refresh token at Cognito too (GlobalSignOut).
    with pytest.raises(Exception, match="NotAuthorized"):
        cognito_client(cognito_stack).initiate_auth(
            AuthFlow="REFRESH_TOKEN_AUTH",
            ClientId=page.evaluate("async () => (await (await fetch('/api/auth-config')).json())")[
                "client_id"
            ],
            AuthParameters={"REFRESH_TOKEN": refresh_token},
        )
    assert page_errors == []
    page.close()


def test_an_operator_sees_the_operations_page(cognito_stack: Any, browser: Browser) -> None:
    page = browser.new_page()
    sign_in(page, cognito_stack, "opsperson")
    page.get_by_role("link", name="Operations").click()
    expect(page.get_by_role("heading", name="Operations")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="status-events")).to_be_visible()
    page.close()


def test_a_user_with_a_temporary_password_chooses_a_new_one(
    cognito_stack: Any, browser: Browser
) -> None:
    """An invited user (admin-create-user e-mails a temporary password) sets their own."""
    client = cognito_client(cognito_stack)
    (pool,) = client.list_user_pools(MaxResults=60)["UserPools"]
    client.admin_create_user(
        UserPoolId=pool["Id"],
        Username="invitee",
        TemporaryPassword="Temporary-Pass-1",
        MessageAction="SUPPRESS",
    )
    page = browser.new_page()
    page.goto(cognito_stack.api_url)
    page.get_by_label("Username").fill("invitee")
    page.get_by_label("Password", exact=True).fill("Temporary-Pass-1")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").filter(has_text="choose a new password")).to_be_visible()
    page.get_by_label("New password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Album name")).to_be_visible()
    expect(page.get_by_label("New password")).to_be_hidden()
    user = client.admin_get_user(UserPoolId=pool["Id"], Username="invitee")
    assert user["UserStatus"] == "CONFIRMED"
    page.close()


# ---------- the SRP proof, checked by a verifier of our own ----------


def _pad_hex(value: int) -> str:
    text = format(value, "x")
    text = "0" + text if len(text) % 2 else text
    return "00" + text if text[0] in "89abcdef" else text


def _hash_int(hex_text: str) -> int:
    return int(hashlib.sha256(bytes.fromhex(hex_text)).hexdigest(), 16)


def _expected_signature(
    *, large_a: int, password: str, pool_id: str, user_id: str, secret_block: str, timestamp: str
) -> tuple[int, int, str]:
    """(salt, B, the signature a client knowing `password` must send): the server's side of
    SRP-6a as Cognito runs it, with a fresh salt and secret b."""
    pool_name = pool_id.split("_", 1)[1]
    salt = secrets.randbits(128) | 1 << 127
    identity = hashlib.sha256(f"{pool_name}{user_id}:{password}".encode()).hexdigest()
    x = _hash_int(_pad_hex(salt) + identity)
    verifier = pow(G, x, N)
    k = _hash_int(_pad_hex(N) + _pad_hex(G))
    b = secrets.randbits(1024)
    large_b = (k * verifier + pow(G, b, N)) % N
    u = _hash_int(_pad_hex(large_a) + _pad_hex(large_b))
    shared = pow(large_a * pow(verifier, u, N), b, N)
    prk = hmac.new(bytes.fromhex(_pad_hex(u)), bytes.fromhex(_pad_hex(shared)), "sha256").digest()
    key = hmac.new(prk, b"Caldera Derived Key\x01", "sha256").digest()[:16]
    message = (
        pool_name.encode() + user_id.encode() + base64.b64decode(secret_block) + timestamp.encode()
    )
    signature = base64.b64encode(hmac.new(key, message, "sha256").digest()).decode()
    return salt, large_b, signature


def test_the_page_proves_the_password_as_an_srp_verifier_expects(
    cognito_stack: Any, browser: Browser
) -> None:
    page = browser.new_page()
    page.goto(cognito_stack.api_url)
    pool_id, user_id = "eu-west-1_Ab12Cd34E", "7d1c9a52-1f0e-4a0b-9c6d-2e5f4a3b2c1d"
    secret_block = base64.b64encode(secrets.token_bytes(64)).decode()
    when = datetime(2026, 12, 6, 22, 5, 1, tzinfo=UTC)
    for attempt, typed in (("right", PASSWORD), ("wrong", PASSWORD + "x")):
        large_a = int(
            page.evaluate(
                """async () => {
                  const m = await import('/web/cognito_srp.js');
                  window.srpClient = await m.SrpClient.create();
                  return window.srpClient.largeAHex;
                }"""
            ),
            16,
        )
        assert 1 < large_a < N
        salt, large_b, expected = _expected_signature(
            large_a=large_a,
            password=PASSWORD,
            pool_id=pool_id,
            user_id=user_id,
            secret_block=secret_block,
            timestamp="Sun Dec 6 22:05:01 UTC 2026",
        )
        claim = page.evaluate(
            """([challenge, at]) =>
                 window.srpClient.passwordClaim({...challenge, now: new Date(at)})""",
            [
                {
                    "userPoolId": pool_id,
                    "userIdForSrp": user_id,
                    "password": typed,
                    "salt": format(salt, "x"),
                    "srpB": format(large_b, "x"),
                    "secretBlock": secret_block,
                },
                when.timestamp() * 1000,
            ],
        )
        # Cognito's timestamp format: day of month unpadded, "UTC", year last.
        assert claim["timestamp"] == "Sun Dec 6 22:05:01 UTC 2026"
        assert (claim["signature"] == expected) is (attempt == "right"), attempt
    page.close()
