"""The `ImageProc` state machine, rendered from the definition the local stack runs."""

from __future__ import annotations

import json

from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from imgproc_shared.resources import ResourceNames
from imgproc_shared.workflow import WorkflowLimits, WorkflowTargets, build_definition


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
