"""What one deployment is made of: its settings, its service images and its default sizes.

Everything here is derived from `imgproc_shared` (names, limits) so the deployed stack and the
local stack read the same numbers; the sizes are only defaults of CloudFormation parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgproc_shared.resources import Stage
from imgproc_shared.scaling import POLICIES, ScalingPolicy
from imgproc_shared.settings import Settings

# infra/src/imgproc_infra/config.py → the repository root, which is the Docker build context.
REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = "docker/Dockerfile"

# ECS allows at most 120 s between SIGTERM and SIGKILL on Fargate.
MAX_STOP_TIMEOUT_S = 120
# Time on top of the worker's own drain deadline for the process to log and exit.
STOP_MARGIN_S = 20

STATUS_API_PORT = 8080
HEALTH_PATH = "/healthz"
# The status API's container health probe (the slim image has no curl); the Dockerfile's
# HEALTHCHECK runs the same command.
HEALTHCHECK_COMMAND = (
    "python",
    "-c",
    f"import urllib.request; urllib.request.urlopen("
    f"'http://127.0.0.1:{STATUS_API_PORT}{HEALTH_PATH}', timeout=3)",
)


@dataclass(frozen=True)
class ServiceImage:
    """One container image: a target of `docker/Dockerfile` that installs one workspace member."""

    service: str
    package: str
    module: str
    # What the container runs (after `python -m MODULE`).
    args: tuple[str, ...] = ()

    @property
    def target(self) -> str:
        return self.service

    @property
    def command(self) -> list[str]:
        return ["python", "-m", self.module, *self.args]


WORKER_IMAGES: dict[Stage, ServiceImage] = {
    Stage.EXTRACT: ServiceImage("extractor", "imgproc-extractor", "imgproc_extractor"),
    Stage.TAG: ServiceImage("tagger", "imgproc-tagger", "imgproc_tagger"),
    Stage.THUMBNAIL: ServiceImage("thumbnailer", "imgproc-thumbnailer", "imgproc_thumbnailer"),
}
STATUS_API_IMAGE = ServiceImage(
    "status-api",
    "imgproc-status-api",
    "imgproc_status_api",
    ("--host", "0.0.0.0", "--port", str(STATUS_API_PORT)),
)
SERVICE_IMAGES: tuple[ServiceImage, ...] = (*WORKER_IMAGES.values(), STATUS_API_IMAGE)


# How the tagger names what it sees, as `IMGPROC_TAGGER_BACKEND` spells it: the local models
# (shipped in the tagger image) or Rekognition DetectLabels ($1.00 per 1,000 images).
TAGGER_BACKENDS = ("local", "rekognition")
DEFAULT_TAGGER_BACKEND = "local"


@dataclass(frozen=True)
class WorkerSizing:
    """Defaults of one worker service's CloudFormation parameters.

    The scaling numbers come from the shared `ScalingPolicy` (the local scaler applies the same
    policy); only the Fargate task size is AWS-specific.
    """

    policy: ScalingPolicy
    cpu: int = 512
    memory_mib: int = 1024


def _gib_steps(first_gib: int, last_gib: int, step_gib: int) -> tuple[int, ...]:
    return tuple(range(first_gib * 1024, last_gib * 1024 + 1, step_gib * 1024))


# Fargate's task sizes (Linux; the ECS developer guide's "Task CPU and memory" table): CPU units
# → the task memory (MiB) each allows. The stack's Rules refuse any other pair before a deploy
# creates anything; 8 and 16 vCPU need platform 1.4.0, which LATEST is.
FARGATE_TASK_SIZES: dict[int, tuple[int, ...]] = {
    256: (512, 1024, 2048),
    512: _gib_steps(1, 4, 1),
    1024: _gib_steps(2, 8, 1),
    2048: _gib_steps(4, 16, 1),
    4096: _gib_steps(8, 30, 1),
    8192: _gib_steps(16, 60, 4),
    16384: _gib_steps(32, 120, 8),
}

# The CPU architecture of the images and tasks. A synth-time choice (context `architecture`):
# `cdk deploy` builds the images for it, which a deploy-time parameter could not change. Every
# runtime dependency has manylinux aarch64 wheels (ONNX Runtime, Pillow, pillow-heif, NumPy),
# and Graviton costs 20% less per vCPU-hour and GB-hour.
ARCHITECTURES = ("x86_64", "arm64")
DEFAULT_ARCHITECTURE = "x86_64"

# SQS publishes its metrics every minute: both scaling policies read one-minute periods.
METRIC_PERIOD_S = 60

DEFAULT_SIZING: dict[Stage, WorkerSizing] = {
    Stage.EXTRACT: WorkerSizing(POLICIES[Stage.EXTRACT], cpu=512, memory_mib=1024),
    # Sized for the local backend (the default), from `imgproc loadtest` on the local stack with
    # both models (EfficientNet-Lite0 and NanoDet on a draft decode, one inference thread each):
    # 0.14 tagger CPU-s per 20 MP JPEG (0.09 at 3.8 MP), a peak of 368 MiB resident per tagger
    # process. CPU: at 0.5 vCPU a task keeps its quota busy at ~3.5 images/s (~0.3 task-s per
    # image) and costs the same per image as a larger one, while a scale step stays small and
    # loading the models (0.2 CPU-s) takes under a second. Memory: 1 GiB, the smallest with
    # 0.5 vCPU, leaves ~2.8x the measured peak for up to 4 in-flight originals (50 MB at the
    # upload limit), at the 2 GiB per vCPU the cost model assumes. With TaggerBackend=rekognition
    # the task mostly waits on the network (0.012 CPU-s per image): TaggerCpu=256 suffices.
    Stage.TAG: WorkerSizing(POLICIES[Stage.TAG], cpu=512, memory_mib=1024),
    Stage.THUMBNAIL: WorkerSizing(POLICIES[Stage.THUMBNAIL], cpu=1024, memory_mib=2048),
}


@dataclass(frozen=True)
class DeploymentConfig:
    """One deployment: the settings its services run with, and how it is reached."""

    settings: Settings
    sizing: dict[Stage, WorkerSizing] = field(default_factory=lambda: dict(DEFAULT_SIZING))
    # Viewers always get HTTPS from CloudFront (`edge.py`). Optional, a team's own domain:
    # `domain_name` with `edge_certificate_arn` (an ACM certificate in us-east-1, where
    # CloudFront reads them) becomes the distribution's alias; `certificate_arn` (in the stack's
    # region, for `domain_name`) makes CloudFront reach the internal load balancer over TLS too.
    certificate_arn: str | None = None
    domain_name: str | None = None
    edge_certificate_arn: str | None = None
    repo_root: Path = REPO_ROOT
    # `x86_64` or `arm64` (Graviton): the images' and the task definitions' platform.
    architecture: str = DEFAULT_ARCHITECTURE
    # Tasks in the public subnets with public IPs and no NAT gateway (context
    # `public_subnets=true`): ~$33 a month and $0.045/GB less, one public IPv4 address
    # ($3.65 a month) per running task more. Tasks still accept no inbound connection but the
    # status API's from the load balancer. A synth-time choice: CDK's Vpc fixes its NAT
    # gateways and subnets when it is synthesized.
    tasks_in_public_subnets: bool = False

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture {self.architecture!r}: one of {ARCHITECTURES}")

    @property
    def prefix(self) -> str:
        return self.settings.resource_prefix

    @property
    def container_stop_timeout_s(self) -> int:
        """SIGTERM to SIGKILL: the worker's drain deadline plus a margin, within ECS's limit."""
        return min(int(self.settings.stop_timeout_s) + STOP_MARGIN_S, MAX_STOP_TIMEOUT_S)


_TRUE = ("1", "true", "yes")


def context_options(try_get_context: Callable[[str], Any]) -> dict[str, Any]:
    """The synth-time options given as CDK context (`cdk deploy -c architecture=arm64
    -c public_subnets=true`), as `DeploymentConfig` fields."""
    options: dict[str, Any] = {}
    if (architecture := try_get_context("architecture")) is not None:
        options["architecture"] = str(architecture)
    if (public := try_get_context("public_subnets")) is not None:
        options["tasks_in_public_subnets"] = str(public).lower() in _TRUE
    return options
