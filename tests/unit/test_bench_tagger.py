"""`imgproc bench tagger DIR --json`: every labelled photo scored, the shares, CPU per 20 MP."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from stack_process import IMGPROC

# The model build and a 20 MP encode and decode: seconds, not minutes, on a busy machine.
pytestmark = pytest.mark.timeout(300)

LABELLED = Path(__file__).resolve().parents[1] / "fixtures" / "labelled"
SUBSET = ("people_standing_orientation6.jpg", "../tagger/coffee_cup.jpg", "outdoor_beach.jpg")
CATEGORIES = {"people", "animals", "vehicles", "food", "indoor", "outdoor"}


def _subset(folder: Path) -> dict[str, dict[str, Any]]:
    """A small labelled set in `folder`: three photos of the committed one, with their rows."""
    document = json.loads((LABELLED / "labels.json").read_text("utf-8"))
    rows = {row["file"]: row for row in document["photos"]}
    chosen = {}
    for name in SUBSET:
        shutil.copy(LABELLED / name, folder / Path(name).name)
        chosen[Path(name).name] = {**rows[name], "file": Path(name).name}
    (folder / "labels.json").write_text(json.dumps({"photos": list(chosen.values())}))
    return chosen


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(IMGPROC), "bench", "tagger", *args],
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )


def test_the_benchmark_scores_every_photo_and_reports_the_shares(tmp_path: Path) -> None:
    labelled = tmp_path / "labelled"
    labelled.mkdir()
    rows = _subset(labelled)
    throughput = tmp_path / "throughput"
    throughput.mkdir()
    shutil.copy(LABELLED / "outdoor_beach.jpg", throughput / "beach.jpg")

    result = _bench(
        str(labelled), "--json", "--repeat", "1", "--no-corpus", "--photos", str(throughput)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)  # one JSON document: log lines go to stderr

    photos = {row["file"]: row for row in report["photos"]}
    assert set(photos) == set(rows)
    for name, row in photos.items():
        expected = rows[name]["expected"]
        given = [label["name"] for label in row["labels"]]
        assert all(
            set(label) == {"name", "confidence", "boxes"} and 0 < label["confidence"] <= 100
            for label in row["labels"]
        )
        assert row["hit"] == any(label in expected for label in given), row
        assert row["no_label"] == (not given)
        assert set(row["cpu_ms"]) == {"decode", "classifier", "detector", "total"}
        assert row["cpu_ms"]["total"] > 0
        if "region" in rows[name]:
            assert set(row["region"]) >= {"label", "best_iou", "centre_inside", "match"}
        else:
            assert row["region"] is None

    summary = report["summary"]
    assert summary["photos"] == 3
    hits = sum(row["hit"] for row in photos.values())
    assert summary["hit_share"] == round(hits / 3, 3)
    assert summary["person_main_subject_photos"] == 1
    assert set(summary["per_category"]) == CATEGORIES
    assert summary["per_category"]["food"] == {
        "photos": 1,
        "hits": int(photos["coffee_cup.jpg"]["hit"]),
    }
    assert set(summary["mean_cpu_ms"]) == {"decode", "classifier", "detector", "total"}
    assert {"hit_share", "no_label_share", "person_found_share"} <= set(report["before"])

    # CPU per 20 MP: the generated photo only, as the corpus was ruled out.
    (big,) = report["cpu_per_20mp"]
    assert big["photo"] == "generated_5472x3648.jpg" and big["pixels"] == "5472x3648"
    assert big["target_s"] == 0.15
    assert big["total_s"] == pytest.approx(
        big["decode_s"] + big["classifier_s"] + big["detector_s"], abs=0.002
    )
    assert report["throughput"]["source"] == str(throughput)
    assert [row["photo"] for row in report["throughput"]["photos"]] == ["beach.jpg"]

    if report["engine"] == "recognizer":
        # The recognizer boxes people: the upright region of the rotated photo is covered.
        rotated = photos[SUBSET[0]]
        assert "Person" in [label["name"] for label in rotated["labels"]]
        assert rotated["region"]["match"], rotated["region"]
        assert report["thresholds"]["trade_off"], report["thresholds"]
        # Part 4: the int8 detector against the float one on the same three photos.
        from imgproc_tagger.detector import choose_precision, cpu_flags

        detector = report["detector"]
        assert detector["precision"] == choose_precision(
            "auto", ["CPUExecutionProvider"], cpu_flags()
        )
        comparison = detector["comparison"]
        assert comparison["photos"] == 3
        assert 0 < comparison["matched_by_int8"] <= comparison["float_detections"]
        assert 0.5 <= comparison["mean_iou"] <= 1.0
        assert comparison["ms_per_run"]["fp32"] > 0 and comparison["ms_per_run"]["int8"] > 0


def test_a_folder_without_labels_is_a_clear_error(tmp_path: Path) -> None:
    result = _bench(str(tmp_path), "--json")
    assert result.returncode == 2
    assert "no labels.json" in result.stderr
