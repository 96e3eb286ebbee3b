"""One synthesized stack shared by every infra test (CDK synthesis costs seconds, not ms).

The shared synth runs with CDK's built-in template validation on (the one validated synth);
variants synthesize with it off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imgproc_shared.settings import Settings

# CDK is in the `infra` dependency group; each test module skips itself without it, and this
# file imports it only inside fixtures.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
CDK_MISSING = "the CDK app needs `uv sync --group infra`"

PREFIX = "imgtest"


@dataclass
class Synthesized:
    stack: Any  # imgproc_infra.stack.ImgprocStack
    settings: Settings
    outdir: Path
    template: dict[str, Any]
    assertions: Any  # aws_cdk.assertions.Template

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.resolve(construct.node.default_child.logical_id))

    def assets(self) -> dict[str, dict[str, Any]]:
        manifest = json.loads((self.outdir / f"{self.stack.stack_name}.assets.json").read_text())
        return {k: v["source"] for k, v in manifest["dockerImages"].items()}


def clean_settings(**overrides: Any) -> Settings:
    """Settings from defaults only: no `IMGPROC_*` variable of the test run leaks in."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("IMGPROC_")}
    try:
        return Settings(resource_prefix=PREFIX, **overrides)
    finally:
        os.environ.update(saved)


def synthesize(outdir: Path, *, validation: bool, **config: Any) -> Synthesized:
    from aws_cdk import assertions

    from imgproc_infra.app import build_app
    from imgproc_infra.config import DeploymentConfig

    settings = clean_settings()
    app, stack = build_app(
        DeploymentConfig(settings=settings, **config), outdir=outdir, validation=validation
    )
    assembly = app.synth()
    template = assembly.get_stack_artifact(stack.artifact_id).template
    return Synthesized(stack, settings, outdir, template, assertions.Template.from_json(template))


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("cdk.out"), validation=True)


def resolve_join(value: Any) -> Any:
    """A template value with each Ref/GetAtt replaced by a readable placeholder string."""
    if isinstance(value, dict):
        if "Ref" in value:
            return f"<Ref {value['Ref']}>"
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return f"<GetAtt {logical_id}.{attribute}>"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(resolve_join(part)) for part in parts)
        return {k: resolve_join(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_join(v) for v in value]
    return value


NO_VALUE = {"Ref": "AWS::NoValue"}


class EffectiveTemplate:
    """The template as CloudFormation deploys it for some parameter values.

    Conditions are evaluated (Fn::Equals, Fn::And, Fn::Or, Fn::Not, Condition) over the
    parameters' given values or defaults; a resource or output whose `Condition` is false is
    dropped; each Fn::If is replaced by its chosen branch, and AWS::NoValue removes the property
    or list item that holds it. A Ref to a parameter becomes its value; other Refs stay.
    """

    def __init__(self, template: dict[str, Any], **parameters: str) -> None:
        declared = template.get("Parameters", {})
        unknown = set(parameters) - set(declared)
        assert not unknown, f"no such parameters: {unknown}"
        self.parameters: dict[str, str] = {}
        for name, spec in declared.items():
            value = parameters.get(name, spec.get("Default"))
            if value is None:
                continue
            allowed = spec.get("AllowedValues")
            # CloudFormation refuses a value outside AllowedValues before evaluating anything.
            assert allowed is None or str(value) in map(str, allowed), (name, value, allowed)
            self.parameters[name] = str(value)
        self._conditions = template.get("Conditions", {})
        self._evaluated: dict[str, bool] = {}
        self.conditions = {name: self.condition(name) for name in self._conditions}
        self.resources: dict[str, dict[str, Any]] = {
            logical_id: self.resolve({k: v for k, v in resource.items() if k != "Condition"})
            for logical_id, resource in template["Resources"].items()
            if self.conditions.get(resource.get("Condition", ""), True)
        }

    def condition(self, name: str) -> bool:
        if name not in self._evaluated:
            self._evaluated[name] = self._truth(self._conditions[name])
        return self._evaluated[name]

    def _truth(self, expression: Any) -> bool:
        (function, args), *rest = expression.items()
        assert not rest, expression
        if function == "Condition":
            return self.condition(args)
        if function == "Fn::Equals":
            left, right = (self.resolve(arg) for arg in args)
            assert not isinstance(left, dict) and not isinstance(right, dict), args
            return str(left) == str(right)
        if function == "Fn::Not":
            return not self._truth(args[0])
        if function == "Fn::And":
            return all(self._truth(arg) for arg in args)
        if function == "Fn::Or":
            return any(self._truth(arg) for arg in args)
        raise AssertionError(f"unsupported condition function {function}")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Fn::If"}:
                name, if_true, if_false = value["Fn::If"]
                return self.resolve(if_true if self.condition(name) else if_false)
            if set(value) == {"Ref"} and value["Ref"] in self.parameters:
                return self.parameters[value["Ref"]]
            resolved = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in resolved.items() if v != NO_VALUE}
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v != NO_VALUE]
        return value

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == type_}

    def role_statements(self, role_id: str) -> list[dict[str, Any]]:
        """Every statement that applies to one role: its inline `Policies` and the
        AWS::IAM::Policy resources attached to it."""
        documents = [
            policy["PolicyDocument"]
            for policy in self.resources[role_id]["Properties"].get("Policies", [])
        ]
        documents += [
            policy["Properties"]["PolicyDocument"]
            for policy in self.of_type("AWS::IAM::Policy").values()
            if {"Ref": role_id} in policy["Properties"].get("Roles", [])
        ]
        return [statement for document in documents for statement in document["Statement"]]
