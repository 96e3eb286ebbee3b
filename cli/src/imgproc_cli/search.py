"""`imgproc search`: find an owner's photos by label, date, camera, album and place; and
`imgproc reindex`: rebuild the search index from the images table (stacks older than it).

Both read and write the search table directly (`imgproc_shared.search`), as the status API's
indexer and `GET /api/images` do.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

from imgproc_cli.uploads import DEFAULT_USER, UsageError, _print_human, _view
from imgproc_local.local_stack import target_settings
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.models import is_valid_id
from imgproc_shared.resources import ResourceNames
from imgproc_shared.search import (
    InvalidFilter,
    SearchFilter,
    SearchIndex,
    parse_near,
    parse_time_bound,
)
from imgproc_shared.settings import Settings

PAGE = 100


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    search = subparsers.add_parser(
        "search", help="find photos by label, date, camera, album and place (newest first)"
    )
    search.add_argument(
        "--label", action="append", default=[], metavar="L", help="a label or parent; repeatable"
    )
    search.add_argument("--from", dest="taken_from", metavar="DATE", help="taken on or after")
    search.add_argument("--to", dest="taken_to", metavar="DATE", help="taken on or before")
    search.add_argument("--camera", metavar="TEXT", help="text in the camera's make and model")
    search.add_argument("--album", metavar="ALBUM_ID", help="only this album")
    search.add_argument("--format", metavar="F", help="e.g. JPEG")
    search.add_argument("--status", metavar="S", help="e.g. PROCESSED")
    search.add_argument("--near", metavar="LAT,LON,KM", help="taken within KM km of the point")
    search.add_argument("--user", default=DEFAULT_USER, help=f"owner (default {DEFAULT_USER})")
    search.add_argument("--limit", type=int, default=50, metavar="N", help="at most N (50)")
    search.add_argument("--json", action="store_true", help="one JSON object per image")
    search.set_defaults(func=run_search)

    reindex = subparsers.add_parser(
        "reindex", help="rebuild the search index from the images table (safe to repeat)"
    )
    reindex.add_argument("--user", metavar="U", help="only this owner's images (default: all)")
    reindex.set_defaults(func=run_reindex)


def search_filter(args: argparse.Namespace) -> SearchFilter:
    try:
        if args.album is not None and not is_valid_id(args.album):
            raise InvalidFilter("--album", "not an album id")
        return SearchFilter(
            labels=tuple(label.strip() for label in args.label if label.strip()),
            taken_from=(
                parse_time_bound("--from", args.taken_from, end=False) if args.taken_from else None
            ),
            taken_to=parse_time_bound("--to", args.taken_to, end=True) if args.taken_to else None,
            camera=args.camera or None,
            album_id=args.album,
            format=args.format.upper() if args.format else None,
            status=args.status.upper() if args.status else None,
            near=parse_near(args.near, "--near") if args.near else None,
        )
    except InvalidFilter as exc:
        raise UsageError(f"{exc.parameter}: {exc.reason}") from exc


async def search(args: argparse.Namespace, settings: Settings) -> int:
    if not is_valid_id(args.user):
        raise UsageError(f"--user {args.user!r}: use letters, digits, '-' and '_' (max 64)")
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    flt = search_filter(args)
    shown = 0
    async with AwsClients(settings) as aws:
        names = ResourceNames.from_settings(settings)
        index, catalog = SearchIndex(aws, names), Catalog(aws, names)
        after: str | None = None
        while shown < args.limit:
            # Whole pages: a page may end short (reads are bounded by its size), and the last
            # one is cut at --limit below.
            page = await index.search(args.user, flt, limit=PAGE, after=after)
            entries = page.entries[: args.limit - shown]
            records = await catalog.get_images([e.image_id for e in entries])
            by_id = {str(r.image_id): r for r in records if r.owner == args.user}
            for entry in entries:
                record = by_id.get(entry.image_id)
                if record is None:
                    continue  # deleted since it was indexed
                view = await _view(aws, record)
                if args.json:
                    print(json.dumps(view), flush=True)
                else:
                    _print_human(view.get("file_name") or entry.image_id, view)
                shown += 1
            if page.next_after is None:
                break
            after = page.next_after
    if not args.json:
        print(f"{shown} image(s) of {args.user}: {flt.describe()}", file=sys.stderr)
    return 0


async def reindex(args: argparse.Namespace, settings: Settings) -> int:
    """Index every image record (of `--user`): each is brought to what its record says, so
    running it again, or beside the indexer, changes nothing that is already right."""
    if args.user is not None and not is_valid_id(args.user):
        raise UsageError(f"--user {args.user!r}: use letters, digits, '-' and '_' (max 64)")
    seen = indexed = 0
    started = time.monotonic()
    async with AwsClients(settings) as aws:
        names = ResourceNames.from_settings(settings)
        index, catalog = SearchIndex(aws, names), Catalog(aws, names)
        async for record in catalog.iter_images(owner=args.user):
            seen += 1
            indexed += await index.index_record(record)
            if seen % 200 == 0:
                rate = seen / max(1e-6, time.monotonic() - started)
                print(f"  {seen} images read, {indexed} indexed ({rate:.0f}/s)", flush=True)
    print(
        f"reindexed {indexed} of {seen} image(s)"
        + (f" of {args.user}" if args.user else "")
        + f" in {time.monotonic() - started:.1f} s (unfinished images are left out)",
        flush=True,
    )
    return 0


def run_search(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(search(args, target_settings(settings)))


def run_reindex(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(reindex(args, target_settings(settings)))
