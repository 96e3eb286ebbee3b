"""`python -m bench.snapshots --json` on a small library: each size is measured, and a periodic
snapshot after ten photos' writes stored exactly those writes (not the library)."""

from __future__ import annotations

from helpers import run_bench_json


def test_the_snapshot_benchmark_stores_only_what_each_round_wrote() -> None:
    report = run_bench_json("snapshots", "--images", "150,300", "--repeat", "2")
    rows = report["sizes"]
    assert [row["images"] for row in rows] == [150, 300]
    for row in rows:
        assert row["items"] > row["images"] and row["objects"] == 4 * row["images"]
        assert row["read"] == row["items"] + row["objects"]
        assert row["read_all_ms"] > 0 and row["first_ms"] > 0 and row["restart_ms"] > 0
        assert row["incremental_ms"] > 0
        # Ten photos: ten records updated, twenty search entries, twenty renditions.
        assert row["incremental_written"] == {
            "items": 30,
            "items_deleted": 0,
            "object_files": 20,
            "objects_deleted": 0,
        }
