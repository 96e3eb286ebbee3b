"""Graceful stop: SIGTERM to every worker while it holds messages loses nothing.

For each worker service in turn, a burst of photos is uploaded; as soon as the service's queue
has messages in flight (held by its workers), every process of that service gets SIGTERM. Each
must stop polling, finish or release what it holds, log its one-line summary and exit within
its stop timeout; `up` starts a new one, and every photo still ends PROCESSED exactly once.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from imgproc_shared.aws import AwsClients
from imgproc_shared.resources import Queue, ResourceNames

from fault_stack import (
    FAST_RECOVERY_ENV,
    WORKER_MODULES,
    alive,
    duplicate_problems,
    executions_per_image,
    kill,
    log_lines,
    photo,
    service_pids,
    serving,
    upload_files,
    wait_queues_empty,
    wait_terminal,
)
from stack_process import RunningStack

pytestmark = pytest.mark.e2e

STOP_TIMEOUT_S = float(FAST_RECOVERY_ENV["IMGPROC_STOP_TIMEOUT_S"])
# Past the drain: cancelled handlers release their messages, then the clients close.
EXIT_SLACK_S = 3.0
QUEUES = {"extractor": "extract", "tagger": "tag", "thumbnailer": "thumbnail"}


async def _held(aws: AwsClients, queue_url: str) -> int:
    attributes = await aws.sqs.get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )
    return int(attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"])


async def test_sigterm_while_holding_messages_loses_nothing(
    fault_stack: RunningStack, log_dir: Path
) -> None:
    settings = fault_stack.settings
    up = fault_stack.process.pid
    exits: dict[str, list[float]] = {}
    uploaded_ids: list[str] = []
    for number, service in enumerate(WORKER_MODULES.values()):
        # A fresh worker (from an earlier test's kill) must be serving before it can hold work.
        deadline = time.monotonic() + 60
        while not [p for p in service_pids(up, WORKER_MODULES)[service] if serving(p)]:
            assert time.monotonic() < deadline, f"no {service} serving"
            await asyncio.sleep(0.2)
        # Big enough photos that the burst takes the service a few seconds: the extractor reads
        # headers only, and 12 small photos were gone before a poll could see them held.
        burst = [
            (f"term-{service}-{n}.jpg", photo(100 * number + n, size=(1600, 1200)))
            for n in range(12)
        ]
        async with AwsClients(settings) as aws:
            queue_name = ResourceNames.from_settings(settings).queue(Queue(QUEUES[service]))
            queue_url = (await aws.sqs.get_queue_url(QueueName=queue_name))["QueueUrl"]
            uploaded = await upload_files(settings, burst, album_name=f"SIGTERM {service}")
            uploaded_ids += [u.image_id for u in uploaded]
            deadline = time.monotonic() + 60
            while await _held(aws, queue_url) == 0:
                assert time.monotonic() < deadline, f"{service} never held a message"
                await asyncio.sleep(0.02)
        pids = service_pids(up, WORKER_MODULES)[service]
        signalled = time.monotonic()
        for pid in pids:
            kill(pid, signal.SIGTERM)
        exits[service] = []
        for pid in pids:
            while alive(pid):
                assert time.monotonic() - signalled < STOP_TIMEOUT_S + EXIT_SLACK_S + 5, (
                    f"{service} pid {pid} still running"
                )
                await asyncio.sleep(0.05)
            exits[service].append(time.monotonic() - signalled)

    found = await wait_terminal(settings, uploaded_ids, timeout=120)
    assert {r["status"] for r in found.values()} == {"PROCESSED"}, found
    await wait_queues_empty(settings, timeout=45)
    assert not await duplicate_problems(settings, found, await executions_per_image(settings))

    slowest = max(t for times in exits.values() for t in times)
    assert slowest < STOP_TIMEOUT_S + EXIT_SLACK_S, exits
    summaries = [e for e in log_lines(log_dir) if e.get("event") == "worker stopped"]
    drains = [e for e in log_lines(log_dir) if e.get("event") == "draining"]
    assert {e["_file"].split("-")[0] for e in summaries} >= set(QUEUES), summaries
    print(
        f"\nRELIABILITY graceful-stop: images={len(uploaded_ids)} services_signalled=3 "
        f"processes_signalled={sum(len(t) for t in exits.values())} lost=0 duplicates=0 "
        f"slowest_exit_s={slowest:.1f} (stop timeout {STOP_TIMEOUT_S:g}s) "
        f"drains_with_work_in_flight={len(drains)}"
    )
