"""The containers: one Fargate service per worker stage and the status API behind a load balancer.

Each task role is written out statement by statement: a worker can touch only its own queue,
its own prefixes of the bucket, the table actions it uses and the task-token calls.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import ArnFormat, Aws, CfnCondition, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as ecs_patterns
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk.aws_ecr_assets import Platform
from constructs import Construct

from imgproc_infra.config import (
    DOCKERFILE,
    HEALTH_PATH,
    HEALTHCHECK_COMMAND,
    STATUS_API_PORT,
    DeploymentConfig,
    ServiceImage,
)
from imgproc_shared.resources import INCOMING_PREFIX, THUMBNAILS_PREFIX, ResourceNames, Stage

LOG_RETENTION = logs.RetentionDays.ONE_MONTH

# What a worker does with its own queue (the runtime looks its URL up by name).
QUEUE_CONSUMER_ACTIONS = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
]
# The runtime records per-stage progress on the image record.
WORKER_TABLE_ACTIONS = ["dynamodb:GetItem", "dynamodb:UpdateItem"]
API_TABLE_ACTIONS = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:ConditionCheckItem",
]
# Operator views (depths) and dead-letter replay (`imgproc dlq` through the API).
QUEUE_OPERATOR_ACTIONS = ["sqs:GetQueueAttributes", "sqs:GetQueueUrl"]
DEAD_LETTER_REPLAY_ACTIONS = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:PurgeQueue",
    "sqs:ListDeadLetterSourceQueues",
    "sqs:StartMessageMoveTask",
    "sqs:ListMessageMoveTasks",
    "sqs:CancelMessageMoveTask",
]


def container_image(config: DeploymentConfig, image: ServiceImage) -> ecs.ContainerImage:
    """The image built from the repository root with `docker/Dockerfile`, target per service."""
    return ecs.ContainerImage.from_asset(
        str(config.repo_root),
        file=DOCKERFILE,
        target=image.target,
        build_args={"PACKAGE": image.package},
        platform=Platform.LINUX_AMD64,
    )


def service_environment(
    config: DeploymentConfig, state_machine: sfn.IStateMachine, tagger_backend: str
) -> dict[str, str]:
    """The `IMGPROC_*` settings every container reads: the same names the local stack uses.

    `tagger_backend` is the `TaggerBackend` parameter's value (a token).
    """
    settings = config.settings
    return {
        "IMGPROC_RESOURCE_PREFIX": settings.resource_prefix,
        "IMGPROC_REGION": Stack.of(state_machine).region,
        "IMGPROC_STATE_MACHINE_ARN": state_machine.state_machine_arn,
        "IMGPROC_TAGGER_BACKEND": tagger_backend,
        "IMGPROC_STOP_TIMEOUT_S": str(settings.stop_timeout_s),
        "IMGPROC_VISIBILITY_TIMEOUT_S": str(settings.visibility_timeout_s),
        "IMGPROC_TASK_HEARTBEAT_S": str(settings.task_heartbeat_s),
        "IMGPROC_MAX_UPLOAD_BYTES": str(settings.max_upload_bytes),
        "IMGPROC_MAX_PIXELS": str(settings.max_pixels),
        "IMGPROC_SUPPORTED_FORMATS": ",".join(settings.supported_formats),
        "IMGPROC_LOG_LEVEL": settings.log_level,
    }


@dataclass(frozen=True)
class TaskSize:
    cpu: int | float
    memory_mib: int | float


def _log_group(scope: Construct, config: DeploymentConfig, service: str) -> logs.LogGroup:
    return logs.LogGroup(
        scope,
        "Logs",
        log_group_name=f"/imgproc/{config.prefix}/{service}",
        retention=LOG_RETENTION,
        removal_policy=RemovalPolicy.DESTROY,
    )


class Network(Construct):
    """A VPC (tasks in private subnets) and the ECS cluster with Container Insights."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            # One NAT gateway for ECR, Step Functions, SQS and Rekognition calls; S3 and
            # DynamoDB traffic takes the free gateway endpoints instead.
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
                ec2.SubnetConfiguration(
                    name="tasks", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS
                ),
            ],
            gateway_endpoints={
                "S3": ec2.GatewayVpcEndpointOptions(service=ec2.GatewayVpcEndpointAwsService.S3),
                "DynamoDB": ec2.GatewayVpcEndpointOptions(
                    service=ec2.GatewayVpcEndpointAwsService.DYNAMODB
                ),
            },
        )
        self.cluster = ecs.Cluster(
            self,
            "Cluster",
            cluster_name=f"{config.prefix}-cluster",
            vpc=self.vpc,
            # RunningTaskCount, which the scaling policies divide by, comes from here.
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )


class WorkerService(Construct):
    """One worker stage: a Fargate service reading one queue, with a least-privilege task role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        stage: Stage,
        image: ServiceImage,
        size: TaskSize,
        cluster: ecs.ICluster,
        queue: sqs.IQueue,
        bucket: s3.IBucket,
        images_table: dynamodb.ITable,
        dead_letters_table: dynamodb.ITable,
        state_machine: sfn.IStateMachine,
        tagger_backend: str,
        uses_rekognition: CfnCondition,
    ) -> None:
        super().__init__(scope, construct_id)
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{config.prefix} {image.service}: its queue, prefixes and table actions",
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(actions=QUEUE_CONSUMER_ACTIONS, resources=[queue.queue_arn])
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{INCOMING_PREFIX}*")],
            )
        )
        if stage is Stage.TAG:
            self._allow_detect_labels_if(uses_rekognition)
        if stage is Stage.THUMBNAIL:
            self.task_role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:PutObject"],
                    resources=[bucket.arn_for_objects(f"{THUMBNAILS_PREFIX}*")],
                )
            )
        self.task_role.add_to_policy(
            iam.PolicyStatement(actions=WORKER_TABLE_ACTIONS, resources=[images_table.table_arn])
        )
        # On a message's last try, a note of why it fails, shown with its dead letter.
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                actions=["dynamodb:UpdateItem"], resources=[dead_letters_table.table_arn]
            )
        )
        state_machine.grant_task_response(self.task_role)

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            family=f"{config.prefix}-{image.service}",
            cpu=size.cpu,  # type: ignore[arg-type]  # a parameter token
            memory_limit_mib=size.memory_mib,  # type: ignore[arg-type]
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.log_group = _log_group(self, config, image.service)
        self.container = self.task_definition.add_container(
            "worker",
            container_name=image.service,
            image=container_image(config, image),
            command=image.command,
            environment=service_environment(config, state_machine, tagger_backend),
            logging=ecs.LogDrivers.aws_logs(stream_prefix=image.service, log_group=self.log_group),
            # SIGTERM → the worker stops polling and drains; SIGKILL only after this.
            stop_timeout=Duration.seconds(config.container_stop_timeout_s),
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            service_name=f"{config.prefix}-{image.service}",
            cluster=cluster,
            task_definition=self.task_definition,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            # The desired count belongs to the scaling policies: the template never resets it.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )

    def _allow_detect_labels_if(self, condition: CfnCondition) -> None:
        """`rekognition:DetectLabels`, granted only where `condition` holds.

        An inline policy of the role itself, present through Fn::If: the task definition refers
        to the role, so CloudFormation attaches the grant before tasks with the new backend
        start (a separate AWS::IAM::Policy with a Condition could not be a DependsOn target).
        """
        role = self.task_role.node.default_child
        assert isinstance(role, iam.CfnRole)
        grant = {
            "PolicyName": "rekognition-detect-labels",
            # DetectLabels has no resource-level permissions: "*" is the only valid resource.
            "PolicyDocument": iam.PolicyDocument(
                statements=[
                    iam.PolicyStatement(actions=["rekognition:DetectLabels"], resources=["*"])
                ]
            ),
        }
        role.policies = [Fn.condition_if(condition.logical_id, grant, Aws.NO_VALUE)]


class StatusApi(Construct):
    """The status API (and the workflow starter) as a Fargate service behind a public ALB."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        size: TaskSize,
        desired_count: int | float,
        cluster: ecs.ICluster,
        image: ServiceImage,
        bucket: s3.IBucket,
        tables: list[dynamodb.ITable],
        own_queues: list[sqs.IQueue],
        all_queues: list[sqs.IQueue],
        dead_letter_queues: list[sqs.IQueue],
        state_machine: sfn.IStateMachine,
        cognito_environment: dict[str, str],
        tagger_backend: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{config.prefix} status API: records, uploads, executions, queues",
        )
        table_resources = [arn for t in tables for arn in (t.table_arn, f"{t.table_arn}/index/*")]
        statements = [
            iam.PolicyStatement(actions=API_TABLE_ACTIONS, resources=table_resources),
            # Presigned uploads are signed with this role: PUT under incoming/ only.
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[bucket.arn_for_objects(f"{INCOMING_PREFIX}*")]
            ),
            iam.PolicyStatement(
                actions=["s3:GetObject", "s3:DeleteObject"],
                resources=[
                    bucket.arn_for_objects(f"{INCOMING_PREFIX}*"),
                    bucket.arn_for_objects(f"{THUMBNAILS_PREFIX}*"),
                ],
            ),
            iam.PolicyStatement(
                actions=QUEUE_CONSUMER_ACTIONS, resources=[q.queue_arn for q in own_queues]
            ),
            iam.PolicyStatement(
                actions=QUEUE_OPERATOR_ACTIONS,
                resources=[q.queue_arn for q in (*all_queues, *dead_letter_queues)],
            ),
            iam.PolicyStatement(
                actions=DEAD_LETTER_REPLAY_ACTIONS,
                resources=[q.queue_arn for q in dead_letter_queues],
            ),
            # A replay returns each message to its source queue.
            iam.PolicyStatement(
                actions=["sqs:SendMessage"], resources=[q.queue_arn for q in all_queues]
            ),
            iam.PolicyStatement(
                actions=["states:StartExecution"], resources=[state_machine.state_machine_arn]
            ),
            iam.PolicyStatement(
                actions=[
                    "states:DescribeExecution",
                    "states:GetExecutionHistory",
                    "states:StopExecution",
                ],
                resources=[
                    stack.format_arn(
                        service="states",
                        resource="execution",
                        resource_name=f"{ResourceNames(config.prefix).state_machine}:*",
                        arn_format=ArnFormat.COLON_RESOURCE_NAME,
                    )
                ],
            ),
        ]
        for statement in statements:
            self.task_role.add_to_policy(statement)

        self.log_group = _log_group(self, config, image.service)
        environment = {
            **service_environment(config, state_machine, tagger_backend),
            **cognito_environment,
        }
        certificate = (
            acm.Certificate.from_certificate_arn(self, "Certificate", config.certificate_arn)
            if config.certificate_arn
            else None
        )
        self.service = ecs_patterns.ApplicationLoadBalancedFargateService(
            self,
            "Service",
            service_name=f"{config.prefix}-{image.service}",
            cluster=cluster,
            cpu=size.cpu,  # type: ignore[arg-type]
            memory_limit_mib=size.memory_mib,  # type: ignore[arg-type]
            desired_count=desired_count,  # type: ignore[arg-type]
            public_load_balancer=True,
            certificate=certificate,
            protocol=(
                elbv2.ApplicationProtocol.HTTPS if certificate else elbv2.ApplicationProtocol.HTTP
            ),
            redirect_http=bool(certificate),
            min_healthy_percent=100,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            health_check_grace_period=Duration.seconds(60),
            # Live updates are a long-lived event stream: keep idle connections open longer.
            idle_timeout=Duration.seconds(120),
            task_image_options=ecs_patterns.ApplicationLoadBalancedTaskImageOptions(
                image=container_image(config, image),
                container_name=image.service,
                container_port=STATUS_API_PORT,
                command=image.command,
                environment=environment,
                task_role=self.task_role,
                log_driver=ecs.LogDrivers.aws_logs(
                    stream_prefix=image.service, log_group=self.log_group
                ),
            ),
        )
        self.service.target_group.configure_health_check(
            path=HEALTH_PATH,
            healthy_http_codes="200",
            interval=Duration.seconds(15),
            healthy_threshold_count=2,
            unhealthy_threshold_count=3,
        )
        self.service.target_group.set_attribute("deregistration_delay.timeout_seconds", "30")
        # ECS ignores the Dockerfile's HEALTHCHECK: the same probe, declared for ECS.
        self.service.task_definition.node.default_child.add_property_override(  # type: ignore[union-attr]
            "ContainerDefinitions.0.HealthCheck",
            {
                "Command": ["CMD", *HEALTHCHECK_COMMAND],
                "Interval": 30,
                "Timeout": 5,
                "Retries": 3,
                "StartPeriod": 30,
            },
        )
        self.service.task_definition.node.default_child.add_property_override(  # type: ignore[union-attr]
            "ContainerDefinitions.0.StopTimeout", config.container_stop_timeout_s
        )

    @property
    def url(self) -> str:
        lb = self.service.load_balancer
        scheme = "https" if self.service.certificate else "http"
        return f"{scheme}://{lb.load_balancer_dns_name}"
