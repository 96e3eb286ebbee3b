"""The API tests' usual setting: one bootstrapped stack and one API per module (tests keep
apart by using their own users). A module that needs another API (a starter, Cognito, small
limits) defines its own `api`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.aws import AwsClients
from imgproc_shared.settings import Settings

from api_harness import ApiHarness, bootstrapped_stack, running_api


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_stack(
    embedded_aws: EmbeddedAws,
) -> AsyncIterator[tuple[Settings, AwsClients, dict[str, Any]]]:
    async with bootstrapped_stack(embedded_aws.endpoint_url) as stack:
        yield stack


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(
    shared_stack: tuple[Settings, AwsClients, dict[str, Any]],
) -> AsyncIterator[ApiHarness]:
    async with running_api(shared_stack) as harness:
        yield harness
