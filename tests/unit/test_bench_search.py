"""`python -m bench.search --json` on a small library: every query kind is reported with its
latency and reads, no request read more than it returned plus one page, and the page-by-page
checks inside it (the API's answer equals the index's, nobody else's images) held."""

from __future__ import annotations

from helpers import run_bench_json


def test_the_search_benchmark_reports_every_kind() -> None:
    report = run_bench_json("search", "--images", "300", "--repeat", "2")
    assert report["images"] == 300 and report["items_written"] > 300
    kinds = report["kinds"]
    assert {"label (common)", "date (one month)", "camera", "album", "near (10 km)"} <= set(kinds)
    assert sum(1 for kind in kinds if kind.startswith("combined")) == 3
    for kind, row in kinds.items():
        assert 0 < row["p50_ms"] <= row["p95_ms"], (kind, row)
        if "read_mean" in row:
            assert row["read_mean"] >= row["returned_mean"], (kind, row)
            assert row["read_units_mean"] > 0 or row["read_mean"] == 0, (kind, row)
            # The target: no request reads more than it returns plus one page.
            assert row["within_one_page"] == 1.0, (kind, row)
            assert row["requests_mean"] >= 1, (kind, row)
