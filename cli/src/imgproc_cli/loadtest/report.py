"""The load test's report, from what was measured: statistics, each image's outcome, and the
summary (pure functions)."""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from imgproc_cli.loadtest.costs import (
    LIST_PRICES,
    TAGGER_LOCAL,
    Prices,
    calls_per_image,
    cost_per_1000,
)
from imgproc_shared.catalog import STAGE_ORDER
from imgproc_shared.models import ImageStatus
from imgproc_shared.records import ImageRecord


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
        cls, image_id: str, record: ImageRecord | None, observed_latency_s: float | None
    ) -> ImageOutcome:
        record = record or ImageRecord(image_id=image_id)
        stages = {s: p.model_dump(mode="json") for s, p in record.stages().items()}
        return cls(
            image_id=image_id,
            status=record.status,
            uploaded_at=parse_time(record.uploaded_at),
            started_at=parse_time(record.started_at),
            finished_at=parse_time(record.finished_at),
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
    prices: Prices = LIST_PRICES,
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
