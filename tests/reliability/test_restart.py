"""`imgproc up --data-dir DIR` keeps albums, images, originals and renditions across restarts,
and resumes every image that was not finished.

One data directory lives through three runs of `up`:
1. photos are processed, then `up` is stopped cleanly (Ctrl-C);
2. the second run still has them all; more photos are uploaded while its thumbnailer is paused,
   and `up` is killed with SIGKILL while they are PROCESSING, once a snapshot holds them (at
   most the last snapshot interval, 2 s, is lost); its services die with it (no orphan);
3. the third run has everything the snapshot held, and every unfinished image ends PROCESSED.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from imgproc_local.persistence import StateStore
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.resources import ResourceNames, Table
from imgproc_shared.settings import Settings

from fault_stack import (
    FAST_RECOVERY_ENV,
    Uploaded,
    alive,
    executions_per_image,
    photo,
    records,
    service_pids,
    thumbnail_keys,
    upload_files,
    wait_terminal,
    wait_until,
)
from stack_process import RunningStack, start_stack

# Three starts of `up` (~10-25 s each on a loaded 2-core machine) and two batches of photos.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

RESULT_FIELDS = ("status", "album_id", "metadata", "tags", "thumbnails", "finished_at")


def _start(home: Path, *extra_args: str) -> RunningStack:
    return start_stack(
        home, tagger="rekognition", extra_env=FAST_RECOVERY_ENV, extra_args=list(extra_args)
    )


async def _originals_intact(settings: Settings, uploads: list[Uploaded]) -> None:
    names = ResourceNames.from_settings(settings)
    async with AwsClients(settings) as aws:
        for upload in uploads:
            response = await aws.s3.get_object(Bucket=names.bucket, Key=upload.key)
            async with response["Body"] as body:
                assert await body.read() == upload.data, upload.name


def _snapshot(home: Path) -> tuple[dict[str, str], set[str]]:
    """What the last snapshot holds: image id → status, and the object keys."""
    store = StateStore(home / "data")
    try:
        items = store.saved_items(Table.IMAGES)
        objects = set(store.saved_objects())
    except (OSError, ValueError, sqlite3.Error):
        return {}, set()
    finally:
        store.close()
    return {item["image_id"]["S"]: item["status"]["S"] for item in items}, objects


async def test_data_survives_clean_stop_and_kill_and_unfinished_images_resume(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"

    # 1. Process some photos, then stop cleanly.
    first = _start(home)
    try:
        kept = await upload_files(
            first.settings, [(f"kept-{n}.jpg", photo(n)) for n in range(6)], album_name="Kept"
        )
        before = await wait_terminal(first.settings, [u.image_id for u in kept], timeout=90)
        assert {r["status"] for r in before.values()} == {"PROCESSED"}
        renditions_before = await thumbnail_keys(first.settings)
    finally:
        assert first.stop(timeout=20) < 15
    assert first.process.returncode == 0

    # 2. Everything is back after a clean restart. One worker per service, so the one
    # thumbnailer paused below is the only one there is.
    second = _start(home, "--max-workers", "1")
    paused: list[int] = []
    try:
        after = await records(second.settings, [u.image_id for u in kept])
        for image_id, record in before.items():
            assert {f: after[image_id].get(f) for f in RESULT_FIELDS} == {
                f: record.get(f) for f in RESULT_FIELDS
            }
        await _originals_intact(second.settings, kept)
        renditions_after = await thumbnail_keys(second.settings)
        assert all(renditions_after[i] == renditions_before[i] for i in before)
        async with AwsClients(second.settings) as aws:
            catalog = Catalog(aws, ResourceNames.from_settings(second.settings))
            album = await catalog.get_album(str(before[kept[0].image_id]["album_id"]))
        assert album is not None and album.name == "Kept", album

        # Then kill -9 while some images are unfinished, once a snapshot holds them all. The
        # thumbnailer is paused (SIGSTOP) first, so they are: the stack processes 30 photos
        # faster than a snapshot comes round, and a fresh clone once saw every one finished.
        paused = service_pids(second.process.pid)["thumbnailer"]
        assert paused, "no thumbnailer to pause"
        for pid in paused:
            os.kill(pid, signal.SIGSTOP)
        pending = await upload_files(
            second.settings, [(f"cut-{n}.jpg", photo(50 + n)) for n in range(30)], album_name="Cut"
        )
        ids = {u.image_id for u in pending}
        keys = {u.key for u in pending}

        def snapshot_has_unfinished() -> dict[str, str] | None:
            statuses, objects = _snapshot(home)
            if ids <= set(statuses) and keys <= objects:
                unfinished = {i: s for i, s in statuses.items() if i in ids and s != "PROCESSED"}
                return unfinished or None
            return None

        unfinished = await wait_until(
            snapshot_has_unfinished, 60, "a snapshot with every new image, some unfinished"
        )
        services = [pid for pids in service_pids(second.process.pid).values() for pid in pids]
        second.process.kill()
        second.process.wait(timeout=10)
        # Its death signal (SIGTERM, from the kernel when `up` dies) waits for it to run again.
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
        await wait_until(
            lambda: not [pid for pid in services if alive(pid)], 20, "services to die with up"
        )
    finally:
        for pid in paused:
            if alive(pid):
                os.kill(pid, signal.SIGCONT)
        if second.process.poll() is None:
            second.stop(timeout=60)

    # 3. After the kill: everything the snapshot held is there, and the unfinished resume.
    third = _start(home)
    try:
        everything = [u.image_id for u in kept] + sorted(ids)
        final = await wait_terminal(third.settings, everything, timeout=120)
        assert {r["status"] for r in final.values()} == {"PROCESSED"}, final
        await _originals_intact(third.settings, kept + pending)
        executions = await executions_per_image(third.settings)
        # This endpoint is new: it ran exactly the images the kill left unfinished, once each.
        resumed = {i for i in everything if executions[i]}
        assert set(unfinished) <= resumed <= ids, (unfinished, resumed)
        assert all(executions[i] == 1 for i in resumed)
        renditions = await thumbnail_keys(third.settings)
        assert all(len(renditions.get(i, ())) == 2 for i in everything)
    finally:
        third.stop(timeout=60)
    print(
        f"\nRELIABILITY restart: kept_after_clean_stop={len(kept)} "
        f"uploaded_before_kill={len(pending)} unfinished_in_snapshot={len(unfinished)} "
        f"resumed={len(resumed)} lost=0 orphans=0 processed={len(final)}"
    )
