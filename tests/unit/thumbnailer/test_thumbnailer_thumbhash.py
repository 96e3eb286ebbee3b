"""The ThumbHash placeholder: byte-exact with an independent implementation, and decodable."""

from __future__ import annotations

import base64

import pytest
from PIL import Image, ImageStat

from imgproc_thumbnailer.thumbhash import (
    _lpq_opaque,
    _lpqa,
    decode_placeholder,
    encode_placeholder,
    image_to_thumbhash,
    rgba_to_thumbhash,
    thumbhash_to_approximate_aspect_ratio,
    thumbhash_to_average_rgba,
    thumbhash_to_rgba,
)


def _noise(w: int, h: int, alpha: bool) -> bytes:
    """Pseudo-random RGBA pixels: no AC term lands exactly on a rounding tie."""
    state, out = 12345, bytearray()
    for _ in range(w * h):
        pixel = []
        for _channel in range(4):
            state = (state * 1103515245 + 12345) % 2**31
            pixel.append(state >> 23)
        if not alpha:
            pixel[3] = 255
        out += bytes(pixel)
    return bytes(out)


# Hashes of the same pixels computed by the PyPI package `thumbhash-python` 1.0.1, a separate
# port of the reference algorithm (sizes chosen so that its banker's rounding of the term
# counts agrees with the reference's round-half-up).
@pytest.mark.parametrize(
    ("w", "h", "alpha", "expected"),
    [
        (24, 12, False, "9fe7010c820a99bbb5d9d67a78a73f4184fc58"),
        (12, 20, True, "9fe7810b02187afb29d737af4af2ab655650a758659a55"),
        (33, 7, False, "9fe7010982ca6ee988a880c4340285aa9f"),
    ],
)
def test_encoder_matches_an_independent_implementation(
    w: int, h: int, alpha: bool, expected: str
) -> None:
    assert rgba_to_thumbhash(w, h, _noise(w, h, alpha)).hex() == expected


@pytest.mark.parametrize(("w", "h"), [(32, 18), (7, 33), (1, 1)])
def test_the_opaque_shortcut_is_the_reference_arithmetic(w: int, h: int) -> None:
    rgba = _noise(w, h, alpha=False)
    has_alpha, lum, p, q, _ = _lpqa(rgba, w * h)
    assert not has_alpha
    assert _lpq_opaque(rgba) == (lum, p, q)  # the same floats, bit for bit


def test_rgb_hashes_as_its_rgba_form_unless_a_colour_is_transparent() -> None:
    size = (256, 171)
    noise = Image.effect_noise(size, 60)
    image = Image.merge("RGB", (noise, Image.linear_gradient("L").resize(size), noise))
    assert image_to_thumbhash(image) == image_to_thumbhash(image.convert("RGBA"))
    keyed = Image.new("RGB", size, (200, 30, 40))
    keyed.paste((0, 0, 0), (0, 0, 128, 171))
    keyed.info["transparency"] = (0, 0, 0)
    _, _, _, alpha = thumbhash_to_average_rgba(image_to_thumbhash(keyed))
    assert 0.3 < alpha < 0.7


@pytest.mark.parametrize("colour", [(200, 30, 40), (20, 120, 220), (128, 128, 128)])
def test_a_solid_colour_decodes_to_that_colour(colour: tuple[int, int, int]) -> None:
    placeholder = encode_placeholder(Image.new("RGB", (64, 40), colour))
    r, g, b, a = thumbhash_to_average_rgba(base64.b64decode(placeholder))
    assert a == 1.0
    for got, want in zip((r, g, b), colour, strict=True):
        assert abs(got * 255 - want) < 10
    decoded = decode_placeholder(placeholder)
    assert decoded.mode == "RGBA"
    means = ImageStat.Stat(decoded.convert("RGB")).mean
    for got, want in zip(means, colour, strict=True):
        assert abs(got - want) < 10


@pytest.mark.parametrize(
    ("size", "ratio"), [((200, 100), 2.0), ((60, 180), 1 / 3), ((50, 50), 1.0)]
)
def test_the_aspect_ratio_survives(size: tuple[int, int], ratio: float) -> None:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    hash_bytes = base64.b64decode(encode_placeholder(image))
    assert thumbhash_to_approximate_aspect_ratio(hash_bytes) == pytest.approx(ratio, rel=0.25)
    w, h, rgba = thumbhash_to_rgba(hash_bytes)
    assert max(w, h) == 32
    assert w / h == pytest.approx(ratio, rel=0.25)
    assert len(rgba) == 4 * w * h


def test_a_left_to_right_gradient_stays_one() -> None:
    image = Image.linear_gradient("L").rotate(90).resize((80, 40)).convert("RGB")
    decoded = decode_placeholder(encode_placeholder(image)).convert("L")
    left = ImageStat.Stat(decoded.crop((0, 0, 4, decoded.height))).mean[0]
    right = ImageStat.Stat(
        decoded.crop((decoded.width - 4, 0, decoded.width, decoded.height))
    ).mean[0]
    assert abs(left - right) > 100


def test_transparency_is_recorded() -> None:
    image = Image.new("RGBA", (40, 40), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, 20, 40))
    hash_bytes = base64.b64decode(encode_placeholder(image))
    _, _, _, alpha = thumbhash_to_average_rgba(hash_bytes)
    assert 0.3 < alpha < 0.7
    decoded = decode_placeholder(encode_placeholder(image))
    alpha_channel = decoded.getchannel("A")
    assert alpha_channel.getpixel((1, 16)) < alpha_channel.getpixel((30, 16))  # type: ignore[operator]


def test_large_inputs_are_refused_and_bad_hashes_rejected() -> None:
    with pytest.raises(ValueError, match="100x100"):
        rgba_to_thumbhash(101, 10, bytes(4 * 101 * 10))
    with pytest.raises(ValueError):
        thumbhash_to_rgba(b"\x01\x02")
    full = base64.b64decode(encode_placeholder(Image.new("RGB", (30, 20), (9, 99, 199))))
    with pytest.raises(ValueError, match="truncated"):
        thumbhash_to_rgba(full[:6])
