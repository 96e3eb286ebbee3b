"""The recognizer: boxes in the upright frame, the merge of the two models' labels, and both
models on one decode of a real photo."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgproc_tagger.config import TaggerSettings
from imgproc_tagger.detector import Detection
from imgproc_tagger.labels import default_label_map
from imgproc_tagger.recognizer import (
    Recognizer,
    SecondLook,
    Thresholds,
    merge_labels,
    second_look_target,
)

TAGGER_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tagger"
LABELLED = Path(__file__).resolve().parents[2] / "fixtures" / "labelled"
THRESHOLDS = Thresholds(
    classifier=50.0, detector=40.0, fallback=25.0, corroborated=25.0, second_look=60.0
)


def _detection(name: str, score: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection(class_index=0, name=name, score=score, box=box)


def test_a_name_both_models_give_is_one_label_with_the_boxes() -> None:
    labels = merge_labels(
        {"Dog": 70.0, "Mammal": 72.0, "Animal": 75.0, "Golden Retriever": 55.0},
        [
            _detection("dog", 0.9, (0.1, 0.5, 0.4, 0.9)),
            _detection("person", 0.8, (0.5, 0.1, 0.8, 0.9)),
        ],
        label_map=default_label_map(),
        thresholds=THRESHOLDS,
        max_labels=10,
    )
    by_name = {label.name: label for label in labels}
    assert [label.name for label in labels].count("Dog") == 1
    dog = by_name["Dog"]
    assert dog.confidence == pytest.approx(90.0)
    assert dog.parents == ["Mammal", "Animal"]
    (instance,) = dog.instances
    box = instance.bounding_box
    assert (box.left, box.top, box.width, box.height) == pytest.approx((0.1, 0.5, 0.3, 0.4))
    assert by_name["Person"].parents == []
    assert by_name["Person"].instances[0].confidence == pytest.approx(80.0)
    # Parents are labels too, at least as confident as their children; the breed stays.
    assert by_name["Animal"].confidence >= 90.0
    assert by_name["Golden Retriever"].instances == []
    assert [label.confidence for label in labels] == sorted(
        (label.confidence for label in labels), reverse=True
    )


def test_vehicles_have_transportation_as_a_parent() -> None:
    labels = merge_labels(
        {},
        [_detection("car", 0.8, (0.0, 0.0, 0.5, 0.5))],
        label_map=default_label_map(),
        thresholds=THRESHOLDS,
        max_labels=10,
    )
    by_name = {label.name: label for label in labels}
    assert by_name["Car"].parents == ["Vehicle", "Transportation"]
    assert by_name["Vehicle"].parents == ["Transportation"]
    assert "Transportation" in by_name


def test_detections_and_classes_under_their_thresholds_give_nothing_but_the_fallback() -> None:
    label_map = default_label_map()
    weak = [_detection("cat", 0.3, (0.0, 0.0, 1.0, 1.0))]
    assert (
        merge_labels(
            {"Cliff": 20.0},
            weak,
            label_map=label_map,
            thresholds=THRESHOLDS,
            max_labels=10,
        )
        == []
    )
    # No class passes, but the coarse label that sums the scene classes does reach the fallback.
    labels = merge_labels(
        {"Cliff": 20.0, "Valley": 15.0, "Landscape": 40.0},
        weak,
        label_map=label_map,
        thresholds=THRESHOLDS,
        max_labels=10,
    )
    assert [label.name for label in labels] == ["Landscape"]


def test_max_labels_keeps_the_most_confident() -> None:
    detections = [
        _detection(name, score, (0.0, 0.0, 0.5, 0.5))
        for name, score in (("person", 0.95), ("dog", 0.9), ("horse", 0.85), ("car", 0.8))
    ]
    labels = merge_labels(
        {},
        detections,
        label_map=default_label_map(),
        thresholds=THRESHOLDS,
        max_labels=3,
    )
    assert [label.name for label in labels] == ["Person", "Animal", "Mammal"]


@pytest.fixture(scope="module")
def recognizer(tmp_path_factory: pytest.TempPathFactory) -> Recognizer:
    cache = tmp_path_factory.mktemp("tagger-model-cache")
    return Recognizer.open(TaggerSettings(model_cache_dir=cache))


def _labels_by_name(recognizer: Recognizer, data: bytes) -> dict[str, object]:
    return {label.name: label for label in recognizer.recognize(data).labels}


def test_a_person_with_a_dog_and_a_horse_gets_all_three_with_boxes(recognizer: Recognizer) -> None:
    found = recognizer.recognize((TAGGER_FIXTURES / "person_dog_horse.jpg").read_bytes())
    by_name = {label.name: label for label in found.labels}
    for name in ("Person", "Dog", "Horse"):
        assert name in by_name, [label.name for label in found.labels]
        assert by_name[name].instances, name
    # darknet's person.jpg: the dog sits at the left, the horse at the right, the person between.
    dog = by_name["Dog"].instances[0].bounding_box
    horse = by_name["Horse"].instances[0].bounding_box
    assert dog.left + dog.width / 2 < 0.5 < horse.left + horse.width / 2
    assert found.decode_s >= 0 and found.classifier_s > 0 and found.detector_s > 0


# Stored pixels for each EXIF orientation: the inverse of what a viewer applies to show them
# upright (orientation 6 means "rotate 90° clockwise to view", so the pixels are stored turned
# 90° the other way).
_STORE_FOR_ORIENTATION = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@pytest.mark.parametrize("orientation", sorted(_STORE_FOR_ORIENTATION))
def test_boxes_are_in_the_upright_frame_for_every_orientation(
    recognizer: Recognizer, orientation: int
) -> None:
    photo = Image.open(TAGGER_FIXTURES / "person_dog_horse.jpg")
    upright_labels = recognizer.recognize((TAGGER_FIXTURES / "person_dog_horse.jpg").read_bytes())
    turn = _STORE_FOR_ORIENTATION[orientation]
    stored = photo.transpose(turn) if turn is not None else photo.copy()
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, "JPEG", quality=92, exif=exif)
    turned = recognizer.recognize(out.getvalue())

    def dog_box(labels: list[object]) -> np.ndarray:
        dog = next(label for label in labels if label.name == "Dog")  # type: ignore[attr-defined]
        box = dog.instances[0].bounding_box
        return np.array([box.left, box.top, box.width, box.height])

    assert dog_box(turned.labels) == pytest.approx(dog_box(upright_labels.labels), abs=0.04)


def test_one_object_given_several_classes_keeps_the_one_the_classifier_supports() -> None:
    whole_frame = (0.0, 0.0, 1.0, 1.0)
    detections = [
        Detection(class_index=0, name="person", score=0.57, box=whole_frame),
        Detection(class_index=15, name="cat", score=0.45, box=(0.0, 0.0, 0.99, 0.99)),
        Detection(class_index=16, name="dog", score=0.42, box=(0.0, 0.0, 0.99, 0.98)),
    ]
    labels = merge_labels(
        {"Cat": 93.0, "Mammal": 95.0, "Animal": 96.0},
        detections,
        label_map=default_label_map(),
        thresholds=THRESHOLDS,
        max_labels=10,
    )
    names = [label.name for label in labels]
    assert "Person" not in names and "Dog" not in names, names
    assert next(label for label in labels if label.name == "Cat").instances


def test_different_objects_side_by_side_are_all_kept() -> None:
    detections = [
        Detection(class_index=0, name="person", score=0.72, box=(0.29, 0.24, 0.44, 0.89)),
        Detection(class_index=17, name="horse", score=0.55, box=(0.63, 0.33, 0.94, 0.82)),
        Detection(class_index=19, name="cow", score=0.46, box=(0.63, 0.33, 0.94, 0.82)),
        Detection(class_index=16, name="dog", score=0.44, box=(0.11, 0.62, 0.32, 0.82)),
    ]
    labels = merge_labels(
        {}, detections, label_map=default_label_map(), thresholds=THRESHOLDS, max_labels=20
    )
    with_boxes = {label.name for label in labels if label.instances}
    assert with_boxes == {"Person", "Horse", "Dog"}


def test_a_second_look_names_the_region_with_its_finest_label_boxed() -> None:
    fig_box = (0.49, 0.36, 0.7, 0.75)
    labels = merge_labels(
        {"Tableware": 24.0, "Food": 18.6},
        [_detection("donut", 0.27, fig_box)],
        label_map=default_label_map(),
        thresholds=THRESHOLDS,
        max_labels=10,
        second_look=SecondLook(
            fig_box, {"Food": 78.0, "Fruit": 75.0, "Fig": 68.0, "Pomegranate": 5.0}
        ),
    )
    by_name = {label.name: label for label in labels}
    assert set(by_name) == {"Food", "Fruit", "Fig"}
    (instance,) = by_name["Fig"].instances
    box = instance.bounding_box
    assert (box.left, box.top, box.width, box.height) == pytest.approx((0.49, 0.36, 0.21, 0.39))
    assert instance.confidence == pytest.approx(68.0)
    assert by_name["Food"].confidence == pytest.approx(78.0)
    assert by_name["Food"].instances == [] and by_name["Fruit"].instances == []


def test_a_second_look_below_its_minimum_adds_nothing() -> None:
    labels = merge_labels(
        {},
        [],
        label_map=default_label_map(),
        thresholds=THRESHOLDS,
        max_labels=10,
        second_look=SecondLook((0.1, 0.1, 0.4, 0.4), {"Fig": 55.0, "Fruit": 59.0}),
    )
    assert labels == []


def test_the_second_look_goes_to_an_unnamed_object_of_a_useful_size() -> None:
    whole_frame = _detection("stop sign", 0.49, (0.17, 0.09, 1.0, 0.99))
    small_unsure = _detection("donut", 0.27, (0.49, 0.36, 0.7, 0.75))
    tiny = _detection("bird", 0.3, (0.5, 0.5, 0.55, 0.55))
    assert second_look_target([whole_frame, tiny, small_unsure], {}, THRESHOLDS) == small_unsure
    # An object the merge already names (kept with its box) needs no second look.
    named = _detection("dog", 0.8, (0.48, 0.35, 0.7, 0.76))
    assert second_look_target([named, small_unsure], {}, THRESHOLDS) is None
    # Too unsure to be an object at all.
    faint = _detection("donut", 0.2, (0.49, 0.36, 0.7, 0.75))
    assert second_look_target([faint], {}, THRESHOLDS) is None


def test_a_fig_the_detector_cannot_name_is_found_by_the_second_look(
    recognizer: Recognizer,
) -> None:
    found = recognizer.recognize((LABELLED / "food_fig_on_plate.jpg").read_bytes())
    by_name = {label.name: label for label in found.labels}
    assert "Fig" in by_name, [label.name for label in found.labels]
    (instance,) = by_name["Fig"].instances
    box = instance.bounding_box
    # The fig lies right of centre on the plate.
    assert 0.45 < box.left + box.width / 2 < 0.75 and 0.35 < box.top + box.height / 2 < 0.75
    assert found.second_look is not None
