"""`imgproc import DIR | s3://BUCKET/PREFIX`: bring a whole library in, resumably.

Every photo under DIR (JPEG, PNG, HEIC/HEIF, WebP, AVIF, told by their first bytes) is uploaded
as `imgproc upload` does it and followed to its end; anything else is skipped, and a file that
cannot be read is reported while the import goes on. A journal on this machine
(`$IMGPROC_HOME/imports.sqlite3`) remembers what went in, by content, so running the same
command again after Ctrl-C or a crash uploads only what is missing and never a second copy.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from pathlib import Path

from imgproc_cli.library_import.journal import ImportJournal
from imgproc_cli.library_import.progress import Reporter
from imgproc_cli.library_import.runner import ImportRun, Plan
from imgproc_cli.library_import.sources import parse_s3_url
from imgproc_cli.uploads import DEFAULT_USER, UsageError
from imgproc_local.local_stack import target_settings
from imgproc_shared.aws import AwsClients
from imgproc_shared.models import ALBUM_NAME_MAX, is_valid_display_name, is_valid_id
from imgproc_shared.resources import ResourceNames
from imgproc_shared.settings import Settings

DEFAULT_CONCURRENCY = 4
# The album of files directly in the root when the root has no usable name (`/`).
FALLBACK_ALBUM = "Imported"
INTERRUPTED = 130


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "import",
        help="import a folder (recursively) or an S3 prefix; resumable",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", metavar="DIR|s3://BUCKET/PREFIX")
    albums = parser.add_mutually_exclusive_group()
    albums.add_argument("--album", help="put everything into this album (default: DIR's name)")
    albums.add_argument(
        "--albums-from-folders",
        action="store_true",
        help="one album per folder, named by its path under DIR (e.g. '2024/Rome'); files "
        "directly in DIR go to an album named after DIR",
    )
    parser.add_argument("--user", default=DEFAULT_USER, help=f"owner (default {DEFAULT_USER})")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        help=f"files read and uploaded at once (default {DEFAULT_CONCURRENCY})",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600.0,
        help="after the last upload, stop waiting when no image has finished for this many "
        "seconds (600)",
    )
    parser.add_argument(
        "--journal", type=Path, help="the import journal (default $IMGPROC_HOME/imports.sqlite3)"
    )
    parser.add_argument("--json", action="store_true", help="print one summary object at the end")
    parser.set_defaults(func=run_import)


def _check(args: argparse.Namespace) -> Path | tuple[str, str]:
    if not is_valid_id(args.user):
        raise UsageError(f"--user {args.user!r}: use letters, digits, '-' and '_' (max 64)")
    if args.album is not None and not is_valid_display_name(args.album, ALBUM_NAME_MAX):
        raise UsageError(
            f"--album {args.album!r}: 1 to {ALBUM_NAME_MAX} characters, not only spaces, "
            "no control characters"
        )
    if not 1 <= args.concurrency <= 32:
        raise UsageError("--concurrency: 1 to 32")
    if args.source.startswith("s3://"):
        bucket, prefix = parse_s3_url(args.source)
        if not bucket:
            raise UsageError(f"{args.source!r}: expected s3://BUCKET/PREFIX")
        return bucket, prefix
    root = Path(args.source).expanduser()
    if not root.is_dir():
        raise UsageError(f"{root}: not a folder")
    return root


def _top_album(source: Path | tuple[str, str]) -> str:
    if isinstance(source, Path):
        name = source.resolve().name
    else:
        bucket, prefix = source
        name = prefix.strip("/").rsplit("/", 1)[-1] or bucket
    name = name.strip()
    return name if name and is_valid_display_name(name, ALBUM_NAME_MAX) else FALLBACK_ALBUM


def _target(settings: Settings, names: ResourceNames) -> str:
    """Which library the journal's rows are about: the endpoint (or region) and the bucket."""
    return f"{settings.endpoint_url or 'aws:' + settings.region}/{names.bucket}"


async def import_library(args: argparse.Namespace, settings: Settings) -> int:
    source = _check(args)
    names = ResourceNames.from_settings(settings)
    plan = Plan(
        owner=args.user,
        album=args.album.strip() if args.album else None,
        top_album=_top_album(source),
        albums_from_folders=args.albums_from_folders,
        concurrency=args.concurrency,
        timeout_s=args.timeout,
        max_upload_bytes=settings.max_upload_bytes,
    )
    journal_path = args.journal or Path(settings.home) / "imports.sqlite3"
    journal = ImportJournal(journal_path, _target(settings, names))
    reporter = Reporter.for_output(args.json)
    started = time.monotonic()
    loop = asyncio.get_running_loop()
    try:
        async with AwsClients(settings) as aws:
            run = ImportRun(aws, names, journal, plan, reporter)

            def on_interrupt() -> None:
                run.stop()
                # A second Ctrl-C stops at once (KeyboardInterrupt: exit 130).
                loop.remove_signal_handler(signal.SIGINT)

            loop.add_signal_handler(signal.SIGINT, on_interrupt)
            try:
                with reporter:
                    await run.run(source)
            finally:
                loop.remove_signal_handler(signal.SIGINT)
            interrupted = run.stopping.is_set()
            header = {
                "source": args.source,
                "owner": plan.owner,
                "album": plan.album or (None if plan.albums_from_folders else plan.top_album),
                "albums_from_folders": plan.albums_from_folders,
                "journal": str(journal_path),
            }
            reporter.summary(
                header,
                journal.outcomes(run.run_id),
                interrupted=interrupted,
                elapsed=time.monotonic() - started,
            )
            journal.forget_run(run.run_id)
    finally:
        journal.close()
    if interrupted:
        return INTERRUPTED
    counts = reporter.counts
    return 1 if counts.pending or counts.failed else 0


def run_import(args: argparse.Namespace, settings: Settings) -> int:
    _check(args)  # a bad argument is reported before looking for a target
    return asyncio.run(import_library(args, target_settings(settings)))
