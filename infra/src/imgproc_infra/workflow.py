"""The `ImageProc` and `ImageRetag` state machines, rendered from the definitions the local
stack runs (`ImageRetag` re-runs the tag stage of PROCESSED images: `imgproc_shared.retag`)."""

from __future__ import annotations

import json

from aws_cdk import RemovalPolicy
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from imgproc_infra.services import LOG_RETENTION, CloudFormationArns, grant_permissions
from imgproc_shared.permissions import Principal
from imgproc_shared.resources import ResourceNames
from imgproc_shared.workflow import (
    WorkflowLimits,
    WorkflowTargets,
    build_definition,
    build_retag_definition,
    retag_state_machine_name,
)


class Workflow(Construct):
    """A STANDARD state machine (callbacks need it) whose role can call only its own tasks."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        limits: WorkflowLimits,
        extract_queue: sqs.IQueue,
        validated_topic: sns.ITopic,
        stored_topic: sns.ITopic,
        images_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        # CDK tokens inside the JSON string become an Fn::Join in the template.
        self.targets = WorkflowTargets(
            extract_queue_url=extract_queue.queue_url,
            validated_topic_arn=validated_topic.topic_arn,
            stored_topic_arn=stored_topic.topic_arn,
            images_table=images_table.table_name,
        )
        # Its statements come with grant_permissions, once every resource they name exists.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{names.state_machine}: only what its tasks call",
        )
        self.log_groups: dict[str, logs.LogGroup] = {}
        # Publishing to an encrypted topic needs its key.
        for topic in (validated_topic, stored_topic):
            if topic.master_key is not None:
                topic.master_key.grant(self.role, "kms:GenerateDataKey*", "kms:Decrypt")
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            logs=self._logging("StateMachineLogs", names.state_machine),
            state_machine_name=names.state_machine,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(
                json.dumps(build_definition(self.targets, limits))
            ),
            role=self.role,
        )
        # Its tasks are a subset of ImageProc's (publish on validated/stored, update Images),
        # so it shares the role.
        self.retag_name = retag_state_machine_name(names.prefix)
        self.retag_state_machine = sfn.StateMachine(
            self,
            "RetagStateMachine",
            logs=self._logging("RetagStateMachineLogs", retag_state_machine_name(names.prefix)),
            state_machine_name=self.retag_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(
                json.dumps(build_retag_definition(self.targets, limits))
            ),
            role=self.role,
        )

    def _logging(self, construct_id: str, machine_name: str) -> sfn.LogOptions:
        """ERROR-level logging (failed, timed-out and aborted executions, failed tasks) with the
        execution data that says which image, to a log group per machine, whose failures the
        failed-executions alarm counts (alarms.py)."""
        log_group = logs.LogGroup(
            self,
            construct_id,
            # Under /aws/vendedlogs/: CloudWatch Logs then needs no resource policy per group.
            log_group_name=f"/aws/vendedlogs/states/{machine_name}",
            retention=LOG_RETENTION,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.log_groups[machine_name] = log_group
        return sfn.LogOptions(
            destination=log_group, level=sfn.LogLevel.ERROR, include_execution_data=True
        )

    def grant_permissions(self, arns: CloudFormationArns) -> None:
        """The role's statements from `imgproc_shared.permissions` (the topics' key stays
        here: the local stack's topics are not encrypted)."""
        grant_permissions(self.role, Principal.WORKFLOW, arns)
