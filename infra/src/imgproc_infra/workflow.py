"""The `ImageProc` and `ImageRetag` state machines, rendered from the definitions the local
stack runs (`ImageRetag` re-runs the tag stage of PROCESSED images: `imgproc_shared.retag`)."""

from __future__ import annotations

import json

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

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
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("states.amazonaws.com"),
            description=f"{names.state_machine}: only what its tasks call",
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["sqs:SendMessage"], resources=[extract_queue.queue_arn])
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["sns:Publish"],
                resources=[validated_topic.topic_arn, stored_topic.topic_arn],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(actions=["dynamodb:UpdateItem"], resources=[images_table.table_arn])
        )
        # Publishing to an encrypted topic needs its key.
        for topic in (validated_topic, stored_topic):
            if topic.master_key is not None:
                topic.master_key.grant(self.role, "kms:GenerateDataKey*", "kms:Decrypt")
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
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
            state_machine_name=self.retag_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_string(
                json.dumps(build_retag_definition(self.targets, limits))
            ),
            role=self.role,
        )

    def grant_retag(self, *, tagger: iam.IGrantable, operators: iam.IGrantable) -> None:
        """Re-tagging beyond ImageProc's grants: the tagger answers ImageRetag's task tokens;
        the status API (operators' endpoint) starts its executions and reads their progress."""
        machine = self.retag_state_machine
        machine.grant_task_response(tagger)
        machine.grant_start_execution(operators)
        # Not `grant_read`: it adds describe actions on every resource.
        iam.Grant.add_to_principal(
            grantee=operators,
            actions=["states:ListExecutions"],
            resource_arns=[machine.state_machine_arn],
        )
        iam.Grant.add_to_principal(
            grantee=operators,
            actions=["states:DescribeExecution"],
            resource_arns=[
                Stack.of(self).format_arn(
                    service="states",
                    resource="execution",
                    resource_name=f"{self.retag_name}:*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            ],
        )
