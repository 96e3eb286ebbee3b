"""EXIF orientation, applied to a finished (small) rendition rather than to the full image.

`ImageOps.exif_transpose` on a 20 MP photo costs 32-145 ms and copies it even at orientation 1;
a transpose of a 1280 px preview costs well under a millisecond.
"""

from __future__ import annotations

import re

from PIL import Image

ORIENTATION_TAG = 0x0112

# The transposes that turn a stored image upright, as ImageOps.exif_transpose does.
_TRANSPOSES: dict[int, tuple[Image.Transpose, ...]] = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}

_XMP_ORIENTATION = re.compile(rb'tiff:Orientation(?:="|>)([1-8])')


def swaps_axes(orientation: int) -> bool:
    """Orientations 5-8 turn the image by 90 degrees: width and height trade places."""
    return orientation in (5, 6, 7, 8)


def read_orientation(image: Image.Image) -> int:
    """The orientation recorded in the file: EXIF first, then XMP; 1 when absent or invalid.

    On a PNG `getexif()` decodes the whole image to look for an eXIf chunk after the pixels:
    call this only after the image has been loaded.
    """
    value = image.getexif().get(ORIENTATION_TAG)
    if isinstance(value, int) and 1 <= value <= 8:
        return value
    for key in ("xmp", "XML:com.adobe.xmp"):
        xmp = image.info.get(key)
        if isinstance(xmp, str):
            xmp = xmp.encode("utf-8", "replace")
        if isinstance(xmp, bytes):
            match = _XMP_ORIENTATION.search(xmp)
            if match:
                return int(match.group(1))
    return 1


def upright(image: Image.Image, orientation: int) -> Image.Image:
    """The image turned upright for its EXIF orientation (1-8; anything else is left alone)."""
    for transpose in _TRANSPOSES.get(orientation, ()):
        image = image.transpose(transpose)
    return image
