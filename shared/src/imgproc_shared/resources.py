"""Every AWS resource name and shape, in one place.

The local bootstrap (`imgproc up`) and the CDK app in `infra/` both build resources from these
definitions, so the two cannot drift.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum

from imgproc_shared.settings import Settings


class Stage(StrEnum):
    """A unit of work on one image, done by one worker service from one queue."""

    EXTRACT = "extract"
    TAG = "tag"
    THUMBNAIL = "thumbnail"


class Topic(StrEnum):
    UPLOAD = "upload"
    VALIDATED = "validated"
    STORED = "stored"


class Queue(StrEnum):
    INGEST = "ingest"
    EXTRACT = "extract"
    TAG = "tag"
    THUMBNAIL = "thumbnail"
    STATUS_EVENTS = "status-events"
    # The search index's own copy of every `stored` announcement (imgproc_shared.search).
    SEARCH_INDEX = "search-index"


class Table(StrEnum):
    ALBUMS = "Albums"
    IMAGES = "Images"
    SEARCH = "Search"
    # What operators see of each dead letter, kept so that looking is not a receive
    # (imgproc_shared.dead_letters).
    DEAD_LETTERS = "DeadLetters"


INCOMING_PREFIX = "incoming/"
THUMBNAILS_PREFIX = "thumbnails/"
STATE_MACHINE = "ImageProc"

ALBUMS_BY_OWNER_INDEX = "by_owner"
IMAGES_BY_ALBUM_INDEX = "by_album"
# Sparse: only records a sweep must come back to carry `sweep` (SWEEP_UPLOAD while an upload is
# granted but not arrived, SWEEP_DELETED for a deleted image's tombstone) and `sweep_at`.
IMAGES_BY_SWEEP_INDEX = "by_sweep"
SWEEP_UPLOAD = "upload"
SWEEP_DELETED = "deleted"

# Which queue each stage's worker takes from.
STAGE_QUEUES: dict[Stage, Queue] = {
    Stage.EXTRACT: Queue.EXTRACT,
    Stage.TAG: Queue.TAG,
    Stage.THUMBNAIL: Queue.THUMBNAIL,
}


@dataclass(frozen=True)
class Subscription:
    topic: Topic
    queue: Queue
    # SNS filter policy on message attributes; None takes every message.
    filter_policy: dict[str, list[str]] | None = None

    def filter_policy_json(self) -> str | None:
        return json.dumps(self.filter_policy) if self.filter_policy else None


SUBSCRIPTIONS: tuple[Subscription, ...] = (
    Subscription(Topic.UPLOAD, Queue.INGEST),
    Subscription(Topic.VALIDATED, Queue.TAG, {"stage": [Stage.TAG.value]}),
    Subscription(Topic.VALIDATED, Queue.THUMBNAIL, {"stage": [Stage.THUMBNAIL.value]}),
    Subscription(Topic.STORED, Queue.STATUS_EVENTS),
    Subscription(Topic.STORED, Queue.SEARCH_INDEX),
)


@dataclass(frozen=True)
class KeyAttribute:
    name: str
    type: str = "S"


@dataclass(frozen=True)
class Index:
    name: str
    hash_key: KeyAttribute
    range_key: KeyAttribute | None = None


@dataclass(frozen=True)
class TableSpec:
    table: Table
    hash_key: KeyAttribute
    indexes: tuple[Index, ...] = field(default_factory=tuple)
    range_key: KeyAttribute | None = None

    def attributes(self) -> list[KeyAttribute]:
        seen: dict[str, KeyAttribute] = {self.hash_key.name: self.hash_key}
        if self.range_key is not None:
            seen[self.range_key.name] = self.range_key
        for index in self.indexes:
            for attr in (index.hash_key, index.range_key):
                if attr is not None:
                    seen.setdefault(attr.name, attr)
        return list(seen.values())


TABLES: tuple[TableSpec, ...] = (
    TableSpec(
        Table.ALBUMS,
        KeyAttribute("album_id"),
        (Index(ALBUMS_BY_OWNER_INDEX, KeyAttribute("owner"), KeyAttribute("created_at")),),
    ),
    TableSpec(
        Table.IMAGES,
        KeyAttribute("image_id"),
        (
            Index(IMAGES_BY_ALBUM_INDEX, KeyAttribute("album_id"), KeyAttribute("uploaded_at")),
            Index(IMAGES_BY_SWEEP_INDEX, KeyAttribute("sweep"), KeyAttribute("sweep_at")),
        ),
    ),
    # Entries, counters and manifests of the search index (keys: imgproc_shared.search).
    TableSpec(Table.SEARCH, KeyAttribute("pk"), range_key=KeyAttribute("sk")),
    TableSpec(Table.DEAD_LETTERS, KeyAttribute("queue"), range_key=KeyAttribute("message_id")),
)


@dataclass(frozen=True)
class ResourceNames:
    """Physical names for one stack, derived from the resource prefix."""

    prefix: str

    @classmethod
    def from_settings(cls, settings: Settings) -> ResourceNames:
        return cls(settings.resource_prefix)

    @property
    def bucket(self) -> str:
        return f"{self.prefix}-images"

    def topic(self, topic: Topic) -> str:
        return f"{self.prefix}-{topic.value}"

    def queue(self, queue: Queue) -> str:
        return f"{self.prefix}-{queue.value}"

    def dead_letter_queue(self, queue: Queue) -> str:
        return f"{self.prefix}-{queue.value}-dlq"

    def table(self, table: Table) -> str:
        return f"{self.prefix}-{table.value}"

    @property
    def state_machine(self) -> str:
        return f"{self.prefix}-{STATE_MACHINE}"


def execution_arn(state_machine_arn: str, image_id: str) -> str:
    """The ARN of the execution for one image: executions are named by the image id."""
    return state_machine_arn.replace(":stateMachine:", ":execution:", 1) + f":{image_id}"


def incoming_key(owner: str, album_id: str, image_id: str, extension: str) -> str:
    return f"{INCOMING_PREFIX}{owner}/{album_id}/{image_id}.{extension.lower().lstrip('.')}"


def thumbnail_key(image_id: str, rendition: str, extension: str) -> str:
    return f"{THUMBNAILS_PREFIX}{image_id}/{rendition}.{extension}"
