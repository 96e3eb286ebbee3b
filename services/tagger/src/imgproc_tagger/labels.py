"""ImageNet class probabilities → Rekognition-shaped labels: name, confidence 0–100, parents.

The label map (built offline by `scripts/build_label_map.py` from WordNet) gives each of the
1000 classes a name and its coarse parents (Tabby Cat → Cat, Mammal, Animal). A label's
confidence is the summed probability of every class it covers, so a dog of an uncertain breed
still gets "Dog" with high confidence while no single breed passes the threshold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from imgproc_shared.models import Label


@dataclass(frozen=True)
class LabelMap:
    """Every label name, which classes it covers, and its parents."""

    names: list[str]
    parents: dict[str, list[str]]
    # (1000, len(names)) 0/1: class i counts towards label j.
    membership: np.ndarray[Any, Any]

    @classmethod
    def from_json(cls, document: dict[str, Any]) -> LabelMap:
        classes: list[tuple[str, list[str]]] = [(n, list(p)) for n, p in document["classes"]]
        coarse: dict[str, list[str]] = {k: list(v) for k, v in document["coarse"].items()}
        names = sorted({name for name, _ in classes} | set(coarse))
        column = {name: j for j, name in enumerate(names)}
        membership = np.zeros((len(classes), len(names)), dtype=np.float64)
        parents: dict[str, list[str]] = dict(coarse)
        for i, (name, class_parents) in enumerate(classes):
            for label in (name, *class_parents):
                membership[i, column[label]] = 1.0
            # Two classes may share a name (ImageNet has two "missile" classes): one label.
            parents.setdefault(name, class_parents)
        return cls(names, parents, membership)

    def confidences(self, probabilities: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """(N, 1000) class probabilities → (N, labels) confidences in percent."""
        scores: np.ndarray[Any, Any] = np.clip(probabilities @ self.membership, 0.0, 1.0) * 100.0
        return scores

    def labels(
        self, probabilities: np.ndarray[Any, Any], *, max_labels: int, min_confidence: float
    ) -> list[Label]:
        """The labels of one image: at most `max_labels`, each at least `min_confidence`,
        most confident first (a parent before its child on a tie)."""
        scores = self.confidences(probabilities[np.newaxis, :])[0]
        ranked = sorted(
            np.flatnonzero(scores >= min_confidence),
            key=lambda j: (
                -round(float(scores[j]), 6),
                len(self.parents[self.names[j]]),
                self.names[j],
            ),
        )
        return [
            Label(
                name=self.names[j],
                confidence=round(float(scores[j]), 3),
                parents=self.parents[self.names[j]],
            )
            for j in ranked[:max_labels]
        ]


@lru_cache(maxsize=1)
def default_label_map() -> LabelMap:
    """The committed label map shipped in the package."""
    text = resources.files("imgproc_tagger").joinpath("data/label_map.json").read_text("utf-8")
    return LabelMap.from_json(json.loads(text))
