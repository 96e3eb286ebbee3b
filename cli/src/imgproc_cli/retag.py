"""`imgproc retag`: give PROCESSED images the current model's labels (local stack or AWS).

Starts one `ImageRetag` execution per image at a bounded rate and waits for them, printing
progress (`imgproc_shared.retag` has the design). If it stops half way (Ctrl-C, the stack
stopped), run it again with `--request ID`: images already re-tagged or started under that
request are left alone and the rest are started.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import structlog

from imgproc_cli.uploads import UsageError
from imgproc_local.local_stack import target_settings
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import is_valid_id
from imgproc_shared.resources import ResourceNames
from imgproc_shared.retag import (
    DEFAULT_RATE_PER_S,
    Retagger,
    RetagProgress,
    RetagScope,
    RetagStart,
    is_valid_request_id,
    new_request_id,
)
from imgproc_shared.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "retag", help="re-run the tag stage of PROCESSED images (new labels, nothing else)"
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument("--album", metavar="ALBUM_ID", help="the images of this album")
    scope.add_argument("--all", action="store_true", help="every image (of --user, if given)")
    parser.add_argument("--user", metavar="U", help="only this owner's images")
    parser.add_argument(
        "--request",
        metavar="ID",
        help="the request's id (default: a new one); the same id again starts only what is left",
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=DEFAULT_RATE_PER_S,
        metavar="N",
        help=f"executions started per second (default {DEFAULT_RATE_PER_S:g})",
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for them (600)"
    )
    parser.add_argument("--json", action="store_true", help="print one summary object")
    parser.set_defaults(func=run)


def _check(args: argparse.Namespace) -> str:
    if args.album is not None and not is_valid_id(args.album):
        raise UsageError(f"--album {args.album!r} is not an album id")
    if args.user is not None and not is_valid_id(args.user):
        raise UsageError(f"--user {args.user!r}: use letters, digits, '-' and '_' (max 64)")
    if args.request is not None and not is_valid_request_id(args.request):
        raise UsageError(f"--request {args.request!r}: 1-14 lowercase letters and digits")
    if not args.rate > 0:
        raise UsageError("--rate must be more than 0")
    return str(args.request or new_request_id())


def summary(report: RetagStart, progress: RetagProgress) -> dict[str, Any]:
    """The `--json` object: what was selected and started, and how the executions ended."""
    return {
        **report.as_dict(),
        "executions": progress.executions,
        "running": progress.running,
        "finished": progress.finished,
        "retagged": progress.retagged,
        "skipped_meanwhile": progress.skipped,
        "skipped_meanwhile_count": progress.skipped_count,
        "failed": progress.failed,
        "failed_count": progress.failed_count,
        "complete": progress.running == 0
        and progress.executions >= report.started + report.already_started,
    }


async def retag(args: argparse.Namespace, settings: Settings, request_id: str) -> int:
    scope = RetagScope(album_id=args.album, owner=args.user)
    async with AwsClients(settings) as aws:
        if args.album is not None:
            album = await Catalog(aws, ResourceNames.from_settings(settings)).get_album(args.album)
            if album is None or (args.user is not None and album.owner != args.user):
                raise UsageError(
                    f"no album {args.album}" + (f" of {args.user}" if args.user else "")
                )
        retagger = Retagger(aws, settings)
        human = not args.json
        if human:
            print(f"re-tag request {request_id}: {scope.describe()}", flush=True)
            print(f"  (if this stops, run it again with --request {request_id})", flush=True)

        def started(report: RetagStart) -> None:
            if human and report.started % 50 == 0:
                print(f"  started {report.started}", flush=True)

        report = await retagger.request(scope, request_id, rate_per_s=args.rate, on_started=started)
        if human:
            print(
                f"  {report.selected} PROCESSED image(s): started {report.started}, "
                f"already started {report.already_started}, already re-tagged "
                f"{report.already_done}; {report.skipped_count} not PROCESSED",
                flush=True,
            )
            for image_id, why in report.skipped.items():
                print(f"  skipped {image_id}: {why}")
            for image_id, why in report.not_started.items():
                print(f"  not started {image_id}: {why}")
        expected = report.started + report.already_started
        last: list[int] = [-1]

        def show(progress: RetagProgress) -> None:
            if human and progress.finished != last[0]:
                last[0] = progress.finished
                print(f"  finished {progress.finished}/{expected}", flush=True)

        progress = await retagger.wait(
            request_id, expected, timeout_s=args.timeout, on_progress=show
        )
        result = summary(report, progress)
        if args.json:
            print(json.dumps(result))
        else:
            print(
                f"re-tagged {progress.retagged}, skipped {progress.skipped_count}, "
                f"failed {progress.failed_count}, still running {progress.running}"
            )
            for image_id, why in {**progress.skipped, **progress.failed}.items():
                print(f"  {image_id}: {why}")
            if not result["complete"]:
                print(
                    f"not finished within {args.timeout:g} s; follow it with "
                    f"--request {request_id}",
                    file=sys.stderr,
                )
        ok = result["complete"] and not progress.failed_count and not report.not_started
        return 0 if ok else 1


def run(args: argparse.Namespace, settings: Settings) -> int:
    request_id = _check(args)  # a bad argument is reported before looking for a target
    # The library's log lines go to stderr: stdout carries the report (one object with --json).
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    return asyncio.run(retag(args, target_settings(settings), request_id))
