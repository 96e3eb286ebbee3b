"""Grouping one owner's images: exact groups from DUPLICATE records, near groups from pHashes
(all pairs compared, chains joined), with numpy and without."""

from __future__ import annotations

import builtins
import random
from typing import Any

import pytest

from imgproc_shared.checksums import stored_sha256
from imgproc_shared.duplicates import (
    close_pairs,
    content_claim_key,
    group_records,
    hamming,
    near_groups,
)
from imgproc_shared.records import ImageRecord


def _record(image_id: str, phash: int | None = None, **extra: Any) -> ImageRecord:
    record: dict[str, Any] = {
        "image_id": image_id,
        "status": "PROCESSED",
        "uploaded_at": f"2026-01-01T00:00:{image_id[-2:]}Z",
    }
    if phash is not None:
        record["thumbnails"] = {"renditions": [], "phash": f"{phash:016x}"}
    return ImageRecord.model_validate({**record, **extra})


def test_near_groups_join_chains_and_report_the_widest_distance() -> None:
    base = 0x0F0F_0F0F_0F0F_0F0F
    hashes = {
        "a01": base,
        "a02": base ^ 0b111,  # 3 from a01
        "a03": base ^ 0b111 ^ (0b11111 << 20),  # 5 from a02, 8 from a01
        "b04": ~base & (2**64 - 1),  # 64 from everything above
    }
    groups = near_groups(hashes, max_distance=5)
    assert [(g.kind, g.distance, g.image_ids) for g in groups] == [
        ("near", 8, ["a01", "a02", "a03"])
    ]
    assert near_groups(hashes, max_distance=2) == []


def test_group_records_exact_first_then_near_and_skips_unprocessed() -> None:
    records = [
        _record("i10", 0xAAAA),
        _record("i11", status="DUPLICATE", duplicate_of="i10"),
        _record("i12", status="DUPLICATE", duplicate_of="i10"),
        _record("i13", 0xFFFF_0000_0000_0000),
        _record("i14", 0xFFFF_0000_0000_0001),
        _record("i15", 0xFFFF_0000_0000_0001, status="FAILED"),  # not processed: no group
        _record("i16"),  # processed before hashes existed
        _record("i17", status="DUPLICATE", duplicate_of="gone"),  # original deleted: alone
    ]
    groups = group_records(list(reversed(records)), max_distance=4)
    assert [(g.kind, g.distance, g.image_ids) for g in groups] == [
        ("exact", 0, ["i10", "i11", "i12"]),
        ("near", 1, ["i13", "i14"]),
    ]


def test_numpy_and_plain_python_find_the_same_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(14)
    hashes = [rng.getrandbits(64) for _ in range(300)]
    hashes += [h ^ (1 << rng.randrange(64)) for h in hashes[:40]]  # 40 close copies
    with_numpy = close_pairs(hashes, 6)
    real_import = builtins.__import__

    def no_numpy(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "numpy":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_numpy)
    assert sorted(close_pairs(hashes, 6)) == sorted(with_numpy)
    assert len(with_numpy) >= 40
    assert all(hamming(hashes[i], hashes[j]) <= 6 for i, j in with_numpy)


def test_stored_sha256_only_for_whole_object_checksums() -> None:
    whole = {"ChecksumSHA256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=", "ETag": '"x"'}
    assert stored_sha256(whole) == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert stored_sha256({**whole, "ETag": '"abc-2"'}) is None  # multipart (moto)
    assert stored_sha256({**whole, "ChecksumType": "COMPOSITE"}) is None
    assert stored_sha256({"ChecksumSHA256": "not base64!"}) is None
    assert stored_sha256({}) is None


def test_claims_are_per_owner_and_never_an_album_id() -> None:
    assert content_claim_key("alice", "ab") != content_claim_key("bob", "ab")
    assert "#" in content_claim_key("alice", "ab")  # no album id contains '#'
