"""Tagger quality and cost: the labelled set photo by photo, CPU per 20 MP photo, throughput.

1. The labelled set (`tests/fixtures/labelled/labels.json`, or DIR): for each photo the labels
   given (confidence, boxes), hit or miss (any expected label counts), whether the main object's
   region is covered by a box of its label (IoU >= 0.3, or one centre inside the other), and CPU
   ms per part (decode, classifier, detector). Overall: share of photos with an expected label,
   share with no label, share of photos whose main subject is a person that get "Person", hits
   per category, and the same shares for the classifier alone at a 60% threshold (the baseline
   that shows what the detector adds).
2. Thresholds: the classifier's, the detector's and the fallback's minimum confidences swept over
   the whole set (from one run of each model per photo), with the settings that meet the
   targets and give the fewest labels outside the expected ones.
3. CPU per 20 MP baseline JPEG (decode + both models, one thread, `time.thread_time`, median of
   `--repeat` runs after a warm-up): a generated 5472x3648 photo, plus the corpus's
   kleiber_6028x3391.jpg beside the checkout when it is there; the target is 0.15 s.
4. The detector's two packaged models, int8 and float, on the labelled set's photos: how many of
   the float model's detections (score >= 0.35) the int8 one finds too (same class, IoU >= 0.5),
   the boxes' mean IoU and the scores' mean change, and CPU ms per run of each (interleaved).
   The rest of the benchmark runs the one `--detector-precision` picks (auto: as a worker would).
5. Classifier throughput (preprocess, inference at batch 1 and 8) over the corpus photos, a
   `--photos` DIR, or generated ones.

The models run with one intra-op thread, as a worker does by default; times are CPU seconds of
the calling thread, so images/s per core is 1 / time whatever else runs on the machine.

    python -m bench.tagger [DIR] [--repeat N] [--json] [--photos DIR] [--no-corpus]
        [--no-throughput] [--engine auto|recognizer|classifier]
        [--detector-precision auto|int8|fp32]
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import itertools
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import structlog
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from imgproc_shared.models import Label
from imgproc_tagger.classifier import Classifier, open_classifier
from imgproc_tagger.config import TaggerSettings
from imgproc_tagger.labels import default_label_map
from imgproc_tagger.preprocess import preprocess

REPO_ROOT = Path(__file__).resolve().parents[1]
LABELLED_SET = REPO_ROOT / "tests" / "fixtures" / "labelled"
CORPUS_PHOTOS = REPO_ROOT.parent / "shared" / "corpus" / "photos"
CORPUS_20MP = CORPUS_PHOTOS / "kleiber_6028x3391.jpg"
SUFFIXES = {".jpg", ".jpeg", ".png", ".mpo"}

# What the tagger must reach on the labelled set and the 20 MP photo.
TARGET_HIT_SHARE = 0.90
TARGET_NO_LABEL_SHARE = 0.05
TARGET_CPU_S_PER_20MP = 0.15
# The baseline: the classifier alone, at the shared IMGPROC_TAGGER_MIN_CONFIDENCE's default.
BEFORE_MIN_CONFIDENCE = 60.0
MAX_LABELS = 10
REGION_MIN_IOU = 0.3
# Two models' detections are the same object when their class is and their boxes overlap so.
SAME_DETECTION_MIN_IOU = 0.5
COMPARED_MIN_SCORE = 0.35

Category = Literal["people", "animals", "vehicles", "food", "indoor", "outdoor"]
CATEGORIES: tuple[Category, ...] = ("people", "animals", "vehicles", "food", "indoor", "outdoor")


# --- the labelled set -------------------------------------------------------------------------


class Region(BaseModel):
    """The main object's rough box, as fractions of the upright image, and its label."""

    model_config = ConfigDict(extra="forbid")

    label: str
    left: float = Field(ge=0, le=1)
    top: float = Field(ge=0, le=1)
    width: float = Field(gt=0, le=1)
    height: float = Field(gt=0, le=1)

    def box(self) -> tuple[float, float, float, float]:
        return self.left, self.top, self.left + self.width, self.top + self.height


class LabelledPhoto(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str  # relative to the set's folder
    category: Category
    main_subject_is_person: bool
    expected: list[str] = Field(min_length=1)
    region: Region | None = None
    hard: bool = False
    note: str | None = None


class LabelledSet(BaseModel):
    model_config = ConfigDict(extra="forbid")

    about: str = ""
    photos: list[LabelledPhoto] = Field(min_length=1)

    @classmethod
    def load(cls, folder: Path) -> LabelledSet:
        return cls.model_validate_json((folder / "labels.json").read_text("utf-8"))


# --- the engines: the recognizer, or the classifier alone --------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One photo through an engine: its labels and CPU seconds per part."""

    labels: list[Label]
    decode_s: float
    classifier_s: float
    detector_s: float

    @property
    def total_s(self) -> float:
        return self.decode_s + self.classifier_s + self.detector_s


@dataclass(frozen=True)
class RawOutputs:
    """What the two models said about one photo before any threshold, for the sweep."""

    prepared: Any  # imgproc_tagger.recognizer.Prepared
    probabilities: Any  # (1000,) classifier class probabilities
    confidences: dict[str, float]  # the classifier's label confidences (percent) by name
    detections: list[Any]  # imgproc_tagger.detector.Detection, below every threshold swept
    # The classifier's label confidences on each region given a second look, by box: which
    # region gets one depends on the thresholds, so the sweep fills this as it goes.
    second_looks: dict[tuple[float, ...], dict[str, float]] = dataclasses.field(
        default_factory=dict
    )


class ClassifierAlone:
    """The baseline tagger: 224 px centre crop, EfficientNet-Lite0, the label map; no detector."""

    name = "classifier"

    def __init__(self, classifier: Classifier, min_confidence: float) -> None:
        self.classifier = classifier
        self.min_confidence = min_confidence
        self.label_map = default_label_map()

    def run(self, data: bytes) -> Outcome:
        t0 = time.thread_time()
        sample = preprocess(data)
        t1 = time.thread_time()
        probabilities = self.classifier.probabilities(sample[np.newaxis])[0]
        labels = self.label_map.labels(
            probabilities, max_labels=MAX_LABELS, min_confidence=self.min_confidence
        )
        t2 = time.thread_time()
        return Outcome(labels, t1 - t0, t2 - t1, 0.0)


class RecognizerEngine:
    """`imgproc_tagger.recognizer.Recognizer`: both models, one decode, merged labels."""

    name = "recognizer"

    def __init__(self, settings: TaggerSettings) -> None:
        from imgproc_tagger.recognizer import Recognizer

        self.recognizer = Recognizer.open(settings)

    def run(self, data: bytes) -> Outcome:
        result = self.recognizer.recognize(data, max_labels=MAX_LABELS)
        return Outcome(list(result.labels), result.decode_s, result.classifier_s, result.detector_s)

    def raw(self, data: bytes) -> RawOutputs | None:
        """Both models' unthresholded outputs, where the recognizer exposes them."""
        try:
            from imgproc_tagger.recognizer import prepare

            prepared = prepare(data, 100_000_000)
            classifier_input = prepared.classifier_input[np.newaxis]
            probabilities = self.recognizer.classifier.probabilities(classifier_input)[0]
            confidences = dict(self.recognizer.label_confidences(probabilities))
            detections = self.recognizer.detect(prepared)
            return RawOutputs(prepared, probabilities, confidences, list(detections))
        except (ImportError, AttributeError, TypeError):
            return None

    def second_look(self, raw: RawOutputs, thresholds: Any) -> Any:
        """The recognizer's second look at these thresholds (None where it takes none), from the
        raw outputs' cache where that region was classified before."""
        from imgproc_tagger.recognizer import SecondLook, second_look_target

        target = second_look_target(raw.detections, raw.confidences, thresholds)
        if target is None:
            return None
        if target.box not in raw.second_looks:
            from imgproc_tagger.preprocess import region_sample

            sample = region_sample(raw.prepared.detector_image, target.box)
            probabilities = self.recognizer.classifier.probabilities(sample[np.newaxis])[0]
            raw.second_looks[target.box] = self.recognizer.label_confidences(probabilities)
        return SecondLook(target.box, raw.second_looks[target.box])

    def relabel(
        self, raw: RawOutputs, classifier: float, detector: float, fallback: float
    ) -> list[Label] | None:
        """The labels the recognizer would give at these thresholds (None where it cannot say):
        its `merge_labels` on the stored confidences (fast), else its own `merge` with its
        thresholds swapped for the call."""
        saved = self.recognizer.thresholds
        try:
            thresholds = dataclasses.replace(
                saved, classifier=classifier, detector=detector, fallback=fallback
            )
            try:
                from imgproc_tagger.recognizer import merge_labels

                merged = merge_labels(
                    raw.confidences,
                    raw.detections,
                    label_map=self.recognizer.label_map,
                    thresholds=thresholds,
                    max_labels=MAX_LABELS,
                    second_look=self.second_look(raw, thresholds),
                )
                return list(merged)
            except (ImportError, TypeError):
                pass
            self.recognizer.thresholds = thresholds
            labels = self.recognizer.merge(
                raw.probabilities, raw.detections, raw.prepared, MAX_LABELS
            )
            return list(labels)
        except (AttributeError, TypeError, ValueError):
            return None
        finally:
            self.recognizer.thresholds = saved

    def current_thresholds(self) -> dict[str, float] | None:
        thresholds = getattr(self.recognizer, "thresholds", None)
        if thresholds is None:
            return None
        return {
            key: float(getattr(thresholds, key))
            for key in ("classifier", "detector", "fallback")
            if hasattr(thresholds, key)
        }


def recognizer_available() -> bool:
    try:
        from imgproc_tagger import recognizer  # noqa: F401
    except ImportError:
        return False
    return True


# --- scoring ----------------------------------------------------------------------------------


def _iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _centre_inside(inner: tuple[float, float, float, float], outer: Sequence[float]) -> bool:
    x, y = (inner[0] + inner[2]) / 2, (inner[1] + inner[3]) / 2
    return outer[0] <= x <= outer[2] and outer[1] <= y <= outer[3]


def region_check(region: Region, labels: list[Label]) -> dict[str, Any]:
    """Does a box of the region's label cover it: IoU >= 0.3, or one centre inside the other?"""
    target = region.box()
    boxes = [
        (
            instance.bounding_box.left,
            instance.bounding_box.top,
            instance.bounding_box.left + instance.bounding_box.width,
            instance.bounding_box.top + instance.bounding_box.height,
        )
        for label in labels
        if label.name == region.label
        for instance in label.instances
    ]
    best_iou = max((_iou(target, box) for box in boxes), default=0.0)
    centre = any(_centre_inside(target, box) or _centre_inside(box, target) for box in boxes)
    return {
        "label": region.label,
        "boxes": len(boxes),
        "best_iou": round(best_iou, 3),
        "centre_inside": centre,
        "match": bool(boxes) and (best_iou >= REGION_MIN_IOU or centre),
    }


def score_photo(photo: LabelledPhoto, labels: list[Label]) -> dict[str, Any]:
    names = [label.name for label in labels]
    hits = [name for name in names if name in photo.expected]
    return {
        "hit": bool(hits),
        "hit_labels": hits,
        "no_label": not names,
        "person_found": "Person" in names,
    }


def shares(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Overall shares of a list of scored photos (`hit`, `no_label`, `person_found`, category)."""
    total = len(rows)
    people = [row for row in rows if row["main_subject_is_person"]]
    per_category = {
        category: {
            "photos": sum(1 for row in rows if row["category"] == category),
            "hits": sum(1 for row in rows if row["category"] == category and row["hit"]),
        }
        for category in CATEGORIES
    }
    return {
        "photos": total,
        "hit_share": round(sum(row["hit"] for row in rows) / total, 3) if total else 0.0,
        "no_label_share": round(sum(row["no_label"] for row in rows) / total, 3) if total else 0.0,
        "person_main_subject_photos": len(people),
        "person_found_share": (
            round(sum(row["person_found"] for row in people) / len(people), 3) if people else None
        ),
        "per_category": per_category,
        "misses": [row["file"] for row in rows if not row["hit"]],
        "no_label": [row["file"] for row in rows if row["no_label"]],
    }


def meets_targets(summary: dict[str, Any]) -> bool:
    person = summary["person_found_share"]
    return bool(
        summary["hit_share"] >= TARGET_HIT_SHARE
        and summary["no_label_share"] <= TARGET_NO_LABEL_SHARE
        and (person is None or person >= 1.0)
    )


def _label_json(label: Label) -> dict[str, Any]:
    return {
        "name": label.name,
        "confidence": round(label.confidence, 1),
        "boxes": len(label.instances),
    }


def bench_labelled(
    folder: Path, engine: RecognizerEngine | ClassifierAlone, before: ClassifierAlone | None
) -> tuple[list[dict[str, Any]], list[tuple[LabelledPhoto, RawOutputs]]]:
    """Every photo of the set through the engine (and the classifier alone, for "before")."""
    labelled = LabelledSet.load(folder)
    rows: list[dict[str, Any]] = []
    raws: list[tuple[LabelledPhoto, RawOutputs]] = []
    for photo in labelled.photos:
        data = (folder / photo.file).read_bytes()
        wall0 = time.perf_counter()
        outcome = engine.run(data)
        wall_s = time.perf_counter() - wall0
        row: dict[str, Any] = {
            "file": photo.file,
            "category": photo.category,
            "main_subject_is_person": photo.main_subject_is_person,
            "hard": photo.hard,
            "expected": photo.expected,
            "labels": [_label_json(label) for label in outcome.labels],
            **score_photo(photo, outcome.labels),
            "region": region_check(photo.region, outcome.labels) if photo.region else None,
            "cpu_ms": {
                "decode": round(outcome.decode_s * 1000, 1),
                "classifier": round(outcome.classifier_s * 1000, 1),
                "detector": round(outcome.detector_s * 1000, 1),
                "total": round(outcome.total_s * 1000, 1),
            },
            "wall_ms": round(wall_s * 1000, 1),
        }
        if before is not None:
            old = before.run(data)
            row["before"] = {
                "labels": [_label_json(label) for label in old.labels],
                **score_photo(photo, old.labels),
            }
        if isinstance(engine, RecognizerEngine):
            raw = engine.raw(data)
            if raw is not None:
                raws.append((photo, raw))
        rows.append(row)
    return rows, raws


# --- threshold sweep --------------------------------------------------------------------------

SWEEP_CLASSIFIER = (25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0, 60.0)
SWEEP_DETECTOR = (25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0)
SWEEP_FALLBACK = (101.0, 15.0, 20.0, 25.0, 30.0, 40.0)  # 101: no fallback


def sweep_thresholds(
    engine: RecognizerEngine, raws: list[tuple[LabelledPhoto, RawOutputs]]
) -> dict[str, Any] | None:
    """Every threshold combination over the whole set: shares, and labels beyond the expected.

    "Unexpected" labels are those neither expected nor a parent of an expected one: the lists
    are not exhaustive, so this only ranks settings by how much more they say."""
    if not raws:
        return None
    results = []
    for classifier, detector, fallback in itertools.product(
        SWEEP_CLASSIFIER, SWEEP_DETECTOR, SWEEP_FALLBACK
    ):
        rows, labels_given, unexpected = [], 0, 0
        for photo, raw in raws:
            labels = engine.relabel(raw, classifier, detector, fallback)
            if labels is None:
                return None
            allowed = set(photo.expected)
            for label in labels:
                if label.name in photo.expected:
                    allowed.update(label.parents)
            labels_given += len(labels)
            unexpected += sum(1 for label in labels if label.name not in allowed)
            rows.append(
                {
                    "file": photo.file,
                    "category": photo.category,
                    "main_subject_is_person": photo.main_subject_is_person,
                    **score_photo(photo, labels),
                }
            )
        summary = shares(rows)
        results.append(
            {
                "classifier": classifier,
                "detector": detector,
                "fallback": None if fallback > 100 else fallback,
                "hit_share": summary["hit_share"],
                "no_label_share": summary["no_label_share"],
                "person_found_share": summary["person_found_share"],
                "labels_per_photo": round(labels_given / len(raws), 2),
                "unexpected_per_photo": round(unexpected / len(raws), 2),
                "meets_targets": meets_targets(summary),
            }
        )
    # Best first: meets the targets, most hits, fewest empty answers, fewest unexpected labels.
    results.sort(
        key=lambda r: (
            not r["meets_targets"],
            -r["hit_share"],
            r["no_label_share"],
            r["unexpected_per_photo"],
            -r["classifier"],
            -r["detector"],
        )
    )
    # The trade-off: for each share of hits, the setting that says least beyond the expected
    # (ties: the fewest empty answers, then the highest thresholds).
    front: dict[float, dict[str, Any]] = {}
    for r in sorted(
        results,
        key=lambda r: (
            r["unexpected_per_photo"],
            r["no_label_share"],
            -r["classifier"],
            -r["detector"],
            -(r["fallback"] or 101.0),
        ),
    ):
        front.setdefault(r["hit_share"], r)
    trade_off = [front[hit] for hit in sorted(front, reverse=True)]
    current = engine.current_thresholds()
    current_row = None
    if current:
        fallback_now = current.get("fallback")
        for r in results:
            if (
                r["classifier"] == current.get("classifier")
                and r["detector"] == current.get("detector")
                and r["fallback"] == fallback_now
            ):
                current_row = r
    return {
        "current": current,
        "current_result": current_row,
        "best": results[:8],
        "trade_off": trade_off[:8],
    }


# --- CPU per 20 MP ----------------------------------------------------------------------------


def generated_20mp_jpeg() -> bytes:
    """A 5472x3648 (20 MP) baseline JPEG, q90 4:2:0, of smooth noise: a camera photo's size."""
    rng = np.random.default_rng(20)
    small = rng.integers(0, 255, (3648 // 48, 5472 // 48, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize((5472, 3648), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, subsampling=2, progressive=False)
    return out.getvalue()


def cpu_per_photo(
    engine: RecognizerEngine | ClassifierAlone, name: str, data: bytes, repeat: int
) -> dict[str, Any]:
    """Median CPU seconds of this thread per part, over `repeat` runs after one warm-up."""
    engine.run(data)
    runs = [engine.run(data) for _ in range(repeat)]
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    total = statistics.median(run.total_s for run in runs)
    return {
        "photo": name,
        "pixels": f"{width}x{height}",
        "megapixels": round(width * height / 1e6, 1),
        "decode_s": round(statistics.median(run.decode_s for run in runs), 4),
        "classifier_s": round(statistics.median(run.classifier_s for run in runs), 4),
        "detector_s": round(statistics.median(run.detector_s for run in runs), 4),
        "total_s": round(total, 4),
        "target_s": TARGET_CPU_S_PER_20MP,
        "within_target": total <= TARGET_CPU_S_PER_20MP,
    }


# --- classifier throughput (batch 1 and 8) ----------------------------------------------------


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


def warm_up_photos() -> list[bytes]:
    """Small JPEGs, one with an EXIF orientation: the first EXIF read imports Pillow's TIFF
    code, which no photo of the set should be charged for."""
    image = Image.new("RGB", (640, 480), (90, 120, 150))
    plain, oriented = io.BytesIO(), io.BytesIO()
    image.save(plain, "JPEG")
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(oriented, "JPEG", exif=exif.tobytes())
    return [plain.getvalue(), oriented.getvalue()]


def load_photos(directory: Path | None, use_corpus: bool) -> tuple[str, list[tuple[str, bytes]]]:
    folder = directory or (CORPUS_PHOTOS if use_corpus and CORPUS_PHOTOS.is_dir() else None)
    if folder is None:
        return "generated", generated_photos()
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)
    return str(folder), [(p.name, p.read_bytes()) for p in files]


def throughput_photo(classifier: Classifier, name: str, data: bytes, repeat: int) -> dict[str, Any]:
    sample = preprocess(data)
    batch1, batch8 = sample[np.newaxis], np.repeat(sample[np.newaxis], 8, axis=0)
    pre_cpu, _ = _timed(lambda: preprocess(data), repeat)
    b1_cpu, _ = _timed(lambda: classifier.probabilities(batch1), repeat)
    b8_cpu, _ = _timed(lambda: classifier.probabilities(batch8), max(1, repeat // 2))
    b8_cpu /= 8
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
    }


def _per_second(ms: float) -> float:
    return round(1000.0 / ms, 1) if ms > 0 else 0.0


def summarize_throughput(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Images/s per core over the whole set (total time, so big photos weigh what they cost)."""

    def mean(key: str) -> float:
        return float(sum(row[key] for row in rows)) / len(rows)

    return {
        "images_per_s_per_core_b1": _per_second(mean("end_to_end_b1_ms")),
        "images_per_s_per_core_b8": _per_second(mean("end_to_end_b8_ms")),
        "model_only_images_per_s_b1": _per_second(mean("model_b1_ms")),
        "model_only_images_per_s_b8": _per_second(mean("model_b8_ms")),
        "preprocess_images_per_s": _per_second(mean("preprocess_ms")),
    }


# --- the run ----------------------------------------------------------------------------------


# --- the detector's precisions ----------------------------------------------------------------


def compare_precisions(images: Sequence[Image.Image], repeat: int) -> dict[str, Any]:
    """The int8 detector against the float one on the same decoded photos (see 4. above)."""
    from imgproc_tagger.detector import Detector, box_iou, detector_input, packaged_model

    cpu = ["CPUExecutionProvider"]
    float_model = Detector(packaged_model("fp32"), providers=cpu, precision="fp32")
    int8_model = Detector(packaged_model("int8"), providers=cpu, precision="int8")
    found = matched = 0
    ious: list[float] = []
    score_changes: list[float] = []
    int8_only = 0
    for image in images:
        expected = float_model.detect(image, COMPARED_MIN_SCORE)
        got = int8_model.detect(image, COMPARED_MIN_SCORE)
        found += len(expected)
        used: set[int] = set()
        for detection in expected:
            same = [
                i
                for i, g in enumerate(got)
                if g.class_index == detection.class_index and i not in used
            ]
            if not same:
                continue
            overlaps = box_iou(np.array(detection.box), np.array([got[i].box for i in same]))
            best = int(np.argmax(overlaps))
            if overlaps[best] >= SAME_DETECTION_MIN_IOU:
                matched += 1
                used.add(same[best])
                ious.append(float(overlaps[best]))
                score_changes.append(got[same[best]].score - detection.score)
        int8_only += len(got) - len(used)
    batches = [detector_input(image) for image in images]
    ms: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(repeat):  # interleaved, so that the machine's load falls on both alike
        for name, model in (("fp32", float_model), ("int8", int8_model)):
            started = time.thread_time()
            for batch in batches:
                model.raw_outputs(batch)
            ms[name].append((time.thread_time() - started) * 1000 / max(len(batches), 1))
    return {
        "photos": len(images),
        "float_detections": found,
        "matched_by_int8": matched,
        "int8_only": int8_only,
        "mean_iou": round(statistics.fmean(ious), 3) if ious else None,
        "mean_abs_score_change": (
            round(statistics.fmean(abs(c) for c in score_changes), 3) if score_changes else None
        ),
        "ms_per_run": {name: round(statistics.median(v), 1) for name, v in ms.items()},
    }


@dataclass
class Report:
    engine: str
    labelled_set: str
    model_build_s: float
    photos: list[dict[str, Any]]
    summary: dict[str, Any]
    before: dict[str, Any] | None
    thresholds: dict[str, Any] | None
    cpu_per_20mp: list[dict[str, Any]]
    throughput: dict[str, Any] | None
    detector: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "labelled_set": self.labelled_set,
            "model_build_s": round(self.model_build_s, 2),
            "targets": {
                "hit_share_min": TARGET_HIT_SHARE,
                "no_label_share_max": TARGET_NO_LABEL_SHARE,
                "person_found_share_min": 1.0,
                "cpu_s_per_20mp_max": TARGET_CPU_S_PER_20MP,
            },
            "summary": self.summary,
            "before": self.before,
            "thresholds": self.thresholds,
            "cpu_per_20mp": self.cpu_per_20mp,
            "throughput": self.throughput,
            "detector": self.detector,
            "photos": self.photos,
            "notes": self.notes,
        }


@contextmanager
def _models(
    engine_choice: str, detector_precision: str
) -> Iterator[tuple[RecognizerEngine | ClassifierAlone, Any, float]]:
    with tempfile.TemporaryDirectory() as cache:
        # A private cache: the benchmark never touches the user's, and times a cold build too.
        settings = TaggerSettings(
            model_cache_dir=Path(cache),
            intra_op_threads=1,
            detector_precision=detector_precision,  # type: ignore[arg-type]
        )
        started = time.perf_counter()
        classifier = open_classifier(settings)
        use_recognizer = engine_choice == "recognizer" or (
            engine_choice == "auto" and recognizer_available()
        )
        engine: RecognizerEngine | ClassifierAlone = (
            RecognizerEngine(settings)
            if use_recognizer
            else ClassifierAlone(classifier, BEFORE_MIN_CONFIDENCE)
        )
        yield engine, classifier, time.perf_counter() - started


def run(args: argparse.Namespace) -> Report:
    with _models(args.engine, args.detector_precision) as (engine, classifier, build_s):
        before = ClassifierAlone(classifier, BEFORE_MIN_CONFIDENCE)
        for warm in warm_up_photos():
            engine.run(warm)
            before.run(warm)
        rows, raws = bench_labelled(
            args.directory, engine, before if isinstance(engine, RecognizerEngine) else None
        )
        summary = shares(rows)
        summary["regions"] = {
            "photos": sum(1 for row in rows if row["region"]),
            "matched": sum(1 for row in rows if row["region"] and row["region"]["match"]),
        }
        summary["mean_cpu_ms"] = {
            part: round(statistics.fmean(row["cpu_ms"][part] for row in rows), 1)
            for part in ("decode", "classifier", "detector", "total")
        }
        summary["meets_targets"] = meets_targets(summary)
        if isinstance(engine, RecognizerEngine):
            before_summary = shares(
                [{**row, **row["before"]} for row in rows if row.get("before") is not None]
            )
        else:
            before_summary = dict(summary)  # the engine is the classifier alone
        before_summary["min_confidence"] = BEFORE_MIN_CONFIDENCE
        thresholds = (
            sweep_thresholds(engine, raws) if isinstance(engine, RecognizerEngine) else None
        )

        big = [("generated_5472x3648.jpg", generated_20mp_jpeg())]
        if not args.no_corpus and CORPUS_20MP.is_file():
            big.append((CORPUS_20MP.name, CORPUS_20MP.read_bytes()))
        cpu = [cpu_per_photo(engine, name, data, args.repeat) for name, data in big]

        detector = None
        if isinstance(engine, RecognizerEngine):
            images = [raw.prepared.detector_image for _, raw in raws]
            detector = {
                "precision": engine.recognizer.detector.precision,
                "comparison": compare_precisions(images, args.repeat),
            }

        throughput = None
        if not args.no_throughput:
            source, photos = load_photos(args.photos, not args.no_corpus)
            trows = [throughput_photo(classifier, n, d, args.repeat) for n, d in photos]
            throughput = {
                "source": source,
                "providers": classifier.providers,
                "summary": summarize_throughput(trows) if trows else None,
                "photos": trows,
            }
    notes = []
    if isinstance(engine, ClassifierAlone):
        notes.append("the recognizer is not there: the classifier alone was measured")
    return Report(
        engine.name,
        str(args.directory),
        build_s,
        rows,
        summary,
        before_summary,
        thresholds,
        cpu,
        throughput,
        detector,
        notes,
    )


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def print_table(report: Report) -> None:
    detector = report.detector
    precision = f", {detector['precision']} detector" if detector else ""
    print(
        f"tagger benchmark: {report.engine}{precision}, 1 intra-op thread; "
        f"set {report.labelled_set}"
    )
    print(f"models built in {report.model_build_s:.2f} s (first start; cached after)")
    print()
    header = f"{'photo':<36} {'cat':<8} {'hit':<4} {'box':<5} {'dec':>5} {'cls':>5} {'det':>5}"
    print(header + "  labels (confidence, [boxes])")
    for row in report.photos:
        region = row["region"]
        box = "-" if region is None else ("ok" if region["match"] else "MISS")
        labels = ", ".join(
            f"{label['name']} {label['confidence']:.0f}"
            + (f" [{label['boxes']}]" if label["boxes"] else "")
            for label in row["labels"]
        )
        ms = row["cpu_ms"]
        print(
            f"{Path(row['file']).name[:36]:<36} {row['category'][:8]:<8} "
            f"{'yes' if row['hit'] else 'NO':<4} {box:<5} {ms['decode']:>5.0f} "
            f"{ms['classifier']:>5.0f} {ms['detector']:>5.0f}  {labels or '(none)'}"
        )
    s = report.summary
    print()
    print(
        f"{s['photos']} photos: expected label on {_pct(s['hit_share'])} "
        f"(target >= {TARGET_HIT_SHARE:.0%}), no label on {_pct(s['no_label_share'])} "
        f"(target <= {TARGET_NO_LABEL_SHARE:.0%}), Person on {_pct(s['person_found_share'])} "
        f"of {s['person_main_subject_photos']} person photos (target 100%)"
        f"{'' if s['meets_targets'] else '  -- TARGETS NOT MET'}"
    )
    print(
        "per category: "
        + ", ".join(f"{name} {c['hits']}/{c['photos']}" for name, c in s["per_category"].items())
    )
    print(f"regions covered by a box: {s['regions']['matched']}/{s['regions']['photos']}")
    ms = s["mean_cpu_ms"]
    print(
        f"mean CPU ms per photo (<= 800 px): decode {ms['decode']}, classifier "
        f"{ms['classifier']}, detector {ms['detector']}, total {ms['total']}"
    )
    if s["misses"]:
        print(f"misses: {', '.join(Path(f).name for f in s['misses'])}")
    if report.before is not None:
        b = report.before
        print(
            f"before (classifier alone, min {b['min_confidence']:.0f}%): expected label on "
            f"{_pct(b['hit_share'])}, no label on {_pct(b['no_label_share'])}, Person on "
            f"{_pct(b['person_found_share'])}"
        )
    if report.thresholds:
        t = report.thresholds
        print()
        print(f"thresholds now: {t['current']}")
        if t["current_result"]:
            r = t["current_result"]
            print(
                f"  at them: hits {_pct(r['hit_share'])}, none {_pct(r['no_label_share'])}, "
                f"unexpected labels/photo {r['unexpected_per_photo']}"
            )
        print(
            "trade-off over the whole set, per share of hits the setting with the fewest labels "
            "beyond the expected (classifier / detector / fallback):"
        )
        for r in t["trade_off"][:6]:
            fallback = "-" if r["fallback"] is None else f"{r['fallback']:.0f}"
            print(
                f"  {r['classifier']:>4.0f} / {r['detector']:>4.0f} / {fallback:>4}: "
                f"hits {_pct(r['hit_share'])}, none {_pct(r['no_label_share'])}, "
                f"Person {_pct(r['person_found_share'])}, labels/photo "
                f"{r['labels_per_photo']}, unexpected/photo {r['unexpected_per_photo']}"
            )
    print()
    print("CPU per photo, decode + both models (median, one thread; target <= 0.15 s at 20 MP):")
    for c in report.cpu_per_20mp:
        print(
            f"  {c['photo']:<28} {c['pixels']:>10}: {c['total_s']:.3f} s (decode "
            f"{c['decode_s']:.3f}, classifier {c['classifier_s']:.3f}, detector "
            f"{c['detector_s']:.3f}) {'ok' if c['within_target'] else 'OVER TARGET'}"
        )
    if detector:
        c = detector["comparison"]
        print(
            f"detector int8 against float on the set's {c['photos']} photos: "
            f"{c['matched_by_int8']} of {c['float_detections']} float detections (score >= "
            f"{COMPARED_MIN_SCORE}) found alike (same class, IoU >= {SAME_DETECTION_MIN_IOU}), "
            f"{c['int8_only']} int8 ones without a float match; mean IoU {c['mean_iou']}, mean "
            f"score change {c['mean_abs_score_change']}; CPU ms per run: float "
            f"{c['ms_per_run']['fp32']}, int8 {c['ms_per_run']['int8']}"
        )
    if report.throughput and report.throughput["summary"]:
        t = report.throughput
        summary = t["summary"]
        print(
            f"classifier throughput ({t['source']}): "
            f"{summary['images_per_s_per_core_b1']} images/s per core at batch 1, "
            f"{summary['images_per_s_per_core_b8']} at batch 8 (model only "
            f"{summary['model_only_images_per_s_b1']} / {summary['model_only_images_per_s_b8']}; "
            f"preprocess only {summary['preprocess_images_per_s']})"
        )
    for note in report.notes:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table, or one JSON document with `--json`."""
    parser = argparse.ArgumentParser(prog="bench.tagger", description=__doc__.splitlines()[0])
    parser.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=LABELLED_SET,
        help="a labelled set: a folder with labels.json (default: tests/fixtures/labelled)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per CPU measurement")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--photos", type=Path, help="photos for the throughput part")
    parser.add_argument(
        "--no-corpus", action="store_true", help="never read the corpus beside the checkout"
    )
    parser.add_argument("--no-throughput", action="store_true", help="skip the throughput part")
    parser.add_argument(
        "--engine",
        choices=("auto", "recognizer", "classifier"),
        default="auto",
        help="auto: the recognizer where it is installed, else the classifier alone",
    )
    parser.add_argument(
        "--detector-precision",
        choices=("auto", "int8", "fp32"),
        default="auto",
        help="which packaged detector the recognizer runs (auto: as a worker on this machine)",
    )
    args = parser.parse_args(argv)
    # Log lines (the model build) go to stderr, so that `--json` prints one document on stdout.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    if not (args.directory / "labels.json").is_file():
        print(f"bench.tagger: no labels.json in {args.directory}", file=sys.stderr)
        return 2
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    report = run(args)
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
