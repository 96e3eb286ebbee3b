"""The one place AWS clients are made (aiobotocore), for AWS and for the embedded endpoint alike."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any, cast

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from imgproc_shared.errors import note_request
from imgproc_shared.settings import Settings

if TYPE_CHECKING:  # the stubs are a development dependency: types only, never imported at run time
    from types_aiobotocore_dynamodb import DynamoDBClient
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_sns import SNSClient
    from types_aiobotocore_sqs import SQSClient
    from types_aiobotocore_stepfunctions import SFNClient

# Long polls hold a pooled connection for up to 20 s each: size the pool so sends, deletes and
# heartbeats never queue behind them (botocore's default of 10 starves concurrent workers;
# docs/FACTS.md, "aiobotocore / botocore").
_POOL_HEADROOM = 16
# A fixed User-Agent. botocore otherwise builds its full one (SDK, OS, Python and config
# components, each sanitized character by character) twice for every request: ~75 us of the
# ~490 us of client CPU a GetItem costs (docs/FACTS.md, "aiobotocore / botocore"). This one
# costs nothing and still names imgproc as the caller in CloudTrail.
USER_AGENT = "imgproc"


def as_dict(shape: Mapping[str, Any]) -> dict[str, Any]:
    """A typed AWS shape (a TypedDict of the stubs) where the code reads it as plain data."""
    return cast(dict[str, Any], shape)


def client_config(settings: Settings, *, pool: int | None = None) -> AioConfig:
    return AioConfig(
        region_name=settings.region,
        max_pool_connections=pool or (settings.worker_concurrency * 2 + _POOL_HEADROOM),
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=max(settings.wait_time_s + 10, 30),
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        user_agent=USER_AGENT,
    )


def _credentials(settings: Settings) -> dict[str, str]:
    # The embedded endpoint gets its own key (the service's IAM user there, else the
    # administrator's); never look for real credentials when using it.
    if settings.endpoint_url:
        return {
            "aws_access_key_id": settings.endpoint_access_key_id,
            "aws_secret_access_key": settings.endpoint_secret_access_key.get_secret_value(),
        }
    return {}


class AwsClients:
    """Opens each service client once and closes them all together.

    Usage: `async with AwsClients(settings) as aws: await aws.sqs.receive_message(...)`.
    """

    _SERVICES = ("s3", "sqs", "sns", "dynamodb", "stepfunctions")

    def __init__(self, settings: Settings, session: AioSession | None = None) -> None:
        self.settings = settings
        self._session = session or get_session()
        self._stack = AsyncExitStack()
        self._clients: dict[str, Any] = {}

    async def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = await self._stack.enter_async_context(
                self._session.create_client(
                    service,  # type: ignore[call-overload]
                    endpoint_url=self.settings.endpoint_url,
                    config=client_config(self.settings),
                    **self._static_credentials(),
                )
            )
            note_request(self._clients[service])  # so a denial names what it was about
        return self._clients[service]

    def _static_credentials(self) -> dict[str, str]:
        return _credentials(self.settings)

    async def __aenter__(self) -> AwsClients:
        for service in self._SERVICES:
            await self.client(service)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self._clients.clear()

    @property
    def s3(self) -> S3Client:
        return cast("S3Client", self._clients["s3"])

    @property
    def sqs(self) -> SQSClient:
        return cast("SQSClient", self._clients["sqs"])

    @property
    def sns(self) -> SNSClient:
        return cast("SNSClient", self._clients["sns"])

    @property
    def dynamodb(self) -> DynamoDBClient:
        return cast("DynamoDBClient", self._clients["dynamodb"])

    @property
    def stepfunctions(self) -> SFNClient:
        return cast("SFNClient", self._clients["stepfunctions"])
