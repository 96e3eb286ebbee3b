"""Start the local stack exactly as `make up` does (`imgproc up` in a subprocess) for tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from imgproc_shared.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[1]
IMGPROC = Path(sys.executable).parent / "imgproc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    home: Path
    api_url: str
    endpoint_url: str
    settings: Settings
    log_path: Path

    def env(self) -> dict[str, str]:
        """Environment for `imgproc` commands that should find this stack by themselves."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPROC_")}
        env["IMGPROC_HOME"] = str(self.home)
        return env

    def stop(self, timeout: float = 60.0) -> float:
        """Ctrl-C, as a user would; returns how long the stack took to stop."""
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=timeout)
        return time.monotonic() - started


def start_stack(
    home: Path,
    *,
    tagger: str | None = None,
    timeout: float = 120.0,
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> RunningStack:
    """`imgproc up` in a subprocess; `extra_env` adds IMGPROC_* settings for every service,
    `extra_args` options of `up` (`--auth cognito`)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPROC_")}
    env.update({"IMGPROC_HOME": str(home), "PYTHONUNBUFFERED": "1"})
    if tagger:
        env["IMGPROC_TAGGER_BACKEND"] = tagger
    env.update(extra_env or {})
    api_port = free_port()
    log_path = home / "up.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [
            str(IMGPROC),
            "up",
            "--port",
            str(api_port),
            "--data-dir",
            str(home / "data"),
            *(extra_args or []),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
    )
    stack_file = home / "stack.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"imgproc up exited with {process.returncode}:\n{log_path.read_text()}"
            )
        info = json.loads(stack_file.read_text()) if stack_file.exists() else None
        # A file left by an `up` that was killed (kill -9) names a dead pid: wait for ours.
        if info is not None and info.get("pid") == process.pid:
            settings = Settings(
                endpoint_url=info["endpoint_url"],
                state_machine_arn=info["state_machine_arn"],
                resource_prefix=info["resource_prefix"],
                home=home,
            )
            return RunningStack(
                process, home, info["api_url"], info["endpoint_url"], settings, log_path
            )
        time.sleep(0.2)  # polling for the stack file, bounded by the deadline above
    process.kill()
    raise RuntimeError(f"imgproc up did not come up in {timeout}s:\n{log_path.read_text()}")
