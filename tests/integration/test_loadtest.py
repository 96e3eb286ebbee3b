"""`imgproc loadtest` against the stack as `make up` starts it: nothing lost, nothing doubled,
and the cost of the tagger backend that stack runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from stack_process import IMGPROC, REPO_ROOT, RunningStack, start_stack


def run_loadtest(stack: RunningStack, images: int, concurrency: int) -> tuple[dict[str, Any], str]:
    """The JSON report and the progress (stderr) of one run against `stack`."""
    result = subprocess.run(
        [
            str(IMGPROC),
            "loadtest",
            "--images",
            str(images),
            "--concurrency",
            str(concurrency),
            "--size",
            "640x480",
            "--timeout",
            "60",
            "--json",
        ],
        env=stack.env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report, result.stderr


def test_loadtest_reports_a_clean_run(local_stack: RunningStack) -> None:
    report, progress = run_loadtest(local_stack, images=10, concurrency=4)
    # The progress bar goes to stderr, never into the JSON.
    assert "10/10 terminal" in progress

    assert report["images"] == 10
    assert report["lost"] == 0 and report["lost_image_ids"] == []
    assert report["duplicate_executions"] == 0
    assert report["missing_executions"] == 0
    assert report["statuses"] == {"PROCESSED": 10}
    assert report["throughput_images_per_s"] > 0

    latency = report["latency_s"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"] < 60
    for stage in ("extract", "tag", "thumbnail"):
        assert report["stage_duration_ms"][stage]["count"] == 10
        assert report["stage_duration_ms"][stage]["median"] > 0
    assert set(report["segments_median_s"]) >= {"upload_to_execution", "extract", "to_terminal"}

    calls = report["api_calls"]
    assert calls["source"] == "counted by the embedded endpoint"
    per_image = calls["per_image"]
    # Every image is started once and answers one task per stage.
    assert per_image["states.StartExecution"] == 1.0
    assert per_image["states.SendTaskSuccess"] == 3.0
    assert per_image["dynamodb.PutItem"] >= 1.0
    assert calls["per_image_total"] == round(sum(per_image.values()), 2)
    # The happy path: Extract, Validate, Process, its two branches, StoreResults, Announce.
    assert report["state_transitions_per_image"] == 7.0
    # The load test listens to the announcements: its own calls are not an image's.
    assert "dynamodb.BatchGetItem" not in per_image
    assert per_image["sqs.ReceiveMessage"] < 6

    assert set(report["worker_cpu_s"]) >= {"extractor", "tagger", "thumbnailer"}
    assert report["worker_cpu_s_per_image"] > 0
    assert report["worker_cpu_source"].startswith("measured")
    assert report["embedded_aws_cpu_s"] > 0
    cost = report["cost_usd_per_1000_images"]
    assert cost["stepfunctions"] == 0.175  # 7 transitions at $0.025 per 1,000
    assert cost["total"] >= sum(v for k, v in cost.items() if k != "total") - 1e-4

    # `make up` runs the local models: their price is the workers' CPU time, no Rekognition.
    assert report["tagger_backend"]["priced"] == "local"
    assert "imgproc up --tagger" in report["tagger_backend"]["from"]
    assert "rekognition.DetectLabels" not in per_image
    assert cost["rekognition"] == 0.0
    assert cost["fargate"] > 0


def test_loadtest_prices_rekognition_where_the_stack_tags_with_it(tmp_path: Path) -> None:
    stack = start_stack(tmp_path / "home", tagger="rekognition")
    try:
        report, _ = run_loadtest(stack, images=4, concurrency=2)
    finally:
        stack.stop()
    assert report["statuses"] == {"PROCESSED": 4}
    assert report["tagger_backend"]["priced"] == "rekognition"
    # The endpoint counted one DetectLabels per image: $1.00 per 1,000 images.
    assert report["api_calls"]["per_image"]["rekognition.DetectLabels"] == 1.0
    cost = report["cost_usd_per_1000_images"]
    assert cost["rekognition"] == 1.0
    assert cost["total"] > 1.0
