"""`imgproc loadtest`: how much the stack can take, what each image costs, and where time goes.

It keeps `--concurrency` images in flight (each uploader sends its next image once its previous
one is terminal), waits until all `--images` are terminal, then reports throughput, latency from
upload to terminal status, time per stage and between stages, lost images and duplicate
executions (both must be 0), AWS API calls and state transitions per image, and an estimated
AWS cost per 1,000 images at list prices, for the tagger backend the stack runs (`imgproc up
--tagger`, or a deployed stack's `TaggerBackend` parameter through `--stack`).

It learns that an image is terminal from the workflow's own announcements on the `stored` topic,
through a queue of its own subscribed for the run (deleted at the end): polling every image's
record would load the endpoint it measures (at 2 polls a second, a tenth of its CPU). Where it
cannot subscribe, it polls the records instead.

Against the local stack the API calls are counted by the embedded endpoint itself
(`/_imgproc/stats`, see `moto_speedups`) and the workers' CPU time is read from /proc for the
services `imgproc up` started; against AWS both come from a model of one image (its calls, and
each worker's CPU seconds with the tagger's backend).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import os
import random
import statistics
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from botocore.exceptions import ClientError

from imgproc_cli.bootstrap import _queue_arn
from imgproc_cli.local_stack import read_stack, target_settings
from imgproc_cli.uploads import UsageError, _album_id, _extension
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import STAGE_ORDER, Catalog
from imgproc_shared.long_poll import MAX_BATCH, delete_batch, receive_batches
from imgproc_shared.models import ImageStatus
from imgproc_shared.resources import ResourceNames, Topic, incoming_key
from imgproc_shared.settings import Settings

LOADTEST_USER = "loadtest"
STATS_PATH = "/_imgproc/stats"  # served by the embedded endpoint (moto_speedups)
# How often the client polls its images' statuses when it cannot listen to the announcements,
# and, as a safety net, when it can. Latencies come from the records' own times.
_POLL_INTERVAL_S = 0.5
_SAFETY_POLL_INTERVAL_S = 5.0
_HISTORY_SAMPLE = 50  # executions whose history is read to count state transitions
_GENERATED_VARIANTS = 4
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".mpo"}

# --- prices (USD, us-east-1 list prices) ------------------------------------------------------


@dataclass(frozen=True)
class Prices:
    """List prices the cost estimate uses; the defaults are us-east-1's."""

    sfn_per_transition: float = 0.025 / 1000
    sqs_per_request: float = 0.40 / 1_000_000
    sns_per_publish: float = 0.50 / 1_000_000
    dynamodb_per_write: float = 1.25 / 1_000_000
    dynamodb_per_read: float = 0.25 / 1_000_000
    s3_per_put: float = 0.005 / 1000
    s3_per_get: float = 0.0004 / 1000
    fargate_per_vcpu_hour: float = 0.04048
    fargate_per_gb_hour: float = 0.004445
    # Worker tasks are sized 1 vCPU : 2 GB, and billed only while busy (they follow the load).
    fargate_gb_per_vcpu: float = 2.0
    # DetectLabels, first tier (the first million images a month); the local backend's price is
    # its tagger's Fargate time, in the line above.
    rekognition_per_image: float = 1.00 / 1000


# The tagger backends as `IMGPROC_TAGGER_BACKEND` names them.
TAGGER_LOCAL = "local"
TAGGER_REKOGNITION = "rekognition"

# CPU seconds per image where the load test cannot read them (a deployed stack), as this load
# test measured them on the local stack with 2400x1600 JPEGs; the local tagger's at the budget
# `make bench` holds it to for a 20 MP photo (a draft decode, EfficientNet-Lite0 and NanoDet),
# the Rekognition tagger's as one call and its answer.
MODELLED_CPU_S_PER_IMAGE = {"extractor": 0.02, "thumbnailer": 0.07, "status_api": 0.015}
MODELLED_TAGGER_CPU_S_PER_IMAGE = {TAGGER_LOCAL: 0.15, TAGGER_REKOGNITION: 0.012}


DYNAMODB_WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)
DYNAMODB_READS = frozenset(
    {"GetItem", "Query", "Scan", "BatchGetItem", "TransactGetItems", "DescribeTable"}
)
S3_GET_CLASS = frozenset({"GetObject", "HeadObject", "HEADBucket", "HeadBucket"})

# --- statistics (pure) ------------------------------------------------------------------------


def percentile(values: Iterable[float], p: float) -> float | None:
    """The p-th percentile (0-100) with linear interpolation; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    if len(ordered) == 1:
        return ordered[0]
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def distribution(values: Iterable[float], *, digits: int = 3) -> dict[str, float | None]:
    """p50, p95, p99 and max of `values`, rounded."""
    data = list(values)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, digits)

    return {
        "p50": r(percentile(data, 50)),
        "p95": r(percentile(data, 95)),
        "p99": r(percentile(data, 99)),
        "max": r(max(data) if data else None),
    }


def parse_time(value: Any) -> float | None:
    """Epoch seconds of an ISO 8601 timestamp (ours end in Z; moto's in +00:00)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class ImageOutcome:
    """One image as the load test saw it: its record's timestamps and stage progress."""

    image_id: str
    status: str | None
    uploaded_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    observed_latency_s: float | None = None  # client-side: upload start → terminal seen
    stages: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def from_record(
        cls, image_id: str, record: Mapping[str, Any] | None, observed_latency_s: float | None
    ) -> ImageOutcome:
        record = record or {}
        stages = {
            s: record[f"stage_{s}"]
            for s in STAGE_ORDER
            if isinstance(record.get(f"stage_{s}"), dict)
        }
        return cls(
            image_id=image_id,
            status=record.get("status"),
            uploaded_at=parse_time(record.get("uploaded_at")),
            started_at=parse_time(record.get("started_at")),
            finished_at=parse_time(record.get("finished_at")),
            observed_latency_s=observed_latency_s,
            stages=stages,
        )

    @property
    def terminal(self) -> bool:
        return self.status is not None and ImageStatus(self.status).terminal

    @property
    def latency_s(self) -> float | None:
        """Upload → terminal, from the record (falls back to what the client observed)."""
        if self.uploaded_at is not None and self.finished_at is not None:
            return max(0.0, self.finished_at - self.uploaded_at)
        return self.observed_latency_s

    def segments(self) -> dict[str, float]:
        """Seconds spent in each leg of the flow (legs whose ends are unknown are left out)."""
        stage = {s: self.stages.get(s, {}) for s in STAGE_ORDER}
        extract_start = parse_time(stage["extract"].get("started_at"))
        extract_end = parse_time(stage["extract"].get("finished_at"))
        later = [stage[s] for s in STAGE_ORDER[1:] if stage[s]]
        starts = [t for t in (parse_time(s.get("started_at")) for s in later) if t is not None]
        ends = [t for t in (parse_time(s.get("finished_at")) for s in later) if t is not None]
        points = [
            ("upload_to_execution", self.uploaded_at, self.started_at),
            ("execution_to_extract", self.started_at, extract_start),
            ("extract", extract_start, extract_end),
            ("extract_to_tag_thumbnail", extract_end, min(starts) if starts else None),
            (
                "tag_thumbnail",
                min(starts) if starts else None,
                max(ends) if len(ends) == len(later) and ends else None,
            ),
            (
                "to_terminal",
                max(ends) if len(ends) == len(later) and ends else None,
                self.finished_at,
            ),
        ]
        return {name: b - a for name, a, b in points if a is not None and b is not None}


def calls_per_image(requests: Mapping[str, Mapping[str, int]], images: int) -> dict[str, float]:
    """Request counts by `service.Action`, divided by the number of images."""
    if images <= 0:
        return {}
    return {
        f"{service}.{action}": round(count / images, 3)
        for service, actions in sorted(requests.items())
        for action, count in sorted(actions.items())
        if count
    }


def cost_per_1000(
    requests_per_image: Mapping[str, float],
    transitions_per_image: float,
    cpu_seconds_per_image: float | None,
    *,
    sns_publishes_per_image_extra: float = 1.0,
    prices: Prices = Prices(),
) -> dict[str, float]:
    """Estimated USD per 1,000 images by service, at list prices.

    `requests_per_image` is keyed `service.Action`. Step Functions bills transitions only (its
    API calls are free); every SQS request counts, empty receives included; SNS bills publishes
    (deliveries to SQS are free) and S3's event notifications to SNS are publishes too
    (`sns_publishes_per_image_extra`, one per upload); DynamoDB counts one unit per request
    (items under 1 KB written, 4 KB read); S3 splits PUT/POST/LIST from GET/HEAD; Fargate bills
    the workers' CPU seconds at the vCPU rate plus the matching memory (the local tagger's
    models run there); Rekognition bills each DetectLabels call.
    """

    def total(service: str, actions: frozenset[str] | None = None, exclude: bool = False) -> float:
        sum_ = 0.0
        for key, count in requests_per_image.items():
            svc, _, action = key.partition(".")
            if svc != service:
                continue
            if actions is not None and ((action in actions) == exclude):
                continue
            sum_ += count
        return sum_

    sns_publishes = total("sns", frozenset({"Publish", "PublishBatch"})) + (
        sns_publishes_per_image_extra
    )
    cost = {
        "stepfunctions": transitions_per_image * prices.sfn_per_transition,
        "sqs": total("sqs") * prices.sqs_per_request,
        "sns": sns_publishes * prices.sns_per_publish,
        "dynamodb": total("dynamodb", DYNAMODB_WRITES) * prices.dynamodb_per_write
        + total("dynamodb", DYNAMODB_READS) * prices.dynamodb_per_read,
        "s3": total("s3", S3_GET_CLASS, exclude=True) * prices.s3_per_put
        + total("s3", S3_GET_CLASS) * prices.s3_per_get,
        "fargate": 0.0
        if cpu_seconds_per_image is None
        else cpu_seconds_per_image
        / 3600
        * (prices.fargate_per_vcpu_hour + prices.fargate_gb_per_vcpu * prices.fargate_per_gb_hour),
        "rekognition": total("rekognition", frozenset({"DetectLabels"}))
        * prices.rekognition_per_image,
    }
    per_1000 = {name: round(usd * 1000, 5) for name, usd in cost.items()}
    per_1000["total"] = round(sum(cost.values()) * 1000, 5)
    return per_1000


def summarize(
    outcomes: list[ImageOutcome],
    *,
    wall_s: float,
    duplicates: int,
    requests: Mapping[str, Mapping[str, int]] | None,
    requests_source: str,
    transitions_per_image: float | None,
    cpu_seconds: Mapping[str, float] | None,
    embedded_aws_cpu_s: float | None = None,
    prices: Prices = Prices(),
    tagger_backend: str = TAGGER_LOCAL,
    tagger_backend_source: str = "default",
    cpu_source: str = "measured",
) -> dict[str, Any]:
    """The load test's report: pure, from what was measured (or modelled, as the sources say)."""
    n = len(outcomes)
    statuses = Counter(o.status or "UNKNOWN" for o in outcomes)
    lost = [o.image_id for o in outcomes if not o.terminal]
    processed = [o for o in outcomes if o.status == ImageStatus.PROCESSED.value]
    latencies = [o.latency_s for o in processed if o.latency_s is not None]

    uploaded = [o.uploaded_at for o in outcomes if o.uploaded_at is not None]
    finished = [o.finished_at for o in outcomes if o.finished_at is not None]
    span = (max(finished) - min(uploaded)) if uploaded and finished else None
    done = n - len(lost)

    stage_ms: dict[str, dict[str, float | None]] = {}
    for stage in STAGE_ORDER:
        durations = [
            float(o.stages[stage]["duration_ms"])
            for o in outcomes
            if isinstance(o.stages.get(stage, {}).get("duration_ms"), int | float)
        ]
        if durations:
            stage_ms[stage] = {
                "count": len(durations),
                "median": round(statistics.median(durations), 1),
                "p95": round(percentile(durations, 95) or 0.0, 1),
            }
    legs: dict[str, list[float]] = {}
    for o in processed:
        for name, seconds in o.segments().items():
            legs.setdefault(name, []).append(seconds)
    segments = {name: round(statistics.median(v), 3) for name, v in legs.items()}

    per_image = calls_per_image(requests, n) if requests else {}
    cpu_total = sum(cpu_seconds.values()) if cpu_seconds else None
    cpu_per_image = cpu_total / n if cpu_total is not None and n else None
    report: dict[str, Any] = {
        "images": n,
        "statuses": dict(sorted(statuses.items())),
        "lost": len(lost),
        "lost_image_ids": lost,
        "duplicate_executions": duplicates,
        "wall_s": round(wall_s, 3),
        "throughput_images_per_s": round(done / wall_s, 3) if wall_s > 0 else None,
        "throughput_from_records_images_per_s": (
            round(len(finished) / span, 3) if span and span > 0 else None
        ),
        "latency_s": distribution(latencies),
        "stage_duration_ms": stage_ms,
        "segments_median_s": segments,
        "api_calls": {
            "source": requests_source,
            "per_image_total": round(sum(per_image.values()), 2) if per_image else None,
            "per_image": per_image,
        },
        "state_transitions_per_image": (
            round(transitions_per_image, 2) if transitions_per_image is not None else None
        ),
        "worker_cpu_s": (
            {k: round(v, 2) for k, v in sorted(cpu_seconds.items())} if cpu_seconds else None
        ),
        "worker_cpu_s_per_image": round(cpu_per_image, 4) if cpu_per_image is not None else None,
        "worker_cpu_source": cpu_source if cpu_seconds else None,
        "embedded_aws_cpu_s": (
            round(embedded_aws_cpu_s, 2) if embedded_aws_cpu_s is not None else None
        ),
        "tagger_backend": {"priced": tagger_backend, "from": tagger_backend_source},
        "cost_usd_per_1000_images": cost_per_1000(
            per_image,
            transitions_per_image or 0.0,
            cpu_per_image,
            prices=prices,
        ),
    }
    return report


def modelled_requests(
    images: int, stages: int = 3, *, tagger_backend: str = TAGGER_LOCAL
) -> dict[str, dict[str, int]]:
    """The API calls of `images` images as the code makes them (for targets we cannot count).

    Upload: the record and the object. Starter: a receive and a batched delete per message at
    worst, the PROCESSING write, the start. Workflow: the extract message, the tag and thumbnail
    publishes, the results write, the announcement. Each stage at worst: a receive, its finished
    write (the extractor's carries the metadata; a stage over `stage_started_note_s` also
    writes when it started), the object read (the extractor: a HEAD and the head and tail of a
    large object), the answer and a batched delete; the thumbnailer writes its renditions
    (two). The status consumer: a receive, an existence read and a batched delete. The
    Rekognition backend adds one DetectLabels call; the local one none.
    """
    per_image: dict[str, dict[str, int]] = {
        "dynamodb": {"PutItem": 1, "UpdateItem": 1 + 1 + stages, "GetItem": 1},
        "s3": {"PutObject": 1 + 2, "GetObject": stages + 1, "HeadObject": 1},
        "sqs": {
            "ReceiveMessage": 1 + stages + 1,
            "DeleteMessageBatch": 1 + stages + 1,
            "SendMessage": 1,
        },
        "sns": {"Publish": 3},
        "stepfunctions": {"StartExecution": 1, "SendTaskSuccess": stages},
    }
    if tagger_backend == TAGGER_REKOGNITION:
        per_image["rekognition"] = {"DetectLabels": 1}
    return {
        service: {action: count * images for action, count in actions.items()}
        for service, actions in per_image.items()
    }


# --- request deltas, CPU time -----------------------------------------------------------------


def modelled_cpu_seconds(images: int, tagger_backend: str) -> dict[str, float]:
    """Each worker's CPU seconds for `images` images (for targets whose CPU we cannot read)."""
    if tagger_backend not in MODELLED_TAGGER_CPU_S_PER_IMAGE:
        raise UsageError(
            f"unknown tagger backend {tagger_backend!r}: expected one of "
            f"{', '.join(MODELLED_TAGGER_CPU_S_PER_IMAGE)}"
        )
    per_image = {
        **MODELLED_CPU_S_PER_IMAGE,
        "tagger": MODELLED_TAGGER_CPU_S_PER_IMAGE[tagger_backend],
    }
    return {worker: seconds * images for worker, seconds in per_image.items()}


def subtract_requests(
    after: Mapping[str, Mapping[str, int]], before: Mapping[str, Mapping[str, int]]
) -> dict[str, dict[str, int]]:
    delta: dict[str, dict[str, int]] = {}
    for service, actions in after.items():
        for action, count in actions.items():
            diff = count - before.get(service, {}).get(action, 0)
            if diff > 0:
                delta.setdefault(service, {})[action] = diff
    return delta


def _proc_stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a live process, from /proc/<pid>/stat."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = raw[raw.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks


def _service_name(pid: int) -> str:
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return f"pid-{pid}"
    for i, arg in enumerate(argv):
        if arg == b"-m" and i + 1 < len(argv):
            return argv[i + 1].decode(errors="replace").removeprefix("imgproc_")
    return Path(argv[0].decode(errors="replace")).name or f"pid-{pid}"


def process_cpu(root_pid: int) -> tuple[float | None, dict[int, tuple[str, float]]]:
    """CPU seconds of `root_pid` itself and of each of its descendants (pid → name, seconds)."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)], cpu[int(entry.name)] = stat
    descendants: dict[int, tuple[str, float]] = {}
    frontier = [root_pid]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in descendants:
                descendants[pid] = (_service_name(pid), cpu[pid])
                frontier.append(pid)
    return cpu.get(root_pid), descendants


def cpu_delta(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds each service used between two snapshots (a restarted process counts whole)."""
    used: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        start = before.get(pid, (name, 0.0))[1]
        used[name] = used.get(name, 0.0) + max(0.0, seconds - start)
    return used


# --- images -----------------------------------------------------------------------------------


def parse_size(value: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in value.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected WIDTHxHEIGHT, e.g. 2400x1600"
        ) from None
    if not (16 <= width <= 20000 and 16 <= height <= 20000):
        raise argparse.ArgumentTypeError(f"{value!r}: each side must be 16..20000 pixels")
    return width, height


def synthetic_photo(width: int, height: int, seed: int) -> bytes:
    """A JPEG that compresses like a photo (gradients, soft shapes, sensor-like noise) with EXIF
    and GPS, so every stage does real work on it."""
    from PIL import Image, ImageChops, ImageDraw, ImageFilter

    rnd = random.Random(seed)
    small = (max(8, width // 16), max(8, height // 16))
    channels = [
        Image.linear_gradient("L").rotate(rnd.uniform(0, 360)).resize(small),
        Image.radial_gradient("L").resize(small),
        Image.linear_gradient("L").rotate(rnd.uniform(0, 360)).resize(small),
    ]
    base = Image.merge("RGB", channels)
    draw = ImageDraw.Draw(base)
    for _ in range(12):
        x, y = rnd.randrange(small[0]), rnd.randrange(small[1])
        r = rnd.randrange(2, max(3, min(small) // 3))
        colour = tuple(rnd.randrange(256) for _ in range(3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    scene = base.filter(ImageFilter.GaussianBlur(1.5)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    noise = Image.merge("RGB", [Image.effect_noise((width, height), 10) for _ in range(3)])
    photo = ImageChops.add(scene, noise, scale=1.0, offset=-128)

    exif = Image.Exif()
    exif[0x010F] = "imgproc"  # Make
    exif[0x0110] = "loadtest synthetic"  # Model
    exif[0x0112] = 1  # Orientation
    details = exif.get_ifd(0x8769)
    details[0x9003] = f"2024:06:{1 + seed % 28:02d} 12:{seed % 60:02d}:00"  # DateTimeOriginal
    details[0x8827] = 100 * (1 + seed % 8)  # ISO
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (48.0, 51.0, float(seed % 60))
    gps[3], gps[4] = "E", (2.0, 21.0, 3.0)
    out = io.BytesIO()
    photo.save(out, "JPEG", quality=88, exif=exif)
    return out.getvalue()


def generated_photos(size: tuple[int, int], cache_dir: Path) -> list[tuple[str, bytes]]:
    """A few distinct synthetic photos of `size`, generated once and cached on disk."""
    width, height = size
    cache_dir.mkdir(parents=True, exist_ok=True)
    photos = []
    for variant in range(_GENERATED_VARIANTS):
        path = cache_dir / f"synthetic-{width}x{height}-{variant}.jpg"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(synthetic_photo(width, height, seed=variant))
            tmp.replace(path)
        photos.append((path.name, path.read_bytes()))
    return photos


def source_photos(directory: Path) -> list[tuple[str, bytes]]:
    if not directory.is_dir():
        raise UsageError(f"--source {directory}: not a directory")
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
    )
    if not files:
        raise UsageError(f"--source {directory}: no image files")
    return [(p.name, p.read_bytes()) for p in files]


# --- the run ----------------------------------------------------------------------------------


class Progress:
    """A progress bar on stderr: redrawn in place on a terminal, else a line every few seconds."""

    def __init__(self, total: int, stream: TextIO = sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def line(self, done: int, in_flight: int) -> str:
        elapsed = time.monotonic() - self.started
        width = 30
        filled = int(width * done / self.total) if self.total else width
        rate = done / elapsed if elapsed > 0 else 0.0
        return (
            f"[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} terminal, "
            f"{in_flight} in flight, {rate:.1f} images/s, {elapsed:.0f}s"
        )

    def update(self, done: int, in_flight: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._last < (0.25 if self.tty else 5.0):
            return
        self._last = now
        if self.tty:
            self.stream.write("\r" + self.line(done, in_flight) + ("\n" if final else ""))
        else:
            self.stream.write(self.line(done, in_flight) + "\n")
        self.stream.flush()


@dataclass
class _Run:
    photos: list[tuple[str, bytes]]
    total: int
    timeout_s: float
    uploaded: dict[str, float] = field(default_factory=dict)  # image id → monotonic upload start
    observed: dict[str, float] = field(default_factory=dict)  # image id → seconds to terminal
    waiters: dict[str, asyncio.Event] = field(default_factory=dict)
    next_index: int = 0
    poll_calls: int = 0
    own_requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # the listener's

    def ended(self, image_id: str) -> None:
        if image_id in self.observed or image_id not in self.uploaded:
            return
        self.observed[image_id] = time.monotonic() - self.uploaded[image_id]
        self.waiters[image_id].set()


class _Listener:
    """The workflow's terminal announcements (`stored` topic), through a queue of the run's own."""

    def __init__(self, aws: AwsClients, queue_url: str, subscription_arn: str) -> None:
        self.aws = aws
        self.queue_url = queue_url
        self.subscription_arn = subscription_arn

    @classmethod
    async def open(cls, aws: AwsClients, names: ResourceNames) -> _Listener | None:
        """Subscribe a new queue to `stored`; None (the caller polls) where that is refused."""
        queue_url: str | None = None
        try:
            topic_arn = await _topic_arn(aws, names.topic(Topic.STORED))
            if topic_arn is None:
                return None
            queue_name = f"{names.prefix}-loadtest-{uuid.uuid4().hex[:12]}"
            queue_url = (await aws.sqs.create_queue(QueueName=queue_name))["QueueUrl"]
            queue_arn = await _queue_arn(aws, queue_url)
            # On AWS the topic may only deliver to a queue whose policy lets it.
            policy = {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": queue_arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": topic_arn}},
                    }
                ],
            }
            await aws.sqs.set_queue_attributes(
                QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)}
            )
            subscription = await aws.sns.subscribe(
                TopicArn=topic_arn,
                Protocol="sqs",
                Endpoint=queue_arn,
                Attributes={"RawMessageDelivery": "true"},
                ReturnSubscriptionArn=True,
            )
            return cls(aws, queue_url, subscription["SubscriptionArn"])
        except ClientError as exc:
            print(f"warning: cannot listen to announcements ({exc}); polling", file=sys.stderr)
            if queue_url is not None:
                await aws.sqs.delete_queue(QueueUrl=queue_url)
            return None

    async def run(self, run: _Run, stop: asyncio.Event) -> None:
        def each_poll() -> int:
            # Counted, so the report can tell the workflow's requests from the listener's.
            run.own_requests[("sqs", "ReceiveMessage")] += 1
            return MAX_BATCH

        # A failed receive is logged and retried there; the safety poll sees every image anyway.
        async for messages in receive_batches(
            self.aws.sqs, self.queue_url, stop, wait_time_s=1, batch_size=each_poll
        ):
            for message in messages:
                try:
                    event = json.loads(message["Body"])
                    status = ImageStatus(event["status"])
                except (ValueError, KeyError, TypeError):
                    continue  # not an announcement of ours; deleted below all the same
                if status.terminal:
                    run.ended(str(event.get("image_id")))
            receipts = [m["ReceiptHandle"] for m in messages]
            await delete_batch(self.aws.sqs, self.queue_url, receipts)
            run.own_requests[("sqs", "DeleteMessageBatch")] += 1

    async def close(self) -> None:
        try:
            await self.aws.sns.unsubscribe(SubscriptionArn=self.subscription_arn)
        finally:
            await self.aws.sqs.delete_queue(QueueUrl=self.queue_url)


async def _topic_arn(aws: AwsClients, name: str) -> str | None:
    kwargs: dict[str, Any] = {}
    while True:
        page = await aws.sns.list_topics(**kwargs)
        for topic in page.get("Topics", []):
            if str(topic["TopicArn"]).rsplit(":", 1)[-1] == name:
                return str(topic["TopicArn"])
        if not page.get("NextToken"):
            return None
        kwargs["NextToken"] = page["NextToken"]


async def _upload_one(
    run: _Run, index: int, aws: AwsClients, catalog: Catalog, names: ResourceNames, album: str
) -> str:
    file_name, data = run.photos[index % len(run.photos)]
    image_id = uuid.uuid4().hex
    key = incoming_key(LOADTEST_USER, album, image_id, _extension(Path(file_name)))
    run.waiters[image_id] = asyncio.Event()
    run.uploaded[image_id] = time.monotonic()
    await catalog.record_upload(
        image_id=image_id,
        owner=LOADTEST_USER,
        album_id=album,
        bucket=names.bucket,
        key=key,
        file_name=file_name,
        content_type="image/jpeg" if _extension(Path(file_name)) in ("jpg", "jpeg") else None,
        size=len(data),
    )
    # As `imgproc upload` and the API upload: S3 verifies and keeps the SHA-256, so the
    # extractor reads the checksum instead of the whole object.
    await aws.s3.put_object(Bucket=names.bucket, Key=key, Body=data, ChecksumAlgorithm="SHA256")
    return image_id


async def _uploader(
    run: _Run, aws: AwsClients, catalog: Catalog, names: ResourceNames, album: str
) -> None:
    while run.next_index < run.total:
        index = run.next_index
        run.next_index += 1
        image_id = await _upload_one(run, index, aws, catalog, names, album)
        try:
            await asyncio.wait_for(run.waiters[image_id].wait(), run.timeout_s)
        except TimeoutError:
            pass  # counted as lost unless it turns terminal before the end


async def _poller(
    run: _Run,
    catalog: Catalog,
    progress: Progress,
    stop: asyncio.Event,
    interval_s: float = _POLL_INTERVAL_S,
) -> None:
    """Poll the records of the images in flight; with a listener, only as a safety net (and
    for the progress bar, which it updates every `_POLL_INTERVAL_S`)."""
    last_poll = -math.inf
    while not stop.is_set():
        pending = [i for i in run.uploaded if i not in run.observed]
        if pending and time.monotonic() - last_poll >= interval_s:
            last_poll = time.monotonic()
            # The status alone: the report reads every whole record once, at the end.
            run.poll_calls += math.ceil(len(pending) / 100)
            polled = await catalog.get_images(pending, attributes=("image_id", "status"))
            for record in polled:
                if ImageStatus(record["status"]).terminal:
                    run.ended(record["image_id"])
        progress.update(len(run.observed), len(run.uploaded) - len(run.observed))
        try:
            await asyncio.wait_for(stop.wait(), _POLL_INTERVAL_S)
        except TimeoutError:
            pass


def _fetch_stats(endpoint_url: str | None) -> dict[str, Any] | None:
    if not endpoint_url:
        return None
    try:
        with urllib.request.urlopen(endpoint_url.rstrip("/") + STATS_PATH, timeout=5) as response:
            stats: dict[str, Any] = json.loads(response.read())
            return stats
    except (OSError, ValueError):
        return None


async def _state_machine_arn(aws: AwsClients, settings: Settings) -> str | None:
    if settings.state_machine_arn:
        return settings.state_machine_arn
    name = ResourceNames.from_settings(settings).state_machine
    kwargs: dict[str, Any] = {}
    while True:
        page = await aws.stepfunctions.list_state_machines(**kwargs)
        for machine in page["stateMachines"]:
            if machine["name"] == name:
                return str(machine["stateMachineArn"])
        if not page.get("nextToken"):
            return None
        kwargs["nextToken"] = page["nextToken"]


async def _executions_per_image(
    aws: AwsClients, state_machine_arn: str, image_ids: set[str]
) -> Counter[str]:
    counts: Counter[str] = Counter()
    kwargs: dict[str, Any] = {"stateMachineArn": state_machine_arn, "maxResults": 1000}
    while True:
        page = await aws.stepfunctions.list_executions(**kwargs)
        for execution in page.get("executions", []):
            # Executions are named by the image id; a retried start would carry it as prefix.
            name = str(execution.get("name", ""))
            image_id = name if name in image_ids else name[:32]
            if image_id in image_ids:
                counts[image_id] += 1
        if not page.get("nextToken"):
            return counts
        kwargs["nextToken"] = page["nextToken"]


async def _transitions(aws: AwsClients, execution_arns: list[str]) -> float | None:
    """Mean states entered per execution (each is one billed transition), over a sample."""
    counts = []
    for arn in execution_arns[:_HISTORY_SAMPLE]:
        entered = 0
        kwargs: dict[str, Any] = {"executionArn": arn, "maxResults": 1000}
        while True:
            page = await aws.stepfunctions.get_execution_history(**kwargs)
            entered += sum(1 for e in page.get("events", []) if e["type"].endswith("StateEntered"))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        counts.append(entered)
    return statistics.fmean(counts) if counts else None


async def loadtest(
    settings: Settings,
    photos: list[tuple[str, bytes]],
    *,
    images: int,
    concurrency: int,
    timeout_s: float,
    local_pid: int | None,
    tagger_backend_source: str = "IMGPROC_TAGGER_BACKEND",
    progress_stream: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Run the load test against `settings`' target and return the report.

    The cost is priced for `settings.tagger_backend`; where the endpoint counts requests, the
    DetectLabels calls it counted are what Rekognition bills.
    """
    names = ResourceNames.from_settings(settings)
    run = _Run(photos=photos, total=images, timeout_s=timeout_s)
    progress = Progress(images, progress_stream)
    async with AwsClients(settings) as aws:
        catalog = Catalog(aws, names)
        album = await _album_id(catalog, LOADTEST_USER, "loadtest")
        listener = await _Listener.open(aws, names)
        stats_before = await asyncio.to_thread(_fetch_stats, settings.endpoint_url)
        cpu_before = process_cpu(local_pid) if local_pid else (None, {})
        started = time.monotonic()
        stop = asyncio.Event()
        watchers = [
            asyncio.create_task(
                _poller(
                    run,
                    catalog,
                    progress,
                    stop,
                    _SAFETY_POLL_INTERVAL_S if listener else _POLL_INTERVAL_S,
                )
            )
        ]
        if listener is not None:
            watchers.append(asyncio.create_task(listener.run(run, stop)))
        uploaders = [
            asyncio.create_task(_uploader(run, aws, catalog, names, album))
            for _ in range(min(concurrency, images))
        ]
        try:
            try:
                await asyncio.gather(*uploaders)
            finally:
                stop.set()
                await asyncio.gather(*watchers, return_exceptions=True)
            wall_s = time.monotonic() - started
            stats_after = await asyncio.to_thread(_fetch_stats, settings.endpoint_url)
            cpu_after = process_cpu(local_pid) if local_pid else (None, {})
        finally:
            # Even when an upload failed or the run was interrupted: on AWS a forgotten
            # subscription would go on filling a queue nobody reads.
            if listener is not None:
                await listener.close()
        progress.update(len(run.observed), len(run.uploaded) - len(run.observed), final=True)

        records = {r["image_id"]: r for r in await catalog.get_images(list(run.uploaded))}
        outcomes = [
            ImageOutcome.from_record(i, records.get(i), run.observed.get(i)) for i in run.uploaded
        ]
        arn = await _state_machine_arn(aws, settings)
        executions = (
            await _executions_per_image(aws, arn, set(run.uploaded)) if arn else Counter[str]()
        )
        duplicates = sum(count - 1 for count in executions.values() if count > 1)
        execution_arns = [
            str(r["execution_arn"])
            for r in records.values()
            if r.get("execution_arn") and r.get("status") == ImageStatus.PROCESSED.value
        ]
        transitions = await _transitions(aws, execution_arns)

    if stats_before is not None and stats_after is not None:
        requests = subtract_requests(stats_after["requests"], stats_before["requests"])
        # The load test's own status polls and listening are not part of what an image costs.
        own = Counter(run.own_requests)
        own[("dynamodb", "BatchGetItem")] += run.poll_calls
        for (service, action), count in own.items():
            left = requests.get(service, {}).get(action, 0) - count
            if left > 0:
                requests[service][action] = left
            elif service in requests:
                requests[service].pop(action, None)
        source = "counted by the embedded endpoint"
    else:
        requests = modelled_requests(images, tagger_backend=settings.tagger_backend)
        source = "model (the target cannot count requests)"
    if local_pid:
        cpu_seconds = cpu_delta(cpu_before[1], cpu_after[1])
        cpu_source = "measured (/proc of the local stack's workers)"
    else:
        cpu_seconds = modelled_cpu_seconds(images, settings.tagger_backend)
        cpu_source = "model (the target's CPU cannot be read)"
    aws_cpu = (
        cpu_after[0] - cpu_before[0]
        if cpu_before[0] is not None and cpu_after[0] is not None
        else None
    )
    report = summarize(
        outcomes,
        wall_s=wall_s,
        duplicates=duplicates,
        requests=requests,
        requests_source=source,
        transitions_per_image=transitions,
        cpu_seconds=cpu_seconds,
        embedded_aws_cpu_s=aws_cpu,
        tagger_backend=settings.tagger_backend,
        tagger_backend_source=tagger_backend_source,
        cpu_source=cpu_source,
    )
    report["missing_executions"] = sum(1 for i in run.uploaded if executions.get(i, 0) == 0)
    report["concurrency"] = concurrency
    report["image_bytes_mean"] = round(statistics.fmean(len(d) for _, d in photos))
    if stats_after is not None:
        report["embedded_aws_speedups"] = stats_after.get("speedups")
    return report


# --- the command ------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "loadtest", help="measure throughput, latency and cost per image of a running stack"
    )
    parser.add_argument("--images", type=int, default=100, help="images to upload (100)")
    parser.add_argument("--concurrency", type=int, default=8, help="images in flight at once (8)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--source", type=Path, help="upload the images in DIR, round-robin")
    source.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="generate JPEG photos of WIDTHxHEIGHT (default 2400x1600)",
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds one image may take (120)"
    )
    parser.add_argument("--json", action="store_true", help="print the report as one object")
    parser.set_defaults(func=run)


def _print_human(report: dict[str, Any]) -> None:
    latency = report["latency_s"]
    print(
        f"{report['images']} images, concurrency {report['concurrency']}, "
        f"{report['wall_s']:.1f}s: {report['throughput_images_per_s']} images/s"
    )
    print(f"  statuses: {report['statuses']}")
    print(
        f"  lost: {report['lost']}   duplicate executions: {report['duplicate_executions']}   "
        f"missing executions: {report['missing_executions']}"
    )
    print("  latency upload→terminal (s): " + ", ".join(f"{k} {v}" for k, v in latency.items()))
    for stage, values in report["stage_duration_ms"].items():
        print(f"  {stage}: median {values['median']} ms, p95 {values['p95']} ms")
    print("  where the time goes (median s): " + json.dumps(report["segments_median_s"]))
    calls = report["api_calls"]
    print(f"  API calls per image: {calls['per_image_total']} ({calls['source']})")
    for name, count in calls["per_image"].items():
        print(f"    {name}: {count}")
    print(f"  state transitions per image: {report['state_transitions_per_image']}")
    if report["worker_cpu_s"]:
        print(f"  worker CPU (s, {report['worker_cpu_source']}): {report['worker_cpu_s']}")
    backend = report["tagger_backend"]
    print(f"  tagger backend priced: {backend['priced']} (from {backend['from']})")
    print(f"  estimated cost per 1,000 images (USD): {report['cost_usd_per_1000_images']}")


def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.images < 1 or args.concurrency < 1:
        raise UsageError("--images and --concurrency must be at least 1")
    target = target_settings(settings)
    # The local stack's CPU and tagger backend describe the target only when it is the target.
    explicit_target = bool(settings.endpoint_url) or os.environ.get("IMGPROC_TARGET") == "aws"
    local = None if explicit_target else read_stack(settings)
    if args.source is not None:
        photos = source_photos(args.source)
    else:
        photos = generated_photos(
            args.size or (2400, 1600), Path(settings.home).expanduser() / "cache" / "loadtest"
        )
    if local is not None:
        backend_source = "the local stack's `imgproc up --tagger`"
    elif getattr(args, "stack", None):
        backend_source = f"stack {args.stack}'s TaggerBackend parameter"
    else:
        backend_source = "IMGPROC_TAGGER_BACKEND"
    report = asyncio.run(
        loadtest(
            target,
            photos,
            images=args.images,
            concurrency=args.concurrency,
            timeout_s=args.timeout,
            local_pid=local.pid if local else None,
            tagger_backend_source=backend_source,
        )
    )
    if args.json:
        print(json.dumps(report))
    else:
        _print_human(report)
    return 0 if report["lost"] == 0 and report["duplicate_executions"] == 0 else 1
