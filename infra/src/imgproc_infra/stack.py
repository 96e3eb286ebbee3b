"""The imgproc stack: storage, messaging, workflow, identity and services, wired together."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnCondition, CfnOutput, CfnParameter, Fn, Stack
from constructs import Construct

from imgproc_infra.config import (
    DEFAULT_TAGGER_BACKEND,
    STATUS_API_IMAGE,
    TAGGER_BACKENDS,
    WORKER_IMAGES,
    DeploymentConfig,
    workflow_limits,
)
from imgproc_infra.identity import Identity
from imgproc_infra.messaging import Messaging
from imgproc_infra.scaling import BacklogScaling, WorkerScalingParameters
from imgproc_infra.services import Network, StatusApi, TaskSize, WorkerService
from imgproc_infra.storage import Storage
from imgproc_infra.workflow import Workflow
from imgproc_shared.resources import STAGE_QUEUES, Queue, ResourceNames, Stage, Table, Topic

# Fargate's valid task CPU units; memory must fit the CPU (see the ECS task size table).
FARGATE_CPU = ["256", "512", "1024", "2048", "4096"]

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
            limits=workflow_limits(settings),
            extract_queue=messaging.queues[Queue.EXTRACT],
            validated_topic=messaging.topics[Topic.VALIDATED],
            stored_topic=messaging.topics[Topic.STORED],
            images_table=storage.tables[Table.IMAGES],
        )
        state_machine = self.workflow.state_machine
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

        self.workers: dict[Stage, WorkerService] = {}
        self.scaling: dict[Stage, BacklogScaling] = {}
        for stage, image in WORKER_IMAGES.items():
            label = _label(stage)
            sizing = config.sizing[stage]
            cpu = self._cpu_parameter(label, sizing.cpu)
            memory = self._memory_parameter(label, sizing.memory_mib)
            worker = WorkerService(
                self,
                label,
                config=config,
                stage=stage,
                image=image,
                size=TaskSize(cpu.value_as_number, memory.value_as_number),
                cluster=network.cluster,
                queue=messaging.queues[STAGE_QUEUES[stage]],
                bucket=storage.bucket,
                images_table=storage.tables[Table.IMAGES],
                dead_letters_table=storage.tables[Table.DEAD_LETTERS],
                state_machine=state_machine,
                tagger_backend=tagger_backend,
                uses_rekognition=self.uses_rekognition,
            )
            parameters = WorkerScalingParameters(
                min_tasks=CfnParameter(
                    self,
                    f"{label}MinTasks",
                    type="Number",
                    min_value=0,
                    default=sizing.policy.min_capacity,
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
            bucket=storage.bucket,
            tables=list(storage.tables.values()),
            own_queues=[
                messaging.queues[Queue.INGEST],
                messaging.queues[Queue.STATUS_EVENTS],
                messaging.queues[Queue.SEARCH_INDEX],
            ],
            all_queues=list(messaging.queues.values()),
            dead_letter_queues=list(messaging.dead_letter_queues.values()),
            state_machine=state_machine,
            cognito_environment={
                "IMGPROC_COGNITO_ISSUER": self.identity.issuer,
                "IMGPROC_COGNITO_AUDIENCE": self.identity.web_client.user_pool_client_id,
                "IMGPROC_COGNITO_JWKS_URL": self.identity.jwks_url,
            },
            tagger_backend=tagger_backend,
        )

        # The search indexer writes an image's entries in batches (search table only).
        storage.tables[Table.SEARCH].grant(self.status_api.task_role, "dynamodb:BatchWriteItem")

        self.workflow.grant_retag(
            tagger=self.workers[Stage.TAG].task_role, operators=self.status_api.task_role
        )

        outputs = {
            OUTPUT_API_URL: (self.status_api.url, "The status API and web client"),
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
            min_value=512,
            max_value=30720,
            description=f"{label} task memory (MiB); must suit the CPU",
        )
