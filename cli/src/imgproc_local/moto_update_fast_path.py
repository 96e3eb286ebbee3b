"""A fast path for the update expressions the pipeline writes: a speed-up (`moto_speedups`).

For every `UpdateItem`, and every `Update` of a `TransactWriteItems`, moto deep-copies the parsed
update expression and runs ten validator passes over the copy before an executor walks it
again: the largest share of the 1.8-2.3 ms of CPU an `UpdateItem` cost the endpoint in the load
test, and most of a search-index transaction's 6.3-7.0 ms (one `Update` per counter). The
pipeline's expressions are almost all plain: `SET a = :v, #b = :w`, `SET c = if_not_exists(c,
:v)`, `REMOVE d`, `ADD n :d`, `DELETE s :v`, each on a top-level attribute.

Here such an expression is planned once per parsed tree (the actions in the order moto's
`normalize` runs them), and each call checks the plan against its names, values, table and
item and applies it with the same operations moto's executors use (`item.attrs[name] = value`,
so the item size limit still applies). Only a call that cannot fail goes this way: anything
that would make moto raise (a missing placeholder, a key attribute, two actions on one
attribute, an `ADD` or `DELETE` of the wrong type, an index key set by its plain name) and
anything not plain (other functions, arithmetic, nested paths, list indexes) goes through
moto's own validator and executor, which raise or do what they always did. The result is what
moto computes, item for item (tests/integration/test_moto_update_fast_path.py compares the two
over HTTP with a stock moto server).

Each write's condition expression is parsed once instead of twice (`_parse_conditions_once`).
"""

from __future__ import annotations

import copy
import importlib
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from imgproc_local import request_counter

fast_path_stats: Counter[str] = Counter()
_stats_lock = threading.Lock()
_PLAN_ATTRIBUTE = "_imgproc_update_plan"
_NOT_PLAIN = ()  # the plan of an expression that is not plain: moto handles it


@dataclass(frozen=True)
class _Target:
    token: str  # an attribute's plain name, or its "#placeholder"
    placeholder: bool

    def name(self, names: dict[str, str]) -> str | None:
        return names.get(self.token) if self.placeholder else self.token


@dataclass(frozen=True)
class _Action:
    kind: str  # "SET", "REMOVE", "ADD" or "DELETE"
    target: _Target
    value: str | None  # the ":value" placeholder (None for REMOVE)
    # `SET a = if_not_exists(source, :value)`: the attribute whose value is kept if it exists.
    source: _Target | None = None


@dataclass
class _Step:
    action: _Action
    name: str
    value: Any  # a DynamoType, or None for REMOVE
    total: Any = None  # ADD of a number: the sum, computed when checked


class PlannedUpdate:
    """What the fast validator returns in place of a validated tree: resolved, checked steps."""

    def __init__(self, steps: list[_Step]) -> None:
        self.steps = steps

    def normalize(self) -> None:
        """The steps are already in the order moto's `normalize` puts the actions."""


def _plan(tree: Any) -> tuple[_Action, ...]:
    """The plain actions of a parsed update expression, in execution order; empty if not plain."""
    # moto's modules, untyped here (their names are declared in moto_patches.PATCH_TARGETS).
    nodes: Any = importlib.import_module("moto.dynamodb.parsing.ast_nodes")
    from moto.dynamodb.parsing.reserved_keywords import ReservedKeywords
    from moto.dynamodb.parsing.validators import ActionCountValidator

    kinds = {
        nodes.UpdateExpressionSetAction: "SET",
        nodes.UpdateExpressionRemoveAction: "REMOVE",
        nodes.UpdateExpressionAddAction: "ADD",
        nodes.UpdateExpressionDeleteAction: "DELETE",
    }
    try:
        ActionCountValidator().traverse(copy.deepcopy(tree))
    except Exception:  # more than one clause of a kind: moto says so
        return _NOT_PLAIN

    def top_level(path: Any) -> _Target | None:
        """The attribute a one-element path names; None for anything longer or reserved."""
        if type(path) is not nodes.UpdateExpressionPath or len(path.children) != 1:
            return None
        element = path.children[0]
        if type(element) is nodes.ExpressionAttributeName:
            return _Target(element.get_attribute_name_placeholder(), True)
        if type(element) is nodes.ExpressionAttribute:
            name = element.get_attribute_name()
            if name.upper() in ReservedKeywords.get_reserved_keywords():
                return None
            return _Target(name, False)
        return None

    def value_name(operand: Any) -> str | None:
        if type(operand) is not nodes.ExpressionAttributeValue:
            return None
        name: str = operand.get_value_name()
        return name

    ordered = copy.deepcopy(tree)
    ordered.normalize()
    actions = []
    for node in ordered.children:
        kind = kinds.get(type(node))
        if kind is None:
            return _NOT_PLAIN
        target = top_level(node.children[0])
        if target is None:
            return _NOT_PLAIN
        if kind == "REMOVE":
            if len(node.children) != 1:
                return _NOT_PLAIN
            actions.append(_Action(kind, target, None))
            continue
        operand: Any = node.children[1] if len(node.children) == 2 else None
        source = None
        if kind == "SET":
            if type(operand) is not nodes.UpdateExpressionValue or len(operand.children) != 1:
                return _NOT_PLAIN
            operand = operand.children[0]
            if type(operand) is nodes.UpdateExpressionFunction:
                # `if_not_exists(path, :value)`, the one function plain enough to take.
                if operand.get_function_name() != "if_not_exists" or len(operand.children) != 3:
                    return _NOT_PLAIN
                source = top_level(operand.get_nth_argument(1))
                if source is None:
                    return _NOT_PLAIN
                operand = operand.get_nth_argument(2)
        value = value_name(operand)
        if value is None:
            return _NOT_PLAIN
        actions.append(_Action(kind, target, value, source))
    return tuple(actions)


def _plan_of(tree: Any) -> tuple[_Action, ...]:
    plan: tuple[_Action, ...] | None = getattr(tree, _PLAN_ATTRIBUTE, None)
    if plan is None:
        # Parsed trees are cached per expression string (`hot_path_helpers`), so this runs once
        # per distinct expression; two threads computing it at once compute the same plan.
        plan = _plan(tree)
        setattr(tree, _PLAN_ATTRIBUTE, plan)
    return plan


def _checked_steps(
    plan: tuple[_Action, ...],
    names: dict[str, str],
    values: dict[str, Any],
    item: Any,
    table: Any,
) -> list[_Step] | None:
    """The plan resolved for one call, or None where moto might raise (it decides then)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    steps: list[_Step] = []
    seen: set[str] = set()
    for action in plan:
        name = action.target.name(names)
        if name is None or name in seen or name in table.table_key_attrs:
            return None
        seen.add(name)
        if (
            action.kind == "SET"
            and not action.target.placeholder
            and (
                name in table.attribute_keys or any(d["AttributeName"] == name for d in table.attr)
            )
        ):
            # moto type-checks an index key set by its plain name (not by a placeholder); the
            # table's key lists are read only for such a name, not on every call.
            return None
        value: Any = None
        if action.value is not None:
            raw = values.get(action.value)
            if not isinstance(raw, dict) or len(raw) != 1:
                return None
            try:
                value = DynamoType(raw)
            except Exception:  # a malformed value: moto fails on it its own way
                return None
        if action.source is not None:
            # moto resolves the path against the item as it is before any action runs, and
            # sets the attribute to that very value when it exists.
            source = action.source.name(names)
            if source is None or source in table.table_key_attrs:
                return None
            value = item.attrs.get(source, value)
        step = _Step(action, name, value)
        existing = item.attrs.get(name)
        if action.kind == "ADD":
            if value.is_set():
                if not value.value or (existing is not None and existing.type != value.type):
                    return None
            elif value.type == "N":
                if existing is not None and existing.type != "N":
                    return None
                try:
                    step.total = (existing or DynamoType({"N": "0"})) + value
                except Exception:
                    return None
            else:
                return None
        elif action.kind == "DELETE":
            if not value.is_set() or (existing is not None and existing.type != value.type):
                return None
        steps.append(step)
    return steps


def _apply(steps: list[_Step], item: Any) -> None:
    """moto's executors' operations, for top-level attributes (`parsing/executors.py`)."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    attrs = item.attrs
    for step in steps:
        kind, name, value = step.action.kind, step.name, step.value
        if kind == "SET":
            attrs[name] = value
        elif kind == "REMOVE":
            attrs.pop(name, None)
        elif kind == "ADD" and step.total is not None:
            attrs[name] = step.total
        elif kind == "ADD":
            current = attrs.get(name)
            if current is None:
                current = DynamoType({value.type: []})
                attrs[name] = current
            for member in value.value:
                if member not in current.value:
                    current.value.append(member)
        else:  # DELETE
            current = attrs.get(name)
            if current is None:
                continue
            for member in value.value:
                try:
                    current.value.remove(member)
                except (KeyError, ValueError):
                    pass
            if not current.value:
                del attrs[name]


def install_fast_path() -> None:
    """Put the fast validator and executor where `DynamoDBBackend.update_item` looks them up."""
    models: Any = importlib.import_module("moto.dynamodb.models")
    stock_validator = models.UpdateExpressionValidator
    stock_executor = models.UpdateExpressionExecutor

    class FastUpdateExpressionValidator:
        def __init__(
            self,
            expression: Any,
            expression_attribute_names: dict[str, str] | None,
            expression_attribute_values: dict[str, Any] | None,
            item: Any,
            table: Any,
        ) -> None:
            # No deep copy of the tree here: the fast path only reads it, and the stock
            # validator (which copies it) is made only when it is needed.
            self.arguments: tuple[Any, ...] = (
                expression,
                expression_attribute_names,
                expression_attribute_values,
                item,
                table,
            )

        def validate(self) -> Any:
            expression, names, values, item, table = self.arguments
            plan = _plan_of(expression)
            steps = _checked_steps(plan, names or {}, values or {}, item, table) if plan else None
            with _stats_lock:
                fast_path_stats["fast" if steps is not None else "moto"] += 1
            if steps is not None:
                return PlannedUpdate(steps)
            return stock_validator(*self.arguments).validate()

    class FastUpdateExpressionExecutor(stock_executor):  # type: ignore[misc, valid-type]
        def execute(self, node: Any = None) -> None:
            if isinstance(self.update_ast, PlannedUpdate) and node is None:
                _apply(self.update_ast.steps, self.item)
                return
            super().execute(node)

    models.UpdateExpressionValidator = FastUpdateExpressionValidator
    models.UpdateExpressionExecutor = FastUpdateExpressionExecutor
    _parse_conditions_once()


class _ParsedOnce:
    """A condition parser whose `parse` runs once; its other attributes are the parser's."""

    def __init__(self, parser: Any) -> None:
        self._parser = parser
        self._parsed: Any = None

    def parse(self) -> Any:
        if self._parsed is None:
            self._parsed = self._parser.parse()
        return self._parsed

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)


_last_condition = threading.local()


def _parse_conditions_once() -> None:
    """A write's condition expression was parsed twice per call: by the request handler (for
    the names and values it uses) and by the backend (to evaluate it). The second call gets the
    first's parse when it names the same expression and the very same names and values objects
    (the request's own, unchanged in between): ~65 us a call. Per thread, one entry, which
    also keeps those objects alive, so an identity match cannot be a recycled id."""
    models: Any = importlib.import_module("moto.dynamodb.models")
    responses: Any = importlib.import_module("moto.dynamodb.responses")
    original = models.create_condition_expression_parser

    def create_condition_expression_parser(
        expr: str | None, names: dict[str, str] | None, values: dict[str, Any] | None
    ) -> Any:
        last = getattr(_last_condition, "entry", None)
        if last is not None and last[0] == expr and last[1] is names and last[2] is values:
            return last[3]
        parser = _ParsedOnce(original(expr, names, values))
        _last_condition.entry = (expr, names, values, parser)
        return parser

    models.create_condition_expression_parser = create_condition_expression_parser
    responses.create_condition_expression_parser = create_condition_expression_parser


request_counter.add_section("update_fast_path", lambda: dict(fast_path_stats))
