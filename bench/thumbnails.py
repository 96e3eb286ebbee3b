"""How close the extract + thumbnail path comes to the decoder's limit, photo by photo.

For each photo, interleaved in one run (so a noisy neighbour hits every path alike):

- ours:       the extractor's header read + sha256, then the thumbnailer's `render`
              (preview 1280 + thumbnail 256 + ThumbHash placeholder);
- ours_thumb: the same without the preview (thumbnail 256 + placeholder);
- ours_pillow: ours where Pillow does all the resampling, as on a machine without the SIMD
              resizer's wheel (`simd_resample`); `pillow/ours` is what the SIMD path saves;
- naive:     full decode, `ImageOps.exif_transpose`, LANCZOS resize to 1280 and 256, encode;
- thumbnail: Pillow's `Image.thumbnail()` defaults (1280 then 256), encode;
- floor:     the decode alone: 1/8-scale draft for JPEG, full decode for anything else;
- floor_preview: the decode the largest rendition needs: the JPEG draft scale that still
              covers the 1280 px preview (what any correct preview must at least decode), full
              decode for anything else. `ours/fl_prev` says how far ours is from that limit,
              as `ours/floor` does from the thumbnail's;
- bound:     the least any path that makes the preview must do: that decode plus one JPEG
              encode of a preview-sized image (no resample, thumbnail, placeholder or metadata).
              `bound/floor` above 1.25 means no implementation on this decoder can bring a
              path with the 1280 px preview within 1.25x of the 1/8-decode floor, and
              `naive/bound` is the most `naive/ours` can be (ours costing exactly `bound`).

JPEG decodes in floor, floor_preview and bound use the decoder settings ours uses (Pillow's
draft flag: libjpeg's merged upsampler at reduced scales), so no ratio is helped by a setting
its floor lacks.

Times are CPU seconds of one thread (`time.thread_time`): images/s per core is 1 / time. Peak
memory is measured per path in a fresh subprocess: peak RSS (VmHWM) minus the RSS after imports.

Without DIR it measures the corpus photos (or generated stand-ins where the corpus is absent)
and, beside them, a generated baseline JPEG of each shape: square, 4:3 portrait, 4:1 panorama
and 16:9, 12-24 MP (`SHAPES`).

    python -m bench.thumbnails [DIR] [--repeat N] [--json]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageChops, ImageOps

from imgproc_thumbnailer import simd_resample
from imgproc_thumbnailer.renditions import RenditionSpec, draft, fit_within, render

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS_PHOTOS = REPO_ROOT.parent / "shared" / "corpus" / "photos"
SPECS = (RenditionSpec("thumbnail", 256), RenditionSpec("preview", 1280))
PATHS = (
    "ours",
    "ours_thumb",
    "ours_pillow",
    "naive",
    "thumbnail",
    "floor",
    "floor_preview",
    "bound",
)
SUFFIXES = {".jpg", ".jpeg", ".png", ".mpo"}
QUALITY = 80


def _extract(data: bytes) -> int | None:
    """The extractor's work on one object; returns the EXIF orientation it found."""
    hashlib.sha256(data).hexdigest()
    try:
        from imgproc_extractor.metadata import ObjectBytes, describe
    except ImportError:  # extractor not installed: the header parse it would do
        image = Image.open(io.BytesIO(data))
        value = image.getexif().get(0x0112) if image.format != "PNG" else None
        return value if isinstance(value, int) else None
    facts = describe(ObjectBytes.whole(data), max_pixels=1_000_000_000)
    orientation: int | None = facts.fields.exif.orientation
    return orientation


def run_ours(data: bytes) -> None:
    orientation = _extract(data)
    render(data, SPECS, quality=QUALITY, orientation=orientation)


def run_ours_thumb(data: bytes) -> None:
    """Our path without the preview: what the 256 px thumbnail alone costs."""
    orientation = _extract(data)
    render(data, SPECS[:1], quality=QUALITY, orientation=orientation)


def run_ours_pillow(data: bytes) -> None:
    """Our path with Pillow's resampling alone (machines without the SIMD wheel)."""
    with simd_resample.pillow_only():
        run_ours(data)


def _save(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def run_naive(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    image.load()
    upright = ImageOps.exif_transpose(image)
    for spec in SPECS:
        copy = upright.copy()
        copy.thumbnail(
            (spec.long_edge, spec.long_edge), Image.Resampling.LANCZOS, reducing_gap=None
        )
        _save(copy)


def run_thumbnail(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    for spec in sorted(SPECS, key=lambda s: s.long_edge, reverse=True):
        image.thumbnail((spec.long_edge, spec.long_edge))
        _save(image)


def _decode(data: bytes, target: Callable[[Image.Image], tuple[int, int]]) -> Image.Image:
    """A JPEG drafted to cover `target(image)` with ours' decoder settings (`draft`); others in
    full. One open: the floors parse the header once, as ours does."""
    image = Image.open(io.BytesIO(data))
    draft(image, target(image))
    image.load()
    return image


def _eighth(image: Image.Image) -> tuple[int, int]:
    return max(1, image.width // 8), max(1, image.height // 8)


def _preview_size(image: Image.Image) -> tuple[int, int]:
    largest = max(spec.long_edge for spec in SPECS)
    return fit_within(image.width, image.height, largest)


def run_floor(data: bytes) -> None:
    _decode(data, _eighth)


def run_floor_preview(data: bytes) -> None:
    """The decode a correct largest rendition needs: draft only as far as it still covers it."""
    _decode(data, _preview_size)


def run_bound(data: bytes) -> None:
    """The preview's decode plus one encode of a preview-sized image: no path can do less."""
    image = _decode(data, _preview_size)
    # The draft covers the preview, so a preview-sized crop stands for the resampled preview.
    cropped = image.crop((0, 0, *_preview_size(image)))
    cropped = cropped if cropped.mode == "RGB" else cropped.convert("RGB")
    cropped.save(io.BytesIO(), "JPEG", quality=QUALITY)


RUNNERS: dict[str, Callable[[bytes], None]] = {
    "ours": run_ours,
    "ours_thumb": run_ours_thumb,
    "ours_pillow": run_ours_pillow,
    "naive": run_naive,
    "thumbnail": run_thumbnail,
    "floor": run_floor,
    "floor_preview": run_floor_preview,
    "bound": run_bound,
}


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _memory_probe(path_name: str, photo: Path) -> None:
    """Subprocess body: run one path once and print its peak RSS above the idle process."""
    # Warm the modules the path touches on a tiny image, so imports don't count as work.
    tiny = io.BytesIO()
    Image.new("RGB", (8, 8)).save(tiny, "JPEG")
    RUNNERS[path_name](tiny.getvalue())
    idle = _rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    RUNNERS[path_name](photo.read_bytes())
    print(json.dumps({"idle_kb": idle, "peak_kb": _rss_kb("VmHWM")}))


def measure_memory(path_name: str, photo: Path) -> float | None:
    """Peak MB above idle of one path on one photo, in a fresh interpreter."""
    result = subprocess.run(
        [sys.executable, "-m", "bench.thumbnails", "--memory-probe", path_name, str(photo)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    if result.returncode != 0:
        return None
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    peak_kb: int = probe["peak_kb"] - probe["idle_kb"]
    return round(peak_kb / 1024, 1)


def bench_photo(photo: Path, repeat: int, memory: bool) -> dict[str, Any]:
    data = photo.read_bytes()
    with Image.open(io.BytesIO(data)) as probe:
        kind = probe.format or "?"
        if kind == "JPEG" and probe.info.get("progressive"):
            kind = "JPEG progressive"
        width, height = probe.size
    times: dict[str, list[float]] = {name: [] for name in PATHS}
    for name in PATHS:  # warm-up: imports, ICC transforms, lookup tables
        RUNNERS[name](data)
    for _ in range(repeat):
        for name in PATHS:
            started = time.thread_time()
            RUNNERS[name](data)
            times[name].append(time.thread_time() - started)
    median_ms = {name: round(statistics.median(v) * 1000, 1) for name, v in times.items()}
    ours = median_ms["ours"]
    row: dict[str, Any] = {
        "file": photo.name,
        "format": kind,
        "megapixels": round(width * height / 1e6, 1),
        "median_ms": median_ms,
        "naive_over_ours": round(median_ms["naive"] / ours, 2),
        "ours_over_floor": round(ours / median_ms["floor"], 2),
        "ours_over_floor_preview": round(ours / median_ms["floor_preview"], 2),
        "bound_over_floor": round(median_ms["bound"] / median_ms["floor"], 2),
        "ours_over_bound": round(ours / median_ms["bound"], 2),
        # The most naive/ours can be: what it would be if ours cost exactly `bound`.
        "naive_over_bound": round(median_ms["naive"] / median_ms["bound"], 2),
        "ours_thumb_over_floor": round(median_ms["ours_thumb"] / median_ms["floor"], 2),
        "naive_over_ours_thumb": round(median_ms["naive"] / median_ms["ours_thumb"], 2),
        "ours_over_thumbnail": round(ours / median_ms["thumbnail"], 2),
        "ours_pillow_over_ours": round(median_ms["ours_pillow"] / ours, 2),
        "images_per_s_per_core": round(1000 / ours, 1),
    }
    if memory:
        row["peak_mb_above_idle"] = {name: measure_memory(name, photo) for name in PATHS}
    return row


def generated_photos(directory: Path) -> list[Path]:
    """Stand-ins when the corpus is absent: a 20 MP baseline and progressive JPEG, a PNG."""
    width, height = 5472, 3648
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 48)
    image = Image.merge("RGB", (gradient, noise, gradient.transpose(Image.Transpose.ROTATE_180)))
    exif = Image.Exif()
    exif[0x0112] = 6
    photos = [directory / "baseline_20mp_orient6.jpg", directory / "progressive_20mp.jpg"]
    image.save(photos[0], "JPEG", quality=90, exif=exif)
    image.save(photos[1], "JPEG", quality=90, progressive=True)
    png = directory / "rgb_14mp.png"
    image.resize((5120, 2880)).save(png, "PNG", compress_level=6)
    return [*photos, png]


# One photo of each shape, 12-24 MP: the draft scale that covers the preview and the step left
# after it differ by shape (a 4096 px square needs more than 1/4, a 4:1 panorama's short side
# is small), so each is measured. (name, width, height)
SHAPES = (
    ("square", 4096, 4096),
    ("portrait_4x3", 3024, 4032),
    ("panorama_4x1", 8000, 2000),
    ("wide_16x9", 5760, 3240),
)


def smooth_noise(width: int, height: int) -> Image.Image:
    """Photo-like content, not flat colour: octaves of Gaussian noise blown up from coarse grids
    (large soft regions down to fine texture) plus a little grain, so that a baseline JPEG of
    it at quality 90 takes about 2.3 bits per pixel, between the corpus' 20 MP photos (1.7
    and 2.75): the entropy decoding every path pays is what a real photo's would be."""
    channels = []
    for _ in range(3):
        layer: Image.Image | None = None
        for divisor, weight in ((512, 1.0), (96, 0.45), (24, 0.3), (6, 0.2)):
            coarse = Image.effect_noise((max(2, width // divisor), max(2, height // divisor)), 64)
            octave = coarse.resize((width, height), Image.Resampling.BICUBIC)
            layer = octave if layer is None else Image.blend(layer, octave, weight)
        assert layer is not None
        channels.append(ImageOps.autocontrast(layer, cutoff=0.5))
    grain = Image.effect_noise((width, height), 3)
    return ImageChops.add(
        Image.merge("RGB", channels), Image.merge("RGB", (grain,) * 3), scale=1.0, offset=-128
    )


def shape_photos(directory: Path) -> list[Path]:
    """A baseline JPEG (quality 90) of each of `SHAPES`, written to directory."""
    photos = []
    for name, width, height in SHAPES:
        path = directory / f"{name}_{width}x{height}.jpg"
        smooth_noise(width, height).save(path, "JPEG", quality=90)
        photos.append(path)
    return photos


def _table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'file':40} {'format':16} {'MP':>5} {'ours':>6} {'o_thumb':>7} {'o_pillow':>8} "
        f"{'naive':>7} "
        f"{'thumb()':>7} {'floor':>6} {'fl_prev':>7} {'bound':>6} {'naive/ours':>10} "
        f"{'ours/floor':>10} {'ours/fl_prev':>12} {'o_th/floor':>10} {'bound/floor':>11} "
        f"{'ours/bound':>10} {'naive/bound':>11} "
        f"{'ours/thumb()':>12} {'pillow/ours':>11} {'img/s/core':>10} "
        f"{'peak MB above idle':>48}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        ms = row["median_ms"]
        peak = row.get("peak_mb_above_idle")
        peaks = "/".join(str(peak[name]) for name in PATHS) if peak else "-"
        lines.append(
            f"{row['file'][:40]:40} {row['format']:16} {row['megapixels']:>5} "
            f"{ms['ours']:>6} {ms['ours_thumb']:>7} {ms['ours_pillow']:>8} {ms['naive']:>7} "
            f"{ms['thumbnail']:>7} "
            f"{ms['floor']:>6} {ms['floor_preview']:>7} {ms['bound']:>6} "
            f"{row['naive_over_ours']:>10} {row['ours_over_floor']:>10} "
            f"{row['ours_over_floor_preview']:>12} {row['ours_thumb_over_floor']:>10} "
            f"{row['bound_over_floor']:>11} {row['ours_over_bound']:>10} "
            f"{row['naive_over_bound']:>11} {row['ours_over_thumbnail']:>12} "
            f"{row['ours_pillow_over_ours']:>11} {row['images_per_s_per_core']:>10} {peaks:>48}"
        )
    lines.append(f"peak MB above idle, per path: {'/'.join(PATHS)}")
    return "\n".join(lines)


def _photos_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in SUFFIXES)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print a table, or one JSON document with `--json`."""
    parser = argparse.ArgumentParser(prog="bench.thumbnails", description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, help="photos (default: the corpus)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per path and photo")
    parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes")
    parser.add_argument("--memory-probe", nargs=2, metavar=("PATH", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.memory_probe:
        _memory_probe(args.memory_probe[0], Path(args.memory_probe[1]))
        return 0

    with tempfile.TemporaryDirectory(prefix="imgproc-bench-") as scratch:
        directory: Path | None = args.directory
        if directory is None:
            # The corpus (or stand-ins), and beside it one generated photo of each shape.
            corpus = CORPUS_PHOTOS.is_dir()
            base = _photos_in(CORPUS_PHOTOS) if corpus else generated_photos(Path(scratch))
            photos = base + shape_photos(Path(scratch))
            source = f"{CORPUS_PHOTOS if corpus else 'generated'} + generated shapes"
        else:
            if not directory.is_dir():
                print(f"bench.thumbnails: {directory} is not a directory", file=sys.stderr)
                return 2
            photos = _photos_in(directory)
            source = str(directory)
        if not photos:
            print(f"bench.thumbnails: no photos in {source}", file=sys.stderr)
            return 2
        rows = [bench_photo(photo, max(1, args.repeat), not args.no_memory) for photo in photos]

    # Which resampler ours used: "simd" where the wheel is installed and agrees with Pillow.
    resampler = "simd" if simd_resample.available() else "pillow"
    if args.json:
        report = {"source": source, "repeat": args.repeat, "resampler": resampler, "photos": rows}
        print(json.dumps(report, indent=2))
    else:
        print(
            f"photos: {source}; median CPU ms of {args.repeat} interleaved runs, one thread; "
            f"ours resamples with {resampler}"
        )
        print(_table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
