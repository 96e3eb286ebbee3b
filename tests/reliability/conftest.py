"""One local stack shared by the fault tests, started as `make up` does, with short timeouts.

Each test leaves the stack as it found it: every queue and dead-letter queue empty, so the next
test's checks see only what it did.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fault_stack import FAST_RECOVERY_ENV, MAX_UPLOAD_BYTES
from stack_process import RunningStack, start_stack


@pytest.fixture(scope="session")
def fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    # moto's canned Rekognition labels: the local model would be reloaded on every worker
    # restart, and labels are not what these tests are about.
    stack = start_stack(
        tmp_path_factory.mktemp("reliability-home"),
        tagger="rekognition",
        extra_env={**FAST_RECOVERY_ENV, "IMGPROC_MAX_UPLOAD_BYTES": str(MAX_UPLOAD_BYTES)},
    )
    yield stack
    stack.stop(timeout=60)


@pytest.fixture
def log_dir(fault_stack: RunningStack) -> Path:
    return fault_stack.home / "data" / "logs"
