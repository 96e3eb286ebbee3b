"""The local scaler against a real moto server with real worker processes: flood a queue, watch
the worker count rise to the bound, drain, fall back to the minimum, and lose no message."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

from helpers import eventually

from imgproc_local.bootstrap import bootstrap
from imgproc_local.scaler import LocalScaler, QueueWatcher, decision_logger, read_workers_file
from imgproc_local.supervisor import ServiceSpec, Supervisor
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.dead_letters import DeadLetters
from imgproc_shared.resources import Queue, ResourceNames, Stage
from imgproc_shared.scaling import ScalingPolicy
from imgproc_shared.settings import Settings

from workflow_harness import record

MESSAGES = 60
POLICY = ScalingPolicy(
    acceptable_latency_s=2.0,
    seconds_per_message=0.5,  # target: 4 visible messages per worker
    min_workers=1,
    max_workers=3,
    scale_out_cooldown_s=1.0,
    scale_in_cooldown_s=3.0,
    scale_out_step=2,
    scale_in_step=1,
)


async def test_flooded_queue_scales_out_to_the_bound_drains_and_scales_back_in(
    settings_factory: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_factory(home=tmp_path)
    async with AwsClients(settings) as aws:
        await bootstrap(aws, settings)
        names = ResourceNames.from_settings(settings)
        dead = DeadLetters(aws, settings)
        queue_url = await dead.url(names.queue(Queue.TAG))
        image_ids = [f"flood-{n:03d}" for n in range(MESSAGES)]
        # Recorded only: putting the objects would start executions of their own.
        keys = {image_id: await record(settings, aws, image_id) for image_id in image_ids}
        # Tasks whose tokens Step Functions does not know: the worker does the work, its answer
        # is refused as stale, and it deletes the message, as for any finished task.
        for start in range(0, MESSAGES, 10):
            await aws.sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {
                        "Id": str(i),
                        "MessageBody": json.dumps(
                            {
                                "task_token": f"token-{image_id}",
                                "stage": "tag",
                                "image_id": image_id,
                                "bucket": names.bucket,
                                "key": keys[image_id],
                            }
                        ),
                    }
                    for i, image_id in enumerate(image_ids[start : start + 10])
                ],
            )

        env = {
            **os.environ,
            "IMGPROC_ENDPOINT_URL": str(settings.endpoint_url),
            "IMGPROC_RESOURCE_PREFIX": settings.resource_prefix,
            "IMGPROC_WORKER_CONCURRENCY": "2",
            "IMGPROC_WAIT_TIME_S": "1",
            "IMGPROC_STOP_TIMEOUT_S": "5",
            "IMGPROC_VISIBILITY_TIMEOUT_S": "10",
        }
        spec = ServiceSpec(
            "tagger", (sys.executable, str(Path(__file__).with_name("scaled_worker.py")))
        )
        supervisor = Supervisor(env, tmp_path / "logs", retire_timeout=8)
        logger, log_stream = decision_logger(tmp_path / "logs" / "scaler.log")
        scaler = LocalScaler(
            supervisor,
            [spec],
            {"tagger": POLICY},
            QueueWatcher(settings, [Stage.TAG], interval=0.5),
            tmp_path / "workers.json",
            logger,
        )
        history: list[int] = []

        def tick() -> int:
            supervisor.check()
            scaler.step()
            history.append(len(supervisor.running("tagger")))
            return history[-1]

        try:
            scaler.start()
            assert tick() == 1
            await eventually(lambda: tick() == 3, timeout=20, interval=0.2, what="3 workers")
            recorded = read_workers_file(settings)
            assert recorded is not None and recorded.services["tagger"].workers == 3
            assert len(recorded.services["tagger"].pids) == 3

            async def drained() -> bool:
                tick()
                depth = await dead.depth(Queue.TAG)
                return depth.visible == 0 and depth.in_flight == 0

            await eventually(drained, timeout=40, interval=0.2, what="the queue drained")
            await eventually(
                lambda: tick() == 1 and len(supervisor.processes) == 1,
                timeout=30,
                interval=0.2,
                what="back to one worker, the others exited",
            )
        finally:
            scaler.stop()
            supervisor.stop(10)
            log_stream.close()

        assert max(history) == POLICY.max_workers
        assert not (tmp_path / "workers.json").exists()
        # No message lost or left: every image's tag stage finished, nothing dead-lettered.
        records = await Catalog(aws, names).get_images(image_ids)
        assert len(records) == MESSAGES
        unfinished = [r.image_id for r in records if not (r.stage_tag and r.stage_tag.finished_at)]
        assert unfinished == []
        depth = await dead.depth(Queue.TAG)
        assert (depth.visible, depth.in_flight, depth.dead_letters) == (0, 0, 0)

    decisions = [
        json.loads(line)
        for line in (tmp_path / "logs" / "scaler.log").read_text().splitlines()
        if '"scaling decision"' in line
    ]
    outs = [d for d in decisions if d["desired"] > d["workers"]]
    ins = [d for d in decisions if d["desired"] < d["workers"]]
    assert outs and ins
    assert all(d["backlog"] > 0 for d in outs), "scale-out is caused by a backlog"
    assert all(d["reason"].startswith("scale in") for d in ins)
    assert sum(d["desired"] - d["workers"] for d in outs) == 2
    assert sum(d["workers"] - d["desired"] for d in ins) == 2
