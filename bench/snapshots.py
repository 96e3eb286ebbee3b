"""What a snapshot of the local stack costs as the library grows.

`imgproc up` snapshots the stack every 2 s while anything is written, in the process (and under
the GIL) of the embedded endpoint. For each library size this loads a library straight into an
embedded endpoint in this process (image records and their search entries, `bench.search`'s
generator; four small objects per photo: the original and three renditions), then measures, as
CPU of this thread:

- `read all`: reading and converting every item and listing every object with its ETag, the
  least a snapshot that looks at everything pays (what every periodic snapshot paid before they
  became incremental);
- `first`: the first snapshot into an empty data directory: everything read, stored and every
  object's file written;
- `restart`: the first snapshot of a restarted `up` (once per start): everything read and every
  item stored again, the object files already there;
- `incremental`: a periodic snapshot after ten photos' worth of writes over HTTP (each photo: its
  record updated, two search entries, two renditions), the median of `--repeat` rounds.

    python -m bench.snapshots [--images 1000,5000] [--repeat 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import structlog

from bench.search import library, load
from imgproc_local.bootstrap import bootstrap
from imgproc_local.embedded_aws import EMBEDDED_ACCOUNT, start_embedded_aws
from imgproc_local.persistence import PERSISTED_TABLES, InProcessState, StateStore
from imgproc_shared.aws import AwsClients
from imgproc_shared.resources import ResourceNames, Table
from imgproc_shared.settings import Settings

OBJECTS_PER_IMAGE = 4
PHOTOS_PER_ROUND = 10


def _put_objects(settings: Settings, records: list[dict[str, Any]]) -> int:
    """Small objects straight into the bucket, as each photo's original and renditions."""
    from moto.s3.models import s3_backends

    bucket = ResourceNames.from_settings(settings).bucket
    backend = s3_backends[EMBEDDED_ACCOUNT]["aws"]
    for record in records:
        for n in range(OBJECTS_PER_IMAGE):
            key = f"renditions/{record['image_id']}/{n}.jpg"
            backend.put_object(bucket, key, f"{record['image_id']}:{n}".encode())
    return len(records) * OBJECTS_PER_IMAGE


def _read_all(state: InProcessState) -> int:
    """Every item converted and every object's ETag: what a whole-state snapshot reads."""
    count = sum(len(state.table_items(table)) for table in PERSISTED_TABLES)
    for _, version in state.objects():
        state.version_etag(version)
        count += 1
    return count


async def _round(aws: AwsClients, names: ResourceNames, records: list[dict[str, Any]]) -> None:
    """Ten photos' worth of writes, over HTTP as the services make them."""
    for record in records:
        image_id = record["image_id"]
        await aws.dynamodb.update_item(
            TableName=names.table(Table.IMAGES),
            Key={"image_id": {"S": image_id}},
            UpdateExpression="SET reruns = if_not_exists(reruns, :zero) + :one",
            ExpressionAttributeValues={":zero": {"N": "0"}, ":one": {"N": "1"}},
        )
        for n in range(2):
            await aws.dynamodb.put_item(
                TableName=names.table(Table.SEARCH),
                Item={"pk": {"S": f"bench#{image_id}"}, "sk": {"S": f"{n}"}, "n": {"N": "1"}},
            )
            await aws.s3.put_object(
                Bucket=names.bucket, Key=f"renditions/{image_id}/{n}.jpg", Body=uuid.uuid4().bytes
            )


async def _cpu(work: Any) -> tuple[float, Any]:
    began = time.thread_time()
    result = await work
    return (time.thread_time() - began) * 1000, result


async def measure(images: int, repeat: int) -> dict[str, Any]:
    server = start_embedded_aws()
    settings = Settings(
        endpoint_url=server.endpoint_url,
        resource_prefix=f"benchsnap{uuid.uuid4().hex[:6]}",
        home=Path(tempfile.gettempdir()) / "imgproc-bench-snapshots",
        wait_time_s=1,
    )
    async with AwsClients(settings) as aws:
        await bootstrap(aws, settings)
        names = ResourceNames.from_settings(settings)
        records = library(images)
        index_items = load(settings, records)
        objects = _put_objects(settings, records)
        state = InProcessState.find(settings)
        assert state is not None, "the endpoint runs in this process"

        began = time.thread_time()
        read = _read_all(state)
        read_all_ms = (time.thread_time() - began) * 1000

        with tempfile.TemporaryDirectory() as data_dir:
            first_ms, _ = await _cpu(
                StateStore(Path(data_dir)).snapshot(aws, settings, in_process=True)
            )
            # A restarted `up`: the database and the object files are there already.
            store = StateStore(Path(data_dir))
            restart_ms, _ = await _cpu(store.snapshot(aws, settings, in_process=True))
            incremental: list[float] = []
            written: list[dict[str, int]] = []
            for n in range(repeat):
                batch = records[n * PHOTOS_PER_ROUND : (n + 1) * PHOTOS_PER_ROUND]
                await _round(aws, names, batch)
                ms, _ = await _cpu(store.snapshot(aws, settings, in_process=True))
                incremental.append(ms)
                written.append(dict(store.last_written))
            store.close()
    server.stop()
    median = statistics.median(incremental)
    return {
        "images": images,
        "items": images + index_items,
        "objects": objects,
        "read": read,
        "read_all_ms": round(read_all_ms, 1),
        "first_ms": round(first_ms, 1),
        "restart_ms": round(restart_ms, 1),
        "incremental_ms": round(median, 2),
        "read_all_over_incremental": round(read_all_ms / median, 1),
        "incremental_written": written[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.snapshots", description=__doc__)
    parser.add_argument("--images", default="1000,5000", help="library sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=5, help="incremental rounds per size")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    sizes = [int(size) for size in args.images.split(",")]
    rows = [asyncio.run(measure(size, args.repeat)) for size in sizes]
    if args.json:
        print(json.dumps({"sizes": rows}, indent=2))
        return 0
    print("Snapshot CPU (ms of one thread) by library size")
    print(
        f"{'photos':>7} {'items':>8} {'objects':>8} {'read all':>9} {'first':>9} "
        f"{'restart':>9} {'incremental':>12} {'read all / incremental':>23}"
    )
    for row in rows:
        print(
            f"{row['images']:>7} {row['items']:>8} {row['objects']:>8} {row['read_all_ms']:>9} "
            f"{row['first_ms']:>9} {row['restart_ms']:>9} {row['incremental_ms']:>12} "
            f"{row['read_all_over_incremental']:>23}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
