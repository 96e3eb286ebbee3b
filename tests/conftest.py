"""Fixtures shared by every test: a real moto server over HTTP and stacks bootstrapped on it.

Each test that needs AWS gets its own resource prefix, so tests never see each other's queues,
tables or executions, while one moto server (started once per session) serves them all. The
server checks every call against its caller's IAM policy, as `imgproc up` does: tests sign as
the administrator, and the harnesses' in-process services as their own users
(`IMGPROC_IAM_ENFORCEMENT=false` runs the tests without the checks).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from imgproc_local.bootstrap import bootstrap
from imgproc_local.embedded_aws import EmbeddedAws, start_embedded_aws
from imgproc_shared.aws import AwsClients
from imgproc_shared.settings import Settings

sys.path.insert(0, str(Path(__file__).parent))
# Helpers live in a plain module: `conftest` is the name of two modules in this tree.
from helpers import FIXTURES, eventually, make_settings  # noqa: F401


@pytest.fixture(scope="session")
def embedded_aws() -> Iterator[EmbeddedAws]:
    from imgproc_local import moto_iam

    server = start_embedded_aws()
    if Settings().iam_enforcement:
        moto_iam.ensure_admin()
        moto_iam.set_enforcement(True)
    yield server
    moto_iam.set_enforcement(False)
    server.stop()


@pytest.fixture
def settings_factory(embedded_aws: EmbeddedAws) -> Callable[..., Settings]:
    return lambda **overrides: make_settings(embedded_aws.endpoint_url, **overrides)


@pytest.fixture
async def stack(
    settings_factory: Callable[..., Settings],
) -> AsyncIterator[tuple[Settings, AwsClients, dict[str, Any]]]:
    """A freshly bootstrapped stack: (settings with the state machine ARN, clients, outputs)."""
    settings = settings_factory()
    async with AwsClients(settings) as aws:
        outputs = await bootstrap(aws, settings)
        settings = settings.model_copy(update={"state_machine_arn": outputs["state_machine_arn"]})
        yield settings, aws, outputs


os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The whole stack, started as `make up` starts it; shared by the end-to-end tests."""
    from stack_process import start_stack

    home = tmp_path_factory.mktemp("imgproc-home")
    # Absent, so no fault; a test that needs an image to fail writes a stage's name into it
    # (imgproc_shared.worker.fault_injection) and removes it again.
    stack = start_stack(home, extra_env={"IMGPROC_FAULT_FILE": str(home / "fault-injection")})
    yield stack
    stack.stop()


# Debian's Chromium (no browser download), as this machine's closed network needs it: without
# the background-networking flags it keeps trying to reach Google's hosts.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by Playwright; installed from Debian's packages when missing."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        script = Path(__file__).parent / "browser" / "install_chromium.sh"
        subprocess.run(["bash", str(script)], check=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield launched
        launched.close()
