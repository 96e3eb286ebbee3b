"""`TaggerBackend`: the local models by default, Rekognition (and its permission) only on request.

The template is evaluated as CloudFormation would deploy it for each value of the parameter
(`EffectiveTemplate` resolves its Conditions and each Fn::If).
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import CDK_MISSING, EffectiveTemplate, Synthesized

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

from imgproc_infra.config import DEFAULT_SIZING, STATUS_API_IMAGE, WORKER_IMAGES
from imgproc_shared.resources import Stage

TAGGER = WORKER_IMAGES[Stage.TAG].service

# Fargate's valid task sizes: CPU units → memory (MiB) from, to, in steps of.
FARGATE_MEMORY = {
    256: (512, 2048, None),  # 512, 1024 or 2048
    512: (1024, 4096, 1024),
    1024: (2048, 8192, 1024),
    2048: (4096, 16384, 1024),
    4096: (8192, 30720, 1024),
}


def valid_fargate_pair(cpu: int, memory_mib: int) -> bool:
    if cpu not in FARGATE_MEMORY:
        return False
    low, high, step = FARGATE_MEMORY[cpu]
    if step is None:
        return memory_mib in (512, 1024, 2048)
    return low <= memory_mib <= high and (memory_mib - low) % step == 0


def role_ids(synth: Synthesized) -> dict[str, str]:
    roles = {
        image.service: synth.logical_id(synth.stack.workers[stage].task_role)
        for stage, image in WORKER_IMAGES.items()
    }
    roles[STATUS_API_IMAGE.service] = synth.logical_id(synth.stack.status_api.task_role)
    return roles


def rekognition_grants(deployed: EffectiveTemplate) -> list[tuple[str, dict[str, Any]]]:
    """(role, statement) for every statement anywhere that mentions a Rekognition action."""
    grants = []
    for role_id in deployed.of_type("AWS::IAM::Role"):
        for statement in deployed.role_statements(role_id):
            actions = statement["Action"]
            actions = actions if isinstance(actions, list) else [actions]
            if any(str(a).startswith("rekognition:") for a in actions):
                grants.append((role_id, statement))
    return grants


def container_environment(deployed: EffectiveTemplate, service: str) -> dict[str, Any]:
    for task in deployed.of_type("AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            if container["Name"] == service:
                return {e["Name"]: e["Value"] for e in container["Environment"]}
    raise AssertionError(f"no container {service}")


def test_parameter_offers_both_backends_and_defaults_to_local(synthesized: Synthesized) -> None:
    parameter = synthesized.template["Parameters"]["TaggerBackend"]
    assert parameter["Type"] == "String"
    assert parameter["AllowedValues"] == ["local", "rekognition"]
    assert parameter["Default"] == "local"
    # Anything else is refused before CloudFormation deploys (the helper applies the rule).
    with pytest.raises(AssertionError):
        EffectiveTemplate(synthesized.template, TaggerBackend="gpu")


@pytest.mark.parametrize("parameters", [{}, {"TaggerBackend": "local"}], ids=["default", "local"])
def test_local_backend_gives_no_role_a_rekognition_permission(
    synthesized: Synthesized, parameters: dict[str, str]
) -> None:
    deployed = EffectiveTemplate(synthesized.template, **parameters)
    assert deployed.conditions["TaggerUsesRekognition"] is False
    assert rekognition_grants(deployed) == []
    # Every container reads the same backend; the tagger runs the local models.
    for image in [*WORKER_IMAGES.values(), STATUS_API_IMAGE]:
        assert container_environment(deployed, image.service)["IMGPROC_TAGGER_BACKEND"] == "local"


def test_rekognition_backend_lets_the_tagger_alone_call_detect_labels(
    synthesized: Synthesized,
) -> None:
    deployed = EffectiveTemplate(synthesized.template, TaggerBackend="rekognition")
    assert deployed.conditions["TaggerUsesRekognition"] is True
    roles = role_ids(synthesized)
    assert rekognition_grants(deployed) == [
        (
            roles[TAGGER],
            # DetectLabels has no resource-level permissions: "*" is its only resource.
            {
                "Sid": "DetectLabels",
                "Action": "rekognition:DetectLabels",
                "Effect": "Allow",
                "Resource": "*",
            },
        )
    ]
    assert container_environment(deployed, TAGGER)["IMGPROC_TAGGER_BACKEND"] == "rekognition"


def test_the_grant_is_in_place_before_a_tagger_task_starts(synthesized: Synthesized) -> None:
    """The permission is an inline policy of the tagger's task role, which its task definition
    refers to: CloudFormation updates the role before the tasks that use the new backend."""
    deployed = EffectiveTemplate(synthesized.template, TaggerBackend="rekognition")
    role_id = role_ids(synthesized)[TAGGER]
    inline = deployed.resources[role_id]["Properties"]["Policies"]
    assert [p["PolicyDocument"]["Statement"][0]["Action"] for p in inline] == [
        "rekognition:DetectLabels"
    ]
    tagger_task = synthesized.logical_id(synthesized.stack.workers[Stage.TAG].task_definition)
    task_role = deployed.resources[tagger_task]["Properties"]["TaskRoleArn"]
    assert task_role == {"Fn::GetAtt": [role_id, "Arn"]}
    # No resource carries the condition: a DependsOn cannot name a resource that may be absent.
    conditional = [r for r in synthesized.template["Resources"].values() if r.get("Condition")]
    assert not [r for r in conditional if r["Condition"] == "TaggerUsesRekognition"]


def test_every_default_task_size_is_a_valid_fargate_pair(synthesized: Synthesized) -> None:
    deployed = EffectiveTemplate(synthesized.template)
    for task in deployed.of_type("AWS::ECS::TaskDefinition").values():
        properties = task["Properties"]
        cpu, memory = int(properties["Cpu"]), int(properties["Memory"])
        assert valid_fargate_pair(cpu, memory), (properties["Family"], cpu, memory)
    # The local tagger: half a vCPU for ~0.15 CPU-s per image, 1 GiB for both models.
    tagger = DEFAULT_SIZING[Stage.TAG]
    assert (tagger.cpu, tagger.memory_mib) == (512, 1024)
    parameters = synthesized.template["Parameters"]
    assert parameters["TaggerCpu"]["Default"] == "512"
    assert parameters["TaggerMemoryMiB"]["Default"] == 1024
