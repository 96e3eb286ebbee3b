"""`imgproc duplicates`: one owner's groups of the same photo, exact and near."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from imgproc_cli.uploads import DEFAULT_USER, UsageError
from imgproc_local.local_stack import target_settings
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.duplicates import duplicate_groups
from imgproc_shared.models import is_valid_id
from imgproc_shared.resources import ResourceNames
from imgproc_shared.settings import Settings
from imgproc_shared.views import image_view


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "duplicates",
        help="list groups of the same photo: exact (DUPLICATE uploads) and near (pHash)",
    )
    parser.add_argument("--user", default=DEFAULT_USER, help=f"owner (default {DEFAULT_USER})")
    parser.add_argument(
        "--distance",
        type=int,
        metavar="BITS",
        help="most bits two perceptual hashes may differ in (default: "
        "IMGPROC_NEAR_DUPLICATE_DISTANCE, 12)",
    )
    parser.add_argument(
        "--json", action="store_true", help='one object: {"groups": [...]}, as GET /api/duplicates'
    )
    parser.set_defaults(func=run)


async def find(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    """The owner's groups, each image in the shape of `imgproc status --json`."""
    distance = settings.near_duplicate_distance if args.distance is None else args.distance
    async with AwsClients(settings) as aws:
        catalog = Catalog(aws, ResourceNames.from_settings(settings))
        groups = await duplicate_groups(catalog, args.user, distance)
        wanted = list(dict.fromkeys(i for group in groups for i in group.image_ids))
        records = {
            str(r.image_id): r for r in await catalog.get_images(wanted) if r.owner == args.user
        }

        async def presigned(bucket: str, key: str) -> str:
            url: str = await aws.s3.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
            )
            return url

        out = []
        for group in groups:
            images = []
            for image_id in group.image_ids:
                record = records.get(image_id)
                if record is None:
                    continue
                original = records.get(str(record.duplicate_of or ""))
                view = await image_view(record, presigned, original)
                images.append(view.model_dump(mode="json"))
            if len(images) > 1:
                out.append({"kind": group.kind, "distance": group.distance, "images": images})
    return {"groups": out}


def _print_human(result: dict[str, Any], user: str) -> None:
    groups = result["groups"]
    if not groups:
        print(f"no duplicates among {user}'s images")
        return
    for group in groups:
        count = len(group["images"])
        if group["kind"] == "exact":
            print(f"exact: {count} uploads of the same file")
        else:
            print(f"near: {count} images, at most {group['distance']} bits apart")
        for view in group["images"]:
            note = f"  duplicate of {view['duplicate_of']}" if view.get("duplicate_of") else ""
            print(
                f"  {view['image_id']}  {view.get('status')}  album {view.get('album_id')}  "
                f"{view.get('file_name') or ''}{note}"
            )


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not is_valid_id(args.user):
        raise UsageError(f"--user {args.user!r}: use letters, digits, '-' and '_' (max 64)")
    if args.distance is not None and not 0 <= args.distance <= 32:
        raise UsageError("--distance must be 0 to 32")
    result = asyncio.run(find(args, target_settings(settings)))
    if args.json:
        print(json.dumps(result))
    else:
        _print_human(result, args.user)
    return 0
