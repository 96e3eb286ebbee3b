"""Helpers the tests import (a plain module: two folders have a `conftest`, and which one the
name `conftest` means depends on the order pytest collects them in)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from imgproc_shared.permissions import Principal
from imgproc_shared.settings import Settings

FIXTURES = Path(__file__).parent / "fixtures"
REPO_ROOT = Path(__file__).resolve().parents[1]


def run_bench_json(module: str, *args: str, timeout: float = 240) -> Any:
    """`python -m bench.<module> ARGS --json` from the repository root: its report, parsed
    (the run must succeed)."""
    result = subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args, "--json"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def make_settings(endpoint_url: str, **overrides: Any) -> Settings:
    prefix = f"t{uuid.uuid4().hex[:10]}"
    values: dict[str, Any] = {
        "endpoint_url": endpoint_url,
        "resource_prefix": prefix,
        # Never a developer's own ~/.imgproc (a running `make up` records itself there).
        "home": Path(tempfile.gettempdir()) / f"imgproc-test-{prefix}",
        "wait_time_s": 1,
        "heartbeat_interval_s": 1.0,
        "visibility_timeout_s": 10,
        "task_heartbeat_s": 10,
        "task_timeout_s": 60,
        "stop_timeout_s": 5.0,
    }
    values.update(overrides)
    return Settings(**values)


def as_service(settings: Settings, principal: Principal) -> Settings:
    """`settings` signing as the stack's `principal` (its IAM user, with the deployed policy)
    while the session's endpoint checks permissions: an in-process service in a test then
    needs exactly what the real one is granted. Unchanged when the checks are off."""
    from imgproc_local import moto_iam
    from imgproc_local.bootstrap import create_identity

    if not moto_iam.enforcement_enabled():
        return settings
    as_principal: Settings = create_identity(settings, principal).settings(settings)
    return as_principal


async def eventually(
    check: Callable[[], Any], *, timeout: float = 30.0, interval: float = 0.1, what: str = ""
) -> Any:
    """Poll `check` (sync or async) until it returns a truthy value, or fail at the deadline."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or check}; last={last!r}")


@contextmanager
def iam_enforced() -> Iterator[None]:
    """The session endpoint checking every call's permissions (the administrator included) for
    the block; its previous state and workflow identity restored after, whatever the block
    changed."""
    from imgproc_local import moto_iam

    before = moto_iam.enforcement_enabled()
    workflow_before = moto_iam.workflow_identity()
    moto_iam.ensure_admin()
    moto_iam.set_enforcement(True)
    try:
        yield
    finally:
        moto_iam.set_enforcement(before)
        moto_iam.set_workflow_identity(
            *(workflow_before or (moto_iam.ADMIN_ACCESS_KEY, moto_iam.ADMIN_SECRET))
        )
