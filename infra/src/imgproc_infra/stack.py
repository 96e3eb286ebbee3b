"""The imgproc stack: storage, messaging, workflow, identity and services, wired together."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnCondition, CfnOutput, CfnParameter, Fn, Stack
from constructs import Construct

from imgproc_infra.alarms import Alarms
from imgproc_infra.config import (
    DEFAULT_TAGGER_BACKEND,
    FARGATE_TASK_SIZES,
    STATUS_API_IMAGE,
    TAGGER_BACKENDS,
    WORKER_IMAGES,
    DeploymentConfig,
)
from imgproc_infra.edge import Edge
from imgproc_infra.identity import Identity
from imgproc_infra.messaging import Messaging
from imgproc_infra.parameter_rules import MAX_MIN_TASKS, task_count_rule, task_size_rule
from imgproc_infra.scaling import BacklogScaling, WorkerScalingParameters
from imgproc_infra.services import (
    CloudFormationArns,
    Network,
    StatusApi,
    TaskSize,
    WorkerService,
)
from imgproc_infra.storage import Storage
from imgproc_infra.workflow import Workflow
from imgproc_shared.permissions import Machine
from imgproc_shared.resources import STAGE_QUEUES, Queue, ResourceNames, Stage, Table, Topic
from imgproc_shared.scaling import heartbeat_covers_scale_from_zero
from imgproc_shared.workflow import WorkflowLimits

# Fargate's valid task CPU units; memory must fit the CPU (the `<Service>TaskSize` Rules).
FARGATE_CPU = [str(cpu_units) for cpu_units in FARGATE_TASK_SIZES]
FARGATE_MEMORY_MIB = sorted({mib for sizes in FARGATE_TASK_SIZES.values() for mib in sizes})
# FARGATE or FARGATE_SPOT for every worker service (Spot: up to ~70% less, reclaimable with a
# two-minute SIGTERM, which a worker drains; the status API stays on FARGATE).
PARAMETER_WORKER_CAPACITY_PROVIDER = "WorkerCapacityProvider"
CAPACITY_PROVIDERS = ["FARGATE", "FARGATE_SPOT"]

# Stack outputs, named after the settings field they feed (`imgproc --stack` maps
# `StateMachineArn` to `IMGPROC_STATE_MACHINE_ARN`).
OUTPUT_API_URL = "ApiUrl"
OUTPUT_BUCKET = "BucketName"
OUTPUT_USER_POOL_ID = "CognitoUserPoolId"
OUTPUT_USER_POOL_CLIENT_ID = "CognitoAudience"
OUTPUT_ISSUER = "CognitoIssuer"
OUTPUT_STATE_MACHINE_ARN = "StateMachineArn"
OUTPUT_RESOURCE_PREFIX = "ResourcePrefix"
OUTPUT_REGION = "Region"

# A parameter named after a setting feeds it too (`imgproc --stack` reads the parameters as well):
# `TaggerBackend` → `IMGPROC_TAGGER_BACKEND`, which `imgproc loadtest` prices.
PARAMETER_TAGGER_BACKEND = "TaggerBackend"
CONDITION_USES_REKOGNITION = "TaggerUsesRekognition"


def _label(stage: Stage) -> str:
    return WORKER_IMAGES[stage].service.capitalize()


class ImgprocStack(Stack):
    """Every AWS resource of one imgproc deployment."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeploymentConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        settings = config.settings
        names = ResourceNames.from_settings(settings)

        storage = Storage(self, "Storage", names=names)
        messaging = Messaging(
            self, "Messaging", names=names, settings=settings, bucket=storage.bucket
        )
        self.storage, self.messaging = storage, messaging
        self.workflow = Workflow(
            self,
            "Workflow",
            names=names,
            limits=WorkflowLimits.from_settings(settings),
            extract_queue=messaging.queues[Queue.EXTRACT],
            validated_topic=messaging.topics[Topic.VALIDATED],
            stored_topic=messaging.topics[Topic.STORED],
            images_table=storage.tables[Table.IMAGES],
        )
        state_machine = self.workflow.state_machine
        # Every role's statements come from imgproc_shared.permissions, resolved to these.
        arns = CloudFormationArns(
            names=names,
            stack=self,
            bucket=storage.bucket,
            tables=storage.tables,
            queues=messaging.queues,
            dead_letter_queues=messaging.dead_letter_queues,
            topics=messaging.topics,
            state_machines={
                Machine.IMAGE_PROC: state_machine,
                Machine.RETAG: self.workflow.retag_state_machine,
            },
        )
        self.workflow.grant_permissions(arns)
        self.identity = Identity(self, "Identity", names=names)
        network = Network(self, "Network", config=config)
        self.network = network

        self.tagger_backend = CfnParameter(
            self,
            PARAMETER_TAGGER_BACKEND,
            type="String",
            default=DEFAULT_TAGGER_BACKEND,
            allowed_values=list(TAGGER_BACKENDS),
            description="What names the objects in an image: `local` (EfficientNet-Lite0 and "
            "NanoDet in the tagger's task, billed as Fargate time) or `rekognition` "
            "(DetectLabels, $1.00 per 1,000 images; the tagger role may call it only then)",
        )
        self.uses_rekognition = CfnCondition(
            self,
            CONDITION_USES_REKOGNITION,
            expression=Fn.condition_equals(self.tagger_backend.value_as_string, "rekognition"),
        )
        tagger_backend = self.tagger_backend.value_as_string
        self.worker_capacity_provider = CfnParameter(
            self,
            PARAMETER_WORKER_CAPACITY_PROVIDER,
            type="String",
            default="FARGATE",
            allowed_values=CAPACITY_PROVIDERS,
            description="Where worker tasks run: FARGATE, or FARGATE_SPOT (about 70% less; a "
            "task may be reclaimed with two minutes' notice and drains like any stopped task)",
        )

        self.workers: dict[Stage, WorkerService] = {}
        self.scaling: dict[Stage, BacklogScaling] = {}
        for stage, image in WORKER_IMAGES.items():
            label = _label(stage)
            sizing = config.sizing[stage]
            cpu = self._cpu_parameter(label, sizing.cpu)
            memory = self._memory_parameter(label, sizing.memory_mib)
            task_size_rule(self, label, cpu, memory)
            # The task heartbeat's clock runs while a message waits for the first task.
            scale_from_zero_allowed = heartbeat_covers_scale_from_zero(
                sizing.policy.with_bounds(0, sizing.policy.max_workers),
                settings.task_heartbeat_s,
                settings.heartbeat_interval_s,
            )
            worker = WorkerService(
                self,
                label,
                config=config,
                stage=stage,
                image=image,
                size=TaskSize(cpu.value_as_number, memory.value_as_number),
                cluster=network.cluster,
                arns=arns,
                state_machine=state_machine,
                tagger_backend=tagger_backend,
                uses_rekognition=self.uses_rekognition,
                capacity_provider=self.worker_capacity_provider.value_as_string,
            )
            parameters = WorkerScalingParameters(
                min_tasks=CfnParameter(
                    self,
                    f"{label}MinTasks",
                    type="Number",
                    min_value=0,
                    max_value=MAX_MIN_TASKS,
                    default=(
                        sizing.policy.min_capacity
                        if scale_from_zero_allowed
                        else max(sizing.policy.min_capacity, 1)
                    ),
                    description=f"Fewest {image.service} tasks (0: none while its queue is empty)",
                ),
                max_tasks=CfnParameter(
                    self,
                    f"{label}MaxTasks",
                    type="Number",
                    min_value=1,
                    default=sizing.policy.max_capacity,
                    description=f"Most {image.service} tasks",
                ),
                seconds_per_message=CfnParameter(
                    self,
                    f"{label}SecondsPerMessage",
                    type="Number",
                    min_value=0,
                    default=sizing.policy.seconds_per_message,
                    description=f"Measured task-seconds per {stage.value} message "
                    "(1 / messages per second per task; `imgproc loadtest` reports it)",
                ),
                target_latency_s=CfnParameter(
                    self,
                    f"{label}TargetLatencySeconds",
                    type="Number",
                    min_value=1,
                    default=sizing.policy.acceptable_latency_s,
                    description=f"Acceptable wait of a new {stage.value} message: the service "
                    "scales to keep backlog per task × seconds per message at this value",
                ),
            )
            task_count_rule(
                self,
                label,
                parameters.min_tasks,
                parameters.max_tasks,
                scale_from_zero_allowed=scale_from_zero_allowed,
            )
            worker.service.node.add_dependency(network.capacity_providers)
            self.workers[stage] = worker
            self.scaling[stage] = BacklogScaling(
                self,
                f"{label}Scaling",
                cluster=network.cluster,
                service=worker.service,
                queue=messaging.queues[STAGE_QUEUES[stage]],
                parameters=parameters,
                policy=sizing.policy,
            )

        api_cpu = self._cpu_parameter("StatusApi", 512)
        api_memory = self._memory_parameter("StatusApi", 1024)
        task_size_rule(self, "StatusApi", api_cpu, api_memory)
        api_tasks = CfnParameter(
            self,
            "StatusApiTasks",
            type="Number",
            min_value=1,
            default=1,
            description="Status API tasks behind the load balancer",
        )
        self.status_api = StatusApi(
            self,
            "StatusApi",
            config=config,
            size=TaskSize(api_cpu.value_as_number, api_memory.value_as_number),
            desired_count=api_tasks.value_as_number,
            cluster=network.cluster,
            image=STATUS_API_IMAGE,
            arns=arns,
            state_machine=state_machine,
            cognito_environment={
                "IMGPROC_COGNITO_ISSUER": self.identity.issuer,
                "IMGPROC_COGNITO_AUDIENCE": self.identity.web_client.user_pool_client_id,
                "IMGPROC_COGNITO_JWKS_URL": self.identity.jwks_url,
            },
            tagger_backend=tagger_backend,
        )

        self.edge = Edge(
            self,
            "Edge",
            config=config,
            load_balancer=self.status_api.service.load_balancer,
            origin_uses_https=self.status_api.uses_https,
        )
        self.alarms = Alarms(
            self,
            "Alarms",
            names=names,
            settings=settings,
            messaging=messaging,
            workflow=self.workflow,
            workers={
                stage: (worker.service, messaging.queues[STAGE_QUEUES[stage]])
                for stage, worker in self.workers.items()
            },
            cluster=network.cluster,
            load_balancer=self.status_api.service.load_balancer,
        )

        outputs = {
            OUTPUT_API_URL: (self.edge.url, "The status API and web client (HTTPS, CloudFront)"),
            OUTPUT_BUCKET: (storage.bucket.bucket_name, "Originals and thumbnails"),
            OUTPUT_USER_POOL_ID: (self.identity.user_pool.user_pool_id, "Cognito user pool"),
            OUTPUT_USER_POOL_CLIENT_ID: (
                self.identity.web_client.user_pool_client_id,
                "Cognito app client of the web client (the tokens' audience)",
            ),
            OUTPUT_ISSUER: (self.identity.issuer, "Issuer of the tokens the API accepts"),
            OUTPUT_STATE_MACHINE_ARN: (state_machine.state_machine_arn, "The ImageProc workflow"),
            OUTPUT_RESOURCE_PREFIX: (settings.resource_prefix, "Prefix of every resource name"),
            OUTPUT_REGION: (self.region, "Region of the stack"),
        }
        for key, (value, description) in outputs.items():
            CfnOutput(self, key, value=value, description=description)

    def _cpu_parameter(self, label: str, default: int) -> CfnParameter:
        return CfnParameter(
            self,
            f"{label}Cpu",
            type="Number",
            default=str(default),
            allowed_values=FARGATE_CPU,
            description=f"{label} task CPU units (1024 = 1 vCPU)",
        )

    def _memory_parameter(self, label: str, default: int) -> CfnParameter:
        return CfnParameter(
            self,
            f"{label}MemoryMiB",
            type="Number",
            default=default,
            min_value=FARGATE_MEMORY_MIB[0],
            max_value=FARGATE_MEMORY_MIB[-1],
            description=f"{label} task memory (MiB): one Fargate runs with {label}Cpu "
            f"(the {label}TaskSize rule lists them)",
        )
