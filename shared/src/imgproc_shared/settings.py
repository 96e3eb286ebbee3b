"""One typed settings object for every service and tool, read from `IMGPROC_*` variables."""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

MiB = 1024 * 1024

# What the extractor identifies and the workflow processes unless IMGPROC_SUPPORTED_FORMATS
# narrows it: HEIF covers HEIC (iPhones), WebP and AVIF are what websites and camera apps save.
DEFAULT_SUPPORTED_FORMATS = ("JPEG", "PNG", "HEIF", "WEBP", "AVIF")
_FORMAT_ALIASES = {"HEIC": "HEIF", "JPG": "JPEG"}

# The embedded endpoint's administrator key (allowed everything): what the CLI, the tests and
# `imgproc up`'s own clients sign with. Never a real AWS credential.
EMBEDDED_ADMIN_ACCESS_KEY_ID = "testing"
EMBEDDED_ADMIN_SECRET_ACCESS_KEY = "testing"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGPROC_", extra="ignore")

    # AWS endpoint: unset means real AWS; the local stack sets it to the embedded moto server.
    endpoint_url: str | None = None
    region: str = "us-east-1"
    # Every resource name starts with this, so several stacks can share one account.
    resource_prefix: str = "imgproc"
    # Set on AWS from the stack outputs; locally derived from the embedded account.
    state_machine_arn: str | None = None
    # The key calls to `endpoint_url` are signed with (ignored on AWS, where the task role's
    # credentials are used): `imgproc up` gives each service its own IAM user's key there.
    endpoint_access_key_id: str = EMBEDDED_ADMIN_ACCESS_KEY_ID
    endpoint_secret_access_key: SecretStr = SecretStr(EMBEDDED_ADMIN_SECRET_ACCESS_KEY)
    # The role the status API assumes for operator endpoints (permissions.Principal.OPERATIONS);
    # unset: operators act with the process's own credentials (the endpoint without IAM checks).
    operations_role_arn: str | None = None
    # Whether the embedded endpoint checks every call against its caller's IAM policy (the
    # policies `infra/` deploys); on by default in `imgproc up` and in the tests.
    iam_enforcement: bool = True

    # The owner of an object put straight into the bucket under `incoming/` without an
    # `x-amz-meta-owner` (same rule as image ids: letters, digits, '-', '_').
    default_owner: str = Field(default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

    max_upload_bytes: int = Field(default=50 * MiB, gt=0)
    max_pixels: int = Field(default=100_000_000, gt=0)
    # "JPEG,PNG" or a JSON list in the environment; names as the extractor reports them
    # (HEIC counts as HEIF). "JPEG,PNG" is the seed's narrower set.
    supported_formats: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_SUPPORTED_FORMATS)
    )

    # Messages one worker process works on at once (and its long-poll batch size, up to 10).
    worker_concurrency: int = Field(default=4, ge=1, le=64)
    # Threads for CPU work in one worker process; 0 means one per core.
    worker_threads: int = Field(default=0, ge=0)
    visibility_timeout_s: int = Field(default=60, ge=1)
    heartbeat_interval_s: float = Field(default=20.0, gt=0)
    stop_timeout_s: float = Field(default=10.0, gt=0)
    wait_time_s: int = Field(default=20, ge=0, le=20)
    # A stage still running after this long writes a "started" note (the client shows it
    # running); quicker stages only write their finish: one DynamoDB write per stage, not two.
    stage_started_note_s: float = Field(default=1.0, ge=0)
    # Answered messages are deleted in batches (up to 10) at most this long after the first.
    delete_linger_s: float = Field(default=0.5, ge=0)
    # After a receive that returned messages but not a full batch, wait this long before the
    # next one, so that it finds several: a long poll returns as soon as one message is there.
    # Each image can wait this at each of its three queue hops (starter, extractor,
    # tagger/thumbnailer). Load test, 8 in flight: 0.1 s added 0.04-0.07 s at each of the first
    # two hops for 0.4 fewer receives per image than 0.03; at a fixed concurrency latency is
    # throughput (README, "Throughput on one machine").
    receive_pause_s: float = Field(default=0.03, ge=0, le=5)

    # Workflow limits, rendered into the state machine definition.
    # Step Functions starts a callback task's heartbeat clock when it sends the message, so time
    # spent waiting in a backlog counts: size it for the longest expected queue wait. A worker
    # that dies is covered sooner by the message's visibility timeout (another worker takes it).
    # 600 s covers a worker service's worst cold start from zero tasks on AWS (~315 s, see
    # `imgproc_shared.scaling.ColdStart`) plus its acceptable wait and the first heartbeat.
    task_timeout_s: int = Field(default=3600, ge=1)
    task_heartbeat_s: int = Field(default=600, ge=1)
    max_receive_count: int = Field(default=5, ge=1)

    # "local" (the shipped models, on one machine and on Fargate by default) or "rekognition".
    tagger_backend: str = "local"
    tagger_max_labels: int = Field(default=10, ge=1, le=1000)
    tagger_min_confidence: float = Field(default=60.0, ge=0, le=100)

    thumbnail_size: int = Field(default=256, ge=16)
    # Near duplicates: images whose 64-bit pHashes differ in at most this many bits. Measured on
    # the corpus photos: resized and re-encoded copies 0-2, 2%-per-side crops 0-12, 4% crops
    # 2-16; unrelated photos 18 and more (median 32).
    near_duplicate_distance: int = Field(default=12, ge=0, le=32)

    # Test-only: a file that, while it exists, names stages whose handlers fail on purpose
    # (see `worker/fault_injection.py`). Unset everywhere but in tests.
    fault_file: Path | None = None

    log_level: str = "INFO"
    # Where `imgproc up` writes how to reach the running local stack.
    home: Path = Path.home() / ".imgproc"

    @field_validator("supported_formats", mode="before")
    @classmethod
    def _split_formats(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("supported_formats")
    @classmethod
    def _upper_formats(cls, value: list[str]) -> list[str]:
        return [_FORMAT_ALIASES.get(fmt.upper(), fmt.upper()) for fmt in value]

    @property
    def workers_file(self) -> Path:
        """Where a running `imgproc up` records its worker processes (read by the status API)."""
        return Path(self.home) / "workers.json"

    def accepted_formats(self) -> list[str]:
        """Formats Validate lets through: MPO (multi-picture JPEG from cameras) counts as JPEG."""
        return accepted_formats(self.supported_formats)


def accepted_formats(supported: Iterable[str]) -> list[str]:
    """The format names the workflow's Validate accepts for these supported formats."""
    formats = list(supported)
    if "JPEG" in formats and "MPO" not in formats:
        formats.append("MPO")
    return formats


# RFC 7518 3.2: an HS256 key must be at least as long as the hash, 256 bits. The status API
# signs its local sign-in tokens with IMGPROC_AUTH_SECRET; `imgproc up` checks it before starting.
MIN_AUTH_SECRET_BYTES = 32


def check_auth_secret(secret: str) -> None:
    """Refuse a set signing secret that is too short for HS256 (unset is fine: one is made)."""
    if secret and len(secret.encode()) < MIN_AUTH_SECRET_BYTES:
        raise ValueError(
            f"IMGPROC_AUTH_SECRET must be at least {MIN_AUTH_SECRET_BYTES} bytes "
            "(HS256 wants a 256-bit key); unset, a random one is made"
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
