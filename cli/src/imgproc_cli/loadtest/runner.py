"""One load-test run: uploaders that keep `concurrency` images in flight, a watcher of their
statuses, and the measurements around them (requests counted by the endpoint, CPU, executions
and their state transitions), summarised into the report."""

from __future__ import annotations

import asyncio
import json
import math
import statistics
import sys
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from imgproc_cli.loadtest.costs import modelled_cpu_seconds, modelled_requests, subtract_requests
from imgproc_cli.loadtest.cpu import cpu_delta, process_cpu
from imgproc_cli.loadtest.listener import AnnouncementListener
from imgproc_cli.loadtest.photos import unique_copy
from imgproc_cli.loadtest.progress import Progress
from imgproc_cli.loadtest.report import ImageOutcome, summarize
from imgproc_cli.uploads import put_original
from imgproc_local.request_counter import STATS_PATH
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import ImageStatus
from imgproc_shared.resources import ResourceNames
from imgproc_shared.settings import Settings
from imgproc_shared.workflow import find_state_machine_arn

LOADTEST_USER = "loadtest"
# How often the client polls its images' statuses when it cannot listen to the announcements,
# and, as a safety net, when it can. Latencies come from the records' own times.
_POLL_INTERVAL_S = 0.5
_SAFETY_POLL_INTERVAL_S = 5.0
_HISTORY_SAMPLE = 50  # executions whose history is read to count state transitions


@dataclass
class RunState:
    """The images of one run: when each was uploaded and seen terminal, and who waits on it."""

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


async def _upload_one(
    run: RunState, index: int, aws: AwsClients, catalog: Catalog, names: ResourceNames, album: str
) -> str:
    file_name, photo = run.photos[index % len(run.photos)]
    image_id = uuid.uuid4().hex
    data = unique_copy(photo, image_id)
    run.waiters[image_id] = asyncio.Event()
    run.uploaded[image_id] = time.monotonic()
    # As `imgproc upload` does: S3 verifies and keeps the SHA-256, so the extractor reads the
    # checksum instead of the whole object.
    await put_original(
        aws,
        catalog,
        names,
        image_id=image_id,
        owner=LOADTEST_USER,
        album_id=album,
        file_name=file_name,
        data=data,
    )
    return image_id


async def _uploader(
    run: RunState, aws: AwsClients, catalog: Catalog, names: ResourceNames, album: str
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
    run: RunState,
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
                if ImageStatus(str(record.status)).terminal:
                    run.ended(record.image_id)
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
    run = RunState(photos=photos, total=images, timeout_s=timeout_s)
    progress = Progress(images, progress_stream)
    async with AwsClients(settings) as aws:
        catalog = Catalog(aws, names)
        album = await catalog.album_named(LOADTEST_USER, "loadtest")  # through the name guard
        listener = await AnnouncementListener.open(aws, names)
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

        records = {r.image_id: r for r in await catalog.get_images(list(run.uploaded))}
        outcomes = [
            ImageOutcome.from_record(i, records.get(i), run.observed.get(i)) for i in run.uploaded
        ]
        arn = settings.state_machine_arn or await find_state_machine_arn(
            aws.stepfunctions, ResourceNames.from_settings(settings).state_machine
        )
        executions = (
            await _executions_per_image(aws, arn, set(run.uploaded)) if arn else Counter[str]()
        )
        duplicates = sum(count - 1 for count in executions.values() if count > 1)
        execution_arns = [
            str(r.execution_arn)
            for r in records.values()
            if r.execution_arn and r.status == ImageStatus.PROCESSED.value
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
