"""Renditions of real-world files: upright, true colours, no metadata, never upscaled."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image, ImageOps
from rendition_checks import (
    FORMAT_FILES,
    IMAGES,
    ORIENTATION_FILES,
    colour_jpeg,
    mean_abs_diff,
    means,
    psnr,
    reference_colours,
)

from imgproc_shared.errors import CorruptImage, TooLarge
from imgproc_thumbnailer import renditions, simd_resample
from imgproc_thumbnailer.renditions import (
    EncodedRendition,
    RenderedImage,
    RenditionSpec,
    decode_for,
    first_filter,
    fit_within,
    render,
    resample,
)
from imgproc_thumbnailer.thumbhash import decode_placeholder, thumbhash_to_average_rgba

SPECS = (RenditionSpec("thumbnail", 256), RenditionSpec("preview", 1280))

METADATA_FILES = [
    "exif_gps.jpg",
    "xmp_canon.jpg",
    "iptc_nokia.jpg",
    "progressive_icc_big.jpg",
    "exif_in_png.png",
    "png_xmp_orientation3.png",
]


def _render(name: str, **options: object) -> RenderedImage:
    return render((IMAGES / name).read_bytes(), SPECS, **options)  # type: ignore[arg-type]


def _rendition(rendered: RenderedImage, name: str) -> EncodedRendition:
    return next(r for r in rendered.renditions if r.name == name)


def _decoded(rendition: EncodedRendition) -> Image.Image:
    image = Image.open(io.BytesIO(rendition.data))
    image.load()
    return image


@pytest.mark.parametrize("name", ORIENTATION_FILES)
def test_every_orientation_comes_out_upright(name: str) -> None:
    rendered = _render(name)
    thumbnail = _decoded(_rendition(rendered, "thumbnail"))
    # Made without our code: Pillow's exif_transpose at full size, colours as a browser shows.
    reference = reference_colours(IMAGES / name)
    reference = reference.resize(thumbnail.size, Image.Resampling.LANCZOS)
    assert mean_abs_diff(thumbnail, reference) < 6
    # The check can tell orientations apart: the stored (unturned) pixels are far off.
    if rendered.orientation != 1:
        stored = Image.open(IMAGES / name).convert("RGB")
        if stored.size == reference.size:
            assert mean_abs_diff(stored.resize(thumbnail.size), reference) > 15


def test_orientation_from_the_extractor_wins_and_swaps_axes() -> None:
    rendered = _render("orientation_rectangle_2x1_o8.jpg", orientation=8)
    assert rendered.orientation == 8
    for rendition in rendered.renditions:
        assert (rendition.width, rendition.height) == (1, 2)
        assert _decoded(rendition).size == (1, 2)
    read_from_file = _render("orientation_rectangle_2x1_o8.jpg")
    assert read_from_file.orientation == 8
    # An explicit (say, corrected) orientation is applied as given.
    as_stored = _render("hopper_orientation_6.jpg", orientation=1)
    assert as_stored.orientation == 1


@pytest.mark.parametrize("name", FORMAT_FILES)
def test_every_format_keeps_its_colours(name: str) -> None:
    rendered = _render(name)
    reference = reference_colours(IMAGES / name)
    for rendition in rendered.renditions:
        image = _decoded(rendition)
        assert image.mode == "RGB" and rendition.format == "JPEG"
        for got, want in zip(means(image), means(reference), strict=True):
            assert abs(got - want) < 4, (rendition.name, means(image), means(reference))
        # Not only the mean: the picture matches where it matters.
        assert mean_abs_diff(image, reference.resize(image.size, Image.Resampling.LANCZOS)) < 8


@pytest.mark.parametrize(
    "name", ["palette_single_trns.png", "la_uncompressed.png", "png16_gray_trns.png"]
)
def test_the_colour_check_rejects_a_naive_conversion(name: str) -> None:
    naive = Image.open(IMAGES / name).convert("RGB")
    reference = reference_colours(IMAGES / name)
    worst = max(abs(a - b) for a, b in zip(means(naive), means(reference), strict=True))
    assert worst >= 4


def test_embedded_profiles_are_converted_to_srgb() -> None:
    # Adobe RGB (1998): the same numbers are more saturated than in sRGB.
    name = "xmp_canon.jpg"
    rendered = _render(name)
    preview = _decoded(_rendition(rendered, "preview"))
    reference = reference_colours(IMAGES / name).resize(preview.size, Image.Resampling.LANCZOS)
    unconverted = Image.open(IMAGES / name).convert("RGB").resize(preview.size)
    for got, want, plain in zip(means(preview), means(reference), means(unconverted), strict=True):
        assert abs(got - want) < 0.5
        assert abs(plain - want) > 0.3  # the check can tell: the profile moves the colours
    # At low resolution (no encoding or sharpness noise) ours is far nearer than unconverted.
    small = (64, 34)
    box = Image.Resampling.BOX
    target = reference.resize(small, box)
    ours = mean_abs_diff(preview.resize(small, box), target)
    plain = mean_abs_diff(unconverted.resize(small, box), target)
    assert ours < plain / 2, (ours, plain)


@pytest.mark.parametrize("name", METADATA_FILES)
@pytest.mark.parametrize("output_format", ["JPEG", "WEBP"])
def test_no_rendition_carries_metadata(name: str, output_format: str) -> None:
    rendered = _render(name, output_format=output_format)
    for rendition in rendered.renditions:
        image = _decoded(rendition)
        assert image.format == output_format
        assert not image.getexif()
        assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp", "photoshop"} & set(
            image.info
        )
        for marker in (b"Exif\x00\x00", b"ICC_PROFILE", b"ns.adobe.com/xap", b"Photoshop 3.0"):
            assert marker not in rendition.data


def _jpeg(size: tuple[int, int]) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_large_images_shrink_to_each_long_edge() -> None:
    rendered = render(_jpeg((3000, 2000)), SPECS)
    sizes = {r.name: (r.width, r.height) for r in rendered.renditions}
    assert sizes == {"preview": (1280, 853), "thumbnail": (256, 171)}
    for rendition in rendered.renditions:
        assert _decoded(rendition).size == (rendition.width, rendition.height)


@pytest.mark.parametrize(
    "name", ["cmyk.jpg", "orientation_rectangle_2x1_o8.jpg", "progressive_icc_big.jpg"]
)
def test_small_images_are_never_upscaled(name: str) -> None:
    source = ImageOps.exif_transpose(Image.open(IMAGES / name))
    rendered = _render(name)
    preview = _rendition(rendered, "preview")
    thumbnail = _rendition(rendered, "thumbnail")
    assert (preview.width, preview.height) == source.size
    assert (thumbnail.width, thumbnail.height) == fit_within(*source.size, 256)
    assert max(thumbnail.width, thumbnail.height) <= max(source.size)


def test_jpeg_decodes_at_reduced_scale() -> None:
    # Preview 1280 needs at least 1280 px; libjpeg's 3/8 scale (1536) is the smallest that
    # covers it (1/4 gives 1024), where Pillow alone would ask for 1/2 (2048).
    image = decode_for(_jpeg((4096, 2048)), 1280, smallest_edge=256)
    assert image.size == (1536, 768)
    # Where 3/8 falls short too (3072 px: 1152), the decode stays at 1/2.
    assert decode_for(_jpeg((3072, 2048)), 1280, smallest_edge=256).size == (1536, 1024)
    # Odd sizes round up as libjpeg does (ceil(3n/8)), so the image is its output exactly.
    assert decode_for(_jpeg((4095, 2049)), 1280, smallest_edge=256).size == (1536, 769)
    # Thumbnail alone: twice 256 is enough, so the decoder goes down to 1/8 (512).
    assert decode_for(_jpeg((4096, 2048)), 256, smallest_edge=256).size == (512, 256)


def test_scaled_decodes_trade_only_the_chroma_upsampler() -> None:
    data = colour_jpeg((2048, 1024))
    fast = decode_for(data, 800, smallest_edge=256)  # 1/2 scale (3/8 gives 768), merged upsampler
    smooth = Image.open(io.BytesIO(data))
    smooth.draft("RGB", fast.size)  # Pillow's default: the smoothing upsampler
    smooth.load()
    assert fast.size == smooth.size == (1024, 512)
    assert fast.tobytes() != smooth.tobytes()
    assert psnr(fast, smooth) > 38
    # At full scale nothing is traded: the decode is libjpeg's exact one.
    small = colour_jpeg((600, 400))
    exact = Image.open(io.BytesIO(small))
    exact.load()
    assert decode_for(small, 1280).tobytes() == exact.tobytes()


def _psnr_to_lanczos(rendered: RenderedImage, reference: Image.Image) -> dict[str, float]:
    """Each rendition's PSNR against the full-size reference resized by Lanczos in one step."""
    out = {}
    for rendition in rendered.renditions:
        image = _decoded(rendition)
        out[rendition.name] = psnr(image, reference.resize(image.size, Image.Resampling.LANCZOS))
    return out


@pytest.fixture
def pillow_resampling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resample with Pillow alone, as a machine without the SIMD resizer's wheel does."""
    monkeypatch.setattr(simd_resample, "available", lambda: False)


def _bilinear_options(kernel: simd_resample.Kernel) -> object:
    import cykooz_resizer

    bilinear = cykooz_resizer.ResizeAlg.convolution(cykooz_resizer.FilterType.bilinear)
    return cykooz_resizer.ResizeOptions(resize_alg=bilinear)


@pytest.mark.skipif(not simd_resample.available(), reason="no cykooz-resizer wheel here")
def test_renditions_stay_as_sharp_as_a_full_decode_lanczos(monkeypatch: pytest.MonkeyPatch) -> None:
    # A real photo, 2000x1072 (Adobe RGB): no draft scale covers 1280, so 1.56x is left to the
    # first resample (SIMD Lanczos3). Measured: preview 34.73 dB, thumbnail 31.57 (Lanczos3
    # straight from the preview); a full-decode Lanczos preview once q80 encoded: 34.75.
    name = "xmp_canon.jpg"
    reference = reference_colours(IMAGES / name)
    floors = {"preview": 34.6, "thumbnail": 31.5}
    psnr = _psnr_to_lanczos(_render(name), reference)
    assert all(psnr[rendition] > floor for rendition, floor in floors.items()), psnr
    # The check can tell: a bilinear kernel (33.90 dB, 30.25), or a box reduce of the whole
    # 5x from the preview to the thumbnail (26.35), falls below.
    monkeypatch.setattr(simd_resample, "_options", _bilinear_options)
    bilinear = _psnr_to_lanczos(_render(name), reference)
    assert all(bilinear[rendition] < floor for rendition, floor in floors.items()), bilinear
    monkeypatch.undo()
    monkeypatch.setattr(simd_resample, "REDUCING_GAP", 1.0)
    assert _psnr_to_lanczos(_render(name), reference)["thumbnail"] < floors["thumbnail"]


@pytest.mark.usefixtures("pillow_resampling")
def test_pillow_renditions_stay_nearly_as_sharp(monkeypatch: pytest.MonkeyPatch) -> None:
    # The same photo where only Pillow resamples: Hamming for the 1.56x. Measured: preview
    # 34.38 dB (bicubic 34.66), thumbnail 31.45 (a 2.0 reducing gap 31.57).
    name = "xmp_canon.jpg"
    reference = reference_colours(IMAGES / name)
    floors = {"preview": 34.2, "thumbnail": 31.3}
    psnr = _psnr_to_lanczos(_render(name), reference)
    assert all(psnr[rendition] > floor for rendition, floor in floors.items()), psnr
    # The check can tell: a bilinear first step (33.90 dB) or a box straight from the preview
    # to the thumbnail (30.79) falls below.
    monkeypatch.setattr(renditions, "WIDE_RESAMPLE", Image.Resampling.BILINEAR)
    assert _psnr_to_lanczos(_render(name), reference)["preview"] < floors["preview"]
    monkeypatch.setattr(renditions, "WIDE_RESAMPLE", Image.Resampling.HAMMING)
    monkeypatch.setattr(renditions, "REDUCING_GAP", 1.0)
    assert _psnr_to_lanczos(_render(name), reference)["thumbnail"] < floors["thumbnail"]


@pytest.mark.parametrize(
    ("source", "size", "expected"),
    [
        ((2400, 1600), (1280, 853), Image.Resampling.HAMMING),  # 1.88x: JPEG a draft can't shrink
        ((2000, 1500), (1280, 960), Image.Resampling.HAMMING),  # 1.56x: 4000x3000 at 1/2
        ((1507, 848), (1280, 720), Image.Resampling.BICUBIC),  # 1.18x: 6028x3391 at 1/4
        ((2800, 1600), (1280, 731), Image.Resampling.BICUBIC),  # 2.19x: reduce(2), then 1.09x
        ((2560, 1440), (640, 360), Image.Resampling.BICUBIC),  # 4x: reduce(4) is all of it
    ],
)
@pytest.mark.usefixtures("pillow_resampling")
def test_the_cheaper_filter_only_takes_a_wide_step(
    source: tuple[int, int], size: tuple[int, int], expected: Image.Resampling
) -> None:
    assert first_filter(source, size) == expected
    image = Image.effect_noise(source, 40)
    want = image.resize(size, expected, reducing_gap=renditions.FIRST_REDUCING_GAP)
    assert resample(image, size, first=True).tobytes() == want.tobytes()


def test_webp_keeps_transparency() -> None:
    rendered = _render("interlaced_rgba.png", output_format="WEBP")
    thumbnail = _rendition(rendered, "thumbnail")
    assert thumbnail.content_type == "image/webp" and thumbnail.extension == "webp"
    image = _decoded(thumbnail)
    assert image.mode == "RGBA"
    lowest, _ = image.getchannel("A").getextrema()
    assert isinstance(lowest, int) and lowest < 128


@pytest.mark.parametrize("name", ["hopper_orientation_6.jpg", "interlaced_rgba.png", "cmyk.jpg"])
def test_the_placeholder_decodes_to_the_thumbnail(name: str) -> None:
    rendered = _render(name)
    thumbnail = _decoded(_rendition(rendered, "thumbnail"))
    hash_bytes = base64.b64decode(rendered.placeholder, validate=True)
    r, g, b, _ = thumbhash_to_average_rgba(hash_bytes)
    for got, want in zip((r * 255, g * 255, b * 255), means(thumbnail), strict=True):
        assert abs(got - want) < 16
    decoded = decode_placeholder(rendered.placeholder)
    assert max(decoded.size) == 32
    assert decoded.width / decoded.height == pytest.approx(
        thumbnail.width / thumbnail.height, rel=0.3
    )


def test_damaged_and_oversized_files_are_named_failures() -> None:
    with pytest.raises(CorruptImage, match=r"truncated|damaged"):
        _render("truncated_progressive.jpg")
    with pytest.raises(CorruptImage):
        render(b"this is not an image", SPECS)
    with pytest.raises(TooLarge, match="over the limit"):
        _render("hopper_orientation_1.jpg", max_pixels=1000)
