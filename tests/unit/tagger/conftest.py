"""Fixtures for the tagger's unit tests: the model is built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgproc_tagger.classifier import Classifier, open_classifier
from imgproc_tagger.config import TaggerSettings

TAGGER_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tagger"


@pytest.fixture(scope="session")
def model_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tagger-model-cache")


@pytest.fixture(scope="session")
def classifier(model_cache_dir: Path) -> Classifier:
    return open_classifier(TaggerSettings(model_cache_dir=model_cache_dir))
