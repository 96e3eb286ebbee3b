"""The containers: one Fargate service per worker stage and the status API behind a load balancer.

Each task role is rendered from `imgproc_shared.permissions`, the statements the local stack
runs each service under: a worker can touch only its own queue, its own prefixes of the bucket,
the table actions it uses and the task-token calls.
"""

from __future__ import annotations

from collections.abc import Mapping
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
from aws_cdk import aws_sns as sns
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
from imgproc_shared.resources import Queue, ResourceNames, Stage, Table, Topic
from imgproc_shared.workflow import retag_state_machine_name

LOG_RETENTION = logs.RetentionDays.ONE_MONTH

WORKER_PRINCIPALS: dict[Stage, Principal] = {
    Stage.EXTRACT: Principal.EXTRACTOR,
    Stage.TAG: Principal.TAGGER,
    Stage.THUMBNAIL: Principal.THUMBNAILER,
}


@dataclass(frozen=True)
class CloudFormationArns:
    """Each symbolic resource of `imgproc_shared.permissions` as the CDK token of its ARN."""

    names: ResourceNames
    stack: Stack
    bucket: s3.IBucket
    tables: Mapping[Table, dynamodb.ITable]
    queues: Mapping[Queue, sqs.IQueue]
    dead_letter_queues: Mapping[Queue, sqs.IQueue]
    topics: Mapping[Topic, sns.ITopic]
    state_machines: Mapping[Machine, sfn.IStateMachine]

    def machine_name(self, machine: Machine) -> str:
        if machine is Machine.RETAG:
            return retag_state_machine_name(self.names.prefix)
        return self.names.state_machine

    def __call__(self, resource: Resource) -> str:
        match resource:
            case QueueArn(queue, dead_letter):
                return (self.dead_letter_queues if dead_letter else self.queues)[queue].queue_arn
            case TableArn(table):
                return self.tables[table].table_arn
            case TableIndexesArn(table):
                return f"{self.tables[table].table_arn}/index/*"
            case BucketArn():
                return self.bucket.bucket_arn
            case ObjectsArn(prefix):
                return self.bucket.arn_for_objects(f"{prefix}*")
            case TopicArn(topic):
                return self.topics[topic].topic_arn
            case StateMachineArn(machine):
                return self.state_machines[machine].state_machine_arn
            case ExecutionsArn(machine):
                return self.stack.format_arn(
                    service="states",
                    resource="execution",
                    resource_name=f"{self.machine_name(machine)}:*",
                    arn_format=ArnFormat.COLON_RESOURCE_NAME,
                )
            case RoleArn(principal):
                # Built from the name, not the role's token: the status API's policy names the
                # role that trusts the status API's role (a token would make a cycle).
                return self.stack.format_arn(
                    service="iam",
                    region="",
                    resource="role",
                    resource_name=role_name(self.names.prefix, principal),
                )
            case AnyResource():
                return "*"
        raise TypeError(f"not a resource: {resource!r}")


def grant_permissions(
    role: iam.Role,
    principal: Principal,
    arns: CloudFormationArns,
    *,
    uses_rekognition: CfnCondition | None = None,
) -> None:
    """`principal`'s statements on `role`; the Rekognition ones only where `uses_rekognition`.

    Those are an inline policy of the role itself, present through Fn::If: the task definition
    refers to the role, so CloudFormation attaches the grant before tasks with the new backend
    start (a separate AWS::IAM::Policy with a Condition could not be a DependsOn target).
    """
    always = render_statements(principal, arns, rekognition=False)
    for statement in always:
        role.add_to_policy(iam.PolicyStatement.from_json(statement))
    granted = {statement["Sid"] for statement in always}
    conditional = [
        statement
        for statement in render_statements(principal, arns, rekognition=True)
        if statement["Sid"] not in granted
    ]
    if not conditional:
        return
    assert uses_rekognition is not None, f"{principal} has Rekognition grants: pass the condition"
    cfn_role = role.node.default_child
    assert isinstance(cfn_role, iam.CfnRole)
    grant = {
        "PolicyName": "rekognition-detect-labels",
        "PolicyDocument": iam.PolicyDocument(
            statements=[iam.PolicyStatement.from_json(s) for s in conditional]
        ),
    }
    cfn_role.policies = [Fn.condition_if(uses_rekognition.logical_id, grant, Aws.NO_VALUE)]


def container_image(config: DeploymentConfig, image: ServiceImage) -> ecs.ContainerImage:
    """The image built from the repository root with `docker/Dockerfile`, target per service."""
    return ecs.ContainerImage.from_asset(
        str(config.repo_root),
        file=DOCKERFILE,
        target=image.target,
        build_args={"PACKAGE": image.package},
        platform=Platform.LINUX_ARM64 if config.architecture == "arm64" else Platform.LINUX_AMD64,
    )


def runtime_platform(config: DeploymentConfig) -> ecs.RuntimePlatform:
    """The task definitions' platform: the architecture the images were built for."""
    return ecs.RuntimePlatform(
        cpu_architecture=(
            ecs.CpuArchitecture.ARM64
            if config.architecture == "arm64"
            else ecs.CpuArchitecture.X86_64
        ),
        operating_system_family=ecs.OperatingSystemFamily.LINUX,
    )


def task_subnets(config: DeploymentConfig) -> ec2.SubnetSelection:
    """Where tasks run: private subnets behind the NAT gateway, or public ones (public IPs)."""
    if config.tasks_in_public_subnets:
        return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC)
    return ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)


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
    """A VPC and the ECS cluster with Container Insights and the Fargate capacity providers.

    By default tasks run in private subnets behind one NAT gateway. With
    `tasks_in_public_subnets` there is no NAT gateway: tasks run in the public subnets with
    public IPs, and the private subnets (isolated) keep only the internal load balancer.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        public = config.tasks_in_public_subnets
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            # One NAT gateway for ECR, Step Functions, SQS and Rekognition calls; S3 and
            # DynamoDB traffic takes the free gateway endpoints instead.
            nat_gateways=0 if public else 1,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
                ec2.SubnetConfiguration(
                    name="tasks",
                    subnet_type=(
                        ec2.SubnetType.PRIVATE_ISOLATED
                        if public
                        else ec2.SubnetType.PRIVATE_WITH_EGRESS
                    ),
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
        # FARGATE and FARGATE_SPOT, for the workers' `WorkerCapacityProvider` parameter. Made
        # here rather than by the cluster's `enable_fargate_capacity_providers` (which adds it
        # only at synthesis) so that the worker services can depend on it: a service whose
        # strategy names a provider the cluster lacks fails to create.
        self.capacity_providers = ecs.CfnClusterCapacityProviderAssociations(
            self,
            "CapacityProviders",
            cluster=self.cluster.cluster_name,
            capacity_providers=["FARGATE", "FARGATE_SPOT"],
            default_capacity_provider_strategy=[
                ecs.CfnClusterCapacityProviderAssociations.CapacityProviderStrategyProperty(
                    capacity_provider="FARGATE", weight=1
                )
            ],
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
        arns: CloudFormationArns,
        state_machine: sfn.IStateMachine,
        tagger_backend: str,
        uses_rekognition: CfnCondition,
        capacity_provider: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{config.prefix} {image.service}: its queue, prefixes and table actions",
        )
        grant_permissions(
            self.task_role, WORKER_PRINCIPALS[stage], arns, uses_rekognition=uses_rekognition
        )

        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "Task",
            family=f"{config.prefix}-{image.service}",
            cpu=size.cpu,  # a parameter token
            memory_limit_mib=size.memory_mib,
            task_role=self.task_role,
            runtime_platform=runtime_platform(config),
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
            vpc_subnets=task_subnets(config),
            assign_public_ip=config.tasks_in_public_subnets,
            # FARGATE or FARGATE_SPOT (the parameter): always a strategy, never a launch type,
            # so that switching is an update of the service, not its replacement. A Spot task
            # gets SIGTERM two minutes before it is reclaimed and drains like any other.
            capacity_provider_strategies=[
                ecs.CapacityProviderStrategy(capacity_provider=capacity_provider, weight=1)
            ],
            # The desired count belongs to the scaling policies: the template never resets it.
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        )


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
        arns: CloudFormationArns,
        state_machine: sfn.IStateMachine,
        cognito_environment: dict[str, str],
        tagger_backend: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description=f"{config.prefix} status API: records, uploads, executions, queues",
        )
        grant_permissions(self.task_role, Principal.STATUS_API, arns)
        # Operators' powers, apart from the internet-facing API's own role: operator endpoints
        # (and only they) act with this role's temporary credentials (sts:AssumeRole).
        self.operations_role = iam.Role(
            self,
            "OperationsRole",
            role_name=role_name(arns.names.prefix, Principal.OPERATIONS),
            assumed_by=iam.ArnPrincipal(self.task_role.role_arn),
            max_session_duration=Duration.hours(1),
            description=f"{config.prefix} operators: dead letters, replays, purges, re-tags",
        )
        grant_permissions(self.operations_role, Principal.OPERATIONS, arns)

        self.log_group = _log_group(self, config, image.service)
        environment = {
            **service_environment(config, state_machine, tagger_backend),
            **cognito_environment,
            "IMGPROC_OPERATIONS_ROLE_ARN": self.operations_role.role_arn,
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
            cpu=size.cpu,
            memory_limit_mib=size.memory_mib,
            desired_count=desired_count,
            runtime_platform=runtime_platform(config),
            task_subnets=task_subnets(config),
            assign_public_ip=config.tasks_in_public_subnets,
            # Internal, in the private subnets: CloudFront reaches it through a VPC origin
            # (edge.py); the internet cannot reach it at all.
            public_load_balancer=False,
            open_listener=False,
            certificate=certificate,
            protocol=(
                elbv2.ApplicationProtocol.HTTPS if certificate else elbv2.ApplicationProtocol.HTTP
            ),
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS if certificate else None,
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
        load_balancer = self.service.load_balancer
        # CloudFront's VPC origin connects from network interfaces it places in the VPC's
        # subnets, so the VPC's range is the narrowest source that admits it (its own security
        # group, CloudFront-VPCOrigins-Service-SG, only exists after the first deployment).
        load_balancer.connections.allow_from(
            ec2.Peer.ipv4(cluster.vpc.vpc_cidr_block),
            ec2.Port.tcp(self.listener_port),
            "CloudFront VPC origin (the load balancer is internal)",
        )
        load_balancer.set_attribute("routing.http.drop_invalid_header_fields.enabled", "true")
        # The pattern's own URL output names the internal load balancer: the stack's `ApiUrl`
        # (CloudFront) is the one to open.
        self.service.node.try_remove_child("ServiceURL")
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
    def uses_https(self) -> bool:
        return self.service.certificate is not None

    @property
    def listener_port(self) -> int:
        return 443 if self.uses_https else 80
