"""moto 5.2.5 made to behave as AWS does where the pipeline depends on it: always on.

Each fix below says what AWS does and what moto did instead:

- early heartbeat: AWS accepts a `SendTaskHeartbeat` for any live task token; moto refused one
  that arrived before its interpreter started waiting on the task (a fast worker) with
  `InvalidToken`;
- heartbeat race: with `HeartbeatSeconds` set, AWS delivers a `SendTaskSuccess` whenever it
  arrives; moto lost one that arrived before its interpreter started the heartbeat wait, and the
  task timed out. Fixed, the outcome is checked before and after every heartbeat wait;
- task failure cause: AWS passes `SendTaskFailure`'s `cause` to the workflow's catchers; moto
  dropped it (`Cause: null`), and the image would lose its human-readable reason;
- fresh token per attempt: AWS gives every attempt of a retried `.waitForTaskToken` task a new
  token; moto reused the first attempt's, so the retry got the old attempt's outcome at once;
- atomic DynamoDB requests: AWS applies and reads each item atomically; moto applied an
  UpdateItem's actions one by one to the stored item and serialized a read from the live item,
  so a concurrent GetItem could see part of an update (a PROCESSED image without the
  renditions written with it);
- long polls end on stop: an SQS `ReceiveMessage` ends with its connection; moto waited out
  `WaitTimeSeconds` (up to 20 s) on the server thread even after the client went away, so
  stopping the endpoint waited for every open poll.

Two more modules hold fixes too large for here, installed with these: `moto_iam` (each request
authorized against its caller's policy as AWS evaluates it; the state machines' own calls run
as the workflow identity) and `s3_post_policy` (POST uploads obey their signed policy).
The names each fix relies on are declared in `moto_patches.PATCH_TARGETS`.
"""

from __future__ import annotations

import functools
import threading
import weakref
from typing import Any

from imgproc_local import moto_iam, moto_patches, s3_post_policy


def install() -> None:
    """Apply every fix (idempotent); each one's moto names are checked first."""
    moto_patches.apply("fix", PATCHES)


# --- Step Functions callbacks -----------------------------------------------------------------


def _patch_early_heartbeat() -> None:
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    original = CallbackEndpoint.notify_heartbeat

    def notify_heartbeat(self: Any) -> bool:
        # The token is live (its endpoint exists and no consumer error was raised); before the
        # heartbeat wait is set up there is nothing to extend, and that wait starts fresh.
        original(self)
        return True

    CallbackEndpoint.notify_heartbeat = notify_heartbeat  # type: ignore[method-assign]


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


# --- DynamoDB ----------------------------------------------------------------------------------


# Held for each DynamoDB request, over HTTP or in process, from parsing to the serialized
# answer (a read's item is the live one until then); snapshots hold it to copy an item.
DYNAMODB_LOCK = threading.RLock()


def _patch_atomic_dynamodb() -> None:
    from moto.dynamodb.responses import DynamoHandler

    original = DynamoHandler.call_action

    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        with DYNAMODB_LOCK:
            return original(self)

    DynamoHandler.call_action = call_action  # type: ignore[method-assign]


# --- SQS long polls ----------------------------------------------------------------------------

# Set when the endpoint stops: SQS long polls still waiting end at once, with no messages.
_endpoint_stopping = threading.Event()
_waiting_queues: weakref.WeakSet[Any] = weakref.WeakSet()
_waiting_lock = threading.Lock()


class _LongPollEnded(Exception):
    pass


def _patch_long_polls_end_on_stop() -> None:
    """End SQS long polls when the endpoint stops.

    moto's `ReceiveMessage` waits out its `WaitTimeSeconds` (up to 20 s) on the server thread
    even after the client went away (a stopped worker), so the server cannot stop its threads
    until then ("N thread(s) still running"). Patched, a wait also ends when the endpoint stops,
    and the receive answers with no messages (it waits only while it has none).
    """
    from moto.sqs.models import Queue, SQSBackend

    def wait_for_messages(self: Any, timeout: int) -> None:
        with _waiting_lock:
            _waiting_queues.add(self)
        with self._messages_lock:
            self._messages_lock.wait_for(
                lambda: self.messages or _endpoint_stopping.is_set(), timeout=timeout
            )
        if _endpoint_stopping.is_set():
            raise _LongPollEnded

    Queue.wait_for_messages = wait_for_messages  # type: ignore[method-assign]

    original_receive = SQSBackend.receive_message

    @functools.wraps(original_receive)
    def receive_message(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return original_receive(self, *args, **kwargs)
        except _LongPollEnded:
            return []

    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]


def end_long_polls() -> None:
    """The endpoint is stopping: every SQS long poll answers now (empty), and later ones too."""
    _endpoint_stopping.set()
    with _waiting_lock:
        queues = list(_waiting_queues)
    for queue in queues:
        with queue._messages_lock:
            queue._messages_lock.notify_all()


PATCHES: list[moto_patches.Patch] = [
    ("early_heartbeat", _patch_early_heartbeat),
    ("heartbeat_race", _patch_heartbeat_race),
    ("task_failure_cause", _patch_task_failure_cause),
    ("fresh_token_per_attempt", _patch_fresh_token_per_attempt),
    ("atomic_dynamodb", _patch_atomic_dynamodb),
    ("long_polls_end_on_stop", _patch_long_polls_end_on_stop),
    ("s3_post_policy", s3_post_policy.patch_post_policy),
    ("iam_enforcement", moto_iam.patch_authorization),
    ("workflow_identity", moto_iam.patch_workflow_clients),
]
