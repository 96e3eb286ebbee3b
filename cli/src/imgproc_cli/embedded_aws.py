"""The embedded AWS endpoint: moto 5.2.5 in server mode, inside this process.

Before serving, it turns Step Functions execution on (state machines created before that vanish
when it flips), points the interpreter's callbacks at the bound port (`MOTO_PORT`; moto's
threaded server never sets it) and patches two things in moto's interpreter:

- the heartbeat race: with `HeartbeatSeconds` set, a `SendTaskSuccess` that arrives before the
  interpreter starts its heartbeat wait was lost and the task timed out; the outcome is now
  checked before and after every heartbeat wait;
- `SendTaskFailure` dropped its `cause`: the workflow's catchers then saw `Cause: null` and the
  image lost its human-readable reason;
- a retried `.waitForTaskToken` task reused its first attempt's token, so the retry got the old
  attempt's outcome back at once; as on AWS, every attempt now gets a fresh token.

The speedups (program, JSONPath and client caches, a task-token index) and the request counter
that `imgproc loadtest` reads live in `moto_speedups`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from imgproc_cli import moto_speedups

EMBEDDED_ACCOUNT = "123456789012"


def _patch_heartbeat_race() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
        state_task_service_callback as callback_module,
    )
    from moto.stepfunctions.parser.asl.eval.callback.callback import HeartbeatTimedOut

    def wait_for_task_token_heartbeat(
        self: Any, env: Any, callback_endpoint: Any, heartbeat_endpoint: Any
    ) -> Any:
        outcome = callback_endpoint.get_outcome()
        while env.is_running() and outcome is None:
            received = heartbeat_endpoint.clear_and_wait()
            outcome = callback_endpoint.get_outcome()
            if outcome is None and not received and env.is_running():
                outcome = HeartbeatTimedOut()
        return outcome

    callback_module.StateTaskServiceCallback._wait_for_task_token_heartbeat = (  # type: ignore[method-assign]
        wait_for_task_token_heartbeat
    )


def _patch_fresh_token_per_attempt() -> None:
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
        ResourceCondition,
    )
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service_callback import (  # noqa: E501
        StateTaskServiceCallback,
    )

    original = StateTaskServiceCallback._eval_execution

    def eval_execution(self: Any, env: Any) -> None:
        # The first attempt's token is issued in `_eval_body`; retries re-enter here only.
        retry_count = env.states.context_object.context_object_data["State"].get("RetryCount", 0)
        if retry_count and self.resource.condition == ResourceCondition.WaitForTaskToken:
            env.callback_pool_manager.add(env.states.context_object.update_task_token())
        original(self, env)

    StateTaskServiceCallback._eval_execution = eval_execution  # type: ignore[method-assign]


def _patch_task_failure_cause() -> None:
    from moto.core.responses import EmptyResult
    from moto.stepfunctions.responses import StepFunctionResponse

    def send_task_failure(self: Any) -> Any:
        self.stepfunction_backend.send_task_failure(
            self._get_param("taskToken"),
            error=self._get_param("error"),
            cause=self._get_param("cause"),
        )
        return EmptyResult()

    StepFunctionResponse.send_task_failure = send_task_failure  # type: ignore[method-assign]


@dataclass
class EmbeddedAws:
    server: Any
    host: str
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.server.stop()


def start_embedded_aws(host: str = "127.0.0.1", port: int = 0) -> EmbeddedAws:
    """Start moto on `host:port` (0 picks a free port) and return where it listens."""
    # Moto reads these at import time in places; no real credentials are ever used.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    from moto.core.config import default_user_config
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    _patch_heartbeat_race()
    moto_speedups.install()
    _patch_task_failure_cause()
    _patch_fresh_token_per_attempt()

    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    # The interpreter calls services back at localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = str(bound_port)
    return EmbeddedAws(server, bound_host, bound_port)
