"""The web client's ThumbHash decoder (JavaScript) paints what the thumbnailer encoded."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

import imgproc_status_api
from imgproc_thumbnailer.thumbhash import image_to_thumbhash, thumbhash_to_rgba

WEB = Path(imgproc_status_api.__file__).parent / "web"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "images"


@pytest.mark.skipif(shutil.which("node") is None, reason="needs node to run the client's module")
@pytest.mark.parametrize("name", ["flower_canon.jpg", "apng16_rgba.png", "grayscale.jpg"])
def test_javascript_decoder_matches_the_reference(tmp_path: Path, name: str) -> None:
    with Image.open(FIXTURES / name) as image:
        image.thumbnail((100, 100))
        hash_bytes = image_to_thumbhash(image)
    width, height, expected = thumbhash_to_rgba(hash_bytes)
    module = tmp_path / "thumbhash.mjs"  # node needs the .mjs name to load it as a module
    module.write_bytes((WEB / "thumbhash.js").read_bytes())
    encoded = json.dumps(base64.b64encode(hash_bytes).decode())
    script = (
        f"import {{ thumbHashToRGBA }} from {json.dumps(str(module))};"
        f"const hash = Uint8Array.from(Buffer.from({encoded}, 'base64'));"
        "const r = thumbHashToRGBA(hash);"
        "console.log(JSON.stringify({ w: r.w, h: r.h, rgba: Array.from(r.rgba) }));"
    )
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    decoded = json.loads(result.stdout)
    assert (decoded["w"], decoded["h"]) == (width, height)
    assert max(abs(a - b) for a, b in zip(decoded["rgba"], expected, strict=True)) <= 1
