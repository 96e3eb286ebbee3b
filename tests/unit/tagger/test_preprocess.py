"""Decoding to the model's input: draft-mode JPEGs, centre crop, orientation, odd modes, errors."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgproc_shared import errors
from imgproc_tagger.preprocess import model_image, normalize, preprocess, region_sample


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def halves(size: tuple[int, int]) -> Image.Image:
    """Left half red, right half blue: shows which way the picture was turned."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


def test_output_is_a_normalized_nchw_sample() -> None:
    sample = preprocess(encode(halves((640, 480))))
    assert sample.shape == (3, 224, 224)
    assert sample.dtype == np.float32
    assert sample.min() >= -1.0 and sample.max() <= 1.0
    # Red on the left, blue on the right, after (x - 127) / 128.
    assert sample[0, 112, 10] == pytest.approx(1.0, abs=0.05)
    assert sample[2, 112, 214] == pytest.approx(1.0, abs=0.05)


def test_large_jpegs_are_decoded_at_reduced_size(monkeypatch: pytest.MonkeyPatch) -> None:
    data = encode(halves((4000, 3000)), quality=70)
    loaded_sizes: list[tuple[int, int]] = []
    original_load = Image.Image.load

    def recording_load(self: Image.Image) -> object:
        result = original_load(self)
        loaded_sizes.append(self.size)
        return result

    monkeypatch.setattr(Image.Image, "load", recording_load)
    assert model_image(data).size == (224, 224)
    # 1/8 scale: 500x375, still more than 256 on the short side.
    assert loaded_sizes[0] == (500, 375)


def test_centre_crop_keeps_the_middle_of_a_wide_image() -> None:
    # A wide image: black margins on the left and right outside the centre square.
    image = Image.new("RGB", (800, 200), (0, 0, 0))
    image.paste((255, 255, 255), (300, 0, 500, 200))
    small = np.asarray(model_image(encode(image, "PNG")))
    # The crop is 175 px (200 * 224/256) wide around the centre: all white.
    assert small.min() > 240


def test_exif_orientation_is_applied() -> None:
    exif = Image.Exif()
    exif[0x0112] = 3  # rotate 180: red ends up on the right
    small = np.asarray(model_image(encode(halves((400, 300)), exif=exif.tobytes())))
    assert small[112, 10, 2] > 200 and small[112, 10, 0] < 50
    assert small[112, 214, 0] > 200


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "I;16"])
def test_other_modes_become_rgb(mode: str) -> None:
    image = (
        halves((300, 300)).convert("RGBA").convert(mode)
        if mode != "I;16"
        else (Image.new("I;16", (300, 300), 40000))
    )
    fmt = "TIFF" if mode == "CMYK" else "PNG"
    sample = preprocess(encode(image, fmt))
    assert sample.shape == (3, 224, 224)
    assert np.isfinite(sample).all()


def test_transparency_is_laid_on_white() -> None:
    sample = preprocess(encode(Image.new("RGBA", (300, 300), (0, 0, 0, 0)), "PNG"))
    assert sample.min() == pytest.approx((255 - 127) / 128)


def test_undecodable_files_are_corrupt_images() -> None:
    with pytest.raises(errors.CorruptImage):
        preprocess(b"this is plain text, not an image")
    truncated = encode(halves((800, 600)), quality=90)[:2000]
    with pytest.raises(errors.CorruptImage):
        preprocess(truncated)


def test_too_many_pixels_is_refused_before_decoding() -> None:
    with pytest.raises(errors.TooLarge):
        preprocess(encode(Image.new("1", (3000, 3000)), "PNG"), max_pixels=1_000_000)


def test_normalize_scales_like_the_reference() -> None:
    image = Image.new("RGB", (224, 224), (127, 255, 0))
    sample = normalize(image)
    assert sample[:, 0, 0].tolist() == pytest.approx([0.0, 1.0, -127 / 128])


def test_a_region_sample_shows_the_box_with_a_margin_inside_the_photo() -> None:
    photo = Image.new("RGB", (800, 400), (0, 0, 255))
    photo.paste((255, 0, 0), (600, 100, 700, 200))  # a red square near the right edge
    red = region_sample(photo, (0.75, 0.25, 0.875, 0.5))
    assert red.shape == (3, 224, 224)
    # The square fills most of the crop (1/1.1 of each side), centred, with blue around it.
    assert red[0, 112, 112] > 0.9 and red[2, 112, 112] < -0.9
    assert red[2, 3, 3] > 0.9
    # A box at the very edge is shifted inside the photo rather than padded.
    corner = region_sample(photo, (0.99, 0.99, 1.0, 1.0))
    assert corner.shape == (3, 224, 224) and np.isfinite(corner).all()
