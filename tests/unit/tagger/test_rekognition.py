"""Rekognition's DetectLabels answer in our shape, and the inline fallback for large photos."""

from __future__ import annotations

import io

from PIL import Image

from imgproc_tagger.rekognition import downscaled_jpeg, labels_from_response

RESPONSE = {
    "Labels": [
        {"Name": "Animal", "Confidence": 99.1, "Parents": []},
        {
            "Name": "Dog",
            "Confidence": 98.61234,
            "Parents": [{"Name": "Pet"}, {"Name": "Canine"}, {"Name": "Animal"}],
            "Instances": [{"BoundingBox": {}, "Confidence": 98.6}],
        },
        {"Name": "Grass", "Confidence": 70.0, "Parents": [{"Name": "Plant"}]},
        {"Name": "Sofa", "Confidence": 41.0, "Parents": [{"Name": "Furniture"}]},
    ]
}


def test_labels_keep_name_confidence_and_parent_names() -> None:
    labels = labels_from_response(RESPONSE, max_labels=10, min_confidence=60)
    assert [(x.name, x.confidence, x.parents) for x in labels] == [
        ("Animal", 99.1, []),
        ("Dog", 98.612, ["Pet", "Canine", "Animal"]),
        ("Grass", 70.0, ["Plant"]),
    ]


def test_limits_are_applied_even_if_the_service_ignores_them() -> None:
    assert [x.name for x in labels_from_response(RESPONSE, max_labels=2, min_confidence=0)] == [
        "Animal",
        "Dog",
    ]
    assert labels_from_response({"Labels": []}, max_labels=10, min_confidence=60) == []


def test_a_large_photo_is_sent_inline_as_a_small_jpeg() -> None:
    out = io.BytesIO()
    Image.new("RGBA", (4000, 3000), (10, 200, 30, 255)).save(out, "PNG")
    small = downscaled_jpeg(out.getvalue(), edge=1920)
    with Image.open(io.BytesIO(small)) as image:
        assert image.format == "JPEG"
        assert max(image.size) == 1920
    assert len(small) < 5 * 1024 * 1024
