"""Deploy-time validation: the template's Rules refuse values a deployment would fail on.

CloudFormation evaluates Rules before it creates or updates anything; `rules_refusing` does the
same over the synthesized template (the functions Rules may use: Fn::Equals, Fn::Not, Fn::Or,
Fn::And, Fn::Contains, Ref).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from .conftest import CDK_MISSING, Synthesized

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

from imgproc_infra.config import FARGATE_TASK_SIZES
from imgproc_infra.parameter_rules import MAX_MIN_TASKS

SERVICES = ("Extractor", "Tagger", "Thumbnailer", "StatusApi")
WORKERS = ("Extractor", "Tagger", "Thumbnailer")


def _value(expression: Any, parameters: dict[str, str]) -> Any:
    if isinstance(expression, dict) and set(expression) == {"Ref"}:
        return parameters[expression["Ref"]]
    return expression


def _holds(expression: dict[str, Any], parameters: dict[str, str]) -> bool:
    ((function, args),) = expression.items()
    if function == "Fn::Equals":
        left, right = (str(_value(a, parameters)) for a in args)
        return left == right
    if function == "Fn::Not":
        return not _holds(args[0], parameters)
    if function == "Fn::Or":
        return any(_holds(a, parameters) for a in args)
    if function == "Fn::And":
        return all(_holds(a, parameters) for a in args)
    if function == "Fn::Contains":
        values, value = args
        return str(_value(value, parameters)) in [str(v) for v in values]
    raise AssertionError(f"not a Rules function: {function}")


def rules_refusing(template: dict[str, Any], **given: int | str) -> list[str]:
    """The assertion descriptions CloudFormation would answer for these parameter values."""
    declared = template["Parameters"]
    parameters = {name: str(spec.get("Default", "")) for name, spec in declared.items()}
    parameters.update({name: str(value) for name, value in given.items()})
    refused = []
    for name, rule in template["Rules"].items():
        if name == "CheckBootstrapVersion":  # CDK's own, about the bootstrap stack
            continue
        if "RuleCondition" in rule and not _holds(rule["RuleCondition"], parameters):
            continue
        refused += [
            a["AssertDescription"]
            for a in rule["Assertions"]
            if not _holds(a["Assert"], parameters)
        ]
    return refused


def test_the_defaults_pass_every_rule(synthesized: Synthesized) -> None:
    assert rules_refusing(synthesized.template) == []


@pytest.mark.parametrize("service", SERVICES)
def test_only_pairs_fargate_runs_pass(synthesized: Synthesized, service: str) -> None:
    template = synthesized.template
    cpu, memory = f"{service}Cpu", f"{service}MemoryMiB"
    assert template["Parameters"][cpu]["AllowedValues"] == [str(c) for c in FARGATE_TASK_SIZES]
    every_memory = sorted({m for sizes in FARGATE_TASK_SIZES.values() for m in sizes})
    for cpu_units, memories in FARGATE_TASK_SIZES.items():
        for memory_mib in every_memory:
            refused = rules_refusing(template, **{cpu: cpu_units, memory: memory_mib})
            if memory_mib in memories:
                assert refused == [], (cpu_units, memory_mib)
            else:
                assert len(refused) == 1 and f"{cpu}={cpu_units} only" in refused[0], (
                    cpu_units,
                    memory_mib,
                )


@pytest.mark.parametrize("worker", WORKERS)
def test_min_tasks_may_not_exceed_max_tasks(synthesized: Synthesized, worker: str) -> None:
    template = synthesized.template
    low, high = f"{worker}MinTasks", f"{worker}MaxTasks"
    assert template["Parameters"][low]["MaxValue"] == MAX_MIN_TASKS
    for least in range(0, MAX_MIN_TASKS + 1):
        for most in range(1, MAX_MIN_TASKS + 2):
            refused = rules_refusing(template, **{low: least, high: most})
            assert (refused == []) == (least <= most), (least, most, refused)
    assert rules_refusing(template, **{low: 3, high: 2}) == [f"{low}=3 needs {high} of at least 3"]


def test_the_task_size_table_matches_cfn_lints(synthesized: Synthesized) -> None:
    """An independent copy of the ECS table: cfn-lint's E3047 schema."""
    schema = json.loads(
        resources.files("cfnlint.data.schemas.extensions.aws_ecs_taskdefinition")
        .joinpath("fargate_cpu_memory.json")
        .read_text()
    )
    table: dict[int, tuple[int, ...]] = {}
    for option in schema["then"]["anyOf"]:
        cpu = int(option["properties"]["Cpu"]["then"]["enum"][0])
        memory = option["properties"]["Memory"]["then"]
        if "enum" in memory:
            table[cpu] = tuple(memory["enum"])
        else:
            step = memory["multipleOf"]
            table[cpu] = tuple(range(memory["minimum"], memory["maximum"] + 1, step))
    assert {cpu: table[cpu] for cpu in FARGATE_TASK_SIZES} == FARGATE_TASK_SIZES


def test_cdk_validation_reports_no_task_size_finding(synthesized: Synthesized) -> None:
    """CDK's validation pairs each CPU value with the memory parameter's default alone (11
    warnings before the Rules); they are acknowledged, with the Rules as the reason."""
    report = synthesized.outdir / "validation-report.json"
    if not report.exists():
        return
    for plugin in json.loads(report.read_text())["pluginReports"]:
        assert not [v for v in plugin["violations"] if v["ruleName"] == "E3047"]
        for suppressed in plugin.get("suppressedViolations", []):
            if suppressed["ruleName"] == "E3047":
                assert "Rules refuse" in suppressed["reason"]
