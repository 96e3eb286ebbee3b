"""`imgproc loadtest`: its arguments, the run, and the report as text or JSON."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Any

from imgproc_cli.loadtest.photos import generated_photos, parse_size, source_photos
from imgproc_cli.loadtest.runner import loadtest
from imgproc_cli.uploads import UsageError
from imgproc_local.local_stack import read_stack, target_settings
from imgproc_shared.settings import Settings


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
