"""`imgproc bench thumbnails DIR --json`: every path measured for every photo, ratios beside."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from rendition_checks import colour_jpeg

from imgproc_thumbnailer import simd_resample

from stack_process import IMGPROC

PATHS = set("ours ours_thumb ours_pillow naive thumbnail floor floor_preview bound".split())


def test_the_benchmark_reports_every_path_for_every_photo(tmp_path: Path) -> None:
    # Small stand-ins: 3000 px needs the 1/2-scale draft for the preview, 1/8 for the floor.
    (tmp_path / "baseline.jpg").write_bytes(colour_jpeg((3000, 2000), quality=85))
    (tmp_path / "notes.txt").write_text("not a photo")

    result = subprocess.run(
        [str(IMGPROC), "bench", "thumbnails", str(tmp_path), "--json", "--repeat", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = {row["file"]: row for row in report["photos"]}
    assert set(rows) == {"baseline.jpg"}  # the text file is not taken for a photo
    assert rows["baseline.jpg"]["format"] == "JPEG"
    row = rows["baseline.jpg"]
    assert set(row["median_ms"]) == PATHS
    assert all(ms > 0 for ms in row["median_ms"].values()), row
    ms = row["median_ms"]
    assert row["bound_over_floor"] == round(ms["bound"] / ms["floor"], 2)
    assert row["naive_over_ours"] == round(ms["naive"] / ms["ours"], 2)
    assert row["ours_over_bound"] == round(ms["ours"] / ms["bound"], 2)
    assert row["naive_over_bound"] == round(ms["naive"] / ms["bound"], 2)
    assert row["ours_pillow_over_ours"] == round(ms["ours_pillow"] / ms["ours"], 2)
    # Ours resampled on SIMD where the wheel exists (x86_64), with Pillow elsewhere.
    assert report["resampler"] == ("simd" if simd_resample.available() else "pillow")
    # Peak memory of each path, measured in its own process.
    peaks = row["peak_mb_above_idle"]
    assert set(peaks) == PATHS
    assert all(isinstance(mb, float) and mb >= 0 for mb in peaks.values()), peaks


def test_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(IMGPROC), "bench", "thumbnails", str(tmp_path / "absent")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "is not a directory" in result.stderr
