"""Answering a Step Functions task token, exactly once in effect."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from imgproc_shared.errors import error_code

# Step Functions refuses a token whose task is over (answered, timed out, execution ended).
STALE_TOKEN_ERRORS = frozenset({"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"})
_MAX_CAUSE = 32_000  # Step Functions' limit is 32,768 characters


def is_stale_token(exc: ClientError) -> bool:
    return error_code(exc) in STALE_TOKEN_ERRORS


class TaskToken:
    def __init__(self, stepfunctions: Any, token: str) -> None:
        self._sfn = stepfunctions
        self.token = token

    async def succeed(self, output: dict[str, Any]) -> bool:
        """True if accepted, False if the task was already over (a duplicate or a late answer)."""
        return await self._answer(
            self._sfn.send_task_success, taskToken=self.token, output=json.dumps(output)
        )

    async def fail(self, error: str, cause: str) -> bool:
        return await self._answer(
            self._sfn.send_task_failure,
            taskToken=self.token,
            error=error[:256],
            cause=cause[:_MAX_CAUSE],
        )

    async def heartbeat(self) -> bool:
        return await self._answer(self._sfn.send_task_heartbeat, taskToken=self.token)

    @staticmethod
    async def _answer(call: Any, **kwargs: Any) -> bool:
        try:
            await call(**kwargs)
            return True
        except ClientError as exc:
            if is_stale_token(exc):
                return False
            raise
