"""The one place AWS clients are made (aiobotocore), for AWS and for the embedded endpoint alike."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from imgproc_shared.settings import Settings

# Long polls hold a pooled connection for up to 20 s each: size the pool so sends, deletes and
# heartbeats never queue behind them (FACTS: the default of 10 starves concurrent workers).
_POOL_HEADROOM = 16


def client_config(settings: Settings, *, pool: int | None = None) -> AioConfig:
    return AioConfig(
        region_name=settings.region,
        max_pool_connections=pool or (settings.worker_concurrency * 2 + _POOL_HEADROOM),
        retries={"max_attempts": 5, "mode": "standard"},
        connect_timeout=5,
        read_timeout=max(settings.wait_time_s + 10, 30),
        signature_version="s3v4",
        s3={"addressing_style": "path"},
    )


def _credentials(settings: Settings) -> dict[str, str]:
    # The embedded endpoint accepts any credentials; never look for real ones when using it.
    if settings.endpoint_url:
        return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
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
                    **_credentials(self.settings),
                )
            )
        return self._clients[service]

    async def __aenter__(self) -> AwsClients:
        for service in self._SERVICES:
            await self.client(service)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self._clients.clear()

    @property
    def s3(self) -> Any:
        return self._clients["s3"]

    @property
    def sqs(self) -> Any:
        return self._clients["sqs"]

    @property
    def sns(self) -> Any:
        return self._clients["sns"]

    @property
    def dynamodb(self) -> Any:
        return self._clients["dynamodb"]

    @property
    def stepfunctions(self) -> Any:
        return self._clients["stepfunctions"]
