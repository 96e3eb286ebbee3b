"""The local object detector: NanoDet (COCO-80, 416 px) on onnxruntime, with boxes.

The ONNX files ship in this package (see `data/NANODET-LICENSE.md`): the float model
(`data/nanodet-coco.onnx`, made by `services/tagger/scripts/convert_nanodet.py`) and the same
model with int8 convolutions (`data/nanodet-coco-int8.onnx`, made from it by
`scripts/quantize_nanodet.py`), which takes two thirds of the CPU time and labels the
labelled set as the float one does. `choose_precision` picks between them. The whole image is
resized to 416×416 (no letterbox), so a box's fractions of the input are fractions of the
image.

The model's outputs, per stride 8, 16 and 32 (52², 26², 13² cells in row-major order): 80
sigmoid class scores per cell, and a box as four distributions of 11 bins (Generalized Focal
Loss) for the distances from the cell's point to the left, top, right and bottom edges.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from imgproc_tagger.classifier import ModelUnavailable, choose_providers, inference_session
from imgproc_tagger.config import TaggerSettings

INPUT_SIZE = 416
DETECTOR_SIZE = INPUT_SIZE  # the side of the square the whole image is resized to
INPUT_NAME = "image"
STRIDES = (8, 16, 32)
SCORE_OUTPUTS = tuple(f"scores_{stride}" for stride in STRIDES)
BOX_OUTPUTS = tuple(f"boxes_{stride}" for stride in STRIDES)
# Each box side is a distribution over 0..REG_MAX strides.
REG_MAX = 10
# The packaged models as convert_nanodet.py and quantize_nanodet.py write them: a damaged
# install is refused.
MODEL_SHA256 = "04527ca658469759134e2ba62d756e5194a7fb50085648ce07b4bb3904fdd5c2"
MODEL_RESOURCE = "data/nanodet-coco.onnx"
MODEL_INT8_SHA256 = "1e90151bfb1c339598cba5ed88b22729ab26f0854573a8f662fec48170f87eb3"
MODEL_INT8_RESOURCE = "data/nanodet-coco-int8.onnx"

Precision = Literal["int8", "fp32"]
# CPU features with which onnxruntime multiplies uint8 activations by int8 weights exactly
# (VNNI's dot products accumulate in 32 bits). Without them its AVX2 kernels add pairs of
# products in 16 bits, which can saturate with full-range int8 weights: the float model is the
# default there (and on other architectures, where the int8 model has not been measured).
INT8_CPU_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})

# NanoDet's (GFL head's) point for a cell: its centre, as the upstream decoder has it; checked
# on real photos (a mirrored photo gives mirrored boxes with it, a stride apart without it).
CELL_OFFSET = 0.5

# BGR order, as the model was trained (OpenCV images).
_MEAN_BGR = np.array([103.53, 116.28, 123.675], dtype=np.float32)
_STD_BGR = np.array([57.375, 57.12, 58.395], dtype=np.float32)
# Every 8-bit value of each input channel (blue, green, red), normalised: the input is then one
# table lookup per pixel and channel, written in place. With the resize, 3.8 ms per photo instead
# of 7.1 for float conversion, channel flip, arithmetic and transpose as separate numpy passes.
_NORMALISED_BGR = (np.arange(256, dtype=np.float32) - _MEAN_BGR[:, None]) / _STD_BGR[:, None]

COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Detection:
    """One object: its COCO class, score 0–1, and box as fractions of the image, clipped to 0–1."""

    class_index: int
    name: str
    score: float
    box: tuple[float, float, float, float]  # left, top, right, bottom


def detector_input(image: Image.Image) -> Array:
    """An RGB image of any size → the model's (1, 3, 416, 416) float32 input."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    # reducing_gap: a large photo is first shrunk by an integer factor (fast), then resampled.
    resized = image.resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR, reducing_gap=3.0)
    rgb = np.asarray(resized)
    batch = np.empty((1, 3, INPUT_SIZE, INPUT_SIZE), dtype=np.float32)
    for channel, table in enumerate(_NORMALISED_BGR):
        np.take(table, rgb[:, :, 2 - channel], out=batch[0, channel])
    return batch


def _cell_points(stride: int) -> Array:
    """(cells, 2) x, y of each cell's point in input pixels, row-major as the model emits them."""
    side = INPUT_SIZE // stride
    ys, xs = np.divmod(np.arange(side * side), side)
    return (np.stack([xs, ys], axis=1).astype(np.float32) + CELL_OFFSET) * stride


def decode(
    scores: Sequence[Array], box_bins: Sequence[Array], score_threshold: float
) -> list[Detection]:
    """The model's raw outputs → detections over the threshold (one per cell and class), no NMS.

    `scores[i]`: (cells, 80) or (1, cells, 80) sigmoid scores for stride STRIDES[i];
    `box_bins[i]`: (cells, 44) or (1, cells, 44) logits, 11 bins each for left, top, right, bottom.
    """
    if len(scores) != len(STRIDES) or len(box_bins) != len(STRIDES):
        raise ValueError(f"expected {len(STRIDES)} score and box arrays")
    bins = np.arange(REG_MAX + 1, dtype=np.float32)
    found: list[Detection] = []
    for stride, level_scores, level_bins in zip(STRIDES, scores, box_bins, strict=True):
        level_scores = np.asarray(level_scores).reshape(-1, len(COCO_CLASSES))
        cells, classes = np.nonzero(level_scores >= score_threshold)
        if cells.size == 0:
            continue
        logits = np.asarray(level_bins, dtype=np.float32).reshape(-1, 4, REG_MAX + 1)[cells]
        logits = logits - logits.max(axis=2, keepdims=True)
        weights = np.exp(logits)
        distances = (weights @ bins) / weights.sum(axis=2) * stride  # (n, 4)
        points = _cell_points(stride)[cells]
        corners = np.concatenate([points - distances[:, :2], points + distances[:, 2:]], axis=1)
        corners = np.clip(corners / INPUT_SIZE, 0.0, 1.0)
        for cell_box, class_index, score in zip(
            corners.tolist(), classes.tolist(), level_scores[cells, classes].tolist(), strict=True
        ):
            found.append(
                Detection(class_index, COCO_CLASSES[class_index], float(score), tuple(cell_box))
            )
    return found


def box_iou(box: Array, others: Array) -> Array:
    """Intersection over union of `box` with each of `others` ((N, 4) left, top, right, bottom)."""
    left = np.maximum(box[0], others[:, 0])
    top = np.maximum(box[1], others[:, 1])
    right = np.minimum(box[2], others[:, 2])
    bottom = np.minimum(box[3], others[:, 3])
    overlap = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - overlap
    return np.where(union > 0, overlap / np.where(union > 0, union, 1), 0.0)


def nms(detections: Sequence[Detection], iou: float = 0.5) -> list[Detection]:
    """Per-class non-maximum suppression: the best-scoring box of each overlapping group stays.

    The result is ordered by score, highest first.
    """
    ordered = sorted(detections, key=lambda d: d.score, reverse=True)
    if not ordered:
        return []
    boxes = np.array([d.box for d in ordered], dtype=np.float64)
    classes = np.array([d.class_index for d in ordered])
    suppressed = np.zeros(len(ordered), dtype=bool)
    for index in range(len(ordered)):
        if suppressed[index]:
            continue
        later = np.arange(index + 1, len(ordered))
        later = later[(classes[later] == classes[index]) & ~suppressed[later]]
        if later.size:
            suppressed[later[box_iou(boxes[index], boxes[later]) > iou]] = True
    return [d for d, gone in zip(ordered, suppressed, strict=True) if not gone]


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """This CPU's feature flags as Linux lists them; empty where there is no such file."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def choose_precision(
    setting: Literal["auto", "int8", "fp32"], providers: Sequence[str], flags: frozenset[str]
) -> Precision:
    """Which packaged model runs: the setting when it names one; for "auto", int8 on a CPU
    provider where the CPU has VNNI, else fp32 (a GPU runs the float model)."""
    if setting != "auto":
        return setting
    if providers[0] != "CPUExecutionProvider":
        return "fp32"
    return "int8" if flags & INT8_CPU_FLAGS else "fp32"


def packaged_model(precision: Precision = "fp32") -> bytes:
    resource, expected = (
        (MODEL_INT8_RESOURCE, MODEL_INT8_SHA256)
        if precision == "int8"
        else (MODEL_RESOURCE, MODEL_SHA256)
    )
    try:
        model = resources.files("imgproc_tagger").joinpath(resource).read_bytes()
    except OSError as exc:
        raise ModelUnavailable(f"the packaged detector model is missing: {exc}") from exc
    digest = hashlib.sha256(model).hexdigest()
    if digest != expected:
        raise ModelUnavailable(
            f"the packaged {precision} detector model is damaged (sha256 {digest[:12]}…, "
            f"expected {expected[:12]}…): reinstall imgproc-tagger"
        )
    return model


class Detector:
    """One onnxruntime session over NanoDet: a PIL image in, COCO detections out."""

    def __init__(
        self,
        model: bytes,
        *,
        providers: list[str],
        intra_op_threads: int = 1,
        precision: Precision | Literal["custom"] = "fp32",
    ) -> None:
        self._session = inference_session(
            model, providers=providers, intra_op_threads=intra_op_threads, what="detector model"
        )
        # "int8" / "fp32" for a packaged model, "custom" for a `detector_path` file.
        self.precision: Precision | Literal["custom"] = precision
        names = {output.name for output in self._session.get_outputs()}
        missing = set(SCORE_OUTPUTS + BOX_OUTPUTS) - names
        if missing:
            raise ModelUnavailable(f"the detector model lacks the outputs {sorted(missing)}")
        self.providers: list[str] = self._session.get_providers()

    def raw_outputs(self, batch: Array) -> tuple[list[Array], list[Array]]:
        """Per-stride scores and box bins for a (1, 3, 416, 416) input."""
        if batch.shape != (1, 3, INPUT_SIZE, INPUT_SIZE):
            raise ValueError(f"expected (1, 3, {INPUT_SIZE}, {INPUT_SIZE}), got {batch.shape}")
        outputs = self._session.run(
            list(SCORE_OUTPUTS + BOX_OUTPUTS), {INPUT_NAME: batch.astype(np.float32)}
        )
        return outputs[: len(STRIDES)], outputs[len(STRIDES) :]

    def detect(self, image: Image.Image, score_threshold: float = 0.35) -> list[Detection]:
        """The objects in the image, best first, after per-class NMS."""
        scores, box_bins = self.raw_outputs(detector_input(image))
        return nms(decode(scores, box_bins, score_threshold))


def load_detector_model(settings: TaggerSettings, precision: Precision = "fp32") -> bytes:
    """The detector's ONNX bytes: the override file when set, else the packaged model."""
    if settings.detector_path is None:
        return packaged_model(precision)
    try:
        return settings.detector_path.read_bytes()
    except OSError as exc:
        raise ModelUnavailable(
            f"cannot read the detector model {settings.detector_path}: {exc}"
        ) from exc


def open_detector(settings: TaggerSettings) -> Detector:
    """Load the detector model and open a session on the chosen provider."""
    providers = choose_providers(settings.execution_provider)
    precision = choose_precision(settings.detector_precision, providers, cpu_flags())
    return Detector(
        load_detector_model(settings, precision),
        providers=providers,
        intra_op_threads=settings.intra_op_threads,
        precision="custom" if settings.detector_path is not None else precision,
    )
