"""`imgproc upload` and `imgproc status`: put photos into an album and follow them through."""

from __future__ import annotations

import argparse
import asyncio
import json
import mimetypes
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from imgproc_local.local_stack import target_settings
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog, is_conditional_failure
from imgproc_shared.models import (
    ALBUM_NAME_MAX,
    ImageStatus,
    clean_file_name,
    is_valid_display_name,
    is_valid_id,
)
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import ResourceNames, incoming_key
from imgproc_shared.settings import Settings
from imgproc_shared.views import image_view

DEFAULT_USER = "local"
DEFAULT_ALBUM = "Uploads"
_EXTENSION = re.compile(r"^[a-z0-9]{1,8}$")


class UsageError(Exception):
    """A problem with what the user asked for, reported as one clear line."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    upload = subparsers.add_parser("upload", help="upload photos and (optionally) wait for them")
    upload.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    upload.add_argument("--user", default=DEFAULT_USER, help=f"owner (default {DEFAULT_USER})")
    upload.add_argument("--album", default=DEFAULT_ALBUM, help="album name (created if missing)")
    upload.add_argument("--wait", action="store_true", help="wait for a terminal status")
    upload.add_argument("--timeout", type=float, default=120.0, help="seconds to wait (120)")
    upload.add_argument("--json", action="store_true", help="one JSON object per file")
    upload.set_defaults(func=run_upload)

    status = subparsers.add_parser("status", help="show one image's status and results")
    status.add_argument("image_id")
    status.add_argument("--json", action="store_true")
    status.set_defaults(func=run_status)


def _check_paths(paths: list[Path]) -> list[Path]:
    problems = []
    for path in paths:
        if not path.exists():
            problems.append(f"{path}: no such file")
        elif not path.is_file():
            problems.append(f"{path}: not a file")
        else:
            try:
                with path.open("rb"):
                    pass
            except OSError as exc:
                problems.append(f"{path}: cannot read ({exc.strerror})")
    if problems:
        raise UsageError("; ".join(problems))
    return paths


def _content_type(path: Path) -> str:
    # Only image types are stored as such (as the API grants them); anything else, e.g. a
    # `.html` file, is stored as opaque bytes so no browser would ever render it as a page.
    guessed = mimetypes.guess_type(path.name)[0]
    return guessed if guessed and guessed.startswith("image/") else "application/octet-stream"


def _extension(path: Path) -> str:
    ext = path.suffix.lower().lstrip(".")
    # The key's extension is cosmetic (the extractor identifies formats by content), but it
    # must stay a safe key component.
    return ext if _EXTENSION.match(ext) else "bin"


async def put_original(
    aws: AwsClients,
    catalog: Catalog,
    names: ResourceNames,
    *,
    image_id: str,
    owner: str,
    album_id: str,
    file_name: str,
    data: bytes,
    content_type: str | None = None,
) -> str:
    """Record the upload (UPLOADING) and put the original under `incoming/`; returns its key.

    Safe to repeat with the same image id (a resumed import): the record is kept, the object
    is put again under the same key, and the starter (execution named by the image id) starts
    nothing new for an image already on its way.
    """
    key = incoming_key(owner, album_id, image_id, _extension(Path(file_name)))
    content_type = content_type or _content_type(Path(file_name))
    try:
        await catalog.record_upload(
            image_id=image_id,
            owner=owner,
            album_id=album_id,
            bucket=names.bucket,
            key=key,
            file_name=clean_file_name(file_name),
            content_type=content_type,
            size=len(data),
        )
    except ClientError as exc:
        if not is_conditional_failure(exc):
            raise
    await aws.s3.put_object(
        Bucket=names.bucket,
        Key=key,
        Body=data,
        ContentType=content_type,
        ChecksumAlgorithm="SHA256",
    )
    return key


async def _presigned(aws: AwsClients, bucket: str, key: str) -> str:
    url: str = await aws.s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
    )
    return url


async def _view(aws: AwsClients, record: ImageRecord) -> dict[str, Any]:
    """The image's public view as JSON values, as `imgproc status --json` prints it."""
    view = await image_view(record, lambda bucket, key: _presigned(aws, bucket, key))
    return view.model_dump(mode="json")


async def _wait_terminal(
    catalog: Catalog, image_ids: list[str], timeout: float
) -> dict[str, ImageRecord]:
    deadline = time.monotonic() + timeout
    records: dict[str, ImageRecord] = {}
    pending = list(image_ids)
    while pending:
        for image_id in list(pending):
            record = await catalog.get_image(image_id)
            if record is not None:
                records[image_id] = record
                if ImageStatus(str(record.status)).terminal:
                    pending.remove(image_id)
        if not pending or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.2)
    return records


def _print_human(file: str, view: dict[str, Any]) -> None:
    line = f"{file}: {view['status']}  image {view['image_id']}"
    if view.get("error"):
        line += f"  ({view['error']['code']}: {view['error']['message']})"
    print(line)
    metadata = view.get("metadata") or {}
    if metadata:
        print(
            f"  {metadata.get('format')} {metadata.get('width')}x{metadata.get('height')}, "
            f"{metadata.get('bytes')} bytes, taken {metadata.get('taken_at') or 'unknown'}"
        )
    if view.get("tags"):
        print("  labels: " + ", ".join(f"{t['name']} {t['confidence']:.0f}%" for t in view["tags"]))
    for rendition in view.get("thumbnails", []):
        print(
            f"  {rendition['name']}: {rendition['width']}x{rendition['height']} {rendition['url']}"
        )


async def upload(args: argparse.Namespace, settings: Settings) -> int:
    paths = _check_paths(list(args.paths))
    if not is_valid_id(args.user):
        raise UsageError(f"--user {args.user!r}: use letters, digits, '-' and '_' (max 64)")
    if not is_valid_display_name(args.album, ALBUM_NAME_MAX):
        raise UsageError(
            f"--album {args.album!r}: 1 to {ALBUM_NAME_MAX} characters, not only spaces, "
            "no control characters"
        )
    album_name = args.album.strip()  # as the status API stores names
    names = ResourceNames.from_settings(settings)
    async with AwsClients(settings) as aws:
        catalog = Catalog(aws, names)
        # Through the album's name guard, as the status API creates albums: two commands (or
        # a command and the web client) asking for one new name at once get one album.
        album_id = await catalog.album_named(args.user, album_name)
        uploaded: list[tuple[str, str]] = []
        for path in paths:
            image_id = uuid.uuid4().hex
            await put_original(
                aws,
                catalog,
                names,
                image_id=image_id,
                owner=args.user,
                album_id=album_id,
                file_name=path.name,
                data=path.read_bytes(),
            )
            uploaded.append((str(path), image_id))
            if not args.wait:
                record = await catalog.get_image(image_id) or ImageRecord(image_id=image_id)
                _emit(args, str(path), await _view(aws, record))
        if not args.wait:
            return 0
        records = await _wait_terminal(catalog, [i for _, i in uploaded], args.timeout)
        timed_out = False
        for file, image_id in uploaded:
            view = await _view(aws, records.get(image_id) or ImageRecord(image_id=image_id))
            timed_out |= not ImageStatus(view.get("status") or "UPLOADING").terminal
            _emit(args, file, view)
        if timed_out:
            print(
                f"timed out after {args.timeout:.0f}s waiting for a terminal status",
                file=sys.stderr,
            )
            return 1
        return 0


def _emit(args: argparse.Namespace, file: str, view: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps({"file": file, **view}), flush=True)
    else:
        _print_human(file, view)


async def status(args: argparse.Namespace, settings: Settings) -> int:
    if not is_valid_id(args.image_id):
        raise UsageError(f"{args.image_id!r} is not an image id")
    async with AwsClients(settings) as aws:
        record = await Catalog(aws, ResourceNames.from_settings(settings)).get_image(args.image_id)
        if record is None:
            raise UsageError(f"no image {args.image_id}")
        view = await _view(aws, record)
    if args.json:
        print(json.dumps(view))
    else:
        _print_human(view.get("file_name") or args.image_id, view)
    return 0


def run_upload(args: argparse.Namespace, settings: Settings) -> int:
    _check_paths(list(args.paths))  # a bad path is reported before looking for a target
    return asyncio.run(upload(args, target_settings(settings)))


def run_status(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(status(args, target_settings(settings)))
