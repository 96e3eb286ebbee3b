"""The tagger process keeps numpy's BLAS to one thread (its idle spinning cost more CPU than the
model in a load test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_importing_the_tagger_starts_no_blas_threads() -> None:
    probe = (
        "import os, imgproc_tagger.labels, numpy;"
        "numpy.ones((1, 1000)) @ numpy.ones((1000, 98));"
        "print(len(os.listdir('/proc/self/task')))"
    )
    env_free = {"PATH": "/usr/bin:/bin"}  # no OPENBLAS_NUM_THREADS from the caller
    threads = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env_free
    ).stdout.strip()
    assert threads == "1"
