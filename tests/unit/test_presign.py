"""`GetUrlSigner` makes the URLs botocore makes, byte for byte (at one frozen moment), with and
without a session token, for the embedded endpoint and for AWS itself; keys it does not sign
plainly, and templates that do not check out, are left to botocore."""

from __future__ import annotations

import datetime
from collections.abc import AsyncIterator

import botocore.auth
import pytest
import pytest_asyncio
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session

from imgproc_shared.presign import GetUrlSigner, _template

pytestmark = pytest.mark.asyncio
MOMENT = datetime.datetime(2026, 12, 6, 22, 30, 15)
KEYS = [f"thumbnails/{'ab12' * 8}/{name}.jpg" for name in ("thumbnail", "preview", "x_y-z~1")]


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: MOMENT)


@pytest_asyncio.fixture(params=["embedded", "aws", "aws-token"])
async def s3(request: pytest.FixtureRequest) -> AsyncIterator[object]:
    kind = request.param
    config = AioConfig(signature_version="s3v4", s3={"addressing_style": "path"})
    async with get_session().create_client(
        "s3",
        region_name="eu-central-1",
        endpoint_url="http://127.0.0.1:4566" if kind == "embedded" else None,
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token="FwoGZXIvYXdzE+token/with=chars" if kind == "aws-token" else None,
        config=config,
    ) as client:
        yield client


async def botocore_url(s3: object, bucket: str, key: str) -> str:
    url: str = await s3.generate_presigned_url(  # type: ignore[attr-defined]
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
    )
    return url


async def test_the_signer_makes_botocores_urls(s3: object) -> None:
    signer = GetUrlSigner(s3)
    for bucket in ("images-bucket", "other.bucket-2"):
        for key in KEYS:
            assert await signer.url(bucket, key, 3600) == await botocore_url(s3, bucket, key)
        # The first URL of the bucket came from botocore, the others were signed here.
        assert signer._templates[bucket] is not None
    # A key with characters to escape goes to botocore, and still comes out right.
    odd = "incoming/owner/album/a photo+1.jpg"
    assert await signer.url("images-bucket", odd, 3600) == await botocore_url(
        s3, "images-bucket", odd
    )


async def test_a_template_that_does_not_check_out_is_not_used(s3: object) -> None:
    url = await botocore_url(s3, "images-bucket", KEYS[0])
    assert _template(url, "images-bucket", KEYS[0], "wrong-secret", 3600) is None
    assert _template(url, "another-bucket", KEYS[0], "wrong-secret", 3600) is None
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    assert _template(url, "images-bucket", KEYS[0], secret, 3600) is not None
