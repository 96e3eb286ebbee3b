"""ImageNet classes → coarse labels with parents, and how confidences add up."""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

import numpy as np
import pytest

from imgproc_tagger.labels import LabelMap, default_label_map

DOG_BREEDS = range(151, 269)  # ImageNet-1k classes 151..268 are dog breeds
TABBY, ESPRESSO, MOPED, GOLDEN_RETRIEVER, GREY_WOLF = 281, 967, 665, 207, 269


@functools.cache
def label_map_document() -> dict[str, Any]:
    text = resources.files("imgproc_tagger").joinpath("data/label_map.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def class_entry(index: int) -> tuple[str, list[str]]:
    name, parents = label_map_document()["classes"][index]
    return name, parents


def one_hot(*weights: tuple[int, float]) -> np.ndarray:
    probs = np.zeros(1000)
    for index, weight in weights:
        probs[index] = weight
    return probs


def test_every_dog_breed_is_a_dog_and_a_wolf_is_not() -> None:
    for index in DOG_BREEDS:
        name, parents = class_entry(index)
        assert parents[:3] == ["Dog", "Mammal", "Animal"], (index, name, parents)
    assert "Dog" not in class_entry(GREY_WOLF)[1]


@pytest.mark.parametrize(
    ("index", "name", "parents"),
    [
        (TABBY, "Tabby Cat", ["Cat", "Mammal", "Animal"]),
        (ESPRESSO, "Espresso", ["Coffee", "Beverage"]),
        (MOPED, "Moped", ["Motorcycle", "Vehicle"]),
        (GOLDEN_RETRIEVER, "Golden Retriever", ["Dog", "Mammal", "Animal"]),
    ],
)
def test_everyday_classes_have_the_parents_a_person_expects(
    index: int, name: str, parents: list[str]
) -> None:
    assert class_entry(index) == (name, parents)


def test_coarse_labels_have_their_own_parents() -> None:
    label_map = default_label_map()
    assert label_map.parents["Dog"] == ["Mammal", "Animal"]
    assert label_map.parents["Coffee"] == ["Beverage"]
    assert label_map.parents["Motorcycle"] == ["Vehicle"]
    assert label_map.parents["Animal"] == []
    # Every parent named anywhere is itself a label.
    for parents in label_map.parents.values():
        assert set(parents) <= set(label_map.names)


def test_an_uncertain_breed_is_still_a_confident_dog() -> None:
    # Spread 96% over eight breeds: no breed reaches 60, the dog is sure.
    probs = one_hot(*[(i, 0.12) for i in range(200, 208)], (TABBY, 0.04))
    labels = default_label_map().labels(probs, max_labels=10, min_confidence=60)
    assert [label.name for label in labels] == ["Animal", "Mammal", "Dog"]
    dog = labels[2]
    assert dog.confidence == pytest.approx(96.0)
    assert dog.parents == ["Mammal", "Animal"]
    assert labels[0].confidence == pytest.approx(100.0)


def test_min_confidence_and_max_labels_are_applied() -> None:
    probs = one_hot((TABBY, 0.7), (ESPRESSO, 0.3))
    label_map = default_label_map()
    at_60 = label_map.labels(probs, max_labels=10, min_confidence=60)
    assert [label.name for label in at_60] == ["Animal", "Mammal", "Cat", "Tabby Cat"]
    assert all(label.confidence >= 60 for label in at_60)
    at_20 = label_map.labels(probs, max_labels=10, min_confidence=20)
    assert {"Espresso", "Coffee", "Beverage"} <= {label.name for label in at_20}
    assert len(label_map.labels(probs, max_labels=2, min_confidence=0)) == 2
    top = label_map.labels(probs, max_labels=1, min_confidence=0)[0]
    assert top.name == "Animal"  # ties between a parent and its only child: parent first


def test_labels_are_ordered_by_confidence() -> None:
    probs = np.random.default_rng(7).dirichlet(np.full(1000, 0.05))
    labels = default_label_map().labels(probs, max_labels=50, min_confidence=0)
    confidences = [label.confidence for label in labels]
    assert confidences == sorted(confidences, reverse=True)
    assert len(labels) == 50


def test_classes_sharing_a_name_add_up_to_one_label() -> None:
    label_map = LabelMap.from_json(
        {"classes": [["Missile", ["Weapon"]], ["Missile", ["Weapon"]]], "coarse": {"Weapon": []}}
    )
    labels = label_map.labels(np.array([0.4, 0.5]), max_labels=5, min_confidence=0)
    assert [(label.name, label.confidence, label.parents) for label in labels] == [
        ("Weapon", 90.0, []),
        ("Missile", 90.0, ["Weapon"]),
    ]
