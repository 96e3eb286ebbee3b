"""Resampling on SIMD (fast_image_resize, through `cykooz-resizer`) where it is installed.

Pillow's `resize` is portable C, one tap at a time: taking a 1536 px square (a 4096 px photo
decoded at 3/8) to the 1280 px preview costs 14 ms with Hamming and 33 with Lanczos. The Rust
crate fast_image_resize runs the same separable convolution on AVX2/SSE4.1: 4.4 ms with
Catmull-Rom (Pillow's bicubic) and 5.4 with Lanczos3 there, one thread. It reads and writes
Pillow's image memory in place (no copy in or out), which it reaches through Pillow's `getim`
capsule and the struct layout of the Pillow releases it knows. So the first use here checks it
against Pillow's own resize on a small probe image, and where the two disagree (a Pillow it does
not know) `resize` returns None and the caller uses Pillow, after one warning.

PyPI has x86_64 wheels only; elsewhere (arm64 images) the package is not installed and `resize`
returns None.
"""

from __future__ import annotations

import contextlib
import enum
import importlib.metadata
import threading
from collections.abc import Iterator
from typing import Any

from PIL import Image
from PIL import __version__ as pillow_version

from imgproc_shared.logging import get_logger

try:
    import cykooz_resizer
except ImportError:  # no wheel for this machine
    cykooz_resizer = None


class Kernel(enum.Enum):
    """The convolution kernels used here, by the names of their Pillow equivalents."""

    LANCZOS = "lanczos3"
    BICUBIC = "catmull_rom"  # Pillow's bicubic is Catmull-Rom (a = -0.5)


PILLOW_FILTERS = {
    Kernel.LANCZOS: Image.Resampling.LANCZOS,
    Kernel.BICUBIC: Image.Resampling.BICUBIC,
}

# Modes it resamples as Pillow does (RGBA premultiplied by alpha); others (LA, I;16, P...) go
# to Pillow. The renditions' working modes are L, RGB, RGBA, LA and CMYK.
MODES = frozenset({"L", "RGB", "RGBA", "CMYK"})

# The probe: fast and Pillow results differ by rounding (fast_image_resize keeps fewer bits in
# its fixed-point weights) and, on a few samples, by more at the probe's sharpest edges and
# where RGBA's alpha is near 0. Measured with cykooz-resizer 4.0.1 and Pillow 13.0.0: 97-100% of
# samples within 2, mean difference 0.03-0.5. A misread image layout gives garbage, far outside.
PROBE_WITHIN = 2
PROBE_SHARE_WITHIN = 0.95
PROBE_MEAN = 1.0

# A convolution's cost grows with the ratio it shrinks by (its support widens): a 14.7 MP PNG
# to a 256 px thumbnail took 26 ms more than Pillow's box-reduce-then-filter. A box reduce to
# no less than 3x the target first is what Pillow calls indistinguishable from a full
# convolution "in most cases"; it leaves the 1280 -> 256 step (5x) whole.
REDUCING_GAP = 3.0

_local = threading.local()  # a Resizer holds scratch buffers: one per thread
_verdict: dict[str, str | None] = {}  # "problem": None once the probe passed
_verdict_lock = threading.Lock()


def _resizer() -> Any:
    resizer = getattr(_local, "resizer", None)
    if resizer is None:
        assert cykooz_resizer is not None
        resizer = _local.resizer = cykooz_resizer.Resizer()
    return resizer


def _options(kernel: Kernel) -> Any:
    assert cykooz_resizer is not None
    filter_type = getattr(cykooz_resizer.FilterType, kernel.value)
    return cykooz_resizer.ResizeOptions(
        resize_alg=cykooz_resizer.ResizeAlg.convolution(filter_type)
    )


def _fast_resize(image: Image.Image, size: tuple[int, int], kernel: Kernel) -> Image.Image:
    out = Image.new(image.mode, size, None)  # None: not filled first, every pixel is written
    _resizer().resize_pil(image, out, _options(kernel))
    # As Pillow's resize does: the caller may still read the source's metadata (a grey PNG's
    # transparent value) from the result.
    out.info = image.info.copy()
    return out


def probe_image(mode: str) -> Image.Image:
    """A deterministic 97x61 image with detail in every channel, in mode."""
    size = (97, 61)
    channels = [
        Image.linear_gradient("L").resize(size),
        Image.effect_mandelbrot(size, (-2.0, -1.2, 0.8, 1.2), 64),
        Image.radial_gradient("L").resize(size),
        Image.linear_gradient("L").rotate(90).resize(size),
    ]
    if mode == "L":
        return channels[1]
    return Image.merge(mode, channels[: len(mode)])


def probe_problem() -> str | None:
    """What differs between the fast resize and Pillow's on the probe images; None if nothing."""
    for mode in sorted(MODES):
        source = probe_image(mode)
        for kernel in Kernel:
            for size in ((41, 26), (120, 75)):
                fast = _fast_resize(source, size, kernel).tobytes()
                pillow = source.resize(size, PILLOW_FILTERS[kernel]).tobytes()
                differences = [abs(a - b) for a, b in zip(fast, pillow, strict=True)]
                share = sum(d <= PROBE_WITHIN for d in differences) / len(differences)
                mean = sum(differences) / len(differences)
                if share < PROBE_SHARE_WITHIN or mean > PROBE_MEAN:
                    return (
                        f"{mode} {source.size} -> {size} {kernel.name}: {share:.0%} of samples "
                        f"within {PROBE_WITHIN} of Pillow's, mean difference {mean:.2f}"
                    )
    return None


def available() -> bool:
    """Whether `resize` resamples here: installed, and agreeing with this Pillow."""
    if cykooz_resizer is None:
        return False
    if "problem" in _verdict:  # decided: no lock on the hot path
        return _verdict["problem"] is None
    with _verdict_lock:
        if "problem" not in _verdict:  # not decided by another thread meanwhile
            try:
                problem = probe_problem()
            except Exception as exc:  # any failure means: use Pillow
                problem = f"{type(exc).__name__}: {exc}"
            _verdict["problem"] = problem
            if problem is not None:
                get_logger().warning(
                    "simd resampling disabled, using Pillow's",
                    reason=problem,
                    pillow=pillow_version,
                    cykooz_resizer=importlib.metadata.version("cykooz-resizer"),
                )
    return _verdict["problem"] is None


def resize(
    image: Image.Image,
    size: tuple[int, int],
    kernel: Kernel,
    *,
    reducing_gap: float | None = None,
) -> Image.Image | None:
    """The image resampled to size with kernel (antialiased, as Pillow's resize), or None
    where this module cannot do it: not installed, disagreeing with Pillow, or another mode.

    As Pillow's `reducing_gap` (default REDUCING_GAP): where more than reducing_gap x 2 is left,
    Pillow's integer box `reduce` first takes the image to no less than reducing_gap x size."""
    if image.mode not in MODES or getattr(_local, "pillow_only", False) or not available():
        return None
    gap = REDUCING_GAP if reducing_gap is None else reducing_gap
    factor = int(max(image.width / size[0], image.height / size[1]) / gap)
    if factor > 1:
        image = image.reduce(factor)
    return _fast_resize(image, size, kernel)


@contextlib.contextmanager
def pillow_only() -> Iterator[None]:
    """Within it, this thread resamples with Pillow: what a machine without the wheel does
    (`bench.thumbnails` measures both)."""
    before = getattr(_local, "pillow_only", False)
    _local.pillow_only = True
    try:
        yield
    finally:
        _local.pillow_only = before
