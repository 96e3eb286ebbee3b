"""Turning any decoded image into display sRGB: the colour a browser would show.

Real-world inputs arrive as CMYK, palette with transparency, grey+alpha, 16-bit grey, RGBA and
with embedded ICC profiles (Adobe RGB, Display P3, ...). Outputs are plain sRGB without a
profile, so nothing derived from the input's profile leaves with the rendition.
"""

from __future__ import annotations

import io
from functools import lru_cache

from PIL import Image, ImageCms

WHITE = (255, 255, 255)

_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
# Profiles whose description says sRGB are what we would convert to: skip the transform.
_SRGB_NAMES = ("srgb",)
_SIXTEEN_TO_EIGHT_BITS = [round(v / 257) for v in range(65536)]


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        "transparency" in image.info and image.mode in ("P", "L", "RGB", "I;16", "I")
    )


def working_mode(image: Image.Image) -> Image.Image:
    """A mode that resamples correctly: L, RGB, RGBA, LA or CMYK (ICC handled later).

    Palette images are expanded (resampling indices is meaningless) and 16-bit grey is scaled
    to 8 bits as its PNG meaning demands (value / 257), not clipped at 255 as `convert` does.
    """
    mode = image.mode
    if mode in ("L", "RGB", "RGBA", "LA", "CMYK"):
        return image
    if mode in ("P", "PA"):
        return image.convert("RGBA" if has_alpha(image) else "RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # Pillow maps "I" to "L" through a 65536-entry table: one pass, no Python per pixel.
        wide = image if mode == "I" else image.convert("I")
        grey = wide.point(_SIXTEEN_TO_EIGHT_BITS, "L")
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):
            alpha_table = [255] * 65536
            if 0 <= transparent < 65536:
                alpha_table[transparent] = 0
            return Image.merge("LA", (grey, wide.point(alpha_table, "L")))
        return grey
    if mode == "1":
        return image.convert("L")
    if mode in ("RGBX", "YCbCr", "LAB", "HSV", "F"):
        return image.convert("RGB" if mode != "F" else "L")
    if mode in ("La", "RGBa"):
        return image.convert(mode.upper())
    return image.convert("RGBA" if has_alpha(image) else "RGB")


@lru_cache(maxsize=16)
def _transform_to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """A cached transform from an embedded profile to sRGB; None when it is sRGB already."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    description = ImageCms.getProfileDescription(profile).strip().lower()
    if description.startswith(_SRGB_NAMES) and mode in ("RGB", "RGBA"):
        return None
    out_mode = "RGBA" if mode in ("RGBA", "LA") else "RGB"
    return ImageCms.buildTransform(
        profile, _SRGB, mode, out_mode, renderingIntent=ImageCms.Intent.PERCEPTUAL
    )


def to_srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """The image in sRGB, RGB or RGBA: embedded profile applied, the rest converted plainly."""
    if icc and image.mode in ("RGB", "RGBA", "CMYK", "L", "LA"):
        try:
            source = image.convert("L") if image.mode == "LA" else image
            transform = _transform_to_srgb(icc, source.mode)
        except (OSError, ImageCms.PyCMSError, ValueError):
            transform = None  # a broken profile: show the pixels as they are
        if transform is not None:
            converted = ImageCms.applyTransform(source, transform)
            assert converted is not None  # applyTransform returns None only in place
            if image.mode == "LA":
                converted = converted.convert("RGBA")
                converted.putalpha(image.getchannel("A"))
            return converted
    if image.mode in ("RGB", "RGBA"):
        return image
    return image.convert("RGBA" if has_alpha(image) else "RGB")


def flatten(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """An RGB image: alpha composited over the background (JPEG has no alpha)."""
    if image.mode == "RGB":
        return image
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    canvas = Image.new("RGB", rgba.size, background)
    canvas.paste(rgba, mask=rgba.getchannel("A"))
    return canvas
