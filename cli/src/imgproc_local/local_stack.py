"""How CLI commands find their target: a running local stack, or AWS through settings.

`imgproc up` writes `<home>/stack.json` while it runs; other commands read it when no AWS
endpoint is configured, so `imgproc upload` just works in a second terminal.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from imgproc_shared.settings import Settings


@dataclass(frozen=True)
class LocalStack:
    endpoint_url: str
    api_url: str
    state_machine_arn: str
    resource_prefix: str
    pid: int
    data_dir: str
    # `imgproc up --tagger`: what the stack's tagger runs (the load test prices it).
    tagger_backend: str = "local"

    def settings(self, base: Settings) -> Settings:
        return base.model_copy(
            update={
                "endpoint_url": self.endpoint_url,
                "state_machine_arn": self.state_machine_arn,
                "resource_prefix": self.resource_prefix,
                "tagger_backend": self.tagger_backend,
            }
        )


def stack_file(settings: Settings) -> Path:
    return Path(settings.home) / "stack.json"


def write_stack(settings: Settings, stack: LocalStack) -> Path:
    path = stack_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(stack), indent=2))
    tmp.replace(path)
    return path


def remove_stack(settings: Settings, pid: int) -> None:
    path = stack_file(settings)
    current = read_stack(settings)
    if current is not None and current.pid == pid:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_stack(settings: Settings) -> LocalStack | None:
    """The running local stack, or None (a file left by a crashed `up` is ignored)."""
    path = stack_file(settings)
    try:
        stack = LocalStack(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return stack if _alive(stack.pid) else None


class NoTarget(RuntimeError):
    pass


def target_settings(settings: Settings) -> Settings:
    """Settings for a CLI command: an explicit endpoint or AWS wins; else the local stack."""
    if settings.endpoint_url or os.environ.get("IMGPROC_TARGET") == "aws":
        return settings
    stack = read_stack(settings)
    if stack is None:
        raise NoTarget(
            "no running local stack found (start one with `make up` or `imgproc up`), and no "
            "AWS target configured (set IMGPROC_TARGET=aws, or IMGPROC_ENDPOINT_URL)"
        )
    return stack.settings(settings)
