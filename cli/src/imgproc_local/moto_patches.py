"""What the embedded endpoint's patches of moto rely on, and applying them once each.

The endpoint patches moto 5.2.5 in modules named by what their patches are for: `moto_fixes`
(moto behaving as AWS does where the pipeline depends on it; always on), with `moto_iam` and
`s3_post_policy` (authorization and POST policies as AWS evaluates them; always on),
`request_counter` (what the endpoint serves, counted for `imgproc loadtest`; always on),
`moto_speedups` (fast enough to load-test; off with `IMGPROC_MOTO_SPEEDUPS=0`), with
`moto_update_fast_path` (plain update expressions without moto's validator passes), and
`table_changes` (which items each write touched, for incremental snapshots; always on).

Every moto name a patch relies on is declared in `PATCH_TARGETS` and checked before the patch
is applied (and by tests/unit/test_moto_patch_targets.py): moto is pinned to 5.2.5, and an
upgrade that moves a name fails naming the patch instead of a patch silently doing nothing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class PatchTarget:
    """One name inside moto (or the libraries around it) that a patch replaces or relies on.

    `owner`: the module holding the patch. `parameters`: the leading parameter names the patch
    calls it with or replaces it by (a moved or renamed parameter breaks the patch as surely as
    a moved name). `assigns`: an assignment the patch relies on, which this function's source must
    make: an instance attribute an `__init__` sets, or a step of a function the patch wraps.
    """

    owner: str
    patch: str
    module: str
    name: str  # dotted inside the module: "Class.method" or "function"
    parameters: tuple[str, ...] | None = None
    assigns: str | None = None

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
        # Once patched, the name holds the patch: its shape is the one it replaced (patches
        # wrap with functools.wraps), so the check also holds after `apply`.
        function = inspect.unwrap(function)
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
# Every name a patch replaces or relies on, by owner and patch. `apply` checks a patch's names
# before applying it, and tests/unit/test_moto_patch_targets.py checks them all.
PATCH_TARGETS: tuple[PatchTarget, ...] = (
    # Behaviour fixes (moto_fixes): always on.
    PatchTarget(
        "moto_fixes",
        "early_heartbeat",
        f"{_SFN}.asl.eval.callback.callback",
        "CallbackEndpoint.notify_heartbeat",
        ("self",),
    ),
    PatchTarget(
        "moto_fixes",
        "atomic_dynamodb",
        "moto.dynamodb.responses",
        "DynamoHandler.call_action",
        ("self",),
    ),
    PatchTarget(
        "moto_fixes",
        "long_polls_end_on_stop",
        "moto.sqs.models",
        "Queue.wait_for_messages",
        ("self", "timeout"),
    ),
    PatchTarget(
        "moto_fixes",
        "long_polls_end_on_stop",
        "moto.sqs.models",
        "Queue.__init__",
        assigns="self._messages_lock",
    ),
    PatchTarget(
        "moto_fixes", "long_polls_end_on_stop", "moto.sqs.models", "Queue.messages", ("self",)
    ),
    PatchTarget(
        "moto_fixes",
        "long_polls_end_on_stop",
        "moto.sqs.models",
        "SQSBackend.receive_message",
        ("self", "queue_name", "count", "wait_seconds_timeout"),
    ),
    PatchTarget(
        "moto_fixes",
        "heartbeat_race",
        _CALLBACK,
        "StateTaskServiceCallback._wait_for_task_token_heartbeat",
        ("self", "env", "callback_endpoint", "heartbeat_endpoint"),
    ),
    PatchTarget(
        "moto_fixes", "heartbeat_race", f"{_SFN}.asl.eval.callback.callback", "HeartbeatTimedOut"
    ),
    PatchTarget(
        "moto_fixes",
        "fresh_token_per_attempt",
        _CALLBACK,
        "StateTaskServiceCallback._eval_execution",
        ("self", "env"),
    ),
    PatchTarget(
        "moto_fixes",
        "fresh_token_per_attempt",
        f"{_SFN}.asl.component.state.exec.state_task.service.resource",
        "ResourceCondition.WaitForTaskToken",
    ),
    PatchTarget(
        "moto_fixes",
        "task_failure_cause",
        "moto.stepfunctions.responses",
        "StepFunctionResponse.send_task_failure",
        ("self",),
    ),
    PatchTarget(
        "moto_fixes",
        "task_failure_cause",
        f"{_SFN}.models",
        "StepFunctionsParserBackend.send_task_failure",
        ("self", "task_token", "error", "cause"),
    ),
    PatchTarget("moto_fixes", "task_failure_cause", "moto.core.responses", "EmptyResult"),
    # Requests authorized as AWS authorizes them (moto_iam): always on.
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.core.authorization",
        "ActionAuthenticatorMixin._authenticate_and_authorize_action",
        ("self", "iam_request_cls", "resource"),
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.core.authorization",
        "ActionAuthenticatorMixin.request_count",
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.core.authorization",
        "ActionAuthenticatorMixin.PUBLIC_OPERATIONS",
    ),
    PatchTarget("moto_iam", "iam_enforcement", "moto.settings", "INITIAL_NO_AUTH_ACTION_COUNT"),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.core.responses",
        "BaseResponse.setup_class",
        ("self", "request"),
        assigns="self.current_account",
    ),
    PatchTarget(
        "moto_iam", "iam_enforcement", "moto.core.responses", "BaseResponse._get_action", ("self",)
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.core.responses",
        "BaseResponse._get_param",
        ("self", "param_name"),
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.iam.models",
        "IAMBackend.create_user",
        ("self", "region_name", "user_name"),
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.iam.models",
        "IAMBackend.put_user_policy",
        ("self", "user_name", "policy_name", "policy_json"),
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.iam.models",
        "IAMBackend.delete_user_policy",
        ("self", "user_name", "policy_name"),
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.iam.models",
        "IAMBackend.create_access_key",
        ("self", "user_name"),
    ),
    PatchTarget(
        "moto_iam", "iam_enforcement", "moto.iam.models", "IAMBackend.get_user", ("self", "name")
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.iam.models",
        "IAMBackend.__init__",
        assigns="self.access_keys",
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.iam.models",
        "User.__init__",
        assigns="self.access_keys",
    ),
    PatchTarget(
        "moto_iam", "iam_enforcement", "moto.iam.models", "User.__init__", assigns="self.policies"
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.iam.models",
        "User.__init__",
        assigns="self.managed_policies",
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        "moto.iam.models",
        "User.create_access_key",
        ("self", "prefix"),
    ),
    PatchTarget("moto_iam", "iam_enforcement", "moto.s3.exceptions", "BucketAccessDeniedError"),
    PatchTarget(
        "moto_iam", "iam_enforcement", "moto.s3.exceptions", "BucketInvalidAccessKeyIdError"
    ),
    PatchTarget(
        "moto_iam", "iam_enforcement", "moto.s3.exceptions", "BucketSignatureDoesNotMatchError"
    ),
    PatchTarget("moto_iam", "iam_enforcement", "moto.core.exceptions", "JsonRESTError"),
    PatchTarget("moto_iam", "iam_enforcement", "moto.core.exceptions", "_RESTError"),
    PatchTarget("moto_iam", "iam_enforcement", "moto.core.exceptions", "InvalidClientTokenIdError"),
    PatchTarget(
        "moto_iam", "iam_enforcement", "moto.core.exceptions", "SignatureDoesNotMatchError"
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        f"{_SFN}.asl.eval.callback.callback",
        "CallbackPoolManager.get",
        ("self", "callback_id"),
    ),
    PatchTarget(
        "moto_iam",
        "iam_enforcement",
        f"{_SFN}.backend.execution",
        "Execution.__init__",
        assigns="self.state_machine_arn",
    ),
    PatchTarget(
        "moto_iam",
        "workflow_identity",
        f"{_SFN}.asl.utils.boto_client",
        "boto_client_for",
        ("region", "service", "state_credentials"),
    ),
    # POST uploads obey their signed policy (s3_post_policy): always on.
    PatchTarget(
        "s3_post_policy",
        "s3_post_policy",
        "moto.s3.responses",
        "S3Response._bucket_response_post",
        ("self", "request", "bucket_name"),
    ),
    PatchTarget(
        "s3_post_policy",
        "s3_post_policy",
        "moto.s3.responses",
        "S3Response._get_path",
        ("request",),
    ),
    PatchTarget(
        "s3_post_policy",
        "s3_post_policy",
        "moto.s3.responses",
        "S3Response.is_delete_keys",
        ("self",),
    ),
    PatchTarget(
        "s3_post_policy",
        "s3_post_policy",
        "moto.core.responses",
        "BaseResponse.setup_class",
        ("self", "request"),
        assigns="self.form_data",
    ),
    # What the endpoint serves, counted (request_counter): always on.
    PatchTarget(
        "request_counter",
        "request_counter",
        "moto.moto_server.werkzeug_app",
        "DomainDispatcherApplication.__call__",
        ("self", "environ", "start_response"),
    ),
    PatchTarget(
        "request_counter",
        "local_origin",
        "aiobotocore.httpsession",
        "AIOHTTPSession.send",
        ("self", "request"),
    ),
    # Speed-ups (moto_speedups): off with IMGPROC_MOTO_SPEEDUPS=0.
    PatchTarget(
        "moto_speedups",
        "program_cache",
        f"{_SFN}.backend.execution_worker",
        "ExecutionWorker._get_evaluation_entrypoint",
        ("self",),
    ),
    PatchTarget(
        "moto_speedups",
        "program_cache",
        f"{_SFN}.backend.execution_worker",
        "ExecutionWorker.__init__",
        assigns="self._evaluation_details",
    ),
    PatchTarget(
        "moto_speedups",
        "program_cache",
        f"{_SFN}.asl.parse.asl_parser",
        "AmazonStateLanguageParser.parse",
        ("definition",),
    ),
    PatchTarget(
        "moto_speedups",
        "program_cache",
        f"{_SFN}.asl.component.eval_component",
        "EvalComponent.heap_key",
        ("self",),
    ),
    PatchTarget("moto_speedups", "program_cache", f"{_SFN}.utils", "long_uid"),
    PatchTarget("moto_speedups", "jsonpath_cache", f"{_SFN}.asl.utils.json_path", "parse"),
    PatchTarget(
        "moto_speedups", "jsonpath_cache", f"{_SFN}.asl.component.common.path.result_path", "parse"
    ),
    PatchTarget(
        "moto_speedups",
        "client_cache",
        f"{_SFN}.asl.utils.boto_client",
        "boto_client_for",
        ("region", "service", "state_credentials"),
    ),
    PatchTarget(
        "moto_speedups",
        "in_process_service_tasks",
        "moto.core.botocore_stubber",
        "BotocoreStubber.__call__",
        ("self", "event_name", "request"),
    ),
    PatchTarget(
        "moto_speedups",
        "token_index",
        f"{_SFN}.backend.execution",
        "Execution._get_start_execution_worker",
        ("self",),
    ),
    PatchTarget(
        "moto_speedups",
        "token_index",
        f"{_SFN}.backend.execution",
        "Execution.__init__",
        assigns="self.exec_status",
    ),
    PatchTarget(
        "moto_speedups",
        "token_index",
        f"{_SFN}.backend.execution_worker",
        "ExecutionWorker._get_evaluation_environment",
        ("self",),
    ),
    PatchTarget(
        "moto_speedups",
        "token_index",
        f"{_SFN}.asl.eval.callback.callback",
        "CallbackPoolManager.add",
        ("self", "callback_id"),
    ),
    PatchTarget(
        "moto_speedups",
        "token_index",
        f"{_SFN}.models",
        "StepFunctionsParserBackend.send_task_heartbeat",
        ("self", "task_token"),
    ),
    PatchTarget(
        "moto_speedups",
        "token_index",
        f"{_SFN}.models",
        "StepFunctionsParserBackend.send_task_success",
        ("self", "task_token"),
    ),
    PatchTarget(
        "moto_speedups",
        "token_index",
        f"{_SFN}.models",
        "StepFunctionsParserBackend.send_task_failure",
        ("self", "task_token"),
    ),
    PatchTarget(
        "moto_speedups",
        "token_index",
        f"{_SFN}.models",
        "StepFunctionsParserBackend._get_executions",
        ("self", "execution_status"),
    ),
    PatchTarget(
        "moto_speedups",
        "backend_lookup_cache",
        "moto.moto_server.werkzeug_app",
        "DomainDispatcherApplication.get_backend_for_host",
        ("self", "host"),
    ),
    PatchTarget("moto_speedups", "hot_path_helpers", "moto.core.utils", "unix_time", ("dt",)),
    PatchTarget(
        "moto_speedups", "hot_path_helpers", "moto.core.utils", "unix_time_millis", ("dt",)
    ),
    PatchTarget(
        "moto_speedups",
        "hot_path_helpers",
        "moto.core.utils",
        "method_names_from_class",
        ("clazz",),
    ),
    PatchTarget(
        "moto_speedups",
        "hot_path_helpers",
        "moto.dynamodb.parsing.expressions",
        "UpdateExpressionParser.make",
        ("cls", "expression_str"),
    ),
    PatchTarget(
        "moto_speedups",
        "hot_path_helpers",
        "moto.core.utils",
        "camelcase_to_underscores",
        ("argument",),
    ),
    PatchTarget(
        "moto_speedups",
        "queue_attributes",
        "moto.sqs.models",
        "SQSBackend.is_message_valid_based_on_retention_period",
        ("self", "queue_name", "message"),
    ),
    PatchTarget(
        "moto_speedups",
        "queue_attributes",
        "moto.sqs.models",
        "SQSBackend.get_queue_attributes",
        ("self", "queue_name", "attribute_names"),
    ),
    PatchTarget("moto_speedups", "queue_attributes", "moto.sqs.models", "Queue.attributes"),
    PatchTarget("moto_speedups", "queue_attributes", "moto.sqs.models", "Queue.BASE_ATTRIBUTES"),
    PatchTarget("moto_speedups", "queue_attributes", "moto.sqs.models", "Queue.FIFO_ATTRIBUTES"),
    PatchTarget("moto_speedups", "queue_attributes", "moto.sqs.models", "Queue.KMS_ATTRIBUTES"),
    PatchTarget(
        "moto_speedups",
        "queue_attributes",
        "moto.sqs.models",
        "Message.__init__",
        assigns="self.sent_timestamp",
    ),
    PatchTarget("moto_speedups", "queue_attributes", "moto.sqs.models", "unix_time"),
    PatchTarget("moto_speedups", "queue_attributes", "moto.sqs.exceptions", "InvalidAttributeName"),
    # The update-expression fast path (moto_update_fast_path): the names `update_item` looks
    # up, the tree it plans from, and what it reads of tables and items.
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.models",
        "UpdateExpressionValidator.__init__",
        ("self", "expression", "expression_attribute_names", "expression_attribute_values"),
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.models",
        "UpdateExpressionExecutor.execute",
        ("self", "node"),
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.models",
        "UpdateExpressionExecutor.__init__",
        ("self", "update_ast", "item", "expression_attribute_names"),
        assigns="self.item",
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.models",
        "DynamoDBBackend.update_item",
        ("self", "table_name", "key", "update_expression"),
        assigns="validated_ast",  # validator.validate(), normalize(), then the executor
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.parsing.validators",
        "ActionCountValidator",
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.parsing.ast_nodes",
        "Node.normalize",
        ("self",),
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.parsing.reserved_keywords",
        "ReservedKeywords.get_reserved_keywords",
        ("cls",),
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.models.table",
        "Table.__init__",
        assigns="self.attr",
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.models.table",
        "Table.attribute_keys",
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.models",
        "create_condition_expression_parser",
        ("expr", "names", "values"),
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.responses",
        "create_condition_expression_parser",
        ("expr", "names", "values"),
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.comparisons",
        "ConditionExpressionParser.parse",
        ("self",),
    ),
    PatchTarget(
        "moto_update_fast_path",
        "update_fast_path",
        "moto.dynamodb.models.dynamo_type",
        "DynamoType.__add__",
        ("self", "other"),
    ),
    PatchTarget(
        "moto_speedups",
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
    PatchTarget(
        "moto_speedups",
        "partition_query",
        "moto.dynamodb.models.table",
        "Table.all_items",
        ("self",),
    ),
    PatchTarget(
        "moto_speedups",
        "partition_query",
        "moto.dynamodb.models.table",
        "Table.__init__",
        assigns="self.items",
    ),
    PatchTarget(
        "moto_speedups",
        "transaction_backup",
        "moto.dynamodb.models",
        "DynamoDBBackend.transact_write_items",
        ("self", "transact_items"),
        # The backup and rollback steps the view intercepts.
        assigns="self.tables[table_name]",
    ),
    PatchTarget(
        "moto_speedups",
        "transaction_backup",
        "moto.dynamodb.models.table",
        "Table.__init__",
        assigns="self.stream_shard",
    ),
    PatchTarget(
        "moto_speedups",
        "transaction_backup",
        "moto.dynamodb.models.table",
        "Table.get_item",
        ("self", "hash_key", "range_key"),
    ),
    PatchTarget(
        "moto_speedups",
        "serializer_key_cache",
        "moto.core.serialize",
        "ResponseSerializer.get_value",
        ("self", "value", "key", "shape"),
    ),
    PatchTarget(
        "moto_speedups",
        "serializer_key_cache",
        "moto.core.serialize",
        "ResponseSerializer.__init__",
        assigns="self._value_picker",
    ),
    PatchTarget(
        "moto_speedups",
        "serializer_key_cache",
        "moto.core.serialize",
        "AttributePicker.__init__",
        assigns="self.response_transformers",
    ),
    PatchTarget(
        "moto_speedups", "serializer_key_cache", "moto.core.serialize", "AttributePickerContext"
    ),
    PatchTarget(
        "moto_speedups", "serializer_key_cache", "moto.core.serialize", "XFormedAttributePicker"
    ),
    PatchTarget(
        "moto_speedups",
        "serializer_key_cache",
        "moto.core.serialize",
        "AttributePicker.get_possible_keys",
        ("self", "context"),
    ),
    PatchTarget(
        "moto_speedups",
        "serializer_key_cache",
        "moto.core.serialize",
        "AttributePicker.__init__",
        assigns="self.alias_providers",
    ),
    PatchTarget(
        "moto_speedups", "serializer_key_cache", "moto.core.serialize", "DEFAULT_ALIAS_PROVIDERS"
    ),
    PatchTarget("moto_speedups", "serializer_key_cache", "moto.core.serialize", "MISSING"),
    PatchTarget("moto_speedups", "serializer_key_cache", "moto.core.serialize", "get_value"),
    PatchTarget(
        "table_changes",
        "table_changes",
        "moto.dynamodb.models.table",
        "Table.put_item",
        ("self", "item_attrs"),
    ),
    PatchTarget(
        "table_changes",
        "table_changes",
        "moto.dynamodb.models.table",
        "Table.delete_item",
        ("self", "hash_key", "range_key"),
    ),
    PatchTarget(
        "table_changes",
        "table_changes",
        "moto.dynamodb.models",
        "DynamoDBBackend.update_item",
        ("self", "table_name", "key"),
    ),
    PatchTarget(
        "table_changes",
        "table_changes",
        "moto.dynamodb.models",
        "DynamoDBBackend.get_table",
        ("self", "table_name"),
    ),
    PatchTarget(
        "table_changes",
        "table_changes",
        "moto.dynamodb.models.table",
        "Table.__init__",
        assigns="self.range_key_attr",
    ),
    PatchTarget(
        "table_changes",
        "table_changes",
        "moto.dynamodb.models.table",
        "Table.__init__",
        assigns="self.name",
    ),
    PatchTarget(
        "table_changes",
        "table_changes",
        "moto.dynamodb.models",
        "DynamoDBBackend.execute_statement",
    ),
    PatchTarget(
        "table_changes",
        "table_changes",
        "moto.dynamodb.models",
        "DynamoDBBackend.execute_transaction",
    ),
    PatchTarget(
        "table_changes",
        "table_changes",
        "moto.dynamodb.models",
        "DynamoDBBackend.batch_execute_statement",
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


# A fix or the counter changes what the endpoint answers or reports; a speed-up only how fast;
# persistence patches record what snapshots need (`table_changes`).
PatchKind = Literal["fix", "measurement", "persistence", "speedup"]
Patch = tuple[str, Callable[[], None]]

_installed: dict[str, PatchKind] = {}
_install_lock = threading.Lock()


def apply(kind: PatchKind, patches: Sequence[Patch]) -> None:
    """Apply each patch not yet active in this process, after checking its targets."""
    with _install_lock:
        for name, patch in patches:
            if name not in _installed:
                check_targets(name)
                patch()
                _installed[name] = kind


def installed(kind: PatchKind | None = None) -> frozenset[str]:
    """The patches active in this process (of one kind, or all), by name."""
    with _install_lock:
        return frozenset(name for name, k in _installed.items() if kind in (None, k))
