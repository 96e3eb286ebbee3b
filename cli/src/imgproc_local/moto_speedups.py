"""Make the embedded moto server fast enough to load-test, and count what it serves.

moto's Step Functions interpreter redoes, per execution and per state, work whose result never
changes (FACTS.md, "moto 5.2.5"). Each patch below removes one such cost without changing what
moto computes:

- parsed programs: `StartExecution` ran the ANTLR parser (and the preprocessor, which parses
  every intrinsic function again) on the definition for every execution; the evaluation tree is
  now built once per definition string and shared. Its components keep no per-execution state
  (that lives in the execution's `Environment`); the one lazily set attribute, the heap key of a
  component, is made race-free so concurrent executions agree on it;
- JSONPath: every `InputPath`, `ResultPath` and `.$` parameter re-parsed its path with
  jsonpath-ng's (PLY) parser on every use; parsed paths are immutable and now memoized;
- a new boto3 client per service task: clients are cached per (region, service);
- service tasks over HTTP: each DynamoDB/SNS/SQS call a state makes went from the interpreter's
  boto3 client through a socket back into this same server (botocore serializing and signing,
  werkzeug parsing, a thread per connection), about a sixth of the endpoint's CPU in a load test.
  Those clients now hand the request to moto's own in-process dispatcher (the one `mock_aws`
  uses), which runs the same backend code; each call is still counted as the API call it is;
- request dispatch: finding the backend for a request's host listed moto's package directory
  and stat-ed each of its ~200 entries, under the dispatcher's global lock, on every request;
  the answer for a host never changes and is now remembered;
- the per-request access log (a formatted line on `up`'s stdout for every API call) is off;
- clocks and class introspection: `unix_time()` built two datetimes per call (~11 us) and SQS
  asks it two or three times per message held in a queue on every send, receive and attribute
  read; it is now `time.time()` when no datetime is given (the same number). Dispatching a
  request listed the handler class's methods with `inspect.getmembers` each time; that list is
  now computed once per class; an update expression is parsed once per distinct string;
- `SendTaskSuccess/Failure/Heartbeat` scanned every execution of every state machine for the
  token, so each callback cost more the longer the server lived; the execution that issued a
  token is now indexed by the token (falling back to the scan for tokens not in the index).

Every moto name a patch relies on is declared in `PATCH_TARGETS` and checked before the patch
is applied (and by tests/unit/test_moto_patch_targets.py): moto is pinned to 5.2.5, and an
upgrade that moves a name fails naming the patch.

`IMGPROC_MOTO_SPEEDUPS=0` leaves moto as it ships (used only to measure the baseline). Three
fixes are installed either way. A `SendTaskHeartbeat` that arrives before the interpreter has
started waiting on the task (a fast worker) was refused with `InvalidToken`; AWS accepts it, and
so does this endpoint now. Each DynamoDB request is atomic, as on AWS: moto applies an
UpdateItem's actions one by one to the stored item and serializes a read from the live item, so
a concurrent GetItem could see part of an update (a PROCESSED image without the renditions
written with it). And an SQS long poll ends when the endpoint stops (moto waited out
`WaitTimeSeconds` on the server thread, so stopping waited for it too). POST uploads obey their
signed policy, as on AWS (`s3_post_policy`). The request counter is
installed either way too: it is what `imgproc loadtest` reads (GET `/_imgproc/stats`) to report
the AWS API calls per image.
Requests that the hosting process makes with its own aiobotocore clients (`imgproc up`'s
bootstrap, snapshots and queue watching) carry a marker header and are counted apart, as
housekeeping that AWS would not see.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import io
import json
import os
import sys
import threading
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from imgproc_cli import s3_post_policy

# --- what the patches rely on -----------------------------------------------------------------


@dataclass(frozen=True)
class PatchTarget:
    """One name inside moto (or the libraries around it) that a patch replaces or relies on.

    `parameters`: the leading parameter names the patch calls it with or replaces it by (a
    moved or renamed parameter breaks the patch as surely as a moved name). `assigns`: an
    instance attribute the patch reads, which this function (an `__init__`) must set.
    """

    patch: str
    module: str
    name: str  # dotted inside the module: "Class.method" or "function"
    parameters: tuple[str, ...] | None = None
    assigns: str | None = None
    owner: str = "moto_speedups"  # the module holding the patch

    def problem(self) -> str | None:
        """Why the patch would break on the installed version; None when the name is there."""
        where = f"{self.module}.{self.name}"
        distribution = self.module.split(".", 1)[0]
        try:
            version = importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            version = "(not installed)"

        def broken(what: str) -> str:
            return (
                f"{self.owner}.{self.patch} relies on {what}, which {distribution} {version} "
                f"no longer has: update the patch in {self.owner}.py for this version, or keep "
                "the pinned one"
            )

        try:
            found: Any = importlib.import_module(self.module)
        except ImportError:
            return broken(f"the module {self.module}")
        for part in self.name.split("."):
            try:
                found = inspect.getattr_static(found, part)
            except AttributeError:
                return broken(where)
        function: Any = found.fget if isinstance(found, property) else found
        if isinstance(function, (classmethod, staticmethod)):
            function = function.__func__
        if self.parameters is not None:
            try:
                names = tuple(inspect.signature(function).parameters)
            except (TypeError, ValueError):
                return broken(f"{where}({', '.join(self.parameters)})")
            if names[: len(self.parameters)] != self.parameters:
                return broken(
                    f"{where}({', '.join(self.parameters)}) (it has ({', '.join(names)}))"
                )
        if self.assigns is not None:
            try:
                source = inspect.getsource(function)
            except (OSError, TypeError):
                source = ""
            if f"{self.assigns} =" not in source and f"{self.assigns}:" not in source:
                return broken(f"{where} setting {self.assigns}")
        return None


_SFN = "moto.stepfunctions.parser"
_CALLBACK = f"{_SFN}.asl.component.state.exec.state_task.service.state_task_service_callback"
# Every name a patch here or in `embedded_aws` replaces or relies on, by patch. `install` checks
# a patch's names before applying it, and tests/unit/test_moto_patch_targets.py checks them all:
# an upgrade of moto that moves one fails with the patch's name instead of misbehaving.
PATCH_TARGETS: tuple[PatchTarget, ...] = (
    PatchTarget(
        "program_cache",
        f"{_SFN}.backend.execution_worker",
        "ExecutionWorker._get_evaluation_entrypoint",
        ("self",),
    ),
    PatchTarget(
        "program_cache",
        f"{_SFN}.backend.execution_worker",
        "ExecutionWorker.__init__",
        assigns="self._evaluation_details",
    ),
    PatchTarget(
        "program_cache",
        f"{_SFN}.asl.parse.asl_parser",
        "AmazonStateLanguageParser.parse",
        ("definition",),
    ),
    PatchTarget(
        "program_cache", f"{_SFN}.asl.component.eval_component", "EvalComponent.heap_key", ("self",)
    ),
    PatchTarget("program_cache", f"{_SFN}.utils", "long_uid"),
    PatchTarget("jsonpath_cache", f"{_SFN}.asl.utils.json_path", "parse"),
    PatchTarget("jsonpath_cache", f"{_SFN}.asl.component.common.path.result_path", "parse"),
    PatchTarget(
        "client_cache",
        f"{_SFN}.asl.utils.boto_client",
        "boto_client_for",
        ("region", "service", "state_credentials"),
    ),
    PatchTarget(
        "in_process_service_tasks",
        "moto.core.botocore_stubber",
        "BotocoreStubber.__call__",
        ("self", "event_name", "request"),
    ),
    PatchTarget(
        "token_index",
        f"{_SFN}.backend.execution",
        "Execution._get_start_execution_worker",
        ("self",),
    ),
    PatchTarget(
        "token_index", f"{_SFN}.backend.execution", "Execution.__init__", assigns="self.exec_status"
    ),
    PatchTarget(
        "token_index",
        f"{_SFN}.backend.execution_worker",
        "ExecutionWorker._get_evaluation_environment",
        ("self",),
    ),
    PatchTarget(
        "token_index",
        f"{_SFN}.asl.eval.callback.callback",
        "CallbackPoolManager.add",
        ("self", "callback_id"),
    ),
    PatchTarget(
        "token_index",
        f"{_SFN}.models",
        "StepFunctionsParserBackend.send_task_heartbeat",
        ("self", "task_token"),
    ),
    PatchTarget(
        "token_index",
        f"{_SFN}.models",
        "StepFunctionsParserBackend.send_task_success",
        ("self", "task_token"),
    ),
    PatchTarget(
        "token_index",
        f"{_SFN}.models",
        "StepFunctionsParserBackend.send_task_failure",
        ("self", "task_token"),
    ),
    PatchTarget(
        "token_index",
        f"{_SFN}.models",
        "StepFunctionsParserBackend._get_executions",
        ("self", "execution_status"),
    ),
    PatchTarget(
        "backend_lookup_cache",
        "moto.moto_server.werkzeug_app",
        "DomainDispatcherApplication.get_backend_for_host",
        ("self", "host"),
    ),
    PatchTarget("hot_path_helpers", "moto.core.utils", "unix_time", ("dt",)),
    PatchTarget("hot_path_helpers", "moto.core.utils", "unix_time_millis", ("dt",)),
    PatchTarget("hot_path_helpers", "moto.core.utils", "method_names_from_class", ("clazz",)),
    PatchTarget(
        "hot_path_helpers",
        "moto.dynamodb.parsing.expressions",
        "UpdateExpressionParser.make",
        ("cls", "expression_str"),
    ),
    PatchTarget(
        "request_counter",
        "moto.moto_server.werkzeug_app",
        "DomainDispatcherApplication.__call__",
        ("self", "environ", "start_response"),
    ),
    PatchTarget(
        "local_origin", "aiobotocore.httpsession", "AIOHTTPSession.send", ("self", "request")
    ),
    PatchTarget(
        "early_heartbeat",
        f"{_SFN}.asl.eval.callback.callback",
        "CallbackEndpoint.notify_heartbeat",
        ("self",),
    ),
    PatchTarget(
        "atomic_dynamodb", "moto.dynamodb.responses", "DynamoHandler.call_action", ("self",)
    ),
    PatchTarget(
        "long_polls_end_on_stop", "moto.sqs.models", "Queue.wait_for_messages", ("self", "timeout")
    ),
    PatchTarget(
        "long_polls_end_on_stop", "moto.sqs.models", "Queue.__init__", assigns="self._messages_lock"
    ),
    PatchTarget("long_polls_end_on_stop", "moto.sqs.models", "Queue.messages", ("self",)),
    PatchTarget(
        "long_polls_end_on_stop",
        "moto.sqs.models",
        "SQSBackend.receive_message",
        ("self", "queue_name", "count", "wait_seconds_timeout"),
    ),
    # embedded_aws's fixes of the Step Functions interpreter.
    PatchTarget(
        "heartbeat_race",
        _CALLBACK,
        "StateTaskServiceCallback._wait_for_task_token_heartbeat",
        ("self", "env", "callback_endpoint", "heartbeat_endpoint"),
        owner="embedded_aws",
    ),
    PatchTarget(
        "heartbeat_race",
        f"{_SFN}.asl.eval.callback.callback",
        "HeartbeatTimedOut",
        owner="embedded_aws",
    ),
    PatchTarget(
        "fresh_token_per_attempt",
        _CALLBACK,
        "StateTaskServiceCallback._eval_execution",
        ("self", "env"),
        owner="embedded_aws",
    ),
    PatchTarget(
        "fresh_token_per_attempt",
        f"{_SFN}.asl.component.state.exec.state_task.service.resource",
        "ResourceCondition.WaitForTaskToken",
        owner="embedded_aws",
    ),
    PatchTarget(
        "task_failure_cause",
        "moto.stepfunctions.responses",
        "StepFunctionResponse.send_task_failure",
        ("self",),
        owner="embedded_aws",
    ),
    PatchTarget(
        "task_failure_cause",
        f"{_SFN}.models",
        "StepFunctionsParserBackend.send_task_failure",
        ("self", "task_token", "error", "cause"),
        owner="embedded_aws",
    ),
    PatchTarget("task_failure_cause", "moto.core.responses", "EmptyResult", owner="embedded_aws"),
    # s3_post_policy: POST uploads obey their signed policy.
    PatchTarget(
        "s3_post_policy",
        "moto.s3.responses",
        "S3Response._bucket_response_post",
        ("self", "request", "bucket_name"),
        owner="s3_post_policy",
    ),
    PatchTarget(
        "s3_post_policy",
        "moto.s3.responses",
        "S3Response._get_path",
        ("request",),
        owner="s3_post_policy",
    ),
    PatchTarget(
        "s3_post_policy",
        "moto.s3.responses",
        "S3Response.is_delete_keys",
        ("self",),
        owner="s3_post_policy",
    ),
    PatchTarget(
        "s3_post_policy",
        "moto.core.responses",
        "BaseResponse.setup_class",
        ("self", "request"),
        assigns="self.form_data",
        owner="s3_post_policy",
    ),
    # partition_query: a Query on a table's key reads that partition only.
    PatchTarget(
        "partition_query",
        "moto.dynamodb.models.table",
        "Table.query",
        (
            "self",
            "hash_key",
            "range_comparison",
            "range_objs",
            "limit",
            "exclusive_start_key",
            "scan_index_forward",
            "projection_expressions",
            "index_name",
        ),
    ),
    PatchTarget("partition_query", "moto.dynamodb.models.table", "Table.all_items", ("self",)),
    PatchTarget(
        "partition_query", "moto.dynamodb.models.table", "Table.__init__", assigns="self.items"
    ),
)


def target_problems(patch: str | None = None) -> list[str]:
    """What the installed libraries lack of the names `patch` (every patch: None) relies on."""
    return [
        problem
        for target in PATCH_TARGETS
        if patch is None or target.patch == patch
        if (problem := target.problem()) is not None
    ]


def check_targets(patch: str) -> None:
    """Refuse to apply a patch whose names moved: it would fail, or do nothing, silently."""
    problems = target_problems(patch)
    if problems:
        raise RuntimeError("; ".join(problems))


STATS_PATH = "/_imgproc/stats"
SPEEDUPS_ENV = "IMGPROC_MOTO_SPEEDUPS"
_JSONPATH_CACHE_SIZE = 4096
_EXPRESSION_CACHE_SIZE = 1024

_installed: set[str] = set()
# Installed either way: measurement, and fixes; not speedups.
_MEASUREMENT = {
    "request_counter",
    "local_origin",
    "early_heartbeat",
    "atomic_dynamodb",
    "long_polls_end_on_stop",
    "s3_post_policy",
}
_install_lock = threading.Lock()


def installed() -> frozenset[str]:
    """The patches active in this process (none until `install`)."""
    with _install_lock:
        return frozenset(_installed)


def speedups_enabled() -> bool:
    """False only when `IMGPROC_MOTO_SPEEDUPS=0` (the stock-moto baseline)."""
    return os.environ.get(SPEEDUPS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def patches_to_install(*, speedups: bool) -> list[tuple[str, Callable[[], None]]]:
    """Each patch `install` applies, by name (the names PATCH_TARGETS files its targets under)."""
    patches: list[tuple[str, Callable[[], None]]] = [
        ("request_counter", _patch_request_counter),
        ("local_origin", _patch_local_origin),
        ("early_heartbeat", _patch_early_heartbeat),
        ("atomic_dynamodb", _patch_atomic_dynamodb),
        ("long_polls_end_on_stop", _patch_long_polls_end_on_stop),
        ("s3_post_policy", s3_post_policy.patch_post_policy),
    ]
    if speedups:
        patches += [
            ("program_cache", _patch_program_cache),
            ("jsonpath_cache", _patch_jsonpath_cache),
            ("client_cache", patch_client_per_task),
            ("in_process_service_tasks", _patch_in_process_service_tasks),
            ("token_index", _patch_token_index),
            ("backend_lookup_cache", _patch_backend_lookup),
            ("quiet_request_log", _quiet_request_log),
            ("hot_path_helpers", _patch_hot_path_helpers),
            ("partition_query", _patch_partition_query),
        ]
    return patches


def install(*, speedups: bool | None = None) -> list[str]:
    """Install the request counter and (unless disabled) the speedups; idempotent.

    Returns the names of the patches now active in this process.
    """
    if speedups is None:
        speedups = speedups_enabled()
    patches = patches_to_install(speedups=speedups)
    with _install_lock:
        for name, patch in patches:
            if name not in _installed:
                check_targets(name)
                patch()
                _installed.add(name)
        return sorted(_installed)


# --- parsed programs ------------------------------------------------------------------------

_program_cache: dict[str, Any] = {}
_program_lock = threading.Lock()
_parse_lock = threading.Lock()
program_cache_stats: Counter[str] = Counter()


def _patch_program_cache() -> None:
    from moto.stepfunctions.parser.asl.component.eval_component import EvalComponent
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.parser.utils import long_uid

    def get_evaluation_entrypoint(self: Any) -> Any:
        definition = self._evaluation_details.state_machine_details.definition
        with _program_lock:
            program = _program_cache.get(definition)
            if program is not None:
                program_cache_stats["hits"] += 1
                return program
        # One parse per definition: executions started in a burst wait for the first parse
        # instead of each parsing the same text again (definitions are few; one lock will do).
        with _parse_lock:
            with _program_lock:
                program = _program_cache.get(definition)
            if program is not None:
                with _program_lock:
                    program_cache_stats["hits"] += 1
                return program
            program = AmazonStateLanguageParser.parse(definition)[0]
            with _program_lock:
                program_cache_stats["misses"] += 1
                _program_cache[definition] = program
            return program

    ExecutionWorker._get_evaluation_entrypoint = get_evaluation_entrypoint  # type: ignore[method-assign]

    # A component's heap key (where retry counters live in an execution's heap) is created on
    # first use; with a shared tree two executions could each create one and lose a counter.
    heap_key_lock = threading.Lock()

    def heap_key(self: Any) -> str:
        key: str | None = self.__dict__.get("_EvalComponent__heap_key")
        if key is None:
            with heap_key_lock:
                key = self.__dict__.get("_EvalComponent__heap_key")
                if key is None:
                    key = long_uid()
                    self._EvalComponent__heap_key = key
        return key

    EvalComponent.heap_key = property(heap_key)  # type: ignore[method-assign,assignment]


# --- JSONPath ---------------------------------------------------------------------------------


def _patch_jsonpath_cache() -> None:
    import jsonpath_ng
    import jsonpath_ng.ext
    from moto.stepfunctions.parser.asl.component.common.path import result_path
    from moto.stepfunctions.parser.asl.utils import json_path

    json_path.parse = functools.lru_cache(maxsize=_JSONPATH_CACHE_SIZE)(jsonpath_ng.ext.parse)  # type: ignore[attr-defined]
    result_path.parse = functools.lru_cache(maxsize=_JSONPATH_CACHE_SIZE)(jsonpath_ng.parse)  # type: ignore[attr-defined]


def jsonpath_cache_info() -> Any:
    """lru_cache statistics of the memoized JSONPath parser (None when not installed)."""
    from moto.stepfunctions.parser.asl.utils import json_path

    info = getattr(json_path.parse, "cache_info", None)  # type: ignore[attr-defined]
    return info() if info else None


# --- boto3 clients of service tasks -----------------------------------------------------------


# What makes a service task's client: moto's own (HTTP to this server) unless replaced.
_client_factory: list[Callable[..., Any]] = []


def patch_client_per_task() -> None:
    """Cache the interpreter's boto3 clients per (region, service) instead of one per task."""
    from moto.stepfunctions.parser.asl.utils import boto_client as boto_client_module

    original = boto_client_module.boto_client_for
    if getattr(original, "_imgproc_cached", False):
        return
    _client_factory[:] = [original]
    cache: dict[tuple[str, str], Any] = {}
    lock = threading.Lock()

    def cached_boto_client_for(region: str, service: str, state_credentials: Any = None) -> Any:
        key = (region, service)
        with lock:
            if key not in cache:
                cache[key] = _client_factory[0](region, service, state_credentials)
            return cache[key]

    cached_boto_client_for._imgproc_cached = True  # type: ignore[attr-defined]
    boto_client_module.boto_client_for = cached_boto_client_for
    # Modules that imported the function by name keep their own reference: rebind those too.
    for module in list(sys.modules.values()):
        if getattr(module, "boto_client_for", None) is original:
            setattr(module, "boto_client_for", cached_boto_client_for)  # noqa: B010


def _patch_in_process_service_tasks() -> None:
    """Serve the interpreter's service-task calls in process instead of over loopback HTTP."""
    from moto.core.botocore_stubber import BotocoreStubber

    patch_client_per_task()  # the in-process clients are made once per (region, service) too
    stubber = BotocoreStubber()
    stubber.enabled = True

    def dispatch(event_name: str, request: Any, **kwargs: Any) -> Any:
        # "before-send.<service>.<Operation>": count it like a request the server received.
        _, service, action = [*event_name.split("."), "", ""][:3]
        cpu_before = time.thread_time()
        response = stubber(event_name, request, **kwargs)
        cpu = time.thread_time() - cpu_before
        with _requests_lock:
            _requests[(service, action)] += 1
            _served_in_process[(service, action)] += 1
            _request_cpu_s[(service, action)] += cpu
        return response

    def in_process_client(region: str, service: str, state_credentials: Any = None) -> Any:
        import boto3
        from botocore import UNSIGNED
        from botocore.config import Config

        client: Any = boto3.client(
            service_name=service,  # type: ignore[call-overload]
            region_name=region,
            aws_access_key_id="ak",
            aws_secret_access_key="sk",
            # No endpoint_url: the request carries the AWS host, which is what moto's
            # dispatcher matches on; nothing leaves the process.
            config=Config(
                parameter_validation=False,
                retries={"max_attempts": 0, "total_max_attempts": 1},
                # Never leaves the process: nothing to sign (moto takes the default account
                # from an unsigned request, the same one the "ak" key maps to).
                signature_version=UNSIGNED,
            ),
        )
        client.meta.events.register("before-send", dispatch)
        return client

    _client_factory[0] = in_process_client


# --- task tokens ------------------------------------------------------------------------------

# token -> the execution whose interpreter created it; weak, so finished executions that moto
# drops are not kept alive by the index.
_token_owner: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
token_index_stats: Counter[str] = Counter()


def _patch_token_index() -> None:
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackPoolManager
    from moto.stepfunctions.parser.backend.execution import Execution
    from moto.stepfunctions.parser.backend.execution_worker import ExecutionWorker
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    # A token is issued by the callback pool of an execution's environment, which knows nothing
    # of the execution: tag the worker with its execution, and the pool with the worker's.
    original_worker = Execution._get_start_execution_worker

    def start_execution_worker(self: Any) -> Any:
        worker: Any = original_worker(self)
        worker._imgproc_execution = self
        return worker

    Execution._get_start_execution_worker = start_execution_worker  # type: ignore[method-assign]

    original_environment = ExecutionWorker._get_evaluation_environment

    def evaluation_environment(self: Any) -> Any:
        env: Any = original_environment(self)
        # Inner frames (Parallel branches, Map iterations) share this pool.
        env.callback_pool_manager._imgproc_execution = getattr(self, "_imgproc_execution", None)
        return env

    ExecutionWorker._get_evaluation_environment = evaluation_environment  # type: ignore[method-assign]

    original_add = CallbackPoolManager.add

    def add(self: Any, callback_id: str) -> Any:
        endpoint = original_add(self, callback_id)
        owner = getattr(self, "_imgproc_execution", None)
        if owner is not None:
            _token_owner[callback_id] = owner
        return endpoint

    CallbackPoolManager.add = add  # type: ignore[method-assign]

    def indexed(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def wrapper(self: Any, task_token: str, *args: Any, **kwargs: Any) -> Any:
            owner = _token_owner.get(task_token)
            if owner is None:
                token_index_stats["misses"] += 1
                return method(self, task_token, *args, **kwargs)
            token_index_stats["hits"] += 1
            # The original, with its scan narrowed to the owning execution: the same status
            # filter, checks, errors and outcome.
            return method(_Narrowed(self, owner), task_token, *args, **kwargs)

        return wrapper

    for name in ("send_task_heartbeat", "send_task_success", "send_task_failure"):
        setattr(
            StepFunctionsParserBackend, name, indexed(getattr(StepFunctionsParserBackend, name))
        )


def _patch_partition_query() -> None:
    """A `Query` on a table's own key reads its one partition: moto listed and sorted every
    item of the table for each query, so a search table of some 300,000 entries took seconds
    per query. The original runs unchanged on a view of the table that holds only the
    partition (the same items it would have kept, in the same order)."""
    from moto.dynamodb.models.table import Table

    original: Any = Table.query

    def query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        if index_name is None and hash_key is not None and self.range_key_attr:
            return original(_OnePartition(self, hash_key), hash_key, *args, **kwargs)
        return original(self, hash_key, *args, **kwargs)

    Table.query = query  # type: ignore[method-assign]


class _OnePartition:
    """A table as one query on its key sees it: only the partition's items."""

    def __init__(self, table: Any, hash_key: Any) -> None:
        self._table = table
        self._hash_key = hash_key

    def all_items(self) -> list[Any]:
        # Already in order, the query's own sort (DynamoType comparisons) is one linear pass.
        partition = (self._table.items.get(self._hash_key) or {}).values()
        return sorted(partition, key=lambda item: item.range_key.cast_value)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._table, name)


class _Narrowed:
    """The backend as one SendTask* call sees it: its only execution is the token's owner."""

    def __init__(self, backend: Any, owner: Any) -> None:
        self._backend = backend
        self._owner = owner

    def _get_executions(self, execution_status: Any = None) -> list[Any]:
        if execution_status is None or self._owner.exec_status == execution_status:
            return [self._owner]
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


# --- request dispatch -------------------------------------------------------------------------


def _patch_backend_lookup() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original = DomainDispatcherApplication.get_backend_for_host

    def get_backend_for_host(self: Any, host: str | None) -> Any:
        # Called under the dispatcher's lock; a pure function of `host` for a given dispatcher.
        cache: dict[str | None, Any] = self.__dict__.setdefault("_imgproc_backend_for_host", {})
        if host not in cache:
            cache[host] = original(self, host)
        return cache[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host  # type: ignore[method-assign]


def _patch_hot_path_helpers() -> None:
    import moto.core.responses
    import moto.core.utils as moto_utils

    # Import the backends that call these helpers, so the rebinding below reaches them.
    import moto.dynamodb.models
    import moto.s3.models
    import moto.sns.models
    import moto.sqs.models
    import moto.stepfunctions.models  # noqa: F401

    original_unix_time = moto_utils.unix_time
    original_unix_time_millis = moto_utils.unix_time_millis

    def unix_time(dt: Any = None) -> float:
        return time.time() if dt is None else original_unix_time(dt)

    def unix_time_millis(dt: Any = None) -> float:
        return time.time() * 1000.0 if dt is None else original_unix_time_millis(dt)

    methods = functools.cache(moto_utils.method_names_from_class)
    replacements: dict[int, Callable[..., Any]] = {
        id(original_unix_time): unix_time,
        id(original_unix_time_millis): unix_time_millis,
        id(moto_utils.method_names_from_class): methods,
    }
    # Modules that imported a helper by name keep their own reference: rebind those too.
    for module in [m for name, m in list(sys.modules.items()) if name.startswith("moto")]:
        for attribute, value in list(vars(module).items()):
            if id(value) in replacements:
                setattr(module, attribute, replacements[id(value)])

    # An UpdateItem parsed its update expression twice (request check, then the update); the
    # tree is only read (the validator works on its own deep copy), so one parse per string.
    from moto.dynamodb.parsing import expressions

    parser: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]
    parse = parser.make.__func__

    @functools.lru_cache(maxsize=_EXPRESSION_CACHE_SIZE)
    def parsed(cls: Any, expression: str) -> Any:
        return parse(cls, expression)

    parser.make = classmethod(parsed)  # type: ignore[arg-type]


def _quiet_request_log() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)


# --- request counter --------------------------------------------------------------------------

LOCAL_ORIGIN_HEADER = "X-Imgproc-Local-Origin"
_LOCAL_ORIGIN_ENVIRON = "HTTP_X_IMGPROC_LOCAL_ORIGIN"
_requests: Counter[tuple[str, str]] = Counter()
_housekeeping: Counter[tuple[str, str]] = Counter()
_served_in_process: Counter[tuple[str, str]] = Counter()  # part of _requests, not over HTTP
# CPU seconds in moto's handlers, by action (HTTP and in-process requests).
_request_cpu_s: defaultdict[tuple[str, str], float] = defaultdict(float)
_requests_lock = threading.Lock()
_counting_since = time.time()


def request_counts() -> dict[str, Any]:
    """What the embedded server has served since it started, by service and action."""
    with _requests_lock:
        snapshot = dict(_requests)
        housekeeping = dict(_housekeeping)
        in_process = dict(_served_in_process)
        cpu = {key: round(value, 4) for key, value in _request_cpu_s.items()}
    return {
        "since": _counting_since,
        "total": sum(snapshot.values()),
        "requests": _by_service(snapshot),
        "housekeeping_requests": _by_service(housekeeping),
        "served_in_process": _by_service(in_process),
        "request_cpu_s": _by_service(cpu),
        "speedups": sorted(_installed - _MEASUREMENT),
        "program_cache": dict(program_cache_stats),
        "token_index": dict(token_index_stats),
    }


def _by_service(counts: dict[tuple[str, str], Any]) -> dict[str, dict[str, Any]]:
    by_service: dict[str, dict[str, Any]] = {}
    for (service, action), count in sorted(counts.items()):
        by_service.setdefault(service, {})[action] = count
    return by_service


def _service_of(environ: dict[str, Any], query: dict[str, list[str]]) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    credential = ""
    if "Credential=" in auth:
        credential = auth.split("Credential=", 1)[1].split(",", 1)[0]
    elif "X-Amz-Credential" in query:
        credential = query["X-Amz-Credential"][0]
    parts = credential.split("/")
    return parts[3] if len(parts) >= 5 else "unknown"


_S3_ACTIONS = {
    "PUT": "PutObject",
    "POST": "PostObject",
    "GET": "GetObject",
    "HEAD": "HeadObject",
    "DELETE": "DeleteObject",
}


def _action_of(environ: dict[str, Any], service: str, query: dict[str, list[str]]) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return str(target.rsplit(".", 1)[-1])
    if "Action" in query:
        return query["Action"][0]
    method = str(environ.get("REQUEST_METHOD", "GET"))
    if service == "s3":
        path = str(environ.get("PATH_INFO", "")).strip("/")
        if "/" not in path:  # bucket-level: ListObjects, CreateBucket, notifications...
            return f"{method}Bucket"
        return _S3_ACTIONS.get(method, method)
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if content_type.startswith("application/x-www-form-urlencoded"):
        # Query protocol (SNS): the action is in the form body; read it and put it back.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if 0 < length <= 1 << 20:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            form = parse_qs(body.decode("utf-8", "replace"))
            if "Action" in form:
                return form["Action"][0]
    return method


def _patch_request_counter() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original_call = DomainDispatcherApplication.__call__

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path == STATS_PATH:
            body = json.dumps(request_counts()).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        if path.startswith("/moto-api"):
            moto_api: Iterable[bytes] = original_call(self, environ, start_response)
            return moto_api
        cpu_before = time.thread_time()
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        service = _service_of(environ, query)
        key = (service, _action_of(environ, service, query))
        local = _LOCAL_ORIGIN_ENVIRON in environ
        result: Iterable[bytes] = original_call(self, environ, start_response)
        # CPU of this request's thread in the application (parsing, backend, serializing):
        # where the endpoint's time goes, by action (the HTTP server's own share is not in it).
        cpu = time.thread_time() - cpu_before
        with _requests_lock:
            (_housekeeping if local else _requests)[key] += 1
            if not local:
                _request_cpu_s[key] += cpu
        return result

    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]


def _patch_local_origin() -> None:
    """Mark requests sent by this process's own aiobotocore clients (the hosting `up` process's
    bootstrap and snapshots; the interpreter's boto3 clients are untouched)."""
    from aiobotocore.httpsession import AIOHTTPSession

    original_send = AIOHTTPSession.send

    async def send(self: Any, request: Any) -> Any:
        request.headers[LOCAL_ORIGIN_HEADER] = "1"
        return await original_send(self, request)

    AIOHTTPSession.send = send  # type: ignore[method-assign]


def _patch_early_heartbeat() -> None:
    from moto.stepfunctions.parser.asl.eval.callback.callback import CallbackEndpoint

    original = CallbackEndpoint.notify_heartbeat

    def notify_heartbeat(self: Any) -> bool:
        # The token is live (its endpoint exists and no consumer error was raised); before the
        # heartbeat wait is set up there is nothing to extend, and that wait starts fresh.
        original(self)
        return True

    CallbackEndpoint.notify_heartbeat = notify_heartbeat  # type: ignore[method-assign]


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


# --- stopping ---------------------------------------------------------------------------------

# Set when the endpoint stops: SQS long polls still waiting end at once, with no messages.
_endpoint_stopping = threading.Event()
_waiting_queues: weakref.WeakSet[Any] = weakref.WeakSet()
_waiting_lock = threading.Lock()


class _LongPollEnded(Exception):
    pass


def _patch_long_polls_end_on_stop() -> None:
    """End SQS long polls when the endpoint stops.

    moto's `ReceiveMessage` waits out its `WaitTimeSeconds` (up to 20 s) on the server thread
    even after the client went away (a stopped worker): the server could not stop its threads
    until then ("N thread(s) still running"). A wait now also ends when the endpoint stops,
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
