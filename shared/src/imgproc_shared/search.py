"""The search index: one DynamoDB table that answers every search filter with `Query`s.

Items (all owner-scoped by the partition key; `T` is the capture time, `YYYY-MM-DDTHH:MM:SS`,
the camera's wall-clock `taken_at` or else the upload time):

- entries: `pk = {owner}#{kind}#{value}#{YYYY}`, `sk = {T}#{image_id}`, one per image and
  partition it belongs to: `all#`, `label#{name}` (each label and each of its parents),
  `album#{id}`, `format#{F}`, `status#{S}`, `camera#{make model}`, `geo2#`..`geo5#{geohash}`.
  Each carries the image's summary (album, format, status, camera, labels, place: one packed
  attribute `d`; time and id are the sort key), so the filters a query does not use as its key
  are checked on the entries it reads. Partitions are
  split by capture year: a date range is a key condition on the years it spans, and no single
  query has to step over a whole library (the embedded endpoint reads a partition in full).
- counters: `pk = {owner}#counts`, `sk = {kind}#{value}`: `n`, the images in that partition
  (kept with atomic ADDs), and `m`, the years that hold its entries. They pick the most
  selective partition for a search, list its years, and are the unfiltered label facets.
- manifests: `pk = image#{image_id}`, `sk = manifest`: the entries the image has now, with a
  version; indexing again writes only the difference, so counters stay exact when an
  announcement is delivered twice or a re-tag changes the labels.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import math
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog, from_item, to_item
from imgproc_shared.errors import error_code
from imgproc_shared.models import Exif, ImageStatus
from imgproc_shared.records import ImageRecord
from imgproc_shared.resources import ResourceNames, Table

SEARCH_HASH_KEY = "pk"
SEARCH_RANGE_KEY = "sk"
# Geohash precisions kept per geotagged image: cells of about 1250 x 625 km, 156 km, 39 x 20 km
# and 5 km.
GEO_PRECISIONS = (2, 3, 4, 5)
# A `near` search covers its box with at most this many cells (of each precision that fits,
# the one that reads least); a wider circle is checked on the entries another filter reads.
MAX_GEO_CELLS = 12
# A query for fewer entries than this, short of what the page needs, is left to the next call.
MIN_REFILL = 8
# A union's partitions each cost a query: weighed as this share of its images more (`plan`).
UNION_QUERY_COST = 0.25
# Facets of a filtered search count over at most this many entries.
FACET_READ_LIMIT = 1000
MAX_LABEL_ENTRIES = 40  # names (labels and parents) indexed per image: bounds one transaction
# Entries are bucketed by capture year (the time's first 4 characters).
BUCKET_CHARS = 4
_HIGH = "~"  # sorts after every image id character
_GEOHASH_ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
_SPACES = re.compile(r"\s+")
_CURSOR_POSITION = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d#[A-Za-z0-9_-]{1,64}")
# What a `DUPLICATE`'s entries take from its original (`as_shown`).
_SHOWN_ATTRIBUTES = ("image_id", "owner", "metadata", "tags")
TERMINAL_STATUSES = frozenset(s.value for s in ImageStatus if s.terminal) | {"DUPLICATE"}


# ---------- key building (pure) ----------


def capture_time(record: ImageRecord) -> str | None:
    """`YYYY-MM-DDTHH:MM:SS`: when the photo was taken, as its camera's clock read (the offset
    is dropped: "July" means the July the photographer saw), else when it was uploaded."""
    taken_at = record.metadata.taken_at if record.metadata else None
    for value in (taken_at, record.uploaded_at):
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed.replace(tzinfo=None).isoformat(timespec="seconds")
    return None


def normalise_text(value: str) -> str:
    """Case-folded, single-spaced, without `#` (the keys' separator)."""
    return _SPACES.sub(" ", value.replace("#", " ")).strip().casefold()


def camera_text(make: str | None, model: str | None) -> str | None:
    """ "Canon" + "Canon EOS 5D" → "canon eos 5d": the make once, then the model."""
    make_n = normalise_text(make or "")
    model_n = normalise_text(model or "")
    if make_n and model_n.startswith(make_n):
        make_n = ""
    text = f"{make_n} {model_n}".strip()
    return text or None


def geohash(latitude: float, longitude: float, precision: int) -> str:
    lat_range, lon_range = [-90.0, 90.0], [-180.0, 180.0]
    chars: list[str] = []
    bits, value, even = 0, 0, True
    while len(chars) < precision:
        target, span = (longitude, lon_range) if even else (latitude, lat_range)
        middle = (span[0] + span[1]) / 2
        value <<= 1
        if target >= middle:
            value |= 1
            span[0] = middle
        else:
            span[1] = middle
        even = not even
        bits += 1
        if bits == 5:
            chars.append(_GEOHASH_ALPHABET[value])
            bits, value = 0, 0
    return "".join(chars)


def cell_size_deg(precision: int) -> tuple[float, float]:
    """(latitude, longitude) degrees one geohash cell of `precision` spans."""
    total = 5 * precision
    lon_bits = (total + 1) // 2
    return 180.0 / 2 ** (total - lon_bits), 360.0 / 2**lon_bits


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0088 * math.asin(min(1.0, math.sqrt(a)))


def covering_cells(latitude: float, longitude: float, km: float, precision: int) -> set[str]:
    """The geohash cells of `precision` that cover the box around the circle."""
    dlat = km / 111.32
    dlon = km / max(1e-6, 111.32 * math.cos(math.radians(min(89.9, abs(latitude)))))
    south, north = max(-90.0, latitude - dlat), min(90.0, latitude + dlat)
    west, east = longitude - min(dlon, 180.0), longitude + min(dlon, 180.0)
    step_lat, step_lon = cell_size_deg(precision)
    cells: set[str] = set()
    lat = south
    while True:
        lon = west
        while True:
            wrapped = (lon + 180.0) % 360.0 - 180.0
            cells.add(geohash(min(lat, 89.999999), wrapped, precision))
            if lon >= east or len(cells) > 4 * MAX_GEO_CELLS:
                break
            lon = min(east, lon + step_lon)
        if lat >= north or len(cells) > 4 * MAX_GEO_CELLS:
            break
        lat = min(north, lat + step_lat)
    return cells


@dataclass(frozen=True)
class Summary:
    """What every entry of an image carries: enough to check any filter and to order."""

    image_id: str
    owner: str
    time: str
    album_id: str
    status: str
    format: str | None = None
    camera: str | None = None
    labels: tuple[str, ...] = ()
    latitude: float | None = None
    longitude: float | None = None

    @property
    def sort_key(self) -> str:
        return f"{self.time}#{self.image_id}"

    @property
    def bucket(self) -> str:
        return self.time[:BUCKET_CHARS]

    def partitions(self) -> dict[str, str]:
        """Logical partition (`kind#value`) → display name, for each partition it is in."""
        found: dict[str, str] = {"all#": "", f"album#{self.album_id}": self.album_id}
        found[f"status#{self.status.upper()}"] = self.status
        if self.format:
            found[f"format#{self.format.upper()}"] = self.format
        if self.camera:
            found[f"camera#{self.camera}"] = self.camera
        for name in self.labels:
            found.setdefault(f"label#{normalise_text(name)}", name)
        if self.latitude is not None and self.longitude is not None:
            for precision in GEO_PRECISIONS:
                found[f"geo{precision}#{geohash(self.latitude, self.longitude, precision)}"] = ""
        return found

    def attributes(self) -> dict[str, Any]:
        """The summary as one string attribute (the id and time are the sort key): an entry
        of three attributes costs far less to store, return and parse than one of eleven."""
        place = None if self.latitude is None else [round(self.latitude, 6)]
        if place is not None and self.longitude is not None:
            place.append(round(self.longitude, 6))
        packed = [self.album_id, self.status, self.format, self.camera, list(self.labels), place]
        return {"d": json.dumps(packed, separators=(",", ":"), ensure_ascii=False)}

    @classmethod
    def from_entry(cls, owner: str, entry: dict[str, Any]) -> Summary:
        if "d" not in entry:
            return cls._from_attributes(owner, entry)
        time, _, image_id = str(entry["sk"]).partition("#")
        album_id, status, image_format, camera, labels, place = json.loads(entry["d"])
        return cls(
            image_id=image_id,
            owner=owner,
            time=time,
            album_id=album_id,
            status=status,
            format=image_format,
            camera=camera,
            labels=tuple(labels),
            latitude=place[0] if place else None,
            longitude=place[1] if place else None,
        )

    @classmethod
    def _from_attributes(cls, owner: str, entry: dict[str, Any]) -> Summary:
        """An entry written before summaries were packed (`imgproc reindex` rewrites it)."""
        latitude, longitude = entry.get("la"), entry.get("lo")
        return cls(
            image_id=str(entry["id"]),
            owner=owner,
            time=str(entry["t"]),
            album_id=str(entry.get("a", "")),
            status=str(entry.get("s", "")),
            format=entry.get("f"),
            camera=entry.get("c"),
            labels=tuple(entry.get("l") or ()),
            latitude=None if latitude is None else float(latitude),
            longitude=None if longitude is None else float(longitude),
        )


def as_shown(record: ImageRecord, original: ImageRecord | None) -> ImageRecord:
    """A `DUPLICATE` as the user sees it (`views.image_view`): its original's metadata and
    labels, with its own id, owner, album, upload time and status."""
    if original is None or original.owner != record.owner:
        return record
    return record.model_copy(update={"metadata": original.metadata, "tags": original.tags})


def summarize(record: ImageRecord, original: ImageRecord | None = None) -> Summary | None:
    """The summary of an image record; None for an image not to be indexed (not finished).
    `original`: the record a `DUPLICATE` duplicates, whose metadata and labels it is found by."""
    record = as_shown(record, original)
    status = str(record.status or "")
    time = capture_time(record)
    if status not in TERMINAL_STATUSES or not record.owner or time is None:
        return None
    metadata = record.metadata
    exif = metadata.exif if metadata else Exif()
    gps = metadata.gps if metadata else None
    names: dict[str, str] = {}
    for label in record.tags.labels if record.tags else []:
        for name in (label.name, *label.parents):
            if normalise_text(name):
                names.setdefault(normalise_text(name), name)
    latitude, longitude = (gps.latitude, gps.longitude) if gps else (None, None)
    return Summary(
        image_id=record.image_id,
        owner=record.owner,
        time=time,
        album_id=record.album_id or "",
        status=status,
        format=(metadata.format if metadata else None) or None,
        camera=camera_text(exif.make, exif.model),
        labels=tuple(list(names.values())[:MAX_LABEL_ENTRIES]),
        latitude=None if latitude is None else float(latitude),
        longitude=None if longitude is None else float(longitude),
    )


def entry_key(owner: str, partition: str, bucket: str, sort_key: str) -> tuple[str, str]:
    return f"{owner}#{partition}#{bucket}", sort_key


def counts_key(owner: str) -> str:
    return f"{owner}#counts"


# ---------- filters ----------


class InvalidFilter(ValueError):
    """A search parameter that cannot be used; `parameter` names it."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


def parse_time_bound(parameter: str, text: str, *, end: bool) -> str:
    """An ISO date or datetime → the inclusive bound (`to=2024-07-31` ends at 23:59:59)."""
    value = text.strip()
    try:
        if len(value) == 10:
            day = datetime.fromisoformat(value).date()
            return f"{day.isoformat()}T{'23:59:59' if end else '00:00:00'}"
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T", 1))
    except ValueError as exc:
        raise InvalidFilter(parameter, "not an ISO date (YYYY-MM-DD) or datetime") from exc
    return parsed.replace(tzinfo=None).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Near:
    latitude: float
    longitude: float
    km: float


def parse_near(text: str, parameter: str = "near") -> Near:
    parts = text.split(",")
    try:
        if len(parts) != 3:
            raise ValueError
        latitude, longitude, km = (float(p) for p in parts)
    except ValueError as exc:
        raise InvalidFilter(parameter, "expected LAT,LON,KM (three numbers)") from exc
    if not (math.isfinite(latitude) and -90 <= latitude <= 90):
        raise InvalidFilter(parameter, "latitude must be between -90 and 90")
    if not (math.isfinite(longitude) and -180 <= longitude <= 180):
        raise InvalidFilter(parameter, "longitude must be between -180 and 180")
    if not (math.isfinite(km) and 0 < km <= 20000):
        raise InvalidFilter(parameter, "the distance must be more than 0 and at most 20000 km")
    return Near(latitude, longitude, km)


@dataclass(frozen=True)
class SearchFilter:
    labels: tuple[str, ...] = ()
    taken_from: str | None = None
    taken_to: str | None = None
    camera: str | None = None
    album_id: str | None = None
    format: str | None = None
    status: str | None = None
    near: Near | None = None

    def __post_init__(self) -> None:
        if self.taken_from and self.taken_to and self.taken_from > self.taken_to:
            raise InvalidFilter("from", "is after `to`")

    @property
    def is_empty(self) -> bool:
        return self == SearchFilter()

    def describe(self) -> str:
        parts = [f"label {label}" for label in self.labels]
        for name, value in (
            ("from", self.taken_from),
            ("to", self.taken_to),
            ("camera", self.camera),
            ("album", self.album_id),
            ("format", self.format),
            ("status", self.status),
        ):
            if value:
                parts.append(f"{name} {value}")
        if self.near:
            parts.append(
                f"within {self.near.km:g} km of {self.near.latitude},{self.near.longitude}"
            )
        return ", ".join(parts) or "everything"

    @property
    def low(self) -> str:
        return self.taken_from or "0"

    @property
    def high(self) -> str:
        return f"{self.taken_to}#{_HIGH}" if self.taken_to else "9999" + _HIGH

    def accepts(self, summary: Summary) -> bool:
        if self.labels:
            have = {normalise_text(name) for name in summary.labels}
            if not all(normalise_text(label) in have for label in self.labels):
                return False
        if self.album_id and summary.album_id != self.album_id:
            return False
        if self.format and (summary.format or "").upper() != self.format.upper():
            return False
        if self.status and summary.status.upper() != self.status.upper():
            return False
        if self.camera and normalise_text(self.camera) not in (summary.camera or ""):
            return False
        if self.near:
            if summary.latitude is None or summary.longitude is None:
                return False
            distance = haversine_km(
                self.near.latitude, self.near.longitude, summary.latitude, summary.longitude
            )
            if distance > self.near.km:
                return False
        return self.low <= summary.sort_key <= self.high


def encode_cursor(sort_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": sort_key}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The sort key a page ended at; raises `InvalidFilter` for anything this code did not make."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw)["after"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise InvalidFilter("cursor", "not a cursor this API issued") from exc
    if not isinstance(after, str) or not _CURSOR_POSITION.fullmatch(after):
        raise InvalidFilter("cursor", "not a cursor this API issued")
    return after


# ---------- reading and writing the table ----------


@dataclass
class ReadStats:
    """What a search read: queries sent, entries read, and the read units that costs on AWS
    (eventually consistent: half a unit per 4 KB of each query's items, at least half)."""

    queries: int = 0
    items: int = 0
    read_units: float = 0.0

    def count(self, items: Sequence[dict[str, Any]]) -> None:
        self.queries += 1
        self.items += len(items)
        size = sum(_item_size(item) for item in items)
        self.read_units += max(1, math.ceil(size / 4096)) * 0.5


def _item_size(item: dict[str, Any]) -> int:
    """DynamoDB's item size, near enough: attribute names plus their values' lengths."""
    return sum(len(name) + len(json.dumps(value)) for name, value in item.items())


@dataclass(frozen=True)
class Partition:
    name: str  # `kind#value`
    count: int
    buckets: frozenset[str]


@dataclass
class SearchPage:
    entries: list[Summary]
    next_after: str | None
    stats: ReadStats = field(default_factory=ReadStats)
    driver: str = ""


class _Stream:
    """One partition-year's entries, newest first, fetched a page at a time."""

    def __init__(
        self,
        index: SearchIndex,
        pk: str,
        low: str,
        high: str,
        after: str | None,
        share: float,
        stats: ReadStats,
    ) -> None:
        self.index, self.pk, self.low, self.high, self.share = index, pk, low, high, share
        self.start: dict[str, Any] | None = {"pk": {"S": pk}, "sk": {"S": after}} if after else None
        self.stats = stats
        self.buffer: list[dict[str, Any]] = []
        self.done = False

    async def fill(self, size: int) -> None:
        """Read the next `size` entries (at most 100) when the buffer is empty."""
        if self.buffer or self.done:
            return
        page = min(100, max(1, size))
        kwargs: dict[str, Any] = {"ExclusiveStartKey": self.start} if self.start else {}
        response = await self.index.aws.dynamodb.query(
            TableName=self.index.table,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :low AND :high",
            ExpressionAttributeValues=to_item(
                {":pk": self.pk, ":low": self.low, ":high": self.high}
            ),
            ScanIndexForward=False,
            Limit=page,
            **kwargs,
        )
        items = response.get("Items", [])
        self.stats.count(items)
        self.buffer = [from_item(item) for item in items]
        self.start = response.get("LastEvaluatedKey")
        self.done = self.start is None


class SearchIndex:
    def __init__(self, aws: AwsClients, names: ResourceNames) -> None:
        self.aws = aws
        self.table = names.table(Table.SEARCH)
        self.catalog = Catalog(aws, names)

    # ----- writing -----

    async def index_record(self, record: ImageRecord) -> bool:
        """Make the image's entries match its record (none when it is not finished); True
        when it is indexed. Safe to repeat and to run again after any change to the record.
        A `DUPLICATE` is indexed with its original's metadata and labels as they are now (its
        original's indexer indexes it again when the original changes)."""
        owner = record.owner or ""
        for _ in range(5):
            # Read on each try: a concurrent indexing of this duplicate may have seen a newer
            # original, and a retry must not write back what we read before it.
            summary = summarize(record, await self._original_of(record))
            if summary is None:
                if owner:
                    await self.remove_image(owner, record.image_id)
                return False
            if await self._apply(summary.owner, summary.image_id, summary):
                return True
        raise RuntimeError(f"search entries of {record.image_id} kept changing under us")

    async def index_unless_deleted(self, record: ImageRecord) -> None:
        """`index_record`, then remove the entries again if the image was deleted meanwhile:
        the delete's own removal may have run before our writes."""
        await self.index_record(record)
        if await self.catalog.get_image(record.image_id, ("image_id",)) is None:
            await self.remove_image(str(record.owner), record.image_id)

    async def _original_of(self, record: ImageRecord) -> ImageRecord | None:
        """The record a `DUPLICATE` shows (None for any other image, or when it is gone)."""
        if record.status != ImageStatus.DUPLICATE.value or not record.duplicate_of:
            return None
        return await self.catalog.get_image(record.duplicate_of, _SHOWN_ATTRIBUTES)

    async def remove_image(self, owner: str, image_id: str) -> None:
        """Remove every entry of an image (and its share of the counters)."""
        for _ in range(5):
            if await self._apply(owner, image_id, None):
                return
        raise RuntimeError(f"search entries of {image_id} kept changing under us")

    async def _apply(self, owner: str, image_id: str, summary: Summary | None) -> bool:
        manifest_key = {"pk": {"S": f"image#{image_id}"}, "sk": {"S": "manifest"}}
        found = await self.aws.dynamodb.get_item(
            TableName=self.table, Key=manifest_key, ConsistentRead=True
        )
        manifest = from_item(found["Item"]) if found.get("Item") else None
        if manifest is not None and manifest.get("owner") != owner:
            return True  # another owner's image id: nothing of this owner's to change
        old_keys = {tuple(k) for k in json.loads(manifest["keys"])} if manifest else set()
        old_partitions: dict[str, str] = json.loads(manifest["partitions"]) if manifest else {}
        version = int(manifest["version"]) if manifest else 0
        partitions = summary.partitions() if summary else {}
        bucket = summary.bucket if summary else ""
        keys = {
            entry_key(owner, p, bucket, summary.sort_key) for p in partitions if summary is not None
        }
        if summary is not None:
            attributes = summary.attributes()
            await self._write_batch(
                [
                    {"PutRequest": {"Item": to_item({"pk": pk, "sk": sk, **attributes})}}
                    for pk, sk in sorted(keys)
                ]
            )
        await self._write_batch(
            [
                {"DeleteRequest": {"Key": {"pk": {"S": pk}, "sk": {"S": sk}}}}
                for pk, sk in sorted(old_keys - keys)
            ]
        )
        changes: list[dict[str, Any]] = []
        for name in set(partitions) | set(old_partitions):
            delta = (name in partitions) - (name in old_partitions)
            # An image whose capture year changed: its partitions list the new year too.
            moved = name in partitions and any(not pk.endswith(f"#{bucket}") for pk, _ in old_keys)
            if delta == 0 and not moved:
                continue
            changes.append(self._counter_update(owner, name, delta, bucket, partitions.get(name)))
        condition: dict[str, Any] = (
            {
                "ConditionExpression": "version = :v",
                "ExpressionAttributeValues": to_item({":v": version}),
            }
            if manifest
            else {"ConditionExpression": "attribute_not_exists(pk)"}
        )
        if summary is None:
            write: dict[str, Any] = {
                "Delete": {"TableName": self.table, "Key": manifest_key, **condition}
            }
        else:
            item = {
                "pk": f"image#{image_id}",
                "sk": "manifest",
                "owner": owner,
                "version": version + 1,
                "keys": json.dumps(sorted(keys)),
                "partitions": json.dumps(partitions),
            }
            write = {"Put": {"TableName": self.table, "Item": to_item(item), **condition}}
        if manifest is None and summary is None:
            return True
        try:
            transaction: list[Any] = [write, *changes]
            await self.aws.dynamodb.transact_write_items(TransactItems=transaction)
        except ClientError as exc:
            if error_code(exc) == "TransactionCanceledException":
                return False  # indexed meanwhile by someone else: read the manifest again
            raise
        return True

    def _counter_update(
        self, owner: str, partition: str, delta: int, bucket: str, name: str | None
    ) -> dict[str, Any]:
        values: dict[str, Any] = {":d": {"N": str(delta)}}
        update = "ADD n :d"
        if bucket and delta >= 0:
            update += ", m :m"
            values[":m"] = {"SS": [bucket]}
        if name:
            update += " SET #name = :name"
            values[":name"] = {"S": name}
        return {
            "Update": {
                "TableName": self.table,
                "Key": {"pk": {"S": counts_key(owner)}, "sk": {"S": partition}},
                "UpdateExpression": update,
                "ExpressionAttributeValues": values,
                **({"ExpressionAttributeNames": {"#name": "name"}} if name else {}),
            }
        }

    async def _write_batch(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table: requests[start : start + 25]}
            while pending:
                response = await self.aws.dynamodb.batch_write_item(RequestItems=pending)
                pending = response.get("UnprocessedItems") or {}

    async def bulk_load(self, summaries: Iterable[Summary], *, concurrency: int = 4) -> int:
        """Index many images into an empty index at once: entries, manifests and the counters
        summed in memory (`bulk_items`). Returns the items written."""
        requests = [{"PutRequest": {"Item": item}} for item in bulk_items(summaries)]
        chunks = [requests[i : i + 25] for i in range(0, len(requests), 25)]

        async def write(lane: list[list[dict[str, Any]]]) -> None:
            for chunk in lane:
                await self._write_batch(chunk)

        await asyncio.gather(*(write(chunks[i::concurrency]) for i in range(concurrency)))
        return len(requests)

    # ----- reading -----

    async def _counters(self, owner: str, names: Sequence[str]) -> dict[str, Partition]:
        found: dict[str, Partition] = {}
        unique = list(dict.fromkeys(names))
        for start in range(0, len(unique), 100):
            request: dict[str, Any] = {
                self.table: {
                    "Keys": [
                        {"pk": {"S": counts_key(owner)}, "sk": {"S": name}}
                        for name in unique[start : start + 100]
                    ]
                }
            }
            while request:
                response = await self.aws.dynamodb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self.table, []):
                    partition = _partition(from_item(item))
                    found[partition.name] = partition
                request = response.get("UnprocessedKeys") or {}
        return found

    async def _counter_range(self, owner: str, prefix: str) -> AsyncIterator[dict[str, Any]]:
        kwargs: dict[str, Any] = {}
        while True:
            response = await self.aws.dynamodb.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues=to_item({":pk": counts_key(owner), ":prefix": prefix}),
                **kwargs,
            )
            for item in response.get("Items", []):
                yield from_item(item)
            if not response.get("LastEvaluatedKey"):
                return
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def _candidates(self, flt: SearchFilter) -> list[list[str]]:
        """Each filter that has partitions of its own: the partitions it would read."""
        candidates = [[f"label#{normalise_text(label)}"] for label in flt.labels]
        if flt.album_id:
            candidates.append([f"album#{flt.album_id}"])
        if flt.format:
            candidates.append([f"format#{flt.format.upper()}"])
        if flt.status:
            candidates.append([f"status#{flt.status.upper()}"])
        if flt.near:
            # Every precision whose cells are few enough; `plan` weighs them by their counts.
            for precision in GEO_PRECISIONS:
                cells = covering_cells(
                    flt.near.latitude, flt.near.longitude, flt.near.km, precision
                )
                if len(cells) <= MAX_GEO_CELLS:
                    candidates.append(sorted(f"geo{precision}#{cell}" for cell in cells))
        return candidates

    async def plan(self, owner: str, flt: SearchFilter) -> list[Partition]:
        """The partitions to read: those of the filter whose images are fewest (every other
        filter is checked on the entries). Empty when some filter matches no image at all."""
        candidates = self._candidates(flt)

        async def cameras() -> list[Partition]:
            if not flt.camera:
                return []
            wanted = normalise_text(flt.camera)
            return [
                partition
                async for item in self._counter_range(owner, "camera#")
                if wanted in str(item["sk"]).removeprefix("camera#")
                and (partition := _partition(item)).count > 0
            ]

        # The counters and the cameras' counters at once: one round trip, not two.
        counters, matching_cameras = await asyncio.gather(
            self._counters(owner, [name for names in candidates for name in names] + ["all#"]),
            cameras(),
        )
        options: list[list[Partition]] = []
        geo_options: list[list[Partition]] = []
        for names in candidates:
            present = [counters[n] for n in names if n in counters and counters[n].count > 0]
            if not present:
                return []
            (geo_options if names[0].startswith("geo") else options).append(present)
        if geo_options:  # the cells of one precision: a union that reads least, below
            options.append(min(geo_options, key=_read_cost))
        if flt.camera:
            if not matching_cameras:
                return []
            options.append(matching_cameras)
        if not options:
            everything = counters.get("all#")
            return [everything] if everything and everything.count > 0 else []
        return min(options, key=_read_cost)

    async def search(
        self,
        owner: str,
        flt: SearchFilter,
        *,
        limit: int,
        after: str | None = None,
        read_limit: int | None = None,
    ) -> SearchPage:
        """One page of `owner`'s images that pass `flt`, newest capture first; `after` is the
        sort key the previous page ended at.

        Reads at most one page (`limit` + 1 entries) beyond the matches it returns: when the
        filters that are not the key condition reject entries, the page ends short (even
        empty) with `next_after` at the last entry examined, and the next call goes on from
        there (DynamoDB's own `Limit` with a filter works the same way). `read_limit` (the
        facets) stops after that many entries read instead; the page is then cut short with no
        `next_after`."""
        stats = ReadStats()
        stats.queries += 1  # the counters
        partitions = await self.plan(owner, flt)
        driver = ",".join(p.name for p in partitions[:3]) + ("..." if len(partitions) > 3 else "")
        high = min(flt.high, after) if after else flt.high
        low = flt.low
        buckets = sorted(
            {
                m
                for p in partitions
                for m in p.buckets
                if low[:BUCKET_CHARS] <= m <= high[:BUCKET_CHARS]
            },
            reverse=True,
        )
        total = max(1, sum(p.count for p in partitions))

        found: list[Summary] = []
        examined: str | None = None  # the sort key of the last entry checked
        checked = 0  # entries checked against the filters
        for bucket in buckets:
            streams = [
                _Stream(
                    self,
                    f"{owner}#{p.name}#{bucket}",
                    low,
                    high,
                    after if after and after[:BUCKET_CHARS] == bucket else None,
                    p.count / total,
                    stats,
                )
                for p in partitions
                if bucket in p.buckets
            ]
            while True:
                hungry = [s for s in streams if not s.buffer and not s.done]
                if hungry:
                    # Entries already read are checked first; a read only when a head is needed.
                    allowance = min(len(found), limit) + limit + 1 - stats.items
                    if read_limit is not None:
                        allowance = min(allowance, read_limit - stats.items)
                        if allowance <= 0:
                            return SearchPage(found[:limit], None, stats, driver)
                    # While every entry has matched, read what the page still needs; once the
                    # filters reject some, read all that the allowance leaves (fewer queries).
                    need = limit + 1 - len(found)
                    want = need if checked == len(found) else allowance
                    if examined is not None and allowance < min(need, MIN_REFILL):
                        # A query for a few entries costs about what a dozen do: go on from here
                        # in the next call, whose allowance is a whole page again.
                        return SearchPage(found[:limit], examined, stats, driver)
                    sizes = _allot(
                        [s.share for s in hungry],
                        min(allowance, max(want, len(hungry))),
                        progress=examined is None,
                    )
                    if sizes is None:
                        # The read allowance is spent: a short page, to go on from here.
                        return SearchPage(found[:limit], examined, stats, driver)
                    await asyncio.gather(*(s.fill(n) for s, n in zip(hungry, sizes, strict=True)))
                live = [s for s in streams if s.buffer]
                if not live:
                    break
                stream = max(live, key=lambda s: str(s.buffer[0]["sk"]))
                head = stream.buffer.pop(0)
                if head["sk"] == examined:
                    continue  # the same image through two partitions of a union
                examined = str(head["sk"])
                checked += 1
                summary = Summary.from_entry(owner, head)
                if flt.accepts(summary):
                    found.append(summary)
                    if len(found) > limit:
                        break
            if len(found) > limit:
                break
        next_after = found[limit - 1].sort_key if len(found) > limit else None
        return SearchPage(found[:limit], next_after, stats, driver)

    async def label_counts(
        self, owner: str, flt: SearchFilter, *, prefix: str = "", limit: int = 20
    ) -> tuple[list[tuple[str, int]], bool]:
        """(label, images) most frequent first, over the images that pass `flt`, and whether
        the counts are complete. Unfiltered: the indexer's counters; filtered: counted over at
        most FACET_READ_LIMIT matching entries (complete False when more matched)."""
        wanted = normalise_text(prefix)
        if flt.is_empty:
            counts = {
                str(item.get("name") or item["sk"]): int(item.get("n", 0))
                async for item in self._counter_range(owner, f"label#{wanted}")
            }
            complete = True
        else:
            page = await self.search(
                owner, flt, limit=FACET_READ_LIMIT, read_limit=FACET_READ_LIMIT
            )
            counts = Counter(
                name
                for entry in page.entries
                for name in entry.labels
                if normalise_text(name).startswith(wanted)
            )
            complete = page.stats.items < FACET_READ_LIMIT
        ranked = sorted(((n, c) for n, c in counts.items() if c > 0), key=lambda p: (-p[1], p[0]))
        return ranked[:limit], complete


def _read_cost(partitions: Sequence[Partition]) -> tuple[float, int]:
    """What reading a union costs, compared: its images, a quarter more for each partition
    beyond the first (each is a query of its own, and a refill when it runs dry first)."""
    images = sum(p.count for p in partitions)
    return images * (1 + UNION_QUERY_COST * (len(partitions) - 1)), len(partitions)


def _allot(shares: Sequence[float], allowance: int, *, progress: bool) -> list[int] | None:
    """How many entries each stream that needs a head reads: the allowance split by the
    streams' shares of the images, at least one each. None when the allowance cannot give each
    one (unless `progress`: a call must examine something, or its cursor would not move)."""
    if allowance < len(shares):
        return [1] * len(shares) if progress else None
    total = sum(shares) or 1.0
    sizes = [max(1, math.floor(allowance * share / total)) for share in shares]
    while sum(sizes) > allowance:
        sizes[sizes.index(max(sizes))] -= 1
    return sizes


def bulk_items(summaries: Iterable[Summary]) -> list[dict[str, Any]]:
    """Every item (DynamoDB JSON) of an index holding just these images, as `index_record`
    would leave it one image at a time."""
    items: list[dict[str, Any]] = []
    counters: dict[tuple[str, str], tuple[int, set[str], str]] = {}
    for summary in summaries:
        partitions = summary.partitions()
        keys = sorted(
            entry_key(summary.owner, p, summary.bucket, summary.sort_key) for p in partitions
        )
        attributes = summary.attributes()
        items.extend(to_item({"pk": pk, "sk": sk, **attributes}) for pk, sk in keys)
        manifest = {
            "pk": f"image#{summary.image_id}",
            "sk": "manifest",
            "owner": summary.owner,
            "version": 1,
            "keys": json.dumps(keys),
            "partitions": json.dumps(partitions),
        }
        items.append(to_item(manifest))
        for name, display in partitions.items():
            count, buckets, _ = counters.get((summary.owner, name), (0, set(), display))
            buckets.add(summary.bucket)
            counters[(summary.owner, name)] = (count + 1, buckets, display)
    for (owner, name), (count, buckets, display) in counters.items():
        counter = {"pk": counts_key(owner), "sk": name, "n": count, "m": buckets}
        if display:
            counter["name"] = display
        items.append(to_item(counter))
    return items


def _partition(item: dict[str, Any]) -> Partition:
    return Partition(str(item["sk"]), int(item.get("n", 0)), frozenset(item.get("m") or ()))
