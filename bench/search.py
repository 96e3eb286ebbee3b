"""Search latency and reads over a 20,000-photo library, through the status API.

Loads a library straight into the tables of an embedded endpoint started in this process (image
records into Images, their entries through `SearchIndex.bulk_load`; no workflow): labels drawn
from the tagger's label vocabulary (with their parents), capture times over six years in bursts,
ten cameras, places around five cities, a few formats and statuses, forty albums, and a second
owner whose photos must never show. Then a real status API app serves it on a socket, and each
query kind is asked `--repeat` times with varied values:

- latency: p50/p95 of `GET /api/images` (a full page of ImageOut, presigned URLs included), and
  of `GET /api/labels` for the facets;
- reads: the same search through `SearchIndex` directly counts the entries it read, the queries
  it sent and the read units they cost on DynamoDB (eventually consistent, 4 KB units; moto
  reports a fixed figure for ReturnConsumedCapacity, so the units are computed from the sizes of
  the items read). "excess" is entries read beyond those returned, against the one page (51
  entries: the page and the look-ahead) the target allows;
- a request reads at most that much, so a narrow search may answer a short page with a cursor:
  "fill" is the time (p95) and the requests a client takes to fill the page by following it.

    python -m bench.search [--images N] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import sys
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
import uvicorn

from imgproc_local.bootstrap import bootstrap
from imgproc_local.embedded_aws import EMBEDDED_ACCOUNT, start_embedded_aws
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import to_item
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import ResourceNames, Table
from imgproc_shared.search import (
    SearchFilter,
    SearchIndex,
    bulk_items,
    parse_near,
    parse_time_bound,
    summarize,
)
from imgproc_shared.settings import Settings
from imgproc_status_api.app import create_app
from imgproc_status_api.auth import LocalTokens
from imgproc_status_api.config import ApiSettings

OWNER = "bench-owner"
OTHER_OWNER = "bench-other"
SECRET = "bench-search-signing-secret-0123456789abcdef"
PAGE = 50
TARGET_SINGLE_P95_MS = 150.0
TARGET_COMBINED_P95_MS = 300.0
CAMERAS = (
    ("Canon", "Canon EOS R6"),
    ("Canon", "Canon PowerShot G7 X"),
    ("NIKON CORPORATION", "NIKON Z 6_2"),
    ("SONY", "ILCE-7M3"),
    ("FUJIFILM", "X-T4"),
    ("PENTAX", "PENTAX K-1"),
    ("Apple", "iPhone 13 Pro"),
    ("Apple", "iPhone 15"),
    ("samsung", "SM-S911B"),
    ("Google", "Pixel 7"),
)
CITIES = {
    "zurich": (47.3769, 8.5417),
    "berlin": (52.52, 13.405),
    "lisbon": (38.7223, -9.1393),
    "new-york": (40.7128, -74.006),
    "tokyo": (35.6762, 139.6503),
}
FORMATS = (("JPEG", 0.8), ("HEIF", 0.1), ("PNG", 0.05), ("WEBP", 0.05))
STATUSES = (("PROCESSED", 0.95), ("FAILED", 0.03), ("REJECTED", 0.02))


def vocabulary() -> list[tuple[str, list[str]]]:
    """(label, parents) for every class the tagger can name."""
    from imgproc_tagger.labels import default_label_map

    label_map = default_label_map()
    return [(name, label_map.parents.get(name, [])) for name in label_map.names]


def library(count: int, seed: int = 14) -> list[dict[str, Any]]:
    """Image records as the workflow leaves them (the parts search reads, renditions too)."""
    rng = random.Random(seed)
    labels = vocabulary()
    rng.shuffle(labels)
    # A few subjects dominate a library (Zipf-like): weight 1/rank.
    weights = [1.0 / (rank + 1) for rank in range(len(labels))]
    albums = [uuid.UUID(int=rng.getrandbits(128)).hex for _ in range(40)]
    start = datetime(2019, 1, 1)
    records = []
    burst_start = start
    for i in range(count):
        if i % 50 == 0:  # photos come in bursts: a trip, a weekend
            burst_start = start + timedelta(days=rng.uniform(0, 6 * 365))
        taken = burst_start + timedelta(hours=rng.uniform(0, 72))
        owner = OTHER_OWNER if i % 10 == 9 else OWNER
        chosen = {name: parents for name, parents in rng.choices(labels, weights, k=3)}
        make, model = CAMERAS[min(int(rng.expovariate(0.4)), len(CAMERAS) - 1)]
        city = rng.choice(list(CITIES.values()))
        gps = None
        if rng.random() < 0.7:
            gps = {
                "latitude": round(city[0] + rng.gauss(0, 0.08), 6),
                "longitude": round(city[1] + rng.gauss(0, 0.12), 6),
            }
        image_format = rng.choices([f for f, _ in FORMATS], [w for _, w in FORMATS])[0]
        status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
        image_id = f"b{i:06d}{rng.getrandbits(32):08x}"
        records.append(
            {
                "image_id": image_id,
                "owner": owner,
                "album_id": albums[i // 50 % len(albums)],
                "file_name": f"IMG_{i:05d}.JPG",
                "bucket": "bench-images",
                "key": f"incoming/{owner}/{image_id}.jpg",
                "status": status,
                "uploaded_at": (taken + timedelta(days=2)).isoformat() + ".000Z",
                "metadata": {
                    "format": image_format,
                    "width": 4000,
                    "height": 3000,
                    "mode": "RGB",
                    "bytes": 4_000_000,
                    "sha256": f"{i:064x}",
                    "taken_at": taken.replace(microsecond=0).isoformat(),
                    "exif": {"make": make, "model": model},
                    "gps": gps,
                },
                "tags": {
                    "labels": [
                        {"name": name, "confidence": 80.0, "parents": parents}
                        for name, parents in chosen.items()
                    ],
                    "backend": "bench",
                },
                "thumbnails": {
                    "renditions": [
                        {
                            "name": name,
                            "key": f"thumbnails/{image_id}/{name}.jpg",
                            "width": size,
                            "height": size * 3 // 4,
                            "format": "JPEG",
                            "bytes": size * 40,
                        }
                        for name, size in (("thumbnail", 256), ("preview", 1280))
                    ]
                },
            }
        )
    return records


def _stored(record: dict[str, Any]) -> dict[str, Any]:
    """The record as the Images table holds it (JSON attributes as strings)."""
    stored = dict(record)
    for name in ("metadata", "tags", "thumbnails"):
        stored[name] = json.dumps(record[name], separators=(",", ":"))
    return stored


def load(settings: Settings, records: list[dict[str, Any]]) -> int:
    """Put the records and their index straight into the endpoint's tables (it runs in this
    process: no HTTP, so 20,000 images load in seconds). The index items are the ones
    `SearchIndex` writes (`bulk_items`). Returns the index items written."""
    from moto.dynamodb.models import dynamodb_backends

    names = ResourceNames.from_settings(settings)
    backend = dynamodb_backends[EMBEDDED_ACCOUNT][settings.region]
    images = backend.get_table(names.table(Table.IMAGES))
    for record in records:
        images.put_item(to_item(_stored(record)))
    search = backend.get_table(names.table(Table.SEARCH))
    summaries = (summarize(ImageRecord.model_validate(r)) for r in records)
    items = bulk_items(s for s in summaries if s is not None)
    for item in items:
        search.put_item(item)
    return len(items)


def query_kinds(
    records: list[dict[str, Any]], rng: random.Random
) -> dict[str, list[dict[str, Any]]]:
    """Per kind, the query parameters to time (values drawn from the library itself)."""
    mine = [r for r in records if r["owner"] == OWNER]
    label_counts: dict[str, int] = {}
    for record in mine:
        for label in record["tags"]["labels"]:
            label_counts[label["name"]] = label_counts.get(label["name"], 0) + 1
    ranked = sorted(label_counts, key=lambda n: -label_counts[n])
    common, rare = ranked[:20], ranked[len(ranked) // 2 :]
    albums = sorted({r["album_id"] for r in mine})
    months = [f"{y}-{m:02d}" for y in range(2019, 2025) for m in range(1, 13)]

    def month_range() -> dict[str, str]:
        month = rng.choice(months)
        return {"from": f"{month}-01", "to": f"{month}-28"}

    def near(km: float) -> str:
        lat, lon = rng.choice(list(CITIES.values()))
        return f"{lat},{lon},{km:g}"

    cameras = ["canon", "nikon z", "pentax", "iphone", "pixel", "x-t4", "ilce"]
    kinds: dict[str, Any] = {
        "everything": lambda: {},
        "label (common)": lambda: {"label": rng.choice(common)},
        "label (rare)": lambda: {"label": rng.choice(rare)},
        "label (parent: Animal)": lambda: {"label": "Animal"},
        "date (one month)": month_range,
        "camera": lambda: {"camera": rng.choice(cameras)},
        "album": lambda: {"album": rng.choice(albums)},
        "format (HEIF)": lambda: {"format": "HEIF"},
        "status (FAILED)": lambda: {"status": "FAILED"},
        "near (10 km)": lambda: {"near": near(10)},
        "near (300 km)": lambda: {"near": near(300)},
        "combined: label+date+camera": lambda: {
            "label": rng.choice(common[:5]),
            "from": f"{rng.choice(range(2019, 2024))}-01-01",
            "to": "2024-12-31",
            "camera": rng.choice(cameras[:3]),
        },
        "combined: label+near+date": lambda: {
            "label": "Animal",
            "near": near(25),
            "from": f"{rng.choice(range(2019, 2024))}-06-01",
        },
        "combined: camera+album+format": lambda: {
            "camera": "canon",
            "album": rng.choice(albums),
            "format": "JPEG",
        },
    }
    return {name: [make() for _ in range(64)] for name, make in kinds.items()}


def as_filter(params: dict[str, Any]) -> SearchFilter:
    return SearchFilter(
        labels=tuple([params["label"]] if "label" in params else []),
        taken_from=parse_time_bound("from", params["from"], end=False)
        if "from" in params
        else None,
        taken_to=parse_time_bound("to", params["to"], end=True) if "to" in params else None,
        camera=params.get("camera"),
        album_id=params.get("album"),
        format=params.get("format"),
        status=params.get("status"),
        near=parse_near(params["near"]) if "near" in params else None,
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


async def run(images: int, repeat: int) -> dict[str, Any]:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    server = start_embedded_aws()
    settings = Settings(
        endpoint_url=server.endpoint_url,
        resource_prefix=f"bench{uuid.uuid4().hex[:6]}",
        home=Path("/tmp") / "imgproc-bench-search",
        wait_time_s=1,
    )
    try:
        async with AwsClients(settings) as aws:
            await bootstrap(aws, settings)
            names = ResourceNames.from_settings(settings)
            records = library(images)
            started = time.monotonic()
            written = load(settings, records)
            load_s = time.monotonic() - started
            app = create_app(
                settings, run_starter=False, api_settings=ApiSettings(auth_secret=SECRET)
            )
            port = _free_port()
            api = uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
            )
            serving = asyncio.create_task(api.serve())
            while not api.started:
                if serving.done():
                    serving.result()
                await asyncio.sleep(0.05)
            token = LocalTokens(SECRET, ttl_s=3600).issue(OWNER)
            headers = {"Authorization": f"Bearer {token}"}
            index = SearchIndex(aws, names)
            rng = random.Random(7)
            results: dict[str, Any] = {}
            try:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=60
                ) as client:
                    for _ in range(3):  # warm up the app, the connection and the endpoint
                        await client.get("/api/images")
                    for kind, all_params in query_kinds(records, rng).items():
                        results[kind] = await measure(
                            client, index, all_params[:repeat], foreign=OTHER_OWNER
                        )
                    results["facets (unfiltered)"] = await measure_facets(client, [{}] * repeat)
                    results["facets (label Animal + year)"] = await measure_facets(
                        client,
                        [
                            {"label": "Animal", "from": f"{y}-01-01", "to": f"{y}-12-31"}
                            for y in rng.choices(range(2019, 2025), k=repeat)
                        ],
                    )
            finally:
                api.should_exit = True
                await asyncio.wait_for(serving, timeout=15)
    finally:
        server.stop()
    return {
        "images": images,
        "owner_images": sum(1 for r in records if r["owner"] == OWNER),
        "items_written": written,
        "load_s": round(load_s, 1),
        "repeat": repeat,
        "page": PAGE,
        "targets_ms": {"single_p95": TARGET_SINGLE_P95_MS, "combined_p95": TARGET_COMBINED_P95_MS},
        "kinds": results,
    }


async def measure(
    client: httpx.AsyncClient, index: SearchIndex, all_params: list[dict[str, Any]], foreign: str
) -> dict[str, Any]:
    latencies, index_ms, returned, read, units, queries, excess = [], [], [], [], [], [], []
    filled_ms, requests = [], []
    for params in all_params:
        started = time.perf_counter()
        response = await client.get("/api/images", params=params)
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
        body = response.json()
        items = body["items"]
        assert all(item["owner"] == OWNER for item in items), "another owner's image"
        assert foreign not in response.text
        # A short page with a cursor (reads are bounded): what a client does to fill the page.
        shown, cursor, sent = len(items), body["next_cursor"], 1
        while cursor and shown < PAGE:
            # A whole page each time: a request may read one page beyond what it returns.
            more = await client.get("/api/images", params={**params, "cursor": cursor})
            assert more.status_code == 200, more.text
            shown, cursor, sent = (
                shown + len(more.json()["items"]),
                more.json()["next_cursor"],
                sent + 1,
            )
        filled_ms.append((time.perf_counter() - started) * 1000)
        requests.append(sent)
        started = time.perf_counter()
        page = await index.search(OWNER, as_filter(params), limit=PAGE)
        index_ms.append((time.perf_counter() - started) * 1000)
        assert [e.image_id for e in page.entries] == [i["image_id"] for i in items]
        returned.append(len(items))
        read.append(page.stats.items)
        units.append(page.stats.read_units)
        queries.append(page.stats.queries)
        excess.append(page.stats.items - len(items))
    return {
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "index_p50_ms": round(statistics.median(index_ms), 1),
        "returned_mean": round(statistics.fmean(returned), 1),
        "read_mean": round(statistics.fmean(read), 1),
        "read_max": max(read),
        "excess_max": max(excess),
        "queries_mean": round(statistics.fmean(queries), 1),
        "read_units_mean": round(statistics.fmean(units), 1),
        "within_one_page": sum(1 for e in excess if e <= PAGE + 1) / len(excess),
        "filled_p95_ms": round(percentile(filled_ms, 0.95), 1),
        "requests_mean": round(statistics.fmean(requests), 2),
    }


async def measure_facets(
    client: httpx.AsyncClient, all_params: list[dict[str, Any]]
) -> dict[str, Any]:
    latencies = []
    for params in all_params:
        started = time.perf_counter()
        response = await client.get("/api/labels", params=params)
        latencies.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return {
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
    }


def print_table(report: dict[str, Any]) -> None:
    print(
        f"{report['images']} images ({report['owner_images']} of the searching owner), "
        f"{report['items_written']} index items, loaded in {report['load_s']} s; "
        f"{report['repeat']} queries per kind, pages of {report['page']}"
    )
    print(
        f"{'kind':32} {'p50 ms':>7} {'p95 ms':>7} {'index':>6} {'returned':>8} {'read':>6} "
        f"{'max':>5} {'queries':>7} {'RCU':>5} {'<=page':>6} {'fill p95':>8} {'reqs':>5}"
    )
    for kind, row in report["kinds"].items():
        if "read_mean" not in row:
            print(f"{kind:32} {row['p50_ms']:7.1f} {row['p95_ms']:7.1f}")
            continue
        print(
            f"{kind:32} {row['p50_ms']:7.1f} {row['p95_ms']:7.1f} {row['index_p50_ms']:6.1f} "
            f"{row['returned_mean']:8.1f} "
            f"{row['read_mean']:6.1f} {row['read_max']:5d} {row['queries_mean']:7.1f} "
            f"{row['read_units_mean']:5.1f} {row['within_one_page']:6.0%} "
            f"{row['filled_p95_ms']:8.1f} {row['requests_mean']:5.2f}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.search", description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20_000, help="library size (20000)")
    parser.add_argument("--repeat", type=int, default=20, help="queries per kind (20, max 64)")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    args = parser.parse_args(argv)
    if args.images < 20 or not 1 <= args.repeat <= 64:
        parser.error("--images at least 20, --repeat 1 to 64")
    report = asyncio.run(run(args.images, args.repeat))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
