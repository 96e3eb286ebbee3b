"""The COCO object detector: input normalisation, GFL box decoding, NMS, and the real model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imgproc_tagger import detector as detector_module
from imgproc_tagger.classifier import ModelUnavailable
from imgproc_tagger.config import TaggerSettings
from imgproc_tagger.detector import (
    COCO_CLASSES,
    INPUT_SIZE,
    REG_MAX,
    STRIDES,
    Detection,
    Detector,
    box_iou,
    choose_precision,
    cpu_flags,
    decode,
    detector_input,
    nms,
    open_detector,
)

TAGGER_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "tagger"
DOG, HORSE, PERSON, BICYCLE, TRUCK, CAT = 16, 17, 0, 1, 7, 15

Array = np.ndarray[Any, Any]


@pytest.fixture(scope="module")
def packaged_detectors() -> dict[str, Detector]:
    """Both packaged models, opened once: the float one and its int8 quantization."""
    opened = {
        precision: open_detector(
            TaggerSettings(execution_provider="cpu", detector_precision=precision)
        )
        for precision in ("fp32", "int8")
    }
    assert all(d.precision == precision for precision, d in opened.items())
    return opened


# The real-model tests run on both packaged models.
@pytest.fixture(params=["fp32", "int8"])
def detector(request: pytest.FixtureRequest, packaged_detectors: dict[str, Detector]) -> Detector:
    return packaged_detectors[request.param]


def _empty_outputs() -> tuple[list[Array], list[Array]]:
    cells = [(INPUT_SIZE // stride) ** 2 for stride in STRIDES]
    scores = [np.zeros((1, n, len(COCO_CLASSES)), np.float32) for n in cells]
    bins = [np.zeros((1, n, 4 * (REG_MAX + 1)), np.float32) for n in cells]
    return scores, bins


def _one_hot_bins(left: int, top: int, right: int, bottom: int) -> Array:
    """Bin logits whose softmax puts all the weight on the given bin of each side."""
    logits = np.full((4, REG_MAX + 1), -1e4, np.float32)
    for side, bin_index in enumerate((left, top, right, bottom)):
        logits[side, bin_index] = 0.0
    return logits.reshape(-1)


def _box(d: Detection) -> tuple[float, float, float, float]:
    return d.box


def _mirrored(d: Detection) -> tuple[float, float, float, float]:
    left, top, right, bottom = d.box
    return 1 - right, top, 1 - left, bottom


def _centre(box: tuple[float, float, float, float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _best(found: list[Detection], name: str) -> Detection:
    matches = [d for d in found if d.name == name]
    assert matches, f"no {name} among {[(d.name, round(d.score, 2)) for d in found]}"
    return max(matches, key=lambda d: d.score)


# --- class order -----------------------------------------------------------------------------


def test_the_classes_are_the_80_coco_names_in_the_models_order() -> None:
    assert len(COCO_CLASSES) == 80 and len(set(COCO_CLASSES)) == 80
    assert COCO_CLASSES[:9] == (
        "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    )  # fmt: skip
    assert (COCO_CLASSES[CAT], COCO_CLASSES[DOG], COCO_CLASSES[HORSE]) == ("cat", "dog", "horse")
    assert COCO_CLASSES[-1] == "toothbrush"


# --- decoding ----------------------------------------------------------------------------------


def test_one_hot_cell_decodes_to_the_exact_box_from_the_cells_centre() -> None:
    scores, bins = _empty_outputs()
    level, stride, x, y = 1, 16, 5, 3  # the 26×26 grid
    cell = y * (INPUT_SIZE // stride) + x
    scores[level][0, cell, DOG] = 0.9
    bins[level][0, cell] = _one_hot_bins(2, 3, 4, 5)

    (found,) = decode(scores, bins, score_threshold=0.35)

    centre_x, centre_y = (x + 0.5) * stride, (y + 0.5) * stride  # 88, 56
    expected = (
        (centre_x - 2 * stride) / INPUT_SIZE,
        (centre_y - 3 * stride) / INPUT_SIZE,
        (centre_x + 4 * stride) / INPUT_SIZE,
        (centre_y + 5 * stride) / INPUT_SIZE,
    )
    assert found.class_index == DOG and found.name == "dog"
    assert found.score == pytest.approx(0.9)
    assert found.box == pytest.approx(expected, abs=1e-6)


def test_a_box_side_is_the_expected_distance_over_its_bins() -> None:
    scores, bins = _empty_outputs()
    stride = 32
    scores[2][0, 0, PERSON] = 0.8
    # Equal logits: the mean of 0..10 bins is 5 strides; two bins at 1 and 3: 2 strides.
    logits = np.full((4, REG_MAX + 1), -1e4, np.float32)
    logits[0, :] = 0.0
    logits[1, [1, 3]] = 0.0
    logits[2, 1] = logits[3, 1] = 0.0
    bins[2][0, 0] = logits.reshape(-1)

    (found,) = decode(scores, bins, 0.5)

    centre = 0.5 * stride
    left, top, right, bottom = found.box
    assert left == 0.0  # 16 - 5 * 32 < 0: clipped to the image
    assert top == 0.0  # 16 - 2 * 32 < 0
    assert right == pytest.approx((centre + stride) / INPUT_SIZE)
    assert bottom == pytest.approx((centre + stride) / INPUT_SIZE)
    # Unclipped, the left side is 5 strides: check on a cell far from the edge.
    scores, bins = _empty_outputs()
    cell = 6 * 13 + 6
    scores[2][0, cell, PERSON] = 0.8
    bins[2][0, cell] = logits.reshape(-1)
    (found,) = decode(scores, bins, 0.5)
    assert found.box[0] == pytest.approx((6.5 * stride - 5 * stride) / INPUT_SIZE)
    assert found.box[1] == pytest.approx((6.5 * stride - 2 * stride) / INPUT_SIZE)


def test_boxes_are_clipped_to_the_image() -> None:
    scores, bins = _empty_outputs()
    last = (INPUT_SIZE // 8) ** 2 - 1  # bottom-right cell of the finest grid
    scores[0][0, last, CAT] = 0.7
    bins[0][0, last] = _one_hot_bins(10, 10, 10, 10)
    (found,) = decode(scores, bins, 0.5)
    left, top, right, bottom = found.box
    assert right == 1.0 and bottom == 1.0
    assert 0.0 < left < 1.0 and 0.0 < top < 1.0


def test_only_scores_at_or_over_the_threshold_are_kept() -> None:
    scores, bins = _empty_outputs()
    scores[0][0, 100, DOG] = 0.34
    scores[0][0, 100, CAT] = 0.36
    scores[2][0, 7, HORSE] = 0.35

    names = sorted(d.name for d in decode(scores, bins, 0.35))
    assert names == ["cat", "horse"]
    assert sorted(d.name for d in decode(scores, bins, 0.3)) == ["cat", "dog", "horse"]
    assert decode(scores, bins, 0.5) == []


def test_decode_takes_outputs_with_or_without_the_batch_axis() -> None:
    scores, bins = _empty_outputs()
    scores[1][0, 40, TRUCK] = 0.6
    with_batch = decode(scores, bins, 0.5)
    without = decode([s[0] for s in scores], [b[0] for b in bins], 0.5)
    assert with_batch == without and with_batch[0].name == "truck"


# --- NMS --------------------------------------------------------------------------------------


def _det(class_index: int, score: float, box: tuple[float, float, float, float]) -> Detection:
    return Detection(class_index, COCO_CLASSES[class_index], score, box)


def test_nms_merges_overlapping_boxes_of_one_class_and_keeps_the_best() -> None:
    weaker = _det(DOG, 0.5, (0.10, 0.10, 0.50, 0.50))
    stronger = _det(DOG, 0.8, (0.12, 0.11, 0.52, 0.50))
    apart = _det(DOG, 0.4, (0.60, 0.60, 0.90, 0.90))
    assert nms([weaker, stronger, apart]) == [stronger, apart]


def test_nms_keeps_overlapping_boxes_of_different_classes() -> None:
    dog = _det(DOG, 0.6, (0.1, 0.1, 0.5, 0.5))
    cat = _det(CAT, 0.7, (0.1, 0.1, 0.5, 0.5))
    assert nms([dog, cat]) == [cat, dog]


def test_nms_threshold_is_on_intersection_over_union() -> None:
    first = _det(HORSE, 0.9, (0.0, 0.0, 0.4, 1.0))
    # Overlap 0.2 wide: IoU = 0.2 / 0.6 = 1/3.
    second = _det(HORSE, 0.8, (0.2, 0.0, 0.6, 1.0))
    assert nms([first, second], iou=0.5) == [first, second]
    assert nms([first, second], iou=0.3) == [first]
    assert nms([]) == []


# --- input --------------------------------------------------------------------------------------


def test_input_is_bgr_normalised_nchw_at_416() -> None:
    image = Image.new("RGB", (300, 200), (200, 100, 50))
    batch = detector_input(image)
    assert batch.shape == (1, 3, INPUT_SIZE, INPUT_SIZE) and batch.dtype == np.float32
    blue, green, red = batch[0, :, 208, 208]
    assert blue == pytest.approx((50 - 103.53) / 57.375, abs=1e-5)
    assert green == pytest.approx((100 - 116.28) / 57.12, abs=1e-5)
    assert red == pytest.approx((200 - 123.675) / 58.395, abs=1e-5)


def test_input_normalises_every_pixel_and_channel_as_the_formula_does() -> None:
    pixels = np.random.default_rng(7).integers(0, 256, (INPUT_SIZE, INPUT_SIZE, 3), dtype=np.uint8)
    batch = detector_input(Image.fromarray(pixels))  # already 416 px: the resize keeps the pixels
    bgr = pixels[:, :, ::-1].astype(np.float32)
    mean = np.array([103.53, 116.28, 123.675], dtype=np.float32)
    std = np.array([57.375, 57.12, 58.395], dtype=np.float32)
    expected = ((bgr - mean) / std).transpose(2, 0, 1)[np.newaxis]
    np.testing.assert_allclose(batch, expected, rtol=0, atol=1e-6)


def test_input_stretches_the_whole_image_without_flipping_it() -> None:
    image = Image.new("RGB", (800, 100), (0, 0, 0))
    image.paste((255, 255, 255), (400, 0, 800, 50))  # the top-right quarter is white
    batch = detector_input(image)[0, 0]
    assert batch[10, 400] > 2.0 and batch[10, 10] < -1.5  # top: white on the right only
    assert batch[400, 400] < -1.5  # bottom right is black


def test_input_accepts_other_modes() -> None:
    grey = detector_input(Image.new("L", (50, 60), 128))
    assert grey.shape == (1, 3, INPUT_SIZE, INPUT_SIZE)
    assert grey[0, 0, 0, 0] == pytest.approx((128 - 103.53) / 57.375, abs=1e-5)


# --- loading ------------------------------------------------------------------------------------


def test_the_packaged_model_loads_from_package_data() -> None:
    model = detector_module.load_detector_model(TaggerSettings())
    assert len(model) > 1_000_000


def test_a_missing_model_file_is_a_readable_error(tmp_path: Path) -> None:
    settings = TaggerSettings(detector_path=tmp_path / "absent.onnx")
    with pytest.raises(ModelUnavailable, match="cannot read the detector model"):
        open_detector(settings)


def test_a_damaged_model_file_is_a_readable_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx model")
    with pytest.raises(ModelUnavailable, match="cannot load the detector model"):
        open_detector(TaggerSettings(detector_path=broken, execution_provider="cpu"))


@pytest.mark.parametrize(
    ("precision", "digest"), [("fp32", "MODEL_SHA256"), ("int8", "MODEL_INT8_SHA256")]
)
def test_a_damaged_packaged_model_is_refused(
    monkeypatch: pytest.MonkeyPatch, precision: str, digest: str
) -> None:
    monkeypatch.setattr(detector_module, digest, "0" * 64)
    settings = TaggerSettings(execution_provider="cpu", detector_precision=precision)
    with pytest.raises(ModelUnavailable, match=f"packaged {precision} detector model is damaged"):
        open_detector(settings)


# --- which packaged model runs ----------------------------------------------------------------

CPU = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]
AVX2_ONLY = frozenset({"sse4_2", "avx2", "fma"})


@pytest.mark.parametrize("flags", [{"avx512_vnni"}, {"avx_vnni"}, {"avx2", "avx512_vnni"}])
def test_auto_runs_the_int8_model_on_a_cpu_with_vnni(flags: set[str]) -> None:
    assert choose_precision("auto", CPU, AVX2_ONLY | flags) == "int8"


def test_auto_runs_the_float_model_without_vnni_on_a_gpu_or_where_flags_are_unknown() -> None:
    assert choose_precision("auto", CPU, AVX2_ONLY) == "fp32"
    assert choose_precision("auto", CPU, frozenset()) == "fp32"  # not Linux, or not x86
    assert choose_precision("auto", CUDA, AVX2_ONLY | {"avx512_vnni"}) == "fp32"


def test_a_named_precision_is_taken_as_it_is() -> None:
    assert choose_precision("int8", CPU, AVX2_ONLY) == "int8"
    assert choose_precision("fp32", CPU, frozenset({"avx512_vnni"})) == "fp32"


def test_cpu_flags_come_from_cpuinfo(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Some Xeon\nflags\t\t: fpu avx2 avx512_vnni\n\n"
        "processor\t: 1\nflags\t\t: fpu avx2 avx512_vnni\n"
    )
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_vnni"}
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_a_model_file_of_ones_own_is_run_as_it_is(tmp_path: Path) -> None:
    own = tmp_path / "own.onnx"
    own.write_bytes(detector_module.load_detector_model(TaggerSettings(), "fp32"))
    opened = open_detector(
        TaggerSettings(detector_path=own, execution_provider="cpu", detector_precision="int8")
    )
    assert opened.precision == "custom"


# --- the real model on real photos -----------------------------------------------------------


def test_finds_the_person_the_dog_and_the_horse(detector: Detector) -> None:
    found = detector.detect(Image.open(TAGGER_FIXTURES / "person_dog_horse.jpg"))
    person, dog, horse = _best(found, "person"), _best(found, "dog"), _best(found, "horse")
    # The woman stands in the middle, her dog sits at the lower left, the horse is on the right.
    person_x, _ = _centre(person.box)
    assert 0.3 < person_x < 0.45 and person.box[1] < 0.3 and person.box[3] > 0.8
    dog_x, dog_y = _centre(dog.box)
    assert dog_x < 0.3 and dog_y > 0.6
    horse_x, _ = _centre(horse.box)
    assert horse_x > 0.7 and horse.box[2] > 0.9
    assert all(0.0 <= v <= 1.0 for d in found for v in d.box)
    assert all(0.35 <= d.score <= 1.0 for d in found)


def test_finds_the_dog_the_bicycle_and_the_truck(detector: Detector) -> None:
    image = Image.open(TAGGER_FIXTURES / "dog_bicycle_truck.jpg")
    found = detector.detect(image)
    dog, bicycle = _best(found, "dog"), _best(found, "bicycle")
    dog_x, dog_y = _centre(dog.box)
    assert dog_x < 0.5 and dog_y > 0.55 and dog.box[3] > 0.85  # the dog sits at the lower left
    assert bicycle.box[0] < 0.2 and bicycle.box[2] > 0.65  # the bicycle spans the middle
    # The truck, small and parked at the top right, scores just over 0.3.
    truck = _best(detector.detect(image, score_threshold=0.3), "truck")
    truck_x, truck_y = _centre(truck.box)
    assert truck_x > 0.6 and truck_y < 0.35


@pytest.mark.parametrize(
    "photo", ["person_dog_horse.jpg", "dog_bicycle_truck.jpg", "cat_chelsea.jpg", "coffee_cup.jpg"]
)
def test_the_int8_model_finds_what_the_float_one_finds(
    photo: str, packaged_detectors: dict[str, Detector]
) -> None:
    """Each float detection scored >= 0.4 has its int8 twin: same class, nearly the same box
    and score (the labelled set's figures are in `make bench`, bench.tagger part 4)."""
    image = Image.open(TAGGER_FIXTURES / photo)
    floats, ints = packaged_detectors["fp32"], packaged_detectors["int8"]
    expected = floats.detect(image, score_threshold=0.4)
    got = ints.detect(image, score_threshold=0.3)
    assert expected
    for detection in expected:
        twins = [g for g in got if g.class_index == detection.class_index]
        assert twins, f"int8 lost the {detection.name} ({detection.score:.2f})"
        overlaps = box_iou(np.array(detection.box), np.array([t.box for t in twins]))
        twin = twins[int(np.argmax(overlaps))]
        assert overlaps.max() >= 0.85, (detection, twin)
        assert twin.score == pytest.approx(detection.score, abs=0.05), (detection, twin)


def test_a_mirrored_photo_gives_mirrored_boxes(detector: Detector) -> None:
    """Checks the cells' points: off by half a stride, the boxes would differ by a stride."""
    image = Image.open(TAGGER_FIXTURES / "person_dog_horse.jpg")
    found = detector.detect(image, score_threshold=0.25)
    mirrored = detector.detect(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT), 0.25)
    for name in ("person", "dog", "horse"):
        assert _mirrored(_best(mirrored, name)) == pytest.approx(
            _box(_best(found, name)), abs=0.015
        )
