"""The load test's statistics and cost model (pure functions)."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from imgproc_cli.loadtest.costs import (
    Prices,
    calls_per_image,
    cost_per_1000,
    modelled_cpu_seconds,
    modelled_requests,
    subtract_requests,
)
from imgproc_cli.loadtest.cpu import cpu_delta, process_cpu
from imgproc_cli.loadtest.photos import generated_photos, parse_size, synthetic_photo, unique_copy
from imgproc_cli.loadtest.progress import Progress
from imgproc_cli.loadtest.report import (
    ImageOutcome,
    distribution,
    parse_time,
    percentile,
    summarize,
)
from imgproc_cli.uploads import UsageError
from imgproc_shared.records import ImageRecord


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 95) == pytest.approx(95.05)
    assert percentile(values, 100) == 100.0
    assert percentile(values, 0) == 1.0
    assert percentile([], 50) is None
    assert percentile([7.0], 99) == 7.0
    assert distribution([3.0, 1.0, 2.0]) == {"p50": 2.0, "p95": 2.9, "p99": 2.98, "max": 3.0}


def test_parse_time_accepts_ours_and_moto_s() -> None:
    ours = parse_time("2024-06-01T12:00:00.250Z")
    moto = parse_time("2024-06-01T12:00:01.250000+00:00")
    assert ours is not None and moto is not None
    assert moto - ours == pytest.approx(1.0)
    assert parse_time(None) is None
    assert parse_time("yesterday") is None


def _record(uploaded: str, finished: str | None, status: str = "PROCESSED") -> ImageRecord:
    record: dict[str, object] = {
        "image_id": "img",
        "status": status,
        "uploaded_at": f"2024-06-01T12:00:{uploaded}Z",
        "started_at": "2024-06-01T12:00:00.500Z",
        "stage_extract": {
            "started_at": "2024-06-01T12:00:00.600Z",
            "finished_at": "2024-06-01T12:00:00.800Z",
            "duration_ms": 200,
        },
        "stage_tag": {
            "started_at": "2024-06-01T12:00:00.900Z",
            "finished_at": "2024-06-01T12:00:01.200Z",
            "duration_ms": 300,
        },
        "stage_thumbnail": {
            "started_at": "2024-06-01T12:00:00.950Z",
            "finished_at": "2024-06-01T12:00:01.400Z",
            "duration_ms": 450,
        },
    }
    if finished:
        record["finished_at"] = f"2024-06-01T12:00:{finished}Z"
    return ImageRecord.model_validate(record)


def test_outcome_latency_and_segments_come_from_the_record() -> None:
    outcome = ImageOutcome.from_record("a", _record("00.000", "01.500"), observed_latency_s=9.0)
    assert outcome.terminal
    assert outcome.latency_s == pytest.approx(1.5)
    segments = outcome.segments()
    assert segments == pytest.approx(
        {
            "upload_to_execution": 0.5,
            "execution_to_extract": 0.1,
            "extract": 0.2,
            "extract_to_tag_thumbnail": 0.1,
            "tag_thumbnail": 0.5,
            "to_terminal": 0.1,
        },
        abs=1e-6,
    )
    # Without a finish time the client's own observation stands in.
    assert ImageOutcome.from_record("b", _record("00.000", None), 2.0).latency_s == 2.0
    assert not ImageOutcome.from_record("c", None, None).terminal


def test_summary_counts_lost_images_statuses_and_stage_times() -> None:
    outcomes = [
        ImageOutcome.from_record("a", _record("00.000", "01.500"), None),
        ImageOutcome.from_record("b", _record("00.500", "02.500"), None),
        ImageOutcome.from_record("c", _record("01.000", "02.000", status="REJECTED"), None),
        ImageOutcome.from_record("d", _record("01.000", None, status="PROCESSING"), None),
    ]
    report = summarize(
        outcomes,
        wall_s=3.0,
        duplicates=0,
        requests={"sqs": {"ReceiveMessage": 8}, "dynamodb": {"UpdateItem": 36}},
        requests_source="counted",
        transitions_per_image=8.0,
        cpu_seconds={"extractor": 1.0, "tagger": 3.0},
    )
    assert report["images"] == 4
    assert report["lost"] == 1 and report["lost_image_ids"] == ["d"]
    assert report["statuses"] == {"PROCESSED": 2, "PROCESSING": 1, "REJECTED": 1}
    assert report["throughput_images_per_s"] == 1.0  # 3 terminal in 3 s
    assert report["throughput_from_records_images_per_s"] == pytest.approx(3 / 2.5, abs=1e-3)
    # Latency is over PROCESSED images only: 1.5 s and 2.0 s.
    assert report["latency_s"]["p50"] == pytest.approx(1.75)
    assert report["latency_s"]["max"] == pytest.approx(2.0)
    assert report["stage_duration_ms"]["tag"] == {"count": 4, "median": 300.0, "p95": 300.0}
    assert report["api_calls"]["per_image"] == {
        "dynamodb.UpdateItem": 9.0,
        "sqs.ReceiveMessage": 2.0,
    }
    assert report["api_calls"]["per_image_total"] == 11.0
    assert report["worker_cpu_s_per_image"] == 1.0
    assert report["cost_usd_per_1000_images"]["total"] > 0


def test_cost_model_at_list_prices() -> None:
    per_image = {
        "states.StartExecution": 1.0,  # free: Step Functions bills transitions
        "sqs.ReceiveMessage": 5.0,
        "sqs.DeleteMessage": 5.0,
        "sns.Publish": 3.0,
        "dynamodb.UpdateItem": 8.0,
        "dynamodb.GetItem": 4.0,
        "s3.PutObject": 2.0,
        "s3.GetObject": 10.0,
    }
    cost = cost_per_1000(per_image, transitions_per_image=8.0, cpu_seconds_per_image=3.6)
    assert cost["stepfunctions"] == pytest.approx(8 * 0.025, abs=1e-5)  # $0.20
    assert cost["sqs"] == pytest.approx(10 * 1000 * 0.40 / 1e6, abs=1e-5)
    # 3 publishes by the workflow + 1 by S3's event notification.
    assert cost["sns"] == pytest.approx(4 * 1000 * 0.50 / 1e6, abs=1e-5)
    assert cost["dynamodb"] == pytest.approx((8 * 1.25 + 4 * 0.25) * 1000 / 1e6, abs=1e-5)
    assert cost["s3"] == pytest.approx(2 * 5e-6 * 1000 + 10 * 4e-7 * 1000, abs=1e-5)
    # 3.6 CPU-s = 0.001 vCPU-h per image, with 2 GB per vCPU.
    assert cost["fargate"] == pytest.approx(1000 * 0.001 * (0.04048 + 2 * 0.004445), abs=1e-5)
    parts = sum(v for k, v in cost.items() if k != "total")
    assert cost["total"] == pytest.approx(parts, abs=1e-4)
    assert cost_per_1000({}, 0.0, None, prices=Prices(), sns_publishes_per_image_extra=0) == {
        "stepfunctions": 0.0,
        "sqs": 0.0,
        "sns": 0.0,
        "dynamodb": 0.0,
        "s3": 0.0,
        "fargate": 0.0,
        "rekognition": 0.0,
        "total": 0.0,
    }


def test_cost_prices_the_tagger_backend_the_stack_uses() -> None:
    # Rekognition: each DetectLabels call, $1.00 per 1,000 images.
    rekognition = modelled_requests(1, tagger_backend="rekognition")
    assert rekognition["rekognition"] == {"DetectLabels": 1}
    per_image = calls_per_image(rekognition, 1)
    cpu = sum(modelled_cpu_seconds(1, "rekognition").values())
    with_rekognition = cost_per_1000(per_image, 7.0, cpu)
    assert with_rekognition["rekognition"] == pytest.approx(1.0)
    # Local: no call to price; the tagger's models are Fargate CPU time instead.
    local = modelled_requests(1, tagger_backend="local")
    assert "rekognition" not in local
    local_cpu = modelled_cpu_seconds(1, "local")
    assert local_cpu["tagger"] > modelled_cpu_seconds(1, "rekognition")["tagger"]
    with_local = cost_per_1000(calls_per_image(local, 1), 7.0, sum(local_cpu.values()))
    assert with_local["rekognition"] == 0.0
    assert with_local["fargate"] > with_rekognition["fargate"] > 0
    # The local backend's compute costs well under a cent per 1,000 images: Rekognition is the
    # difference between the columns.
    assert with_rekognition["total"] - with_local["total"] == pytest.approx(1.0, abs=0.01)
    with pytest.raises(UsageError):
        modelled_cpu_seconds(1, "gpu")


def test_report_names_the_backend_it_priced() -> None:
    report = summarize(
        [ImageOutcome.from_record("a", _record("00.000", "01.000"), None)],
        wall_s=1.0,
        duplicates=0,
        requests={"rekognition": {"DetectLabels": 1}},
        requests_source="counted",
        transitions_per_image=7.0,
        cpu_seconds={"tagger": 0.01},
        tagger_backend="rekognition",
        tagger_backend_source="the local stack's `imgproc up --tagger`",
    )
    assert report["tagger_backend"] == {
        "priced": "rekognition",
        "from": "the local stack's `imgproc up --tagger`",
    }
    assert report["cost_usd_per_1000_images"]["rekognition"] == pytest.approx(1.0)


def test_request_deltas_and_per_image_calls() -> None:
    before = {"sqs": {"ReceiveMessage": 10}, "s3": {"GetObject": 5}}
    after = {"sqs": {"ReceiveMessage": 30, "DeleteMessage": 4}, "s3": {"GetObject": 5}}
    delta = subtract_requests(after, before)
    assert delta == {"sqs": {"ReceiveMessage": 20, "DeleteMessage": 4}}
    assert calls_per_image(delta, 4) == {"sqs.DeleteMessage": 1.0, "sqs.ReceiveMessage": 5.0}
    assert calls_per_image(delta, 0) == {}


def test_modelled_requests_scale_with_images() -> None:
    one = modelled_requests(1)
    ten = modelled_requests(10)
    assert ten["dynamodb"]["UpdateItem"] == 10 * one["dynamodb"]["UpdateItem"]
    assert one["stepfunctions"]["StartExecution"] == 1


def test_cpu_delta_counts_restarted_processes_whole() -> None:
    before = {10: ("extractor", 5.0), 11: ("tagger", 2.0)}
    after = {10: ("extractor", 7.5), 12: ("tagger", 1.0)}  # the tagger restarted as pid 12
    assert cpu_delta(before, after) == {"extractor": 2.5, "tagger": 1.0}


def test_process_cpu_reads_this_process_tree() -> None:
    own, children = process_cpu(os.getppid())
    assert own is not None and own >= 0
    assert os.getpid() in children
    assert children[os.getpid()][1] >= 0


def test_parse_size() -> None:
    assert parse_size("2400x1600") == (2400, 1600)
    for bad in ("2400", "axb", "8x8", "100000x10"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_size(bad)


def test_synthetic_photo_is_a_photo_like_jpeg_with_exif_and_gps() -> None:
    data = synthetic_photo(320, 240, seed=3)
    image = Image.open(io.BytesIO(data))
    assert (image.format, image.size, image.mode) == ("JPEG", (320, 240), "RGB")
    exif = image.getexif()
    assert exif[0x010F] == "imgproc"
    assert exif.get_ifd(0x8825)[1] == "N"
    assert exif.get_ifd(0x8769)[0x9003].startswith("2024:06:")
    # Noise and gradients: far from a flat colour, and compresses like a photo.
    low, high = image.convert("L").getextrema()
    assert isinstance(low, int) and isinstance(high, int) and high - low > 100
    # (effect_noise is not seeded, so the size varies a little; a flat image is ~0.02 B/px)
    assert len(data) > 320 * 240 * 0.15


def test_generated_photos_are_cached(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = generated_photos((64, 48), cache)
    assert len(first) == 4 and len({data for _, data in first}) == 4
    files = sorted(cache.iterdir())
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert generated_photos((64, 48), cache) == first
    assert [f.stat().st_mtime_ns for f in sorted(cache.iterdir())] == mtimes


def test_progress_line() -> None:
    stream = io.StringIO()
    progress = Progress(10, stream)
    assert "[###############...............] 5/10 terminal, 2 in flight" in progress.line(5, 2)
    progress.update(10, 0, final=True)
    assert "10/10 terminal, 0 in flight" in stream.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_each_upload_of_a_repeated_photo_gets_bytes_of_its_own(fmt: str) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buffer, fmt)
    photo = buffer.getvalue()
    first, second = unique_copy(photo, "image-1"), unique_copy(photo, "image-2")
    assert len({photo, first, second}) == 3
    for copy in (first, second):
        with Image.open(io.BytesIO(copy)) as image:
            image.load()
            assert image.format == fmt and image.size == (64, 48)
            pixel = image.getpixel((32, 24))
            assert max(abs(a - b) for a, b in zip(pixel, (10, 200, 30), strict=True)) <= 3
