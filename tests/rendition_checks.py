"""What a correct rendition looks like, decided without our code: the references the unit tests
(one `render` call) and the end-to-end test (the whole workflow) both compare against.

The files named here are the corpus' orientation, format and EXIF sets, committed in
`tests/fixtures/images` (licences in its LICENSES.md).
"""

from __future__ import annotations

import array
import io
import math
from pathlib import Path

from helpers import FIXTURES
from PIL import Image, ImageChops, ImageCms, ImageOps, ImageStat

IMAGES = FIXTURES / "images"
WHITE = (255, 255, 255, 255)

ORIENTATION_FILES = [f"hopper_orientation_{n}.jpg" for n in range(1, 9)] + [
    "png_exif_orientation3.png",
    "png_xmp_orientation3.png",
]
FORMAT_FILES = [
    "apng16_rgba.png",
    "cmyk.jpg",
    "grayscale.jpg",
    "interlaced_palette_trns.png",
    "interlaced_rgba.png",
    "la_uncompressed.png",
    "palette_single_trns.png",
    "png16_gray_trns.png",
    "progressive_app13.jpg",
    "progressive_icc_big.jpg",
    "sugarshack_3ds.mpo",
]
EXIF_FILES = [
    "exif_gps.jpg",
    "exif_in_png.png",
    "flower_canon.jpg",
    "iptc_nokia.jpg",
    "no_exif.jpg",
    "png_exif_orientation3.png",
    "png_xmp_orientation3.png",
    "r_canon_gps.jpg",
    "r_sony.jpg",
    "xmp_canon.jpg",
]


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference per RGB sample, 0-255: how far apart two pictures look."""
    assert a.size == b.size
    diff = ImageChops.difference(a.convert("RGB"), b.convert("RGB"))
    return sum(ImageStat.Stat(diff).mean) / 3


def psnr(a: Image.Image, b: Image.Image) -> float:
    """Peak signal-to-noise ratio in dB over every sample (99 where identical); images of
    different modes are compared as RGB."""
    if a.mode != b.mode:
        a, b = a.convert("RGB"), b.convert("RGB")
    diff = ImageChops.difference(a, b)
    mse = sum(rms**2 for rms in ImageStat.Stat(diff).rms) / len(diff.getbands())
    return 99.0 if mse == 0 else 10 * math.log10(255**2 / mse)


def on_white(image: Image.Image) -> Image.Image:
    """Alpha composited on white, as our JPEG renditions are."""
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba).convert("RGB")


def reference_colours(path: Path) -> Image.Image:
    """What a browser shows for the first frame, upright, at full size, made without our code."""
    opened = Image.open(path)
    opened.seek(0)
    opened.load()
    image = ImageOps.exif_transpose(opened)
    if image.mode == "I;16":
        # PNG semantics: a 16-bit sample means value / 65535; tRNS names one transparent value.
        transparent = image.info.get("transparency")
        values = array.array("H", image.tobytes("raw", "I;16"))
        grey = [round(v / 257) for v in values]
        alpha = [0 if v == transparent else 255 for v in values]
        la = Image.new("LA", image.size)
        la.putdata(list(zip(grey, alpha, strict=True)))
        return on_white(la)
    icc = image.info.get("icc_profile")
    if icc:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.createProfile("sRGB")
        mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, source, srgb, outputMode=mode)
        assert converted is not None
        return on_white(converted)
    return on_white(image)


def means(image: Image.Image) -> list[float]:
    """The mean of each RGB channel."""
    return ImageStat.Stat(image.convert("RGB")).mean


def colour_jpeg(size: tuple[int, int], quality: int = 90) -> bytes:
    """A JPEG with chroma detail (4:2:0, Pillow's default), where upsamplers differ: a
    gradient, noise, and the gradient turned round."""
    gradient = Image.linear_gradient("L").resize(size)
    noise = Image.effect_noise(size, 48)
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.ROTATE_180)))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()
