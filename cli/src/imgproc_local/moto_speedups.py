"""Make the embedded moto server fast enough to load-test: off with `IMGPROC_MOTO_SPEEDUPS=0`.

moto's Step Functions interpreter redoes, per execution and per state, work whose result never
changes (docs/FACTS.md, "moto 5.2.5"). Each patch below removes one such cost without changing
what moto computes, so an endpoint without them answers the same (tests/integration/
test_moto_speedups.py runs the same executions both ways):

- parsed programs: moto's `StartExecution` runs the ANTLR parser (and the preprocessor, which
  parses every intrinsic function again) on the definition for every execution; here the
  evaluation tree is built once per definition string and shared. Its components keep no
  per-execution state (that lives in the execution's `Environment`); the one lazily set
  attribute, the heap key of a component, is made race-free so concurrent executions agree on
  it;
- JSONPath: every `InputPath`, `ResultPath` and `.$` parameter re-parses its path with
  jsonpath-ng's (PLY) parser on every use; parsed paths are immutable, so they are memoized;
- a new boto3 client per service task: clients are cached per (region, service);
- service tasks over HTTP: each DynamoDB/SNS/SQS call a state makes goes from the interpreter's
  boto3 client through a socket back into this same server (botocore serializing and signing,
  werkzeug parsing, a thread per connection), about a sixth of the endpoint's CPU in a load test.
  Here those clients hand the request to moto's own in-process dispatcher (the one `mock_aws`
  uses), which runs the same backend code; each call is still counted as the API call it is
  (`request_counter`);
- request dispatch: finding the backend for a request's host lists moto's package directory
  and stats each of its ~200 entries, under the dispatcher's global lock, on every request;
  the answer for a host never changes, so it is remembered;
- the per-request access log (a formatted line on `up`'s stdout for every API call) is off;
- clocks and class introspection: `unix_time()` builds two datetimes per call (~11 us) and SQS
  asks it two or three times per message held in a queue on every send, receive and attribute
  read; here it is `time.time()` when no datetime is given (the same number). Dispatching a
  request lists the handler class's methods with `inspect.getmembers` each time; here that list
  is computed once per class; an update expression is parsed once per distinct string;
- `SendTaskSuccess/Failure/Heartbeat` scan every execution of every state machine for the
  token, so each callback costs more the longer the server lives; here the execution that
  issued a token is indexed by the token (falling back to the scan for tokens not in the index);
- partition queries: a `Query` on a table's key listed and sorted every item of the table; here
  it reads that partition only;
- transactions: `TransactWriteItems` deep-copied every table it touches, whole, to roll back on
  failure (92 ms a call with ~500 items; each upload's search-index update is one, so the
  endpoint's CPU per image grew with the library); here it copies the items the transaction
  names;
- response serialization: for every member of every structure in a response, moto's value
  picker builds the member's candidate names anew (its alias providers and their snake_case
  forms) and tries each; a DynamoDB item is a dict of `AttributeValue` structures, ten members
  each, so this was three quarters of a `GetItem`'s CPU. For a plain dict the candidates depend
  only on the member's shape and its parent shape, so here they are computed once per pair.
- update expressions: a plain one (`SET a = :v`, `SET a = if_not_exists(a, :v)`, `REMOVE b`,
  `ADD n :d`, `DELETE s :v` on top-level attributes) skips moto's ten validator passes over a
  deep copy of its tree when nothing in the call could fail (`moto_update_fast_path`), in
  `UpdateItem` and in `TransactWriteItems` alike;
- SQS attributes: a receive checked each message it hands out against the queue's retention
  period through `get_queue_attributes`, which computes every attribute three times, each
  walking every message held, so a receive cost grew with the backlog (45 ms at 3,000 messages
  instead of ~2); here the check reads the period, and `GetQueueAttributes` computes once.

`IMGPROC_MOTO_SPEEDUPS=0` leaves these off (used only to measure the stock-moto baseline); the
behaviour fixes (`moto_fixes`) and the request counter are on either way. The names each patch
relies on are declared in `moto_patches.PATCH_TARGETS`.
"""

from __future__ import annotations

import copy
import functools
import os
import sys
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable
from typing import Any

from imgproc_local import moto_iam, moto_patches, moto_update_fast_path, request_counter

SPEEDUPS_ENV = "IMGPROC_MOTO_SPEEDUPS"
_JSONPATH_CACHE_SIZE = 4096
_EXPRESSION_CACHE_SIZE = 1024
_NAME_CACHE_SIZE = 4096


def speedups_enabled() -> bool:
    """False only when `IMGPROC_MOTO_SPEEDUPS=0` (the stock-moto baseline)."""
    return os.environ.get(SPEEDUPS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def install() -> None:
    """Apply every speed-up (idempotent); each one's moto names are checked first."""
    moto_patches.apply("speedup", PATCHES)


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
        with moto_iam.as_workflow():  # authorized as the state machines' role
            response = stubber(event_name, request, **kwargs)
        request_counter.count_in_process(service, action, time.thread_time() - cpu_before)
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
                # A constant instead of botocore's User-Agent, rebuilt twice per request.
                user_agent="imgproc-workflow",
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

    @functools.wraps(original)
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


def _patch_transaction_backup() -> None:
    """`TransactWriteItems` backs up only the items it names. moto's own code runs unchanged on
    a view of the backend whose `tables` hands its backup step (`copy.deepcopy(table)`) an
    object that copies just those items, and whose rollback step (`tables[name] = backup`)
    puts them back into the live table. A table with a stream keeps the whole-table copy
    (a rollback must also take back the stream records the transaction added)."""
    from moto.dynamodb.models import DynamoDBBackend

    original: Any = DynamoDBBackend.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        return original(_TransactionView(self, transact_items), transact_items)  # type: ignore[no-any-return]

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


class _TransactionView:
    """The backend as one transaction sees it: `tables` backs up and restores item by item."""

    def __init__(self, backend: Any, transact_items: list[dict[str, Any]]) -> None:
        self._backend = backend
        self.tables = _TransactionTables(backend.tables, transact_items)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._backend, name)


class _TransactionTables:
    """`in` and `[name]` for the backup, `[name] = backup` for the rollback."""

    def __init__(self, tables: dict[str, Any], transact_items: list[dict[str, Any]]) -> None:
        self._tables = tables
        self._transact_items = transact_items
        # moto backs a table up once per operation on it, all before the first one runs: one
        # backup per table serves them all.
        self._to_back_up: dict[str, _ItemsToBackUp] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._tables

    def __getitem__(self, name: str) -> Any:
        table = self._tables[name]
        if table.stream_shard is not None:
            return table
        if name not in self._to_back_up:
            self._to_back_up[name] = _ItemsToBackUp(table, self._named_keys(name, table))
        return self._to_back_up[name]

    def __setitem__(self, name: str, backup: Any) -> None:
        if isinstance(backup, _ItemsBackup):
            backup.restore()
        else:
            self._tables[name] = backup

    def _named_keys(self, name: str, table: Any) -> list[tuple[Any, Any]]:
        """The (hash, range) keys this transaction names in the table. An operation whose key
        cannot be read fails before it writes anything, so it needs no backup."""
        from moto.dynamodb.models.dynamo_type import DynamoType

        keys = []
        for entry in self._transact_items:
            _, op = next(iter(entry.items()))
            if not isinstance(op, dict) or op.get("TableName") != name:
                continue
            attributes: Any = op.get("Key") if "Key" in op else op.get("Item")
            try:
                hash_value = DynamoType(attributes[table.hash_key_attr])
                range_value = (
                    DynamoType(attributes[table.range_key_attr]) if table.range_key_attr else None
                )
            except (KeyError, TypeError, AttributeError):
                continue
            keys.append((hash_value, range_value))
        return keys


class _ItemsToBackUp:
    """What moto's backup step deep-copies: a deep copy of the named items only."""

    def __init__(self, table: Any, keys: list[tuple[Any, Any]]) -> None:
        self._table = table
        self._keys = keys
        self._backup: _ItemsBackup | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _ItemsBackup:
        if self._backup is None:
            saved: dict[tuple[Any, Any], Any] = {}
            for hash_value, range_value in self._keys:
                if (hash_value, range_value) not in saved:
                    current = self._table.get_item(hash_value, range_value)
                    saved[(hash_value, range_value)] = copy.deepcopy(current, memo)
            self._backup = _ItemsBackup(self._table, saved)
        return self._backup


class _ItemsBackup:
    """The named items as they were (None: absent), put back on rollback."""

    def __init__(self, table: Any, saved: dict[tuple[Any, Any], Any]) -> None:
        self._table = table
        self._saved = saved

    def restore(self) -> None:
        items = self._table.items
        for (hash_value, range_value), item in self._saved.items():
            if range_value is None:
                if item is None:
                    items.pop(hash_value, None)
                else:
                    items[hash_value] = item
            elif item is None:
                items[hash_value].pop(range_value, None)
            else:
                items[hash_value][range_value] = item


def _patch_queue_attributes() -> None:
    """SQS reads the one attribute it needs instead of computing them all.

    moto checks each message a receive hands out against the queue's retention period by
    asking `get_queue_attributes(["MessageRetentionPeriod"])`, which computes every attribute
    of the queue three times, and the approximate counts among them walk every message held:
    receiving 10 messages from a queue holding 3,000 cost 45 ms instead of ~2, so a library
    import's backlog slowed every receive. Here the check reads the period itself, and
    `GetQueueAttributes` computes the attributes once per call.
    """
    import moto.sqs.models as sqs_models
    from moto.sqs.exceptions import InvalidAttributeName

    backend: Any = sqs_models.SQSBackend
    models: Any = sqs_models  # its clock, read at each call: `hot_path_helpers` rebinds it

    @functools.wraps(backend.is_message_valid_based_on_retention_period)
    def is_message_valid_based_on_retention_period(
        self: Any, queue_name: str, message: Any
    ) -> bool:
        retention_period = self.get_queue(queue_name).message_retention_period
        retain_until = retention_period + message.sent_timestamp / 1000
        return bool(retain_until > models.unix_time())

    @functools.wraps(backend.get_queue_attributes)
    def get_queue_attributes(
        self: Any, queue_name: str, attribute_names: list[str]
    ) -> dict[str, Any]:
        queue = self.get_queue(queue_name)
        if not attribute_names:
            return {}
        valid_names = ["All", *queue.BASE_ATTRIBUTES, *queue.FIFO_ATTRIBUTES, *queue.KMS_ATTRIBUTES]
        invalid_name = next((name for name in attribute_names if name not in valid_names), None)
        if invalid_name or invalid_name == "":
            raise InvalidAttributeName(invalid_name)
        attributes: dict[str, Any] = queue.attributes
        if "All" in attribute_names:
            return attributes
        return {
            name: attributes[name] for name in attribute_names if attributes.get(name) is not None
        }

    backend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period
    backend.get_queue_attributes = get_queue_attributes


def _patch_serializer_key_cache() -> None:
    """moto's serializer picks a plain dict's members by candidate names computed once.

    For a `dict` (exactly) the alias providers see only its class (no `Meta`: `ExplicitAlias`
    never applies; `ClassPrefixAlias` sees "dict"), the member's key, its shape and that shape's
    current parent (which the serializer sets before each member), so the candidates are a
    function of (picker class, key, shape, parent). Entries hold the shapes they were made for:
    the service models are cached for the process, so the shapes, and this cache, stay a fixed
    size. Other values, pickers of other classes or providers, and pickers with response
    transformers take moto's own path."""
    from moto.core import serialize

    original: Any = serialize.ResponseSerializer.get_value
    picker_classes = (serialize.AttributePicker, serialize.XFormedAttributePicker)
    default_providers = serialize.DEFAULT_ALIAS_PROVIDERS
    # The helper and sentinel the serializer itself imported (PATCH_TARGETS checks it has them).
    from moto.core.constants import MISSING as missing
    from moto.core.utils import get_value

    candidates: dict[tuple[type[Any], str, int, int], tuple[Any, Any, tuple[str, ...]]] = {}

    @functools.wraps(original)
    def pick(self: Any, value: Any, key: str, shape: Any) -> Any:
        picker = self._value_picker
        if (
            type(value) is not dict
            or type(picker) not in picker_classes
            or picker.alias_providers is not default_providers
            or picker.response_transformers
        ):
            return original(self, value, key, shape)
        parent = getattr(shape, "parent", None)
        cache_key = (type(picker), key, id(shape), id(parent))
        entry = candidates.get(cache_key)
        if entry is None or entry[0] is not shape or entry[1] is not parent:
            context = serialize.AttributePickerContext(
                obj=value,
                key=key,
                shape=shape,
                operation_model=self.operation_model,
                service_model=self.operation_model.service_model,
                key_path=".".join(self.path),
            )
            entry = (shape, parent, tuple(picker.get_possible_keys(context)))
            candidates[cache_key] = entry
        for possible_key in entry[2]:
            # moto's get_value on a dict: a dotted name is a path, any other a plain lookup.
            found = (
                get_value(value, possible_key, missing)
                if "." in possible_key
                else value.get(possible_key, missing)
            )
            if found is not missing:
                return found
        return None

    serialize.ResponseSerializer.get_value = pick  # type: ignore[method-assign]


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
    # A pure function of a name, called for each action dispatched and ~14 times each time SQS
    # lists a queue's attributes (~18 us a call); the names are the services' own, a few hundred.
    underscored = functools.lru_cache(maxsize=_NAME_CACHE_SIZE)(moto_utils.camelcase_to_underscores)
    replacements: dict[int, Callable[..., Any]] = {
        id(original_unix_time): unix_time,
        id(original_unix_time_millis): unix_time_millis,
        id(moto_utils.method_names_from_class): methods,
        id(moto_utils.camelcase_to_underscores): underscored,
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
    @functools.wraps(parse)
    def parsed(cls: Any, expression: str) -> Any:
        return parse(cls, expression)

    parser.make = classmethod(parsed)  # type: ignore[arg-type]


def _quiet_request_log() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)


PATCHES: list[moto_patches.Patch] = [
    ("program_cache", _patch_program_cache),
    ("jsonpath_cache", _patch_jsonpath_cache),
    ("client_cache", patch_client_per_task),
    ("in_process_service_tasks", _patch_in_process_service_tasks),
    ("token_index", _patch_token_index),
    ("backend_lookup_cache", _patch_backend_lookup),
    ("quiet_request_log", _quiet_request_log),
    ("hot_path_helpers", _patch_hot_path_helpers),
    ("partition_query", _patch_partition_query),
    ("transaction_backup", _patch_transaction_backup),
    ("serializer_key_cache", _patch_serializer_key_cache),
    ("queue_attributes", _patch_queue_attributes),
    ("update_fast_path", moto_update_fast_path.install_fast_path),
]

request_counter.add_section("program_cache", lambda: dict(program_cache_stats))
request_counter.add_section("token_index", lambda: dict(token_index_stats))
