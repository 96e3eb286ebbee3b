"""Building, caching and refusing the model: a broken file is a clear error, never a crash loop."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgproc_tagger import classifier as classifier_module
from imgproc_tagger.classifier import (
    ModelUnavailable,
    choose_providers,
    load_model_bytes,
    open_classifier,
    packaged_weights_path,
)
from imgproc_tagger.config import TaggerSettings


def test_the_graph_is_built_once_and_then_read_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = TaggerSettings(model_cache_dir=tmp_path)
    first = load_model_bytes(settings)
    cached = list(tmp_path.glob("*.onnx"))
    assert len(cached) == 1 and cached[0].read_bytes() == first
    assert classifier_module.WEIGHTS_SHA256[:16] in cached[0].name

    def no_build(weights: bytes, source: str = "") -> bytes:
        raise AssertionError("built again although the cache holds the model")

    monkeypatch.setattr(classifier_module, "build_model", no_build)
    assert load_model_bytes(settings) == first


def test_a_damaged_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    settings = TaggerSettings(model_cache_dir=tmp_path)
    good = load_model_bytes(settings)
    (cached,) = tmp_path.glob("*.onnx")
    cached.write_bytes(b"garbage")
    assert load_model_bytes(settings) == good
    assert cached.read_bytes() == good


def test_an_unwritable_cache_still_gives_a_model(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    assert len(load_model_bytes(TaggerSettings(model_cache_dir=blocker / "models"))) > 1_000_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the weights file"),
        (b"", "unusable"),
        (b"\x80\x02not a torch file at all", "unusable"),
    ],
)
def test_broken_weights_are_a_clear_error(
    tmp_path: Path, content: bytes | None, message: str
) -> None:
    weights = tmp_path / "weights.pth"
    if content is not None:
        weights.write_bytes(content)
    with pytest.raises(ModelUnavailable, match=message):
        open_classifier(TaggerSettings(model_cache_dir=tmp_path, weights_path=weights))


def test_a_damaged_install_is_refused_by_checksum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    damaged = tmp_path / "efficientnet-lite0.pth"
    data = bytearray(packaged_weights_path().read_bytes())
    data[-100] ^= 0xFF  # one flipped byte in the last tensor: still parses, wrong numbers
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(classifier_module, "packaged_weights_path", lambda: damaged)
    with pytest.raises(ModelUnavailable, match="damaged"):
        load_model_bytes(TaggerSettings(model_cache_dir=tmp_path))


def test_the_cpu_is_used_unless_a_gpu_build_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert choose_providers("auto") == ["CPUExecutionProvider"]
    with pytest.raises(ModelUnavailable, match="CUDA"):
        choose_providers("cuda")
    monkeypatch.setattr(
        onnxruntime,
        "get_available_providers",
        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    )
    assert choose_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert choose_providers("cpu") == ["CPUExecutionProvider"]


def test_the_worker_exits_with_one_clear_line_when_the_model_is_broken(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"\x00" * 64)
    env = {
        **os.environ,
        "IMGPROC_TAGGER_BACKEND": "local",
        "IMGPROC_TAGGER_WEIGHTS_PATH": str(broken),
        "IMGPROC_TAGGER_MODEL_CACHE_DIR": str(tmp_path / "cache"),
        # Never contacted: the model is loaded before the worker looks for its queue.
        "IMGPROC_ENDPOINT_URL": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "imgproc_tagger"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if '"level": "error"' in line]
    assert len(errors) == 1, result.stdout
    assert "model unavailable" in errors[0] and "broken.pth" in errors[0]
    assert "Traceback" not in result.stdout + result.stderr
