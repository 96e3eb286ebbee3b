"""Image bytes → the model's input: RGB, centre crop 224/256 of the short side, 224×224 bicubic,
`(x - 127) / 128`, channels first.

JPEGs are decoded with draft mode straight to the smallest DCT scale (1/2 … 1/8) that still
leaves the crop at least 224 px: a 20 MP photo decodes at 1/8 size, several times faster and
with a fraction of the memory of a full decode. The EXIF orientation is applied to the 224 px
crop (rotating a centred square crop is the same as cropping the rotated image).
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
from PIL import Image

from imgproc_shared import errors
from imgproc_tagger.efficientnet_graph import INPUT_SIZE

# The model was trained on 224 crops from images resized so that the crop is 224/256 of the
# short side (the usual ImageNet evaluation protocol).
RESIZE_SIZE = 256
_MEAN, _STD = 127.0, 128.0
# A region shown to the classifier alone keeps some context around its box, as ImageNet's
# photos frame their object with some margin.
REGION_MARGIN = 1.1
_ORIENTATION_TAG = 0x0112
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
        raise errors.TooLarge(f"the image is too large to decode: {exc}") from exc
    except Exception as exc:  # UnidentifiedImageError, SyntaxError, ValueError, ...
        raise errors.CorruptImage(f"the image cannot be read: {exc}") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise errors.TooLarge(f"{width}x{height} is over the limit of {max_pixels} pixels")
    return image


def _centre_crop_box(width: int, height: int) -> tuple[float, float, float, float]:
    side = min(width, height) * INPUT_SIZE / RESIZE_SIZE
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB for the model; transparency is laid on white, as a viewer would show it."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale to 8 bits before the RGB conversion, which would clip instead.
        return image.convert("I").point(lambda v: v * (1 / 256)).convert("L").convert("RGB")
    return image.convert("RGB")


def orientation_of(image: Image.Image) -> int:
    """The EXIF orientation tag (1 when absent or unreadable)."""
    try:
        return int(image.getexif().get(_ORIENTATION_TAG, 1))
    except Exception:  # malformed EXIF never fails an image
        return 1


def upright(pixels: Image.Image, orientation: int) -> Image.Image:
    """`pixels` as stored turned upright by the EXIF `orientation`."""
    return pixels.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else pixels


def decode_small(data: bytes, max_pixels: int, min_side: int) -> tuple[Image.Image, int]:
    """Decode `data` to RGB no smaller than `min_side` on its short side (where the photo is),
    as cheaply as possible, and read its EXIF orientation; the pixels stay as stored.

    JPEGs use draft mode (decode-time DCT scaling); other formats are box-reduced after the
    decode, which is cheap next to resizing the full image for each model.
    """
    image = _open(data, max_pixels)
    orientation = orientation_of(image)
    try:
        if image.format in ("JPEG", "MPO"):
            image.draft("RGB", (min_side, min_side))
        image.load()
        rgb = to_rgb(image)
        factor = min(rgb.size) // min_side
        if factor >= 2:
            rgb = rgb.reduce(factor)
    except errors.TaskError:
        raise
    except Exception as exc:  # OSError (truncated), ValueError, SyntaxError, ...
        raise errors.CorruptImage(f"the image cannot be decoded: {exc}") from exc
    return rgb, orientation


def classifier_image(rgb: Image.Image, orientation: int) -> Image.Image:
    """The classifier's 224×224 input image from a decoded photo: centre crop, upright."""
    small = rgb.resize(
        (INPUT_SIZE, INPUT_SIZE),
        Image.Resampling.BICUBIC,
        box=_centre_crop_box(*rgb.size),
        # Box-reduce first where the source is far larger: much faster, as Pillow's thumbnails.
        reducing_gap=2.0,
    )
    # Rotating a centred square crop is the same as cropping the rotated image.
    if orientation in _TRANSPOSE:
        small = small.transpose(_TRANSPOSE[orientation])
    return small


def classifier_sample(rgb: Image.Image, orientation: int) -> np.ndarray[Any, Any]:
    """A decoded photo → the classifier's (3, 224, 224) float32 input."""
    return normalize(classifier_image(rgb, orientation))


def region_sample(rgb: Image.Image, box: tuple[float, float, float, float]) -> np.ndarray[Any, Any]:
    """The classifier's (3, 224, 224) input showing one region of an upright decoded photo: the
    square around the `box` (left, top, right, bottom as fractions) with a little margin, kept
    inside the photo."""
    width, height = rgb.size
    left, top, right, bottom = box
    side = min(max((right - left) * width, (bottom - top) * height) * REGION_MARGIN, width, height)
    side = max(side, 1.0)
    centre_x = min(max((left + right) / 2 * width, side / 2), width - side / 2)
    centre_y = min(max((top + bottom) / 2 * height, side / 2), height - side / 2)
    crop = (centre_x - side / 2, centre_y - side / 2, centre_x + side / 2, centre_y + side / 2)
    small = rgb.resize(
        (INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC, box=crop, reducing_gap=2.0
    )
    return normalize(small)


def model_image(data: bytes, max_pixels: int = 100_000_000) -> Image.Image:
    """Decode `data` to the classifier's 224×224 RGB input image (oriented, centre-cropped)."""
    rgb, orientation = decode_small(data, max_pixels, min_side=RESIZE_SIZE)
    try:
        return classifier_image(rgb, orientation)
    except Exception as exc:  # a decode that failed late
        raise errors.CorruptImage(f"the image cannot be decoded: {exc}") from exc


def normalize(image: Image.Image) -> np.ndarray[Any, Any]:
    """A 224×224 RGB image → a (3, 224, 224) float32 array scaled as the model expects."""
    pixels = np.asarray(image, dtype=np.float32)
    return np.ascontiguousarray(((pixels - _MEAN) / _STD).transpose(2, 0, 1))


def preprocess(data: bytes, max_pixels: int = 100_000_000) -> np.ndarray[Any, Any]:
    """Image file bytes → a (3, 224, 224) float32 model input.

    Raises `CorruptImage` for an undecodable file and `TooLarge` past `max_pixels`.
    """
    return normalize(model_image(data, max_pixels))
