"""Search (`GET /api/images`, `GET /api/labels`, `imgproc search`, `imgproc reindex`) against
the real moto server: the index follows the `stored` announcements (processed, re-tagged and
deleted images), every filter alone and combined, pagination, and owners kept apart.

Image records are written straight into the Images table and announced on `stored` as the
workflow announces them (the workflow itself is tested elsewhere); the API's own indexer,
running in its lifespan, consumes them from its queue.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from helpers import eventually

from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.catalog import to_item
from imgproc_shared.duplicates import ExactDuplicates
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import ResourceNames, Table
from imgproc_shared.search import SearchFilter, SearchIndex
from imgproc_shared.settings import Settings

from api_harness import ApiHarness, bootstrapped_stack, running_api

pytestmark = pytest.mark.asyncio(loop_scope="module")
IMGPROC = Path(sys.executable).parent / "imgproc"
DOG = ("Dog", ["Mammal", "Animal"])
CAT = ("Cat", ["Mammal", "Animal"])
CAR = ("Car", ["Vehicle"])
ZURICH, BERLIN = (47.3769, 8.5417), (52.52, 13.405)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def api(embedded_aws: EmbeddedAws) -> AsyncIterator[ApiHarness]:
    async with bootstrapped_stack(embedded_aws.endpoint_url) as stack:
        async with running_api(stack) as harness:
            yield harness


def record(
    owner: str,
    album_id: str,
    taken_at: str | None,
    labels: list[tuple[str, list[str]]],
    *,
    camera: tuple[str, str] | None = ("PENTAX", "PENTAX K-1"),
    place: tuple[float, float] | None = None,
    image_format: str = "JPEG",
    status: str = "PROCESSED",
) -> dict[str, Any]:
    image_id = uuid.uuid4().hex
    metadata = {
        "format": image_format,
        "width": 64,
        "height": 48,
        "mode": "RGB",
        "bytes": 4096,
        "sha256": image_id * 2,
        "taken_at": taken_at,
        "exif": {"make": camera[0], "model": camera[1]} if camera else {},
        "gps": {"latitude": place[0], "longitude": place[1]} if place else None,
    }
    tags = {
        "labels": [{"name": n, "confidence": 90.0, "parents": p} for n, p in labels],
        "backend": "test",
    }
    return {
        "image_id": image_id,
        "owner": owner,
        "album_id": album_id,
        "file_name": f"{image_id[:6]}.jpg",
        "key": f"incoming/{owner}/{album_id}/{image_id}.jpg",
        "status": status,
        "uploaded_at": "2020-01-01T09:00:00.000Z",
        "metadata": json.dumps(metadata),
        "tags": json.dumps(tags),
    }


async def store(api: ApiHarness, rec: dict[str, Any], *, announce: bool = True) -> None:
    """Write the record as the workflow leaves it and announce it on `stored`."""
    names = ResourceNames.from_settings(api.settings)
    rec.setdefault("bucket", names.bucket)  # every record names its bucket
    await api.aws.dynamodb.put_item(TableName=names.table(Table.IMAGES), Item=to_item(rec))
    if announce:
        event = {k: rec[k] for k in ("image_id", "album_id", "owner", "status")}
        await api.aws.sns.publish(
            TopicArn=api.outputs["topics"]["stored"], Message=json.dumps(event)
        )


async def search(api: ApiHarness, headers: dict[str, str], **params: Any) -> list[str]:
    """Every image id the search finds, walking the pages."""
    found: list[str] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await api.client.get("/api/images", params=query, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        found.extend(item["image_id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return found


async def labels(api: ApiHarness, headers: dict[str, str], **params: Any) -> dict[str, int]:
    response = await api.client.get("/api/labels", params=params, headers=headers)
    assert response.status_code == 200, response.text
    return {entry["name"]: entry["count"] for entry in response.json()["labels"]}


async def test_the_index_follows_processed_retagged_and_deleted_images(api: ApiHarness) -> None:
    headers = await api.sign_in("search-follow")
    album = (await api.create_album(headers, "follow"))["album_id"]
    dog = record("search-follow", album, "2024-07-14T10:00:00+02:00", [DOG])
    await store(api, dog)

    async def found(**params: Any) -> list[str]:
        return await search(api, headers, **params)

    assert await eventually(lambda: found(label="animal"), timeout=20, what="indexing")
    assert await found(label="Dog") == [dog["image_id"]]
    assert await labels(api, headers) == {"Dog": 1, "Mammal": 1, "Animal": 1}

    # A re-tag announces again: the entries are replaced, and the counts follow.
    await store(
        api,
        {
            **dog,
            "tags": json.dumps(
                {
                    "labels": [{"name": "Car", "parents": ["Vehicle"], "confidence": 80.0}],
                    "backend": "test",
                }
            ),
        },
    )
    assert await eventually(lambda: found(label="vehicle"), timeout=20, what="the re-tag")
    assert await found(label="dog") == [] and await found(label="animal") == []
    assert await labels(api, headers) == {"Car": 1, "Vehicle": 1}

    # Deleting through the API removes the entries at once.
    response = await api.client.delete(f"/api/images/{dog['image_id']}", headers=headers)
    assert response.status_code == 204
    assert await found() == [] and await labels(api, headers) == {}

    # An announcement for an image that no longer exists drops whatever it has left.
    gone = record("search-follow", album, "2024-07-15T10:00:00", [CAT])
    index = SearchIndex(api.aws, ResourceNames.from_settings(api.settings))
    await index.index_record(
        ImageRecord.model_validate(
            {**gone, "metadata": json.loads(gone["metadata"]), "tags": json.loads(gone["tags"])}
        )
    )

    async def indexed() -> list[str]:
        page = await index.search("search-follow", SearchFilter(), limit=10)
        return [entry.image_id for entry in page.entries]

    # (The API leaves out entries without a record; the index itself still has them.)
    assert await indexed() == [gone["image_id"]]
    event = {k: gone[k] for k in ("image_id", "album_id", "owner", "status")}
    await api.aws.sns.publish(TopicArn=api.outputs["topics"]["stored"], Message=json.dumps(event))
    assert await eventually(lambda: _empty(indexed()), timeout=20, what="the removal")

    # Deleting an album removes its images' entries.
    kept = record("search-follow", album, "2023-01-01T08:00:00", [CAT])
    await store(api, kept)
    assert await eventually(lambda: found(label="cat"), timeout=20, what="indexing")
    assert (await api.client.delete(f"/api/albums/{album}", headers=headers)).status_code == 204
    assert await found() == [] and await labels(api, headers) == {}


async def test_indexing_an_image_deleted_meanwhile_leaves_no_entries(api: ApiHarness) -> None:
    """The indexer's writes can land after the delete's own removal: it checks afterwards."""
    headers = await api.sign_in("search-race")
    album = (await api.create_album(headers, "race"))["album_id"]
    index = SearchIndex(api.aws, ResourceNames.from_settings(api.settings))

    def image(rec: dict[str, Any]) -> ImageRecord:
        parsed = {"metadata": json.loads(rec["metadata"]), "tags": json.loads(rec["tags"])}
        return ImageRecord.model_validate({**rec, **parsed})

    async def indexed() -> set[str]:
        page = await index.search("search-race", SearchFilter(), limit=10)
        return {entry.image_id for entry in page.entries}

    kept = record("search-race", album, "2024-07-14T10:00:00", [DOG])
    await store(api, kept, announce=False)
    deleted = record("search-race", album, "2024-07-15T10:00:00", [CAT])  # no record: deleted
    await index.index_unless_deleted(image(kept))
    await index.index_unless_deleted(image(deleted))
    assert await indexed() == {kept["image_id"]}


async def _empty(pending: Any) -> bool:
    return not await pending


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def library(api: ApiHarness) -> dict[str, Any]:
    """A small library of one owner over two albums, and a stranger's look-alikes."""
    owner = "search-owner"
    headers = await api.sign_in(owner)
    first = (await api.create_album(headers, "trips"))["album_id"]
    second = (await api.create_album(headers, "home"))["album_id"]
    spec = [
        (first, "2021-03-02T10:00:00", [DOG], ("Canon", "Canon EOS R6"), ZURICH, "JPEG"),
        (first, "2021-03-02T10:00:00", [CAT], ("Canon", "Canon EOS R6"), ZURICH, "JPEG"),
        (first, "2021-07-20T18:30:00+02:00", [DOG, CAR], ("PENTAX", "PENTAX K-1"), BERLIN, "HEIF"),
        (first, "2022-12-31T23:59:59", [CAR], ("PENTAX", "PENTAX K-1"), None, "JPEG"),
        (second, "2023-01-01T00:00:00", [CAT], ("Apple", "iPhone 13"), (47.40, 8.50), "PNG"),
        (second, None, [DOG], None, ZURICH, "JPEG"),  # no capture time: the upload time counts
        (second, "2024-05-05T05:05:05", [], ("Apple", "iPhone 15"), BERLIN, "JPEG"),
        (second, "2024-05-06T12:00:00", [DOG, CAT], ("Canon", "Canon EOS R6"), ZURICH, "JPEG"),
    ]
    records = [
        record(owner, album, taken, tags, camera=camera, place=place, image_format=fmt)
        for album, taken, tags, camera, place, fmt in spec
    ]
    records.append(record(owner, second, "2024-06-01T00:00:00", [DOG], status="FAILED"))
    # A stranger with the same labels, cameras and places: never in the owner's answers.
    stranger = [
        record("search-stranger", "strangeralbum", "2022-01-01T00:00:00", [DOG], place=ZURICH)
    ]
    index = SearchIndex(api.aws, ResourceNames.from_settings(api.settings))
    for rec in records + stranger:
        await store(api, rec, announce=False)
        await index.index_record(
            ImageRecord.model_validate(
                {**rec, "metadata": json.loads(rec["metadata"]), "tags": json.loads(rec["tags"])}
            )
        )
    ids = [r["image_id"] for r in records]
    return {"headers": headers, "ids": ids, "albums": (first, second), "stranger": stranger[0]}


def pick(ids: list[str], *positions: int) -> list[str]:
    return [ids[p] for p in positions]


async def test_every_filter_alone_and_combined(api: ApiHarness, library: dict[str, Any]) -> None:
    headers, ids = library["headers"], library["ids"]
    first, second = library["albums"]
    # Newest capture first; equal times by image id, newest first too.
    same_time = sorted(pick(ids, 0, 1), reverse=True)
    everything = [ids[8], ids[7], ids[6], ids[4], ids[3], ids[2], *same_time, ids[5]]
    assert await search(api, headers) == everything

    async def check(expected: list[str], **params: Any) -> None:
        wanted = [i for i in everything if i in expected]
        assert await search(api, headers, **params) == wanted, params

    await check(pick(ids, 0, 2, 5, 7, 8), label="dog")
    await check(pick(ids, 0, 1, 2, 4, 5, 7, 8), label="ANIMAL")  # a parent, any case
    await check(pick(ids, 2), label=["dog", "car"])
    await check(pick(ids, 7), label=["dog", "cat"])
    await check(pick(ids, 2, 3), **{"from": "2021-07-01", "to": "2022-12-31"})
    await check(pick(ids, 3, 4), **{"from": "2022-12-31T23:59:59", "to": "2023-01-01"})
    await check(pick(ids, 0, 1, 7), camera="eos")
    await check(pick(ids, 4, 6), camera="IPHONE")
    await check(pick(ids, 4, 5, 6, 7, 8), album=second)
    await check(pick(ids, 2), format="heif")
    await check(pick(ids, 8), status="failed")
    await check(pick(ids, 0, 1, 4, 5, 7), near=f"{ZURICH[0]},{ZURICH[1]},10")
    await check(pick(ids, 0, 1, 5, 7), near=f"{ZURICH[0]},{ZURICH[1]},1")
    await check(pick(ids, 2, 6), near=f"{BERLIN[0]},{BERLIN[1]},300")
    # Combined: label, date range, camera and place together.
    await check(
        pick(ids, 7),
        label="dog",
        camera="canon",
        near=f"{ZURICH[0]},{ZURICH[1]},5",
        **{"from": "2022-01-01"},
    )
    await check(pick(ids, 0), label="dog", album=first, camera="canon", format="JPEG")
    await check([], label="zebra")
    # Facets over the filter.
    assert await labels(api, headers, album=first) == {
        "Dog": 2,
        "Mammal": 3,
        "Animal": 3,
        "Cat": 1,
        "Car": 2,
        "Vehicle": 2,
    }
    assert await labels(api, headers, prefix="ma") == {"Mammal": 7}
    assert await labels(api, headers, camera="pentax", prefix="V") == {"Vehicle": 2}


async def test_pages_have_no_gaps_or_repeats(api: ApiHarness, library: dict[str, Any]) -> None:
    headers = library["headers"]
    whole = await search(api, headers)
    for limit in (1, 2, 3, 8, 9):
        assert await search(api, headers, limit=limit) == whole, limit
    dogs = await search(api, headers, label="animal")
    assert await search(api, headers, label="animal", limit=2) == dogs
    # Full last page: no cursor to an empty page.
    response = await api.client.get("/api/images", params={"limit": len(whole)}, headers=headers)
    assert response.json()["next_cursor"] is None


async def test_another_owners_images_never_appear(api: ApiHarness, library: dict[str, Any]) -> None:
    stranger = library["stranger"]
    intruder = await api.sign_in("search-intruder")
    assert await search(api, intruder) == [] and await labels(api, intruder) == {}
    owner_ids = await search(
        api, library["headers"], label="dog", near=f"{ZURICH[0]},{ZURICH[1]},10"
    )
    assert stranger["image_id"] not in owner_ids
    # The owner's album id and a cursor taken from the owner's pages show the intruder nothing.
    page = (
        await api.client.get("/api/images", params={"limit": 1}, headers=library["headers"])
    ).json()
    response = await api.client.get(
        "/api/images",
        params={"album": library["albums"][0], "cursor": page["next_cursor"]},
        headers=intruder,
    )
    assert response.status_code == 200 and response.json()["items"] == []


async def test_a_request_reads_at_most_one_page_beyond_what_it_returns(
    api: ApiHarness,
) -> None:
    """A filter that rejects what its partition holds ends the page short, even empty, with a
    cursor; following the cursors finds every match once."""
    owner = "search-bounded"
    headers = await api.sign_in(owner)
    album = (await api.create_album(headers, "bounded"))["album_id"]
    leica = ("Leica", "Leica Q2")
    # The camera's partition (3) drives `dog + leica`; its two newest entries are cars.
    spec = [
        ("2024-05-06T10:00:00", [CAR], leica),
        ("2024-05-05T10:00:00", [CAR], leica),
        ("2024-05-04T10:00:00", [DOG], leica),
        *[(f"2024-04-0{day}T10:00:00", [DOG], None) for day in range(1, 5)],
    ]
    records = [record(owner, album, taken, tags, camera=camera) for taken, tags, camera in spec]
    index = SearchIndex(api.aws, ResourceNames.from_settings(api.settings))
    for rec in records:
        await store(api, rec, announce=False)
        await index.index_record(
            ImageRecord.model_validate(
                {**rec, "metadata": json.loads(rec["metadata"]), "tags": json.loads(rec["tags"])}
            )
        )
    flt = SearchFilter(labels=("dog",), camera="leica")
    for limit in (1, 2, 3):
        after, walked, pages = None, [], []
        while True:
            page = await index.search(owner, flt, limit=limit, after=after)
            assert page.stats.items <= len(page.entries) + limit + 1, (limit, page.stats)
            walked += [entry.image_id for entry in page.entries]
            pages.append(len(page.entries))
            if page.next_after is None:
                break
            after = page.next_after
        assert walked == [records[2]["image_id"]], limit
        if limit == 1:
            assert pages == [0, 1]  # an empty page with a cursor, then the match
    first = await api.client.get(
        "/api/images", params={"label": "dog", "camera": "leica", "limit": 1}, headers=headers
    )
    assert first.json()["items"] == [] and first.json()["next_cursor"]
    assert await search(api, headers, label="dog", camera="leica", limit=1) == [
        records[2]["image_id"]
    ]
    dogs_newest_first = [records[2], *reversed(records[3:])]
    assert await search(api, headers, label="dog", limit=2) == [
        r["image_id"] for r in dogs_newest_first
    ]


async def test_a_recorded_duplicate_is_indexed_at_once(api: ApiHarness) -> None:
    """A `DUPLICATE` has no workflow to announce it on `stored`: its recorder indexes it."""
    owner = "search-duplicates"
    headers = await api.sign_in(owner)
    album = (await api.create_album(headers, "dups"))["album_id"]
    names = ResourceNames.from_settings(api.settings)
    data = uuid.uuid4().bytes * 64
    images = []
    for taken in ("2024-02-01T10:00:00", "2024-02-02T10:00:00"):
        rec = {**record(owner, album, taken, [DOG]), "status": "PROCESSING"}
        await api.aws.s3.put_object(Bucket=names.bucket, Key=rec["key"], Body=data)
        await store(api, rec, announce=False)
        images.append(rec)
    duplicates = ExactDuplicates(api.aws, names)
    decisions = [
        await duplicates.recorded_as_duplicate(
            image_id=rec["image_id"], bucket=names.bucket, key=rec["key"], owner=owner
        )
        for rec in images
    ]
    assert decisions == [False, True]
    # No announcement and no reindex: found at once.
    assert await search(api, headers) == [images[1]["image_id"]]
    assert await search(api, headers, status="duplicate") == [images[1]["image_id"]]


async def test_a_duplicate_is_found_by_its_originals_labels_camera_and_place(
    api: ApiHarness,
) -> None:
    """A `DUPLICATE` in another album, recorded while its original is still processing, is
    found by the original's labels, camera and place once the original is stored, with its own
    album and status; `imgproc reindex` writes the same entries; deleting the original takes
    the promoted copy out until it is processed."""
    owner = "search-duplicate-labels"
    headers = await api.sign_in(owner)
    first, second = [(await api.create_album(headers, n))["album_id"] for n in ("a", "b")]
    names = ResourceNames.from_settings(api.settings)
    data = uuid.uuid4().bytes * 64
    original = {
        **record(owner, first, "2023-05-06T07:08:09", [], place=ZURICH),
        "status": "PROCESSING",
    }
    copy = {**record(owner, second, None, []), "status": "PROCESSING"}
    del copy["metadata"], copy["tags"]  # the starter records neither for an upload
    duplicates = ExactDuplicates(api.aws, names)
    for rec in (original, copy):
        await api.aws.s3.put_object(Bucket=names.bucket, Key=rec["key"], Body=data)
        await store(api, rec, announce=False)
        await duplicates.recorded_as_duplicate(
            image_id=rec["image_id"], bucket=names.bucket, key=rec["key"], owner=owner
        )
    copy_id = copy["image_id"]
    assert await search(api, headers, status="DUPLICATE") == [copy_id]
    assert await search(api, headers, label="Dog") == []  # the original is not labelled yet

    # The original stored with its labels (the claim left its hash on it): its announcement
    # re-indexes its duplicate.
    labelled = record(owner, first, None, [DOG])["tags"]
    sha256 = hashlib.sha256(data).hexdigest()
    processed = {"status": "PROCESSED", "tags": labelled, "content_sha256": sha256}
    await store(api, {**original, **processed})

    async def copy_found() -> bool:
        return await search(api, headers, label="Dog", album=second) == [copy_id]

    assert await eventually(copy_found, timeout=20, what="the duplicate re-indexed")
    both = sorted([original["image_id"], copy_id])
    expected = {
        "label": (dict(label="Animal"), both),
        "camera": (dict(camera="pentax", album=second), [copy_id]),
        "place": (dict(near=f"{ZURICH[0]},{ZURICH[1]},5", status="DUPLICATE"), [copy_id]),
        "date": (dict(**{"from": "2023-05-06", "to": "2023-05-06"}, label="dog"), both),
        "album": (dict(album=first, label="Mammal"), [original["image_id"]]),
    }
    for what, (params, ids) in expected.items():
        assert sorted(await search(api, headers, **params)) == ids, what
    assert await labels(api, headers, album=second) == {"Dog": 1, "Mammal": 1, "Animal": 1}

    # Rebuilt from the images table: the same entries.
    index = SearchIndex(api.aws, names)
    manifest_key = {"pk": {"S": f"image#{copy_id}"}, "sk": {"S": "manifest"}}

    async def copy_keys() -> Any:
        item = await api.aws.dynamodb.get_item(TableName=index.table, Key=manifest_key)
        return json.loads(item["Item"]["keys"]["S"]) if "Item" in item else None

    keys = await copy_keys()
    assert any(pk == f"{owner}#label#dog#2023" for pk, _ in keys), keys
    for image_id in both:
        await index.remove_image(owner, image_id)
    assert await search(api, headers) == []
    result = _cli(api.settings, "reindex", "--user", owner)
    assert result.returncode == 0, result.stderr
    assert await copy_keys() == keys
    for what, (params, ids) in expected.items():
        assert sorted(await search(api, headers, **params)) == ids, what

    # The original deleted: the copy is promoted (UPLOADING again) and leaves the index until
    # it is processed as an original.
    response = await api.client.delete(f"/api/images/{original['image_id']}", headers=headers)
    assert response.status_code == 204, response.text
    assert await search(api, headers) == []


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"from": "yesterday"}, "from"),
        ({"from": "2024-02-30"}, "from"),
        ({"from": "2024-05-01", "to": "2024-04-01"}, "from"),
        ({"near": "47.3,8.5"}, "near"),
        ({"near": "95,8.5,10"}, "near"),
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"cursor": "not-ours"}, "cursor"),
        ({"album": "../x"}, "album"),
    ],
)
async def test_bad_parameters_answer_400_naming_them(
    api: ApiHarness, library: dict[str, Any], params: dict[str, str], parameter: str
) -> None:
    for path in ("/api/images", "/api/labels"):
        if path == "/api/labels" and parameter == "cursor":
            continue
        response = await api.client.get(path, params=params, headers=library["headers"])
        assert response.status_code == 400, (path, response.text)
        body = response.json()
        assert body["code"] in ("invalid_parameter", "invalid_cursor"), body
        assert parameter in body["message"], body


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPROC_")}
    env.update(
        IMGPROC_ENDPOINT_URL=str(settings.endpoint_url),
        IMGPROC_RESOURCE_PREFIX=settings.resource_prefix,
        IMGPROC_HOME=str(settings.home),
    )
    return subprocess.run(
        [str(IMGPROC), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


async def test_cli_search_prints_status_json_and_reindex_rebuilds(
    api: ApiHarness, library: dict[str, Any]
) -> None:
    ids = library["ids"]
    result = _cli(
        api.settings,
        "search",
        "--user",
        "search-owner",
        "--label",
        "Cat",
        "--camera",
        "canon",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["image_id"] for line in lines] == [ids[7], ids[1]]
    status = _cli(api.settings, "status", ids[7], "--json")
    assert json.loads(status.stdout).keys() == lines[0].keys()
    bad = _cli(api.settings, "search", "--near", "1,2")
    assert bad.returncode == 2 and "--near" in bad.stderr

    # A stack older than the index: its entries gone, `reindex` rebuilds them (twice: the same).
    names = ResourceNames.from_settings(api.settings)
    table = names.table(Table.SEARCH)
    before = await search(api, library["headers"])
    scan = await api.aws.dynamodb.scan(TableName=table, ProjectionExpression="pk, sk")
    for item in scan["Items"]:
        await api.aws.dynamodb.delete_item(TableName=table, Key=item)
    assert await search(api, library["headers"]) == []
    for _ in range(2):
        result = _cli(api.settings, "reindex", "--user", "search-owner")
        assert result.returncode == 0, result.stderr
        assert "reindexed 9 of 9" in result.stdout, result.stdout
        assert await search(api, library["headers"]) == before
        assert (await labels(api, library["headers"]))["Dog"] == 5
