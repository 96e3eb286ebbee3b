"""ThumbHash: a ~25-byte placeholder the web client paints before the thumbnail arrives.

A port of Evan Wallace's reference algorithm (https://evanw.github.io/thumbhash/, MIT): the
image in an LPQA colour space (luminance, yellow-blue, red-green, alpha) reduced to a few
low-frequency DCT terms. The decoder is here too, so tests (and the CLI) can prove a hash valid.

`Math.round` in the reference rounds halves up; `_round` does the same, so hashes match the
reference byte for byte.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from functools import lru_cache
from operator import mul

from PIL import Image

# The reference accepts images up to 100x100; the hash keeps only ~7 cycles per axis, so a
# 32 px image gives the same hash to within quantisation at a tenth of the CPU cost.
ENCODE_MAX_EDGE = 32
# A sample of an opaque pixel as the reference's `alpha / 255 * value` computes it (alpha 1.0).
_UNIT = tuple(1.0 / 255 * v for v in range(256))


def _round(value: float) -> int:
    return math.floor(value + 0.5)


@lru_cache(maxsize=256)
def _cosines(size: int, terms: int) -> tuple[tuple[float, ...], ...]:
    """cos(pi / size * k * (i + 0.5)) for each term k and pixel i, as the reference computes it."""
    return tuple(
        tuple(math.cos(math.pi / size * k * (i + 0.5)) for i in range(size)) for k in range(terms)
    )


def _encode_channel(
    channel: list[float], w: int, h: int, nx: int, ny: int
) -> tuple[float, list[float], float]:
    """DCT of one channel: the DC term, AC terms normalised to 0..1, and their scale."""
    # Separable: first project each row onto the horizontal cosines, then the columns. `map`
    # with `mul` multiplies and `sum` adds in the same order as the reference's loops, so every
    # term is bit-for-bit the same float, only without a Python frame per product.
    fx = _cosines(w, nx)
    fy = _cosines(h, ny)
    rows = [channel[y * w : (y + 1) * w] for y in range(h)]
    columns = [[sum(map(mul, row, fx[cx])) for row in rows] for cx in range(nx)]
    dc, ac, scale = 0.0, [], 0.0
    for cy in range(ny):
        cx = 0
        while cx * ny < nx * (ny - cy):
            f = sum(map(mul, columns[cx], fy[cy])) / (w * h)
            if cx or cy:
                ac.append(f)
                scale = max(scale, abs(f))
            else:
                dc = f
            cx += 1
    if scale:
        ac = [0.5 + 0.5 / scale * f for f in ac]
    return dc, ac, scale


def _lpqa(rgba: bytes, n: int) -> tuple[bool, list[float], list[float], list[float], list[float]]:
    """Any RGBA: whether it has alpha, and its L, P, Q, A channels over the average colour."""
    avg_r = avg_g = avg_b = avg_a = 0.0
    for j in range(0, 4 * n, 4):
        alpha = rgba[j + 3] / 255
        avg_r += alpha / 255 * rgba[j]
        avg_g += alpha / 255 * rgba[j + 1]
        avg_b += alpha / 255 * rgba[j + 2]
        avg_a += alpha
    if avg_a:
        avg_r /= avg_a
        avg_g /= avg_a
        avg_b /= avg_a

    lum: list[float] = []
    p: list[float] = []
    q: list[float] = []
    a: list[float] = []
    # RGBA -> LPQA, composited over the average colour.
    for j in range(0, 4 * n, 4):
        alpha = rgba[j + 3] / 255
        r = avg_r * (1 - alpha) + alpha / 255 * rgba[j]
        g = avg_g * (1 - alpha) + alpha / 255 * rgba[j + 1]
        b = avg_b * (1 - alpha) + alpha / 255 * rgba[j + 2]
        lum.append((r + g + b) / 3)
        p.append((r + g) / 2 - b)
        q.append(r - g)
        a.append(alpha)
    return avg_a < n, lum, p, q, a


def _lpq_opaque(rgba: bytes) -> tuple[list[float], list[float], list[float]]:
    """`_lpqa`'s L, P, Q, bit for bit, for an image whose every alpha is 255.

    With alpha 1.0 the compositing over the average colour reduces exactly to r = 1/255 * red
    (avg * 0.0 + x == x), so the average is not needed: one table lookup per sample.
    """
    red = [_UNIT[v] for v in rgba[0::4]]
    green = [_UNIT[v] for v in rgba[1::4]]
    blue = [_UNIT[v] for v in rgba[2::4]]
    lum = [(r + g + b) / 3 for r, g, b in zip(red, green, blue, strict=True)]
    p = [(r + g) / 2 - b for r, g, b in zip(red, green, blue, strict=True)]
    q = [r - g for r, g in zip(red, green, strict=True)]
    return lum, p, q


def rgba_to_thumbhash(w: int, h: int, rgba: bytes) -> bytes:
    """Encode an RGBA pixel buffer of at most 100x100 pixels."""
    if w > 100 or h > 100:
        raise ValueError(f"{w}x{h} doesn't fit in 100x100")
    n = w * h
    if len(rgba) != 4 * n:
        raise ValueError("rgba must hold 4 bytes per pixel")

    a: list[float] = []
    if bytes(rgba[3::4]).count(255) == n:
        has_alpha = False
        lum, p, q = _lpq_opaque(rgba)
    else:
        has_alpha, lum, p, q, a = _lpqa(rgba, n)
    l_limit = 5 if has_alpha else 7  # fewer luminance terms leave room for alpha
    lx = max(1, _round(l_limit * w / max(w, h)))
    ly = max(1, _round(l_limit * h / max(w, h)))

    l_dc, l_ac, l_scale = _encode_channel(lum, w, h, max(3, lx), max(3, ly))
    p_dc, p_ac, p_scale = _encode_channel(p, w, h, 3, 3)
    q_dc, q_ac, q_scale = _encode_channel(q, w, h, 3, 3)

    is_landscape = w > h
    header24 = (
        _round(63 * l_dc)
        | (_round(31.5 + 31.5 * p_dc) << 6)
        | (_round(31.5 + 31.5 * q_dc) << 12)
        | (_round(31 * l_scale) << 18)
        | (int(has_alpha) << 23)
    )
    header16 = (
        (ly if is_landscape else lx)
        | (_round(63 * p_scale) << 3)
        | (_round(63 * q_scale) << 9)
        | (int(is_landscape) << 15)
    )
    hash_bytes = [
        header24 & 255,
        (header24 >> 8) & 255,
        header24 >> 16,
        header16 & 255,
        header16 >> 8,
    ]
    channels = [l_ac, p_ac, q_ac]
    if has_alpha:
        a_dc, a_ac, a_scale = _encode_channel(a, w, h, 5, 5)
        hash_bytes.append(_round(15 * a_dc) | (_round(15 * a_scale) << 4))
        channels.append(a_ac)
    ac_start = len(hash_bytes)
    factors = [f for ac in channels for f in ac]
    hash_bytes.extend([0] * ((len(factors) + 1) // 2))
    for index, f in enumerate(factors):
        hash_bytes[ac_start + (index >> 1)] |= _round(15 * f) << ((index & 1) << 2)
    return bytes(hash_bytes)


@dataclass(frozen=True)
class _Header:
    l_dc: float
    p_dc: float
    q_dc: float
    l_scale: float
    p_scale: float
    q_scale: float
    has_alpha: bool
    is_landscape: bool
    lx: int
    ly: int


def _header(hash_bytes: bytes) -> _Header:
    if len(hash_bytes) < 5:
        raise ValueError("a ThumbHash has at least 5 bytes")
    header24 = hash_bytes[0] | (hash_bytes[1] << 8) | (hash_bytes[2] << 16)
    header16 = hash_bytes[3] | (hash_bytes[4] << 8)
    has_alpha = bool(header24 >> 23)
    is_landscape = bool(header16 >> 15)
    long_terms = 5 if has_alpha else 7
    return _Header(
        l_dc=(header24 & 63) / 63,
        p_dc=((header24 >> 6) & 63) / 31.5 - 1,
        q_dc=((header24 >> 12) & 63) / 31.5 - 1,
        l_scale=((header24 >> 18) & 31) / 31,
        p_scale=((header16 >> 3) & 63) / 63,
        q_scale=((header16 >> 9) & 63) / 63,
        has_alpha=has_alpha,
        is_landscape=is_landscape,
        lx=long_terms if is_landscape else header16 & 7,
        ly=header16 & 7 if is_landscape else long_terms,
    )


def _lpq_to_rgb(lum: float, p: float, q: float) -> tuple[float, float, float]:
    b = lum - 2 / 3 * p
    r = (3 * lum - b + q) / 2
    return r, r - q, b


def thumbhash_to_approximate_aspect_ratio(hash_bytes: bytes) -> float:
    """Width / height of the hashed image, to within what the hash records."""
    header = _header(hash_bytes)
    return header.lx / header.ly


def thumbhash_to_average_rgba(hash_bytes: bytes) -> tuple[float, float, float, float]:
    """The average colour (each channel 0..1) the hash records."""
    header = _header(hash_bytes)
    r, g, b = _lpq_to_rgb(header.l_dc, header.p_dc, header.q_dc)
    a = (hash_bytes[5] & 15) / 15 if header.has_alpha else 1.0
    return max(0.0, min(1.0, r)), max(0.0, min(1.0, g)), max(0.0, min(1.0, b)), a


def thumbhash_to_rgba(hash_bytes: bytes) -> tuple[int, int, bytes]:
    """Decode a hash to a small (at most 32x32) RGBA image: (width, height, pixels)."""
    header = _header(hash_bytes)
    has_alpha = header.has_alpha
    lx, ly = max(3, header.lx), max(3, header.ly)
    a_dc = (hash_bytes[5] & 15) / 15 if has_alpha else 1.0
    a_scale = (hash_bytes[5] >> 4) / 15 if has_alpha else 0.0
    ac_start = 6 if has_alpha else 5
    ac_index = 0

    def decode_channel(nx: int, ny: int, scale: float) -> list[float]:
        nonlocal ac_index
        ac: list[float] = []
        for cy in range(ny):
            cx = 0 if cy else 1
            while cx * ny < nx * (ny - cy):
                byte_index = ac_start + (ac_index >> 1)
                if byte_index >= len(hash_bytes):
                    raise ValueError("ThumbHash is truncated")
                nibble = (hash_bytes[byte_index] >> ((ac_index & 1) << 2)) & 15
                ac.append((nibble / 7.5 - 1) * scale)
                ac_index += 1
                cx += 1
        return ac

    l_ac = decode_channel(lx, ly, header.l_scale)
    # Saturation boosted by 1.25x to make up for quantisation, as the reference does.
    p_ac = decode_channel(3, 3, header.p_scale * 1.25)
    q_ac = decode_channel(3, 3, header.q_scale * 1.25)
    a_ac = decode_channel(5, 5, a_scale) if has_alpha else []

    ratio = header.lx / header.ly
    w = _round(32 if ratio > 1 else 32 * ratio)
    h = _round(32 / ratio if ratio > 1 else 32)
    out = bytearray(w * h * 4)
    n_fx = max(lx, 5 if has_alpha else 3)
    n_fy = max(ly, 5 if has_alpha else 3)
    i = 0
    for y in range(h):
        fy = [math.cos(math.pi / h * (y + 0.5) * cy) for cy in range(n_fy)]
        for x in range(w):
            fx = [math.cos(math.pi / w * (x + 0.5) * cx) for cx in range(n_fx)]
            lum, p, q, a = header.l_dc, header.p_dc, header.q_dc, a_dc
            j = 0
            for cy in range(ly):
                cx = 0 if cy else 1
                fy2 = fy[cy] * 2
                while cx * ly < lx * (ly - cy):
                    lum += l_ac[j] * fx[cx] * fy2
                    j += 1
                    cx += 1
            j = 0
            for cy in range(3):
                cx = 0 if cy else 1
                fy2 = fy[cy] * 2
                while cx < 3 - cy:
                    f = fx[cx] * fy2
                    p += p_ac[j] * f
                    q += q_ac[j] * f
                    j += 1
                    cx += 1
            if has_alpha:
                j = 0
                for cy in range(5):
                    cx = 0 if cy else 1
                    fy2 = fy[cy] * 2
                    while cx < 5 - cy:
                        a += a_ac[j] * fx[cx] * fy2
                        j += 1
                        cx += 1
            r, g, b = _lpq_to_rgb(lum, p, q)
            out[i] = int(max(0.0, 255 * min(1.0, r)))
            out[i + 1] = int(max(0.0, 255 * min(1.0, g)))
            out[i + 2] = int(max(0.0, 255 * min(1.0, b)))
            out[i + 3] = int(max(0.0, 255 * min(1.0, a)))
            i += 4
    return w, h, bytes(out)


def image_to_thumbhash(image: Image.Image) -> bytes:
    """The ThumbHash of a (small, already oriented) image in any mode."""
    # Opaque RGB shrinks before it becomes RGBA: the same pixels (alpha 255 premultiplies to
    # itself) without converting the whole image to RGBA and, for the resize, to premultiplied
    # RGBa and back. An RGB image with a transparent colour key still converts first.
    opaque = image.mode == "RGB" and "transparency" not in image.info
    small = image if opaque or image.mode == "RGBA" else image.convert("RGBA")
    if max(small.size) > ENCODE_MAX_EDGE:
        small = small.copy()
        # BOX averages every source pixel: the right filter for a DC/low-frequency summary.
        small.thumbnail((ENCODE_MAX_EDGE, ENCODE_MAX_EDGE), Image.Resampling.BOX)
    if small.mode != "RGBA":
        small = small.convert("RGBA")
    return rgba_to_thumbhash(small.width, small.height, small.tobytes())


def encode_placeholder(image: Image.Image) -> str:
    """The placeholder string stored with an image: its ThumbHash, base64."""
    return base64.b64encode(image_to_thumbhash(image)).decode("ascii")


def decode_placeholder(placeholder: str) -> Image.Image:
    """The blurred RGBA image a client paints from a placeholder string."""
    w, h, rgba = thumbhash_to_rgba(base64.b64decode(placeholder, validate=True))
    return Image.frombytes("RGBA", (w, h), rgba)
