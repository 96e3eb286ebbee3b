"""The worker runtime: long-poll a stage queue, work on a bounded number of messages at once,
keep each one alive while working, answer its task token, and only then delete it.

A service is configured, not subclassed: it gives a stage and a handler, a plain
`async def handle(task, ctx) -> pydantic model`. Everything else lives here:

- receive in batches (up to the free concurrency slots, at most 10) with a 20 s long poll;
- CPU work goes to a thread pool (`ctx.run_cpu`), so the event loop keeps polling and beating;
- while a message is worked on, its visibility is extended and its task token heartbeats;
- success → SendTaskSuccess; a named `TaskError` → SendTaskFailure(error, cause); either way the
  message is deleted only after the answer (in batches: `DeleteMessageBatch` of the messages
  answered within `delete_linger_s`). A token that is already over (a duplicate message, a
  retried task) is dropped quietly;
- the stage's progress is one catalog write when it ends; a stage still running after
  `stage_started_note_s` also writes when it started, so the client can show it running. The
  write is conditional on the image: a task for an unknown image is malformed;
- an unexpected exception releases the message with a backoff so it is tried again; on its last
  receive the task is failed with the cause and the message is left for the dead-letter queue;
- an AWS denial (a permission missing from the service's policy), in the handler or in the
  runtime's own calls for the task, fails the task at once with `ImageProc.AccessDenied` and
  "<service> was denied <action> on <resource>" (no retry can grant it), logged as an error
  with the action and resource. Where the task cannot be answered (the denial is on answering,
  or on the queue) it is logged the same way and the message comes back only after a backoff;
  a denial while starting (the queue's URL) exits with `EXIT_UNRECOVERABLE`;
- a malformed message (not JSON, wrong schema, unknown image) is logged with its reason and left
  for the dead-letter queue while the worker goes on serving others;
- SIGTERM/SIGINT: stop polling, finish in-flight work within the stop timeout, release what is
  left, run the service's `shutdown` hook, log a one-line summary and exit;
- a `setup` hook runs before the first poll; the errors a service names as `setup_failures`
  (the tagger's unusable model) end the process with one error line and `EXIT_UNRECOVERABLE`.

How each message's work ended is a value (`Outcome`: answered, failed with a named error,
errored, denied, stale, malformed, stopped) that `Worker._settle` alone acts on.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import structlog
from botocore.exceptions import ClientError
from pydantic import BaseModel, ValidationError

from imgproc_shared import errors
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog, now_iso
from imgproc_shared.dead_letters import DeadLetters
from imgproc_shared.logging import configure_logging, get_logger
from imgproc_shared.long_poll import MAX_BATCH, delete_batch, receive_batches
from imgproc_shared.models import StageTask
from imgproc_shared.resources import STAGE_QUEUES, ResourceNames, Stage
from imgproc_shared.settings import Settings, get_settings
from imgproc_shared.worker.fault_injection import raise_injected_fault
from imgproc_shared.worker.task_token import TaskToken

T = TypeVar("T")
# How long a message whose task cannot be answered (answering it was denied) stays away before
# it is tried again: long enough not to spin, short enough to recover once the policy is fixed.
DENIED_RETRY_DELAY_S = 60
Handler = Callable[[StageTask, "WorkContext"], Coroutine[Any, Any, BaseModel]]
Hook = Callable[["WorkContext"], Awaitable[None]]


class CannotStart(Exception):
    """The worker cannot work until someone fixes its setup: restarting would only loop."""

    def __init__(self, what: str, cause: str) -> None:
        super().__init__(f"{what}: {cause}")
        self.what = what
        self.cause = cause


@dataclass
class WorkContext:
    """What a handler may use: settings, AWS clients, the thread pool for CPU work."""

    settings: Settings
    aws: AwsClients
    names: ResourceNames
    executor: ThreadPoolExecutor
    log: Any = field(default_factory=get_logger)

    async def run_cpu(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def read_object(self, bucket: str, key: str, byte_range: str | None = None) -> bytes:
        kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key}
        if byte_range:
            kwargs["Range"] = byte_range
        response = await self.aws.s3.get_object(**kwargs)
        async with response["Body"] as body:
            data: bytes = await body.read()
        return data


class Worker:
    def __init__(
        self,
        stage: Stage,
        handler: Handler,
        settings: Settings | None = None,
        *,
        setup: Hook | None = None,
        setup_failures: Mapping[type[Exception], str] | None = None,
        shutdown: Hook | None = None,
        result_attribute: str | None = None,
        service: str | None = None,
    ) -> None:
        """`setup` runs once before the first poll, `shutdown` once after the last message
        is settled. `setup_failures`: exceptions of `setup` that no restart can fix, each with
        what it means ("model unavailable"): the worker cannot start (`CannotStart`).
        `result_attribute`: the image record's attribute this worker stores each result
        under, with the stage's progress (a stage whose result is wanted before the workflow
        stores the others'); None leaves storing the result to the workflow. `service` names
        the worker in the reasons it gives (a denial's)."""
        self.stage = stage
        self.service = service or f"the {stage.value} worker"
        self.handler = handler
        self.result_attribute = result_attribute
        self.settings = settings or get_settings()
        self.names = ResourceNames.from_settings(self.settings)
        self.counters: Counter[str] = Counter()
        self._setup = setup
        self._setup_failures = dict(setup_failures or {})
        self._shutdown = shutdown
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._log = get_logger(stage=stage.value)
        self._deletions: _Deletions | None = None
        self.ready = asyncio.Event()

    def stop(self) -> None:
        """Stop polling; `run` finishes in-flight work and returns."""
        self._stopping.set()

    async def _set_up(self, ctx: WorkContext) -> None:
        if self._setup is None:
            return
        try:
            await self._setup(ctx)
        except tuple(self._setup_failures) as exc:
            what = next(w for kind, w in self._setup_failures.items() if isinstance(exc, kind))
            raise CannotStart(what, str(exc)) from exc

    async def run(self) -> None:
        settings = self.settings
        threads = settings.worker_threads or os.cpu_count() or 1
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix=self.stage.value) as pool:
            async with AwsClients(settings) as aws:
                ctx = WorkContext(settings, aws, self.names, pool, self._log)
                await self._set_up(ctx)
                queue_name = self.names.queue(STAGE_QUEUES[self.stage])
                queue_url = (await aws.sqs.get_queue_url(QueueName=queue_name))["QueueUrl"]
                catalog = Catalog(aws, self.names)
                self._deletions = _Deletions(
                    aws.sqs, queue_url, self.settings.delete_linger_s, self._log
                )
                self._log.info(
                    "worker started",
                    queue=queue_name,
                    concurrency=settings.worker_concurrency,
                    threads=threads,
                )
                self.ready.set()
                try:
                    await self._poll(ctx, catalog, queue_url)
                finally:
                    await self._drain()
                    await self._deletions.close()
                    if self._shutdown is not None:
                        await self._shutdown(ctx)
        self._log.info(
            "worker stopped",
            **{k: v for k, v in sorted(self.counters.items())},
        )

    async def _poll(self, ctx: WorkContext, catalog: Catalog, queue_url: str) -> None:
        concurrency = self.settings.worker_concurrency
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            async for messages in receive_batches(
                ctx.aws.sqs,
                queue_url,
                self._stopping,
                wait_time_s=self.settings.wait_time_s,
                pause_s=self.settings.receive_pause_s,
                # As many as there are free slots: the rest stay in the queue for other workers.
                batch_size=lambda: concurrency - len(self._in_flight),
                VisibilityTimeout=self.settings.visibility_timeout_s,
                MessageSystemAttributeNames=["ApproximateReceiveCount"],
            ):
                for message in messages:
                    task = asyncio.create_task(self._handle(ctx, catalog, queue_url, message))
                    self._in_flight.add(task)
                    task.add_done_callback(self._in_flight.discard)
                # No poll while every slot is busy (a stop ends the wait, and the loop).
                while len(self._in_flight) >= concurrency and not self._stopping.is_set():
                    await asyncio.wait(
                        {*self._in_flight, stopping}, return_when=asyncio.FIRST_COMPLETED
                    )
        finally:
            stopping.cancel()

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        self._log.info("draining", in_flight=len(self._in_flight))
        _, pending = await asyncio.wait(self._in_flight, timeout=self.settings.stop_timeout_s)
        for task in pending:
            task.cancel()  # each handler releases its message when cancelled
        if pending:
            await asyncio.wait(pending, timeout=5)

    async def _release(self, ctx: WorkContext, queue_url: str, receipt: str, delay: int) -> None:
        try:
            await ctx.aws.sqs.change_message_visibility(
                QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=delay
            )
        except ClientError as exc:
            _log_client_error(self._log, exc, "release failed")

    async def _handle(
        self, ctx: WorkContext, catalog: Catalog, queue_url: str, message: dict[str, Any]
    ) -> None:
        receive_count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        delivery = _Delivery(
            ctx,
            queue_url,
            message,
            receive_count,
            last_try=receive_count >= self.settings.max_receive_count,
            log=self._log.bind(message_id=message.get("MessageId"), receive_count=receive_count),
        )
        try:
            task = StageTask.model_validate_json(message.get("Body", ""))
            if task.stage != self.stage:
                raise ValueError(f"a {task.stage.value} task on the {self.stage.value} queue")
        except (ValidationError, ValueError) as exc:
            await self._settle(Malformed(_reason(exc)), delivery, None)
            return

        delivery.log = delivery.log.bind(image_id=task.image_id)
        with structlog.contextvars.bound_contextvars(
            image_id=task.image_id, stage=self.stage.value
        ):
            await self._work(catalog, delivery, task)

    async def _note_give_up(self, ctx: WorkContext, message: dict[str, Any], reason: str) -> None:
        """The dead letter this message becomes shows why and when (imgproc_shared.dead_letters):
        its last try is this one."""
        try:
            await DeadLetters(ctx.aws, self.settings).note_give_up(
                STAGE_QUEUES[self.stage],
                str(message.get("MessageId")),
                {"code": "Malformed", "message": reason},
            )
        except ClientError as exc:
            self._log.warning("give-up note not written", error=str(exc))

    async def _work(self, catalog: Catalog, delivery: _Delivery, task: StageTask) -> None:
        """Run the handler while keeping the message and the task alive, then settle the
        message by how the work ended."""
        ctx = delivery.ctx
        token = TaskToken(ctx.aws.stepfunctions, task.task_token)
        started_at = now_iso()
        note = _StartedNote(
            catalog, task.image_id, self.stage.value, started_at, self.settings.stage_started_note_s
        )
        delivery.log.info("task started")
        work: asyncio.Task[BaseModel] = asyncio.create_task(self._call_handler(task, ctx))
        keep_alive = asyncio.create_task(
            self._keep_alive(ctx, delivery.queue_url, delivery.receipt, token, work, delivery.log)
        )
        run = _Run(catalog, task, token, note, started_at, time.monotonic(), keep_alive)
        outcome: Outcome
        try:
            try:
                result = await asyncio.shield(work)
            finally:
                keep_alive.cancel()
            outcome = Answered(result.model_dump(mode="json"))
        except (asyncio.CancelledError, Exception) as exc:
            work.cancel()  # a stop cancels this task; the shielded work goes on unless told
            outcome = _outcome_of(exc, keep_alive)
        await self._settle(outcome, delivery, run)

    async def _settle(self, outcome: Outcome, delivery: _Delivery, run: _Run | None) -> None:
        """The one place a message is settled: record the stage's end, answer the task, and
        delete the message or release it, as `outcome` requires."""
        ctx, url, receipt, log = delivery.ctx, delivery.queue_url, delivery.receipt, delivery.log
        if isinstance(outcome, Malformed):
            self.counters["unknown_image" if outcome.unknown_image else "malformed"] += 1
            log.warning("malformed message", reason=outcome.reason)
            if outcome.unknown_image:
                await self._release(ctx, url, receipt, delay=2)
                return
            if delivery.last_try:
                await self._note_give_up(ctx, delivery.message, outcome.reason)
            # Left for the dead-letter queue: it comes back after a short delay until the
            # redrive policy moves it.
            await self._release(ctx, url, receipt, delay=min(2 * delivery.receive_count, 30))
            return
        assert run is not None, "every other outcome is of a parsed task"
        await run.note.settle()

        async def finished(
            error: dict[str, str] | None, output: dict[str, Any] | None = None
        ) -> bool:
            """Record the stage's end (and its result, under `result_attribute`); False, the
            message settled as malformed, when the image is unknown."""
            if await self._record_end(run, error, output):
                return True
            await self._settle(Malformed("unknown image id", unknown_image=True), delivery, run)
            return False

        if isinstance(outcome, Answered):
            try:
                if not await finished(None, outcome.output):
                    return
                answered = await run.token.succeed(outcome.output)
            except (asyncio.CancelledError, Exception) as exc:
                # Recording or answering the result failed: settled as that failure.
                await self._settle(_outcome_of(exc, run.keep_alive), delivery, run)
                return
            if answered:
                self.counters["succeeded"] += 1
                log.info("task succeeded", duration_ms=_ms(run.started))
            else:
                self.counters["stale_token"] += 1
                log.info("task already over; result dropped", duration_ms=_ms(run.started))
            await self._delete(ctx, url, receipt)
        elif isinstance(outcome, Failed):
            try:
                if not await finished({"code": outcome.error, "message": outcome.cause}):
                    return
                answered = await run.token.fail(outcome.error, outcome.cause)
            except ClientError as answer_error:
                if (denial := errors.access_denial(answer_error)) is None:
                    raise
                await self._settle(Denied(denial), delivery, run)
                return
            self.counters["rejected" if outcome.error in errors.REJECTIONS else "failed"] += 1
            log.info("task failed", error=outcome.error, cause=outcome.cause, answered=answered)
            await self._delete(ctx, url, receipt)
        elif isinstance(outcome, Denied):
            await self._fail_denied(ctx, url, receipt, run.token, outcome.denial, finished, log)
        elif isinstance(outcome, Stale):
            self.counters["stale_token"] += 1
            log.info("task already over; work abandoned")
            await asyncio.shield(self._delete(ctx, url, receipt))
        elif isinstance(outcome, Errored):
            cause = f"{type(outcome.exc).__name__}: {outcome.exc}"
            if not await finished({"code": errors.STAGE_FAILED, "message": cause}):
                return
            self.counters["errored"] += 1
            log.error("task errored", cause=cause, last_try=delivery.last_try, exc_info=outcome.exc)
            if delivery.last_try:
                # No more tries: tell the workflow now; the message moves to the DLQ on its
                # next receive, where an operator can replay it.
                await run.token.fail(errors.STAGE_FAILED, cause)
                await self._release(ctx, url, receipt, delay=0)
            else:
                await self._release(ctx, url, receipt, delay=2)
        else:  # Stopped: draining ran past the stop timeout; another worker takes it now
            self.counters["released"] += 1
            log.info("released on stop")
            await asyncio.shield(self._release(ctx, url, receipt, delay=0))
            raise asyncio.CancelledError  # the stop goes on

    async def _record_end(
        self, run: _Run, error: dict[str, str] | None, output: dict[str, Any] | None
    ) -> bool:
        """The stage's end (and its result, under `result_attribute`) on the image; False
        when the image is unknown."""
        await run.note.settle()
        progress = _progress(run.started_at, run.started, error)
        attribute = self.result_attribute
        results = {attribute: output} if attribute and output is not None else None
        return await run.catalog.record_stage(
            run.task.image_id, self.stage.value, progress, results
        )

    async def _fail_denied(
        self,
        ctx: WorkContext,
        queue_url: str,
        receipt: str,
        token: TaskToken,
        denial: errors.Denial,
        finished: Callable[[dict[str, str] | None], Awaitable[bool]],
        log: Any,
    ) -> None:
        """Fail the task with the denial now (retrying cannot grant a permission); if even
        that is denied, leave the message away for a while rather than spin on it."""
        cause = denial.cause(self.service)
        self.counters["denied"] += 1
        log.error("access denied", **denial.log_fields())
        try:
            if not await finished({"code": errors.ACCESS_DENIED, "message": cause}):
                return
        except ClientError as exc:  # the image still shows the reason, from the workflow
            _log_client_error(log, exc, "stage progress not recorded")
        try:
            answered = await token.fail(errors.ACCESS_DENIED, cause)
        except ClientError as exc:
            _log_client_error(log, exc, "task not answered; the message comes back later")
            await self._release(ctx, queue_url, receipt, delay=DENIED_RETRY_DELAY_S)
            return
        log.info("task failed", error=errors.ACCESS_DENIED, cause=cause, answered=answered)
        await self._delete(ctx, queue_url, receipt)

    async def _call_handler(self, task: StageTask, ctx: WorkContext) -> BaseModel:
        raise_injected_fault(self.settings, self.stage)  # test-only switch; off by default
        return await self.handler(task, ctx)

    async def _keep_alive(
        self,
        ctx: WorkContext,
        queue_url: str,
        receipt: str,
        token: TaskToken,
        work: asyncio.Task[Any],
        log: Any,
    ) -> bool | errors.Denial:
        """Extend visibility and heartbeat until cancelled; True when the task turned stale,
        the denial when keeping it alive was denied (either way the work is cancelled)."""
        while True:
            await asyncio.sleep(self.settings.heartbeat_interval_s)
            try:
                await ctx.aws.sqs.change_message_visibility(
                    QueueUrl=queue_url,
                    ReceiptHandle=receipt,
                    VisibilityTimeout=self.settings.visibility_timeout_s,
                )
                if not await token.heartbeat():
                    log.info("task token is over; abandoning work")
                    work.cancel()
                    return True
            except ClientError as exc:
                if (denial := errors.access_denial(exc)) is not None:
                    work.cancel()
                    return denial
                log.warning("keep-alive failed", error=str(exc))

    async def _delete(self, ctx: WorkContext, queue_url: str, receipt: str) -> None:
        if self._deletions is not None:
            self._deletions.add(receipt)
            return
        try:  # not running (a handler test calling in directly): nothing batches, delete now
            await ctx.aws.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt)
        except ClientError as exc:
            # The message returns after its visibility timeout; its token is already answered,
            # so the next delivery is dropped as stale.
            self._log.warning("delete failed", error=str(exc))


@dataclass(frozen=True)
class Answered:
    """The handler's result: recorded with the stage's end, the task answered with it, the
    message deleted."""

    output: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """A named failure (a `TaskError`): recorded, the task failed with it, the message
    deleted (the workflow decides whether to retry)."""

    error: str
    cause: str


@dataclass(frozen=True)
class Errored:
    """An unexpected exception: the message is released to be tried again; on its last try
    the task is failed with the cause and the message left for the dead-letter queue."""

    exc: BaseException


@dataclass(frozen=True)
class Denied:
    """A permission is missing: the task fails at once, since no retry can grant it."""

    denial: errors.Denial


@dataclass(frozen=True)
class Stale:
    """The task is already over (answered, timed out, its execution ended): the work is
    dropped and the message deleted."""


@dataclass(frozen=True)
class Malformed:
    """Not a task this worker can do (not JSON, wrong schema or stage, unknown image): left
    for the dead-letter queue while the worker goes on serving others."""

    reason: str
    unknown_image: bool = False


@dataclass(frozen=True)
class Stopped:
    """Still working when the worker's stop timeout ran out: handed to another worker now."""


Outcome = Answered | Failed | Errored | Denied | Stale | Malformed | Stopped


def _outcome_of(exc: BaseException, keep_alive: asyncio.Task[bool | errors.Denial]) -> Outcome:
    """What an exception from a task's work, or from recording and answering it, means."""
    if isinstance(exc, asyncio.CancelledError):
        # The keep-alive cancels the work when the task turned stale or keeping it alive was
        # denied; anything else that cancels is the worker's stop.
        if (denial := _denied(keep_alive)) is not None:
            return Denied(denial)
        return Stale() if _stale(keep_alive) else Stopped()
    if isinstance(exc, errors.TaskError):
        return Failed(exc.error, exc.cause)
    if _stale(keep_alive):
        return Stale()
    if (denial := errors.access_denial(exc)) is not None:
        return Denied(denial)
    return Errored(exc)


@dataclass
class _Delivery:
    """One received message: where it came from, and how often it was received."""

    ctx: WorkContext
    queue_url: str
    message: dict[str, Any]
    receive_count: int
    last_try: bool
    log: Any

    @property
    def receipt(self) -> str:
        return str(self.message["ReceiptHandle"])


@dataclass
class _Run:
    """A task being worked on: what settling it records and answers."""

    catalog: Catalog
    task: StageTask
    token: TaskToken
    note: _StartedNote
    started_at: str
    started: float  # monotonic
    keep_alive: asyncio.Task[bool | errors.Denial]


class _StartedNote:
    """Writes a stage's "started" progress only if the stage is still running after `delay_s`."""

    def __init__(
        self, catalog: Catalog, image_id: str, stage: str, started_at: str, delay_s: float
    ) -> None:
        self._write: asyncio.Task[bool] | None = None
        self._timer = asyncio.get_running_loop().call_later(
            delay_s, self._fire, catalog, image_id, stage, started_at
        )

    def _fire(self, catalog: Catalog, image_id: str, stage: str, started_at: str) -> None:
        self._write = asyncio.create_task(
            catalog.record_stage(image_id, stage, {"started_at": started_at})
        )

    async def settle(self) -> None:
        """No note from now on; one already being written lands before whatever comes next."""
        self._timer.cancel()
        if self._write is not None:
            await asyncio.gather(self._write, return_exceptions=True)


class _Deletions:
    """Answered messages, deleted in batches of up to 10 at most `linger_s` after the first.

    Deleting later than the answer is safe: until it is deleted a message stays invisible
    (its visibility timeout is far longer), and if this process dies first the message comes
    back with a token that is already answered, which the next worker drops as stale.
    """

    def __init__(self, sqs: Any, queue_url: str, linger_s: float, log: Any) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._linger_s = linger_s
        self._log = log
        self._pending: list[str] = []
        self._timer: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[None]] = set()

    def add(self, receipt: str) -> None:
        self._pending.append(receipt)
        if len(self._pending) >= MAX_BATCH:
            self._send_now()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._send_later())

    async def _send_later(self) -> None:
        await asyncio.sleep(self._linger_s)
        self._timer = None
        self._send_now()

    def _send_now(self) -> None:
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            task = asyncio.create_task(self._send(batch))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _send(self, receipts: list[str]) -> None:
        try:
            failed = await delete_batch(self._sqs, self._queue_url, receipts)
        except ClientError as exc:
            # The messages return after their visibility timeout; their tokens are already
            # answered, so the next delivery is dropped as stale.
            self._log.warning("delete failed", error=str(exc), messages=len(receipts))
            return
        for failure in failed:
            self._log.warning("delete failed", error=failure.get("Message"))

    async def close(self, timeout_s: float = 5.0) -> None:
        """Delete everything still pending now (the worker is stopping), waiting at most
        `timeout_s`: with the endpoint gone (`up` killed) the retries would hold the exit, and
        an undeleted answered message is only dropped as stale when it comes back."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._send_now()
        if self._sending:
            _, late = await asyncio.wait(self._sending, timeout=timeout_s)
            for task in late:
                task.cancel()


def _stale(keep_alive: asyncio.Task[bool | errors.Denial]) -> bool:
    return keep_alive.done() and not keep_alive.cancelled() and keep_alive.result() is True


def _denied(keep_alive: asyncio.Task[bool | errors.Denial]) -> errors.Denial | None:
    if keep_alive.done() and not keep_alive.cancelled():
        result = keep_alive.result()
        return result if isinstance(result, errors.Denial) else None
    return None


def _log_client_error(log: Any, exc: ClientError, event: str) -> None:
    """A denial as an error naming the action and resource; any other failure as a warning."""
    if (denial := errors.access_denial(exc)) is not None:
        log.error(event, **denial.log_fields())
    else:
        log.warning(event, error=str(exc))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)


def _progress(started_at: str, started: float, error: dict[str, str] | None) -> dict[str, Any]:
    progress: dict[str, Any] = {
        "started_at": started_at,
        "finished_at": now_iso(),
        "duration_ms": _ms(started),
    }
    if error:
        progress["error"] = error
    return progress


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return f"{where}: {first.get('msg')}"
    return str(exc)


def run_worker(
    service: str,
    stage: Stage,
    handler: Handler,
    *,
    setup: Hook | None = None,
    setup_failures: Mapping[type[Exception], str] | None = None,
    shutdown: Hook | None = None,
    result_attribute: str | None = None,
) -> None:
    """Entry point of a worker process: logs, signals, run until SIGTERM/SIGINT (the hooks
    and `result_attribute`: see `Worker`). A worker that cannot start (a `setup_failures`
    error, or a denial while finding its queue) logs one error line and exits with
    `EXIT_UNRECOVERABLE`, so its supervisor does not restart it into the same error."""
    settings = get_settings()
    configure_logging(service, settings.log_level)

    async def main() -> None:
        worker = Worker(
            stage,
            handler,
            settings,
            setup=setup,
            setup_failures=setup_failures,
            shutdown=shutdown,
            result_attribute=result_attribute,
            service=service,
        )
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.stop)
        await worker.run()

    log = get_logger(stage=stage.value)
    try:
        asyncio.run(main())
    except CannotStart as exc:
        log.error(f"{service} cannot start: {exc.what}", cause=exc.cause)
        sys.exit(errors.EXIT_UNRECOVERABLE)
    except ClientError as exc:
        if (denial := errors.access_denial(exc)) is None:
            raise
        # Denied while starting (finding its queue, say): restarting cannot grant it.
        log.error("access denied; the worker cannot start", **denial.log_fields())
        sys.exit(errors.EXIT_UNRECOVERABLE)
