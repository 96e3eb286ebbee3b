"""Recognition on one machine: two models read one small decode of the photo, and their answers
merge into one Rekognition-shaped label list.

- The classifier (EfficientNet-Lite0, ImageNet-1k) knows breeds, food, objects and scenes, but
  names one dominant thing and has no "person".
- The detector (NanoDet, COCO-80) finds every person, animal, vehicle and household object, with
  boxes.

The photo is decoded once, at the smallest JPEG draft scale that still covers the detector's
416 px input (a 20 MP photo decodes at 1/8 size), and turned upright by its EXIF orientation
(cheap at that size); the classifier's 224 px centre crop and the detector's whole-image input
are both made from it. The detector sees people and animals standing up, as it was trained, and
its boxes are in the upright frame, as Rekognition reports them.

A second look: where the detector finds an object it cannot name (a fig it calls a donut at
0.27), the classifier is shown that object alone, once per photo at most.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from imgproc_shared import errors
from imgproc_shared.models import BoundingBox, Instance, Label
from imgproc_tagger.classifier import Classifier, open_classifier
from imgproc_tagger.config import TaggerSettings
from imgproc_tagger.detector import DETECTOR_SIZE, Detection, Detector, box_iou, open_detector
from imgproc_tagger.labels import LabelMap, default_label_map
from imgproc_tagger.preprocess import classifier_sample, decode_small, region_sample, upright

Array = np.ndarray[Any, Any]
Box = tuple[float, float, float, float]  # left, top, right, bottom as fractions

# COCO's class names → the label vocabulary (Rekognition's spelling) and parents. Names the
# classifier also gives (Dog, Couch, Banana, ...) become one label with both models' evidence.
COCO_LABELS: dict[str, tuple[str, tuple[str, ...]]] = {
    "person": ("Person", ()),
    "bicycle": ("Bicycle", ("Vehicle",)),
    "car": ("Car", ("Vehicle",)),
    "motorcycle": ("Motorcycle", ("Vehicle",)),
    "airplane": ("Airplane", ("Aircraft", "Vehicle")),
    "bus": ("Bus", ("Vehicle",)),
    "train": ("Train", ("Vehicle",)),
    "truck": ("Truck", ("Vehicle",)),
    "boat": ("Boat", ("Vehicle",)),
    "traffic light": ("Traffic Light", ()),
    "fire hydrant": ("Fire Hydrant", ()),
    "stop sign": ("Stop Sign", ("Sign",)),
    "parking meter": ("Parking Meter", ()),
    "bench": ("Bench", ("Furniture",)),
    "bird": ("Bird", ("Animal",)),
    "cat": ("Cat", ("Mammal", "Animal")),
    "dog": ("Dog", ("Mammal", "Animal")),
    "horse": ("Horse", ("Mammal", "Animal")),
    "sheep": ("Sheep", ("Mammal", "Animal")),
    "cow": ("Cow", ("Cattle", "Mammal", "Animal")),
    "elephant": ("Elephant", ("Mammal", "Animal")),
    "bear": ("Bear", ("Mammal", "Animal")),
    "zebra": ("Zebra", ("Mammal", "Animal")),
    "giraffe": ("Giraffe", ("Mammal", "Animal")),
    "backpack": ("Backpack", ("Bag",)),
    "umbrella": ("Umbrella", ()),
    "handbag": ("Handbag", ("Bag",)),
    "tie": ("Tie", ("Clothing",)),
    "suitcase": ("Suitcase", ("Bag",)),
    "frisbee": ("Frisbee", ("Toy",)),
    "skis": ("Ski", ("Sports Equipment",)),
    "snowboard": ("Snowboard", ("Sports Equipment",)),
    "sports ball": ("Ball", ("Sports Equipment",)),
    "kite": ("Kite", ("Toy",)),
    "baseball bat": ("Baseball Bat", ("Sports Equipment",)),
    "baseball glove": ("Baseball Glove", ("Sports Equipment",)),
    "skateboard": ("Skateboard", ("Sports Equipment",)),
    "surfboard": ("Surfboard", ("Sports Equipment",)),
    "tennis racket": ("Racket", ("Sports Equipment",)),
    "bottle": ("Bottle", ()),
    "wine glass": ("Wine Glass", ("Tableware",)),
    "cup": ("Cup", ("Tableware",)),
    "fork": ("Fork", ("Tableware",)),
    "knife": ("Knife", ("Tableware",)),
    "spoon": ("Spoon", ("Tableware",)),
    "bowl": ("Bowl", ("Tableware",)),
    "banana": ("Banana", ("Fruit", "Food")),
    "apple": ("Apple", ("Fruit", "Food")),
    "sandwich": ("Sandwich", ("Dish", "Food")),
    "orange": ("Orange", ("Fruit", "Food")),
    "broccoli": ("Broccoli", ("Vegetable", "Food")),
    "carrot": ("Carrot", ("Vegetable", "Food")),
    "hot dog": ("Hot Dog", ("Sandwich", "Dish", "Food")),
    "pizza": ("Pizza", ("Dish", "Food")),
    "donut": ("Donut", ("Dessert", "Food")),
    "cake": ("Cake", ("Dessert", "Food")),
    "chair": ("Chair", ("Furniture",)),
    "couch": ("Couch", ("Furniture",)),
    "potted plant": ("Potted Plant", ("Plant",)),
    "bed": ("Bed", ("Furniture",)),
    "dining table": ("Dining Table", ("Table", "Furniture")),
    "toilet": ("Toilet", ()),
    "tv": ("Television", ("Electronics",)),
    "laptop": ("Laptop", ("Computer", "Electronics")),
    "mouse": ("Computer Mouse", ("Electronics",)),
    "remote": ("Remote Control", ("Electronics",)),
    "keyboard": ("Computer Keyboard", ("Electronics",)),
    "cell phone": ("Mobile Phone", ("Electronics",)),
    "microwave": ("Microwave", ("Home Appliance",)),
    "oven": ("Oven", ("Home Appliance",)),
    "toaster": ("Toaster", ("Home Appliance",)),
    "sink": ("Sink", ()),
    "refrigerator": ("Refrigerator", ("Home Appliance",)),
    "book": ("Book", ()),
    "clock": ("Clock", ()),
    "vase": ("Vase", ()),
    "scissors": ("Scissors", ("Tool",)),
    "teddy bear": ("Teddy Bear", ("Toy",)),
    "hair drier": ("Hair Dryer", ("Home Appliance",)),
    "toothbrush": ("Toothbrush", ()),
}
# Where WordNet's hypernyms read oddly as a photo's parents (a zebra is no horse to a person
# searching for horses), the detector's parents win for the classifier's label of that name.
_PARENTS_OVERRIDE = {name: list(parents) for name, parents in COCO_LABELS.values()}
# As Rekognition: every vehicle is also Transportation.
_EXTRA_PARENTS = {"Vehicle": ["Transportation"]}


def parents_of(name: str, label_map: LabelMap) -> list[str]:
    """The coarse parents of `name`, nearest first, closed over `_EXTRA_PARENTS`."""
    parents = list(_PARENTS_OVERRIDE.get(name) or label_map.parents.get(name, []))
    for parent in [name, *parents]:
        for extra in _EXTRA_PARENTS.get(parent, []):
            if extra not in parents:
                parents.append(extra)
    return parents


def _instance(box: Box, confidence: float) -> Instance:
    """A box (left, top, right, bottom fractions) and its confidence in percent, as Rekognition."""
    left, top, right, bottom = (min(max(v, 0.0), 1.0) for v in box)
    return Instance(
        bounding_box=BoundingBox(
            left=round(left, 4),
            top=round(top, 4),
            width=round(right - left, 4),
            height=round(bottom - top, 4),
        ),
        confidence=round(confidence, 3),
    )


# Two boxes of different classes this alike are one object the detector is unsure about.
SAME_OBJECT_IOU = 0.7


def label_name(detection: Detection) -> str:
    return COCO_LABELS.get(detection.name, (detection.name.title(), ()))[0]


@dataclass(frozen=True)
class Thresholds:
    """Per-model minimum confidences (percent), tuned on the labelled set (`make bench`)."""

    classifier: float
    detector: float
    # When nothing passes: the most confident classifier label (a coarse one sums many classes,
    # e.g. Landscape over seashore, cliff, valley) is given if it reaches this.
    fallback: float
    # A detection the classifier confirms needs only this much.
    corroborated: float
    # A label the classifier gives to the object of a second look needs this much.
    second_look: float = 60.0


def arbitrate(
    detections: list[Detection], confidences: dict[str, float], thresholds: Thresholds
) -> list[Detection]:
    """The detections worth a box: at or above the detector's minimum, or at or above the
    corroborated minimum where the classifier gives the same label at or above its own (two
    models agreeing: darknet's dog at 0.44 beside the classifier's Dog 86).

    Where one object got several classes (a close-up cat: "person" 0.57, "cat" 0.45, "dog" 0.42
    over the whole frame), the class both models support best stays: the detector's score plus
    the classifier's confidence in that label (Cat 0.93 wins). Boxes of different objects
    rarely overlap this much."""

    def passes(detection: Detection) -> bool:
        score = detection.score * 100.0
        corroborated = confidences.get(label_name(detection), 0.0) >= thresholds.classifier
        return score >= thresholds.detector or (corroborated and score >= thresholds.corroborated)

    kept: list[Detection] = []
    candidates = sorted(
        filter(passes, detections),
        key=lambda d: -(d.score + confidences.get(label_name(d), 0.0) / 100.0),
    )
    for detection in candidates:
        rivals = [k.box for k in kept if k.class_index != detection.class_index]
        if rivals and box_iou(np.array(detection.box), np.array(rivals)).max() >= SAME_OBJECT_IOU:
            continue
        kept.append(detection)
    return sorted(kept, key=lambda d: -d.score)


# The detector's boxes worth a second look: confident enough to be an object, though not named
# (the merge keeps no box there); large enough to classify, and small enough that the
# classifier's centre crop of the whole photo did not already see them as its subject.
SECOND_LOOK_MIN_SCORE = 0.25
SECOND_LOOK_MIN_AREA = 0.02
SECOND_LOOK_MAX_AREA = 0.5
# A box overlapping a kept one this much shows an object already named.
NAMED_REGION_IOU = 0.3


@dataclass(frozen=True)
class SecondLook:
    """What the classifier says about one region alone."""

    box: Box  # the detector's box, fractions of the upright photo
    confidences: dict[str, float]  # the classifier's label confidences (percent) there


def second_look_target(
    detections: list[Detection], confidences: dict[str, float], thresholds: Thresholds
) -> Detection | None:
    """The detector's most confident box that it found but the merge leaves unnamed, if any is
    worth showing the classifier alone (`SECOND_LOOK_*`)."""
    kept = [d.box for d in arbitrate(detections, confidences, thresholds)]
    for detection in sorted(detections, key=lambda d: -d.score):
        if detection.score < SECOND_LOOK_MIN_SCORE:
            return None
        left, top, right, bottom = detection.box
        if not SECOND_LOOK_MIN_AREA <= (right - left) * (bottom - top) <= SECOND_LOOK_MAX_AREA:
            continue
        if kept and box_iou(np.array(detection.box), np.array(kept)).max() >= NAMED_REGION_IOU:
            continue
        return detection
    return None


def merge_labels(
    confidences: dict[str, float],
    detections: list[Detection],
    *,
    label_map: LabelMap,
    thresholds: Thresholds,
    max_labels: int,
    second_look: SecondLook | None = None,
) -> list[Label]:
    """One label list from the classifier's label confidences (percent, by name) and the
    detector's detections: a name both give is one label with the higher confidence and the
    detector's boxes; every parent of a label is a label too, at least as confident.

    A `second_look`'s labels at or above its own minimum are labels too; the finest of them
    (Fig, not its parents Fruit and Food) gets the region's box."""
    found: dict[str, float] = {
        name: score for name, score in confidences.items() if score >= thresholds.classifier
    }
    instances: dict[str, list[Instance]] = {}
    for detection in arbitrate(detections, confidences, thresholds):
        instances.setdefault(label_name(detection), []).append(
            _instance(detection.box, detection.score * 100.0)
        )
    if second_look is not None:
        seen = {
            name: score
            for name, score in second_look.confidences.items()
            if score >= thresholds.second_look
        }
        coarser = {parent for name in seen for parent in parents_of(name, label_map)}
        for name, score in seen.items():
            found[name] = max(found.get(name, 0.0), score)
            if name not in coarser:
                instances.setdefault(name, []).append(_instance(second_look.box, score))
    for name, boxes in instances.items():
        boxes.sort(key=lambda instance: -instance.confidence)
        found[name] = max(found.get(name, 0.0), boxes[0].confidence)
    if not found and confidences:
        # On a tie the finer name (Missile, not its parent Weapon): its parents follow anyway.
        best = max(
            confidences, key=lambda name: (confidences[name], len(parents_of(name, label_map)))
        )
        if confidences[best] >= thresholds.fallback:
            found[best] = confidences[best]
    for name, score in list(found.items()):
        for parent in parents_of(name, label_map):
            found[parent] = max(found.get(parent, 0.0), score)
    ranked = sorted(
        found, key=lambda name: (-round(found[name], 6), len(parents_of(name, label_map)), name)
    )
    return [
        Label(
            name=name,
            confidence=round(min(found[name], 100.0), 3),
            parents=parents_of(name, label_map),
            instances=instances.get(name, []),
        )
        for name in ranked[:max_labels]
    ]


@dataclass(frozen=True)
class Prepared:
    """One decoded photo, ready for both models."""

    classifier_input: Array  # (3, 224, 224), upright
    detector_image: Image.Image  # RGB, upright, at least 416 px where the photo is


@dataclass(frozen=True)
class Recognition:
    labels: list[Label]
    # CPU seconds of the calling thread for each part (the classifier's: both of its looks).
    decode_s: float
    classifier_s: float
    detector_s: float
    detections: list[Detection] = field(default_factory=list)
    second_look: SecondLook | None = None


def prepare(data: bytes, max_pixels: int) -> Prepared:
    """Decode `data` once, small, for both models. `CorruptImage` / `TooLarge` as the extractor."""
    image, orientation = decode_small(data, max_pixels, min_side=DETECTOR_SIZE)
    try:
        image = upright(image, orientation)
        sample = classifier_sample(image, orientation=1)
    except Exception as exc:  # OSError, ValueError: a decode that failed late
        raise errors.CorruptImage(f"the image cannot be decoded: {exc}") from exc
    return Prepared(sample, image)


class Recognizer:
    """Both local models and the label vocabulary; `recognize` is blocking, one photo at a time."""

    def __init__(
        self,
        classifier: Classifier,
        detector: Detector,
        label_map: LabelMap,
        thresholds: Thresholds,
    ) -> None:
        self.classifier = classifier
        self.detector = detector
        self.label_map = label_map
        self.thresholds = thresholds

    @classmethod
    def open(cls, settings: TaggerSettings) -> Recognizer:
        return cls(
            open_classifier(settings),
            open_detector(settings),
            default_label_map(),
            Thresholds(
                classifier=settings.classifier_min_confidence,
                detector=settings.detector_min_confidence,
                fallback=settings.fallback_min_confidence,
                corroborated=settings.corroborated_min_confidence,
                second_look=settings.second_look_min_confidence,
            ),
        )

    def label_confidences(self, probabilities: Array) -> dict[str, float]:
        """(1000,) class probabilities → every label's confidence in percent, by name."""
        scores = self.label_map.confidences(probabilities[np.newaxis, :])[0]
        return {
            name: float(scores[j]) for j, name in enumerate(self.label_map.names) if scores[j] > 0.5
        }

    def detect(self, prepared: Prepared) -> list[Detection]:
        # The detector's own floor stays below ours, so the merge decides with one threshold.
        return self.detector.detect(prepared.detector_image, score_threshold=0.2)

    def second_look_region(
        self, probabilities: Array, detections: list[Detection], prepared: Prepared
    ) -> tuple[Box, Array] | None:
        """The region worth a second look and the classifier's input showing it, if any."""
        target = second_look_target(
            detections, self.label_confidences(probabilities), self.thresholds
        )
        if target is None:
            return None
        return target.box, region_sample(prepared.detector_image, target.box)

    def look_again(self, region: tuple[Box, Array], probabilities: Array) -> SecondLook:
        """The second look from the classifier's (1000,) probabilities on that region."""
        return SecondLook(region[0], self.label_confidences(probabilities))

    def merge(
        self,
        probabilities: Array,
        detections: list[Detection],
        prepared: Prepared,
        max_labels: int,
        second_look: SecondLook | None = None,
    ) -> list[Label]:
        return merge_labels(
            self.label_confidences(probabilities),
            detections,
            label_map=self.label_map,
            thresholds=self.thresholds,
            max_labels=max_labels,
            second_look=second_look,
        )

    def recognize(
        self,
        data: bytes,
        *,
        max_pixels: int = 100_000_000,
        max_labels: int = 10,
    ) -> Recognition:
        t0 = time.thread_time()
        prepared = prepare(data, max_pixels)
        t1 = time.thread_time()
        probabilities = self.classifier.probabilities(prepared.classifier_input[np.newaxis])[0]
        t2 = time.thread_time()
        detections = self.detect(prepared)
        t3 = time.thread_time()
        second_look = None
        region = self.second_look_region(probabilities, detections, prepared)
        if region is not None:
            crop_probabilities = self.classifier.probabilities(region[1][np.newaxis])[0]
            second_look = self.look_again(region, crop_probabilities)
        t4 = time.thread_time()
        labels = self.merge(probabilities, detections, prepared, max_labels, second_look)
        return Recognition(labels, t1 - t0, (t2 - t1) + (t4 - t3), t3 - t2, detections, second_look)
