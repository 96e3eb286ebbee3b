"""The synthesized template's policies equal `imgproc_shared.permissions` rendered with
CloudFormation references: what `cdk deploy` grants is what the local stack enforces.

Statements are compared as (action, resource, condition) triples, so how CDK merges or orders
statements does not matter.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from imgproc_shared.permissions import (
    AnyResource,
    BucketArn,
    ExecutionsArn,
    Machine,
    ObjectsArn,
    Principal,
    QueueArn,
    Resource,
    RoleArn,
    StateMachineArn,
    TableArn,
    TableIndexesArn,
    TopicArn,
    render_statements,
    role_name,
)
from imgproc_shared.resources import ResourceNames, Stage
from imgproc_shared.workflow import retag_state_machine_name

from .conftest import CDK_MISSING, PREFIX, EffectiveTemplate, Synthesized

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

NAMES = ResourceNames(PREFIX)
Triple = tuple[str, str, str]


class TemplateArns:
    """Each symbolic resource as the reference the template uses for it, found by the
    resource's type and physical name."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.ids: dict[tuple[str, str], str] = {}
        name_properties = {
            "AWS::SQS::Queue": "QueueName",
            "AWS::DynamoDB::Table": "TableName",
            "AWS::S3::Bucket": "BucketName",
            "AWS::SNS::Topic": "TopicName",
            "AWS::StepFunctions::StateMachine": "StateMachineName",
        }
        for logical_id, resource in template["Resources"].items():
            name_property = name_properties.get(resource["Type"])
            if name_property is not None:
                key = (resource["Type"], resource["Properties"][name_property])
                assert key not in self.ids, key
                self.ids[key] = logical_id

    def _arn(self, type_: str, name: str) -> dict[str, Any]:
        return {"Fn::GetAtt": [self.ids[(type_, name)], "Arn"]}

    def _ref(self, type_: str, name: str) -> dict[str, Any]:
        return {"Ref": self.ids[(type_, name)]}

    @staticmethod
    def machine_name(machine: Machine) -> str:
        if machine is Machine.RETAG:
            return retag_state_machine_name(NAMES.prefix)
        return NAMES.state_machine

    def __call__(self, resource: Resource) -> Any:
        bucket = self._arn("AWS::S3::Bucket", NAMES.bucket)
        match resource:
            case QueueArn(queue, dead_letter):
                name = NAMES.dead_letter_queue(queue) if dead_letter else NAMES.queue(queue)
                return self._arn("AWS::SQS::Queue", name)
            case TableArn(table):
                return self._arn("AWS::DynamoDB::Table", NAMES.table(table))
            case TableIndexesArn(table):
                table_arn = self._arn("AWS::DynamoDB::Table", NAMES.table(table))
                return {"Fn::Join": ["", [table_arn, "/index/*"]]}
            case BucketArn():
                return bucket
            case ObjectsArn(prefix):
                return {"Fn::Join": ["", [bucket, f"/{prefix}*"]]}
            case TopicArn(topic):
                return self._ref("AWS::SNS::Topic", NAMES.topic(topic))
            case StateMachineArn(machine):
                return self._ref("AWS::StepFunctions::StateMachine", self.machine_name(machine))
            case ExecutionsArn(machine):
                return {
                    "Fn::Join": [
                        "",
                        [
                            "arn:",
                            {"Ref": "AWS::Partition"},
                            ":states:",
                            {"Ref": "AWS::Region"},
                            ":",
                            {"Ref": "AWS::AccountId"},
                            f":execution:{self.machine_name(machine)}:*",
                        ],
                    ]
                }
            case RoleArn(principal):
                return {
                    "Fn::Join": [
                        "",
                        [
                            "arn:",
                            {"Ref": "AWS::Partition"},
                            ":iam::",
                            {"Ref": "AWS::AccountId"},
                            f":role/{role_name(NAMES.prefix, principal)}",
                        ],
                    ]
                }
            case AnyResource():
                return "*"
        raise AssertionError(resource)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def triples(statements: list[dict[str, Any]]) -> set[Triple]:
    found = set()
    for statement in statements:
        assert statement.get("Effect") == "Allow", statement
        condition = json.dumps(statement.get("Condition"), sort_keys=True)
        for action in as_list(statement["Action"]):
            for resource in as_list(statement["Resource"]):
                found.add((action, json.dumps(resource, sort_keys=True), condition))
    return found


def roles(synth: Synthesized) -> dict[Principal, str]:
    stack = synth.stack
    return {
        Principal.EXTRACTOR: synth.logical_id(stack.workers[Stage.EXTRACT].task_role),
        Principal.TAGGER: synth.logical_id(stack.workers[Stage.TAG].task_role),
        Principal.THUMBNAILER: synth.logical_id(stack.workers[Stage.THUMBNAIL].task_role),
        Principal.STATUS_API: synth.logical_id(stack.status_api.task_role),
        Principal.OPERATIONS: synth.logical_id(stack.status_api.operations_role),
        Principal.WORKFLOW: synth.logical_id(stack.workflow.role),
    }


def topic_key_grants(synth: Synthesized) -> set[Triple]:
    """The workflow role's use of the topics' key: the deployed topics are encrypted, the
    local ones are not, so this grant lives in `infra/` alone."""
    key = {"Fn::GetAtt": [synth.logical_id(synth.stack.messaging.topic_key), "Arn"]}
    return {
        (action, json.dumps(key, sort_keys=True), "null")
        for action in ("kms:GenerateDataKey*", "kms:Decrypt")
    }


# The state machines' logging (ERROR level, infra/ only): CDK grants the CloudWatch Logs
# delivery actions Step Functions needs, which take no resource but "*".
STATE_MACHINE_LOG_DELIVERY = (
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
)


def log_delivery_grants() -> set[Triple]:
    return {(action, '"*"', "null") for action in STATE_MACHINE_LOG_DELIVERY}


@pytest.mark.parametrize("backend", ["local", "rekognition"])
@pytest.mark.parametrize("principal", list(Principal))
def test_each_role_grants_exactly_the_shared_definition(
    synthesized: Synthesized, principal: Principal, backend: str
) -> None:
    deployed = EffectiveTemplate(synthesized.template, TaggerBackend=backend)
    granted = triples(deployed.role_statements(roles(synthesized)[principal]))
    expected = triples(
        render_statements(
            principal, TemplateArns(synthesized.template), rekognition=backend == "rekognition"
        )
    )
    if principal is Principal.WORKFLOW:
        expected |= topic_key_grants(synthesized) | log_delivery_grants()
    assert granted == expected


def test_task_execution_roles_hold_only_cdks_image_pull_and_logging_grants(
    synthesized: Synthesized,
) -> None:
    deployed = EffectiveTemplate(synthesized.template, TaggerBackend="rekognition")
    task_roles = set(roles(synthesized).values())
    execution_roles = {
        task["Properties"]["ExecutionRoleArn"]["Fn::GetAtt"][0]
        for task in deployed.of_type("AWS::ECS::TaskDefinition").values()
    }
    # A task per process: the workflow's and the operations role are no task's.
    assert len(execution_roles) == len(Principal) - 2
    assert not execution_roles & task_roles
    for role_id in execution_roles:
        actions = {a for s in deployed.role_statements(role_id) for a in as_list(s["Action"])}
        assert actions and all(a.startswith(("ecr:", "logs:")) for a in actions), actions


def test_the_operations_role_is_assumed_by_the_status_api_alone(synthesized: Synthesized) -> None:
    """Operators' powers live in `<prefix>-operations`, which trusts only the status API's task
    role; the API finds it in its environment and holds none of those powers itself."""
    template = synthesized.template
    found = roles(synthesized)
    role = template["Resources"][found[Principal.OPERATIONS]]["Properties"]
    assert role["RoleName"] == f"{PREFIX}-operations"
    task_role_arn = {"Fn::GetAtt": [found[Principal.STATUS_API], "Arn"]}
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Action": "sts:AssumeRole", "Effect": "Allow", "Principal": {"AWS": task_role_arn}}
    ]
    api_task = synthesized.stack.status_api.service.task_definition
    container = template["Resources"][synthesized.logical_id(api_task)]["Properties"][
        "ContainerDefinitions"
    ][0]
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    assert environment["IMGPROC_OPERATIONS_ROLE_ARN"] == {
        "Fn::GetAtt": [found[Principal.OPERATIONS], "Arn"]
    }
