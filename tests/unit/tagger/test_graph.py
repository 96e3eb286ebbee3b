"""The hand-built ONNX graph against logits recorded once from the reference PyTorch code."""

from __future__ import annotations

import re

import numpy as np
import pytest

from imgproc_tagger.classifier import Classifier, packaged_weights_path
from imgproc_tagger.efficientnet_graph import GraphError, build_efficientnet_lite0, same_padding
from imgproc_tagger.torch_weights import read_state_dict

from .conftest import TAGGER_FIXTURES


def reference_input() -> np.ndarray:
    """The same inputs as services/tagger/scripts/record_reference_logits.py makes."""
    noise = np.random.default_rng(20240607).uniform(-1.0, 1.0, (3, 224, 224))
    y, x = np.mgrid[0:224, 0:224] / 223.0
    smooth = np.stack([np.sin(6.0 * x + 2.0 * y), np.cos(5.0 * y - 3.0 * x), 2.0 * x * y - 1.0])
    return np.stack([noise, smooth]).astype(np.float32)


def test_logits_match_the_reference_implementation(classifier: Classifier) -> None:
    expected = np.load(TAGGER_FIXTURES / "reference_logits.npy")
    logits = classifier.logits(reference_input())
    assert logits.shape == (2, 1000)
    np.testing.assert_allclose(logits, expected, atol=1e-4, rtol=0)
    assert (logits.argmax(axis=1) == expected.argmax(axis=1)).all()


def test_a_batch_gives_the_same_answer_as_single_images(classifier: Classifier) -> None:
    batch = reference_input()
    one_by_one = np.concatenate([classifier.logits(batch[i : i + 1]) for i in range(2)])
    np.testing.assert_allclose(classifier.logits(batch), one_by_one, atol=1e-5, rtol=0)


def test_probabilities_are_a_softmax(classifier: Classifier) -> None:
    probs = classifier.probabilities(reference_input())
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    assert (probs >= 0).all()


def test_tf_same_padding_pads_more_at_the_end() -> None:
    assert same_padding(224, 3, 2) == (0, 1, 112)
    assert same_padding(112, 3, 1) == (1, 1, 112)
    assert same_padding(28, 5, 2) == (1, 2, 14)


def test_weights_of_another_shape_are_refused() -> None:
    state = read_state_dict(packaged_weights_path())
    del state["_blocks.3._project_conv.weight"]
    with pytest.raises(GraphError, match=re.escape("_blocks.3._project_conv.weight")):
        build_efficientnet_lite0(state)
    state = read_state_dict(packaged_weights_path())
    state["_fc.weight"] = state["_fc.weight"][:10]
    with pytest.raises(GraphError):
        build_efficientnet_lite0(state)
