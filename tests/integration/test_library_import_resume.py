"""`imgproc import` resumed while the stack has not yet taken an upload's event, against a real
moto server: a photo the journal has as uploaded is followed, never put a second time."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgproc_cli.library_import import import_library
from imgproc_shared.aws import AwsClients
from imgproc_shared.settings import Settings

Stack = tuple[Settings, AwsClients, dict[str, Any]]


def _args(root: Path, journal: Path) -> argparse.Namespace:
    return argparse.Namespace(
        source=str(root),
        user="resume-user",
        album="Resumed",
        albums_from_folders=False,
        concurrency=2,
        # No starter runs here, so nothing ever finishes: stop waiting soon.
        timeout=0.5,
        journal=journal,
        json=True,
    )


async def _import(
    root: Path, journal: Path, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> dict[str, Any]:
    await import_library(_args(root, journal), settings)
    summary: dict[str, Any] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    return summary


async def test_a_photo_journaled_as_uploaded_is_not_put_again_while_its_event_waits(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Found in a fresh-clone run of the suite: an import interrupted and resumed on a busy
    # machine, before the starter had taken 19 of its events, uploaded those 19 twice.
    settings, aws, _ = stack
    root = tmp_path / "Pictures"
    root.mkdir()
    for n in range(3):
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48), (40 * n, 90, 200 - 40 * n)).save(buffer, "JPEG")
        (root / f"p{n}.jpg").write_bytes(buffer.getvalue())
    journal = tmp_path / "journal.sqlite3"

    first = await _import(root, journal, settings, capsys)
    assert first["counts"]["uploaded"] == 3, first["counts"]
    assert first["counts"]["pending"] == 3, first["counts"]  # still UPLOADING: no starter

    puts_before = await _incoming_objects(aws, settings)
    second = await _import(root, journal, settings, capsys)
    assert second["counts"]["resumed"] == 3, second["counts"]
    assert second["counts"]["uploaded"] == 0, second["counts"]
    assert second["counts"]["pending"] == 3, second["counts"]
    # The same three objects, not written again (a second put would change their ETag time).
    assert await _incoming_objects(aws, settings) == puts_before


async def _incoming_objects(aws: AwsClients, settings: Settings) -> dict[str, str]:
    """Key → last-modified time of every uploaded original."""
    listed = await aws.s3.list_objects_v2(
        Bucket=f"{settings.resource_prefix}-images", Prefix="incoming/"
    )
    return {o["Key"]: o["LastModified"].isoformat() for o in listed.get("Contents", [])}
