"""CloudFormation Rules: parameter values the deployment would fail on, refused before it starts.

CloudFormation checks a template's Rules when a stack is created or updated, before it touches
any resource, and answers with the assertion's description. Rules can compare parameters only
for equality and list membership (no arithmetic, no ordering), so each rule spells its
constraint out value by value: the memory sizes Fargate accepts for each CPU size, and for each
minimum task count the maximum counts below it.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnParameter, CfnRule, CfnRuleAssertion, Fn, Validations
from constructs import Construct

from imgproc_infra.config import FARGATE_TASK_SIZES

# The largest `<Service>MinTasks` (its parameter's MaxValue): the min ≤ max rule lists every
# minimum from 2 up to it.
MAX_MIN_TASKS = 20
# CDK's template validation checks each CPU value against the memory parameter's default
# alone; the task size rule below is what refuses bad pairs, for every value.
TASK_SIZE_FINDING = "CloudFormation-Validate::E3047"


def _sizes(memories: tuple[int, ...]) -> str:
    if len(memories) <= 4:
        return ", ".join(map(str, memories))
    return f"{memories[0]} to {memories[-1]} in steps of {memories[1] - memories[0]}"


def task_size_rule(scope: Construct, label: str, cpu: CfnParameter, memory: CfnParameter) -> None:
    """`<label>Cpu` and `<label>MemoryMiB` must be a pair Fargate runs."""
    cpu_name, memory_name = f"{label}Cpu", f"{label}MemoryMiB"
    CfnRule(
        scope,
        f"{label}TaskSize",
        assertions=[
            CfnRuleAssertion(
                assert_=Fn.condition_or(
                    Fn.condition_not(Fn.condition_equals(cpu.value_as_string, str(cpu_units))),
                    Fn.condition_contains(
                        [str(memory_mib) for memory_mib in memories], memory.value_as_string
                    ),
                ),
                assert_description=f"Fargate runs {cpu_name}={cpu_units} only with "
                f"{memory_name} {_sizes(memories)}",
            )
            for cpu_units, memories in FARGATE_TASK_SIZES.items()
        ],
    )
    # The rule covers what the validation reports (see TASK_SIZE_FINDING).
    Validations.of(scope).acknowledge(
        Acknowledgment(
            id=TASK_SIZE_FINDING,
            reason="the template's Rules refuse every CPU/memory pair Fargate does not run",
        )
    )


def task_count_rule(
    scope: Construct,
    label: str,
    min_tasks: CfnParameter,
    max_tasks: CfnParameter,
    *,
    scale_from_zero_allowed: bool,
) -> None:
    """`<label>MinTasks` ≤ `<label>MaxTasks`; and no minimum of 0 where a task waiting out a
    cold start would time out (`scale_from_zero_allowed` false)."""
    min_name, max_name = f"{label}MinTasks", f"{label}MaxTasks"
    assertions = [
        CfnRuleAssertion(
            assert_=Fn.condition_or(
                Fn.condition_not(Fn.condition_equals(min_tasks.value_as_string, str(least))),
                Fn.condition_not(
                    Fn.condition_contains(
                        [str(most) for most in range(1, least)], max_tasks.value_as_string
                    )
                ),
            ),
            assert_description=f"{min_name}={least} needs {max_name} of at least {least}",
        )
        for least in range(2, MAX_MIN_TASKS + 1)
    ]
    if not scale_from_zero_allowed:
        assertions.append(
            CfnRuleAssertion(
                assert_=Fn.condition_not(Fn.condition_equals(min_tasks.value_as_string, "0")),
                assert_description=f"{min_name}=0 needs a task heartbeat (IMGPROC_TASK_HEARTBEAT_S "
                "at synth time) longer than a cold start from zero tasks: raise it, or keep "
                "at least one task",
            )
        )
    CfnRule(scope, f"{label}TaskCount", assertions=assertions)
