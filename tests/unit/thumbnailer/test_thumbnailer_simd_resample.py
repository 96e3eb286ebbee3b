"""The SIMD resizer: installed where its wheel exists, used only while it agrees with Pillow."""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
import threading
from typing import cast

import pytest
from PIL import Image
from PIL import __version__ as pillow_version
from rendition_checks import IMAGES, psnr
from structlog.testing import capture_logs

from imgproc_shared.worker.runtime import WorkContext
from imgproc_thumbnailer import renditions, simd_resample
from imgproc_thumbnailer.handler import setup
from imgproc_thumbnailer.renditions import RenditionSpec, render
from imgproc_thumbnailer.simd_resample import Kernel

SPECS = (RenditionSpec("thumbnail", 256), RenditionSpec("preview", 1280))
X86_64 = platform.machine() in ("x86_64", "AMD64")

needs_simd = pytest.mark.skipif(not simd_resample.available(), reason="no cykooz-resizer here")


def _photo_like(mode: str, size: tuple[int, int] = (900, 600)) -> Image.Image:
    """A real photo (a committed fixture), resized and in mode."""
    with Image.open(IMAGES / "xmp_canon.jpg") as opened:
        rgb = opened.convert("RGB").resize(size, Image.Resampling.BICUBIC)
    if mode == "RGBA":
        alpha = Image.linear_gradient("L").resize(size)
        return Image.merge("RGBA", (*rgb.split(), alpha))
    return rgb.convert(mode)


@pytest.fixture
def fresh_verdict(monkeypatch: pytest.MonkeyPatch) -> None:
    """The probe runs again at the next use, and the result is forgotten after the test."""
    monkeypatch.setattr(simd_resample, "_verdict", {})


def test_the_simd_resizer_is_installed_and_agrees_with_this_pillow() -> None:
    if not X86_64:
        pytest.skip("cykooz-resizer has no wheel for this machine: Pillow resamples")
    assert simd_resample.cykooz_resizer is not None, "cykooz-resizer is not installed"
    problem = simd_resample.probe_problem()
    assert problem is None, (
        f"cykooz-resizer disagrees with Pillow {pillow_version}: {problem}. It reads Pillow's "
        "image memory by the layout of the Pillow releases it knows: lock a pair that agrees "
        "(uv.lock), or the thumbnailer falls back to Pillow's slower resize."
    )
    assert simd_resample.available()


@needs_simd
@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "CMYK"])
@pytest.mark.parametrize("kernel", list(Kernel))
def test_it_resamples_as_pillow_does(mode: str, kernel: Kernel) -> None:
    source = _photo_like(mode)
    source.info["transparency"] = 7  # metadata travels as with Pillow's resize
    for size in ((768, 512), (256, 171)):
        fast = simd_resample.resize(source, size, kernel, reducing_gap=10.0)
        assert fast is not None and fast.mode == mode and fast.size == size
        assert fast.info == source.info
        pillow = source.resize(size, simd_resample.PILLOW_FILTERS[kernel])
        assert psnr(fast, pillow) > 40, (mode, kernel, size)


@needs_simd
def test_other_modes_are_left_to_pillow() -> None:
    for mode in ("LA", "P", "I;16", "1"):
        assert simd_resample.resize(Image.new(mode, (64, 64)), (32, 32), Kernel.LANCZOS) is None


@needs_simd
def test_large_ratios_box_reduce_first(monkeypatch: pytest.MonkeyPatch) -> None:
    source = _photo_like("RGB", (3000, 2000))
    factors: list[int | tuple[int, int]] = []
    reduce = Image.Image.reduce

    def spy(image: Image.Image, factor: int | tuple[int, int], box: object = None) -> Image.Image:
        factors.append(factor)
        return reduce(image, factor)

    monkeypatch.setattr(Image.Image, "reduce", spy)
    fast = simd_resample.resize(source, (256, 171), Kernel.LANCZOS)
    assert factors == [3]  # 11.7x: a 3x box to 1000 px (3.9x left), then Lanczos3
    assert fast is not None
    pillow = source.resize((256, 171), Image.Resampling.LANCZOS, reducing_gap=3.0)
    assert psnr(fast, pillow) > 40
    # Within 2 x REDUCING_GAP the convolution takes all of it (the 5x preview -> thumbnail).
    factors.clear()
    simd_resample.resize(_photo_like("RGB", (1280, 853)), (256, 171), Kernel.LANCZOS)
    assert factors == []


@needs_simd
def test_threads_each_have_their_own_resizer() -> None:
    source = _photo_like("RGB")
    expected = simd_resample.resize(source, (640, 427), Kernel.LANCZOS)
    assert expected is not None
    results: list[bytes] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                out = simd_resample.resize(source, (640, 427), Kernel.LANCZOS)
                assert out is not None
                results.append(out.tobytes())
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(results) == 40 and set(results) == {expected.tobytes()}


@needs_simd
@pytest.mark.usefixtures("fresh_verdict")
def test_a_resizer_that_disagrees_with_pillow_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    data = (IMAGES / "xmp_canon.jpg").read_bytes()
    # What a Pillow whose memory layout it misreads could give: rows from the wrong place.
    real = simd_resample._fast_resize

    def misread(image: Image.Image, size: tuple[int, int], kernel: Kernel) -> Image.Image:
        return real(image.transpose(Image.Transpose.FLIP_TOP_BOTTOM), size, kernel)

    monkeypatch.setattr(simd_resample, "_fast_resize", misread)
    with capture_logs() as logs:
        assert simd_resample.available() is False
        assert simd_resample.resize(_photo_like("RGB"), (300, 200), Kernel.LANCZOS) is None
        rendered = render(data, SPECS)
    assert [log["event"] for log in logs] == ["simd resampling disabled, using Pillow's"]
    assert "of samples within 2 of Pillow's" in logs[0]["reason"]
    # The pair that disagrees, named for whoever reads the warning.
    assert logs[0]["pillow"] == pillow_version
    assert logs[0]["cykooz_resizer"] == importlib.metadata.version("cykooz-resizer")
    # The renditions are Pillow's, byte for byte.
    monkeypatch.setattr(simd_resample, "available", lambda: False)
    assert render(data, SPECS) == rendered


@needs_simd
@pytest.mark.usefixtures("fresh_verdict")
def test_a_resizer_that_fails_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(image: Image.Image, size: tuple[int, int], kernel: Kernel) -> Image.Image:
        raise ValueError('"RGB" is unsupported mode of source PIL image')

    monkeypatch.setattr(simd_resample, "_fast_resize", broken)
    with capture_logs() as logs:
        assert simd_resample.available() is False
        assert renditions.resample(_photo_like("RGB"), (300, 200)).size == (300, 200)
    assert logs[0]["reason"].startswith("ValueError: ")


def test_without_the_package_pillow_resamples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(simd_resample, "cykooz_resizer", None)
    assert simd_resample.available() is False
    assert simd_resample.resize(_photo_like("RGB"), (300, 200), Kernel.LANCZOS) is None
    assert renditions.resample(_photo_like("RGB"), (300, 200)).size == (300, 200)


@needs_simd
def test_pillow_only_holds_for_its_block_and_its_thread() -> None:
    source = _photo_like("RGB")
    seen_in_other_thread: list[bool] = []
    with simd_resample.pillow_only():
        assert simd_resample.resize(source, (300, 200), Kernel.LANCZOS) is None
        other = threading.Thread(
            target=lambda: seen_in_other_thread.append(
                simd_resample.resize(source, (300, 200), Kernel.LANCZOS) is not None
            )
        )
        other.start()
        other.join(timeout=60)
    assert seen_in_other_thread == [True]
    assert simd_resample.resize(source, (300, 200), Kernel.LANCZOS) is not None


@pytest.mark.usefixtures("fresh_verdict")
def test_the_worker_says_at_startup_which_resamples(monkeypatch: pytest.MonkeyPatch) -> None:
    context = cast(WorkContext, object())  # the hook reads nothing from it
    with capture_logs() as logs:
        asyncio.run(setup(context))
    expected = "simd" if simd_resample.cykooz_resizer is not None else "pillow"
    assert [(log["event"], log["resampler"]) for log in logs] == [("thumbnailer ready", expected)]
    monkeypatch.setattr(simd_resample, "cykooz_resizer", None)
    with capture_logs() as logs:
        asyncio.run(setup(context))
    assert logs[0]["resampler"] == "pillow"
