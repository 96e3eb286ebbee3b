"""Tagger throughput per core: decode + preprocess + inference, at batch sizes 1 and 8.

For each photo (the corpus photos beside the checkout, a DIR given, or generated ones):

- preprocess: JPEG draft decode → 224 centre crop → normalized array (what the handler runs);
- model b1 / b8: onnxruntime inference alone, per image, in batches of 1 and of 8;
- end to end b1 / b8: preprocess + inference per image.

The session runs with one intra-op thread, as a worker does by default, and times are CPU seconds
of the calling thread (`time.thread_time`), so images/s per core is 1 / time, whatever else
runs on the machine. Wall-clock times are printed beside them.

    python -m bench.tagger [DIR] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from imgproc_tagger.classifier import Classifier, open_classifier
from imgproc_tagger.config import TaggerSettings
from imgproc_tagger.labels import default_label_map
from imgproc_tagger.preprocess import preprocess

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_PHOTOS = REPO_ROOT.parent / "shared" / "corpus" / "photos"
SUFFIXES = {".jpg", ".jpeg", ".png", ".mpo"}


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median (CPU seconds of this thread, wall seconds) of `repeat` runs after one warm-up."""
    fn()
    cpu, wall = [], []
    for _ in range(repeat):
        c0, w0 = time.thread_time(), time.perf_counter()
        fn()
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def generated_photos() -> list[tuple[str, bytes]]:
    """Stand-ins when no corpus is at hand: smooth noise at phone-camera sizes, as JPEG."""
    rng = np.random.default_rng(3)
    photos = []
    for width, height in ((4000, 3000), (3000, 2000), (1600, 1200)):
        small = rng.integers(0, 255, (height // 50, width // 50, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=90)
        photos.append((f"generated_{width}x{height}.jpg", out.getvalue()))
    return photos


def load_photos(directory: Path | None) -> tuple[str, list[tuple[str, bytes]]]:
    folder = directory or (CORPUS_PHOTOS if CORPUS_PHOTOS.is_dir() else None)
    if folder is None:
        return "generated", generated_photos()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    return str(folder), [(p.name, p.read_bytes()) for p in files]


def bench_photo(classifier: Classifier, name: str, data: bytes, repeat: int) -> dict[str, Any]:
    sample = preprocess(data)
    batch1, batch8 = sample[np.newaxis], np.repeat(sample[np.newaxis], 8, axis=0)
    pre_cpu, pre_wall = _timed(lambda: preprocess(data), repeat)
    b1_cpu, b1_wall = _timed(lambda: classifier.probabilities(batch1), repeat)
    b8_cpu, b8_wall = _timed(lambda: classifier.probabilities(batch8), max(1, repeat // 2))
    b8_cpu, b8_wall = b8_cpu / 8, b8_wall / 8
    probabilities = classifier.probabilities(batch1)[0]
    labels = default_label_map().labels(probabilities, max_labels=10, min_confidence=60)
    with Image.open(io.BytesIO(data)) as image:
        size, fmt = image.size, image.format
    return {
        "photo": name,
        "format": fmt,
        "pixels": f"{size[0]}x{size[1]}",
        "preprocess_ms": round(pre_cpu * 1000, 2),
        "model_b1_ms": round(b1_cpu * 1000, 2),
        "model_b8_ms": round(b8_cpu * 1000, 2),
        "end_to_end_b1_ms": round((pre_cpu + b1_cpu) * 1000, 2),
        "end_to_end_b8_ms": round((pre_cpu + b8_cpu) * 1000, 2),
        "wall_end_to_end_b1_ms": round((pre_wall + b1_wall) * 1000, 2),
        "wall_end_to_end_b8_ms": round((pre_wall + b8_wall) * 1000, 2),
        "labels": [f"{label.name} {label.confidence:.0f}" for label in labels],
    }


def _per_second(ms: float) -> float:
    return round(1000.0 / ms, 1) if ms > 0 else 0.0


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Images/s per core over the whole set (total time, so big photos weigh what they cost)."""

    def total(key: str) -> float:
        return float(sum(row[key] for row in rows)) / len(rows)

    return {
        "images_per_s_per_core_b1": _per_second(total("end_to_end_b1_ms")),
        "images_per_s_per_core_b8": _per_second(total("end_to_end_b8_ms")),
        "model_only_images_per_s_b1": _per_second(total("model_b1_ms")),
        "model_only_images_per_s_b8": _per_second(total("model_b8_ms")),
        "preprocess_images_per_s": _per_second(total("preprocess_ms")),
    }


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table, or one JSON document with `--json`."""
    parser = argparse.ArgumentParser(prog="bench.tagger", description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, help="photos (default: the corpus)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    args = parser.parse_args(argv)

    source, photos = load_photos(args.directory)
    if not photos:
        parser.error(f"no photos in {source}")
    with tempfile.TemporaryDirectory() as cache:
        # A private cache: the benchmark never touches the user's, and times a cold build too.
        started = time.perf_counter()
        classifier = open_classifier(
            TaggerSettings(model_cache_dir=Path(cache), intra_op_threads=1)
        )
        build_s = time.perf_counter() - started
        rows = [bench_photo(classifier, name, data, args.repeat) for name, data in photos]
    summary = summarize(rows)
    jpeg_rows = [row for row in rows if row["format"] in ("JPEG", "MPO")]
    jpeg_summary = summarize(jpeg_rows) if jpeg_rows else None
    if args.json:
        document = {
            "source": source,
            "providers": classifier.providers,
            "model_build_s": round(build_s, 2),
            "summary": summary,
            "summary_jpeg": jpeg_summary,
            "photos": rows,
        }
        print(json.dumps(document, indent=2))
        return 0
    print(f"tagger benchmark: {source}; {classifier.providers[0]}, 1 intra-op thread")
    print(f"model built from the weights in {build_s:.2f} s (first start; cached after)")
    print("CPU ms per image (one core):")
    header = f"{'photo':<42} {'pre':>6} {'m b1':>6} {'m b8':>6} {'e2e b1':>7} {'e2e b8':>7}"
    print(header + "  labels (min 60)")
    for row in rows:
        print(
            f"{row['photo'][:42]:<42} {row['preprocess_ms']:>6.1f} {row['model_b1_ms']:>6.1f} "
            f"{row['model_b8_ms']:>6.1f} {row['end_to_end_b1_ms']:>7.1f} "
            f"{row['end_to_end_b8_ms']:>7.1f}  {', '.join(row['labels']) or '-'}"
        )
    print(
        f"images/s per core: batch 1 {summary['images_per_s_per_core_b1']}, "
        f"batch 8 {summary['images_per_s_per_core_b8']} "
        f"(model only: {summary['model_only_images_per_s_b1']} / "
        f"{summary['model_only_images_per_s_b8']}; "
        f"preprocess only: {summary['preprocess_images_per_s']})"
    )
    if jpeg_summary and len(jpeg_rows) < len(rows):
        print(
            f"JPEGs alone: batch 1 {jpeg_summary['images_per_s_per_core_b1']}, "
            f"batch 8 {jpeg_summary['images_per_s_per_core_b8']} images/s per core"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
