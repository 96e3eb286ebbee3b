"""Names people give (albums, files): one rule for the status API, its document and the CLI."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest
from pydantic import ValidationError

from imgproc_cli.uploads import UsageError, upload
from imgproc_shared.models import ALBUM_NAME_MAX, is_valid_display_name
from imgproc_shared.settings import Settings
from imgproc_status_api.schemas import AlbumCreate

SAMPLES = [
    "Summer 2024",
    " padded ",
    "é",
    "a\u3000b",
    "\u00a0x",
    "\ufeff",
    "<b>markup</b> & 'quotes'",
    "x" * ALBUM_NAME_MAX,
    " " + "x" * ALBUM_NAME_MAX,  # too long as sent, though not once stripped
    "",
    "   ",
    "\u3000\u00a0",
    "\u0085",
    "x\x85y",
    "tab\there",
    "abc\n",  # `$` in Python matches before a final newline; the rule must not
]
VALID = set(SAMPLES[:8])


@pytest.mark.parametrize("name", SAMPLES)
def test_the_api_and_the_shared_rule_agree(name: str) -> None:
    assert is_valid_display_name(name, ALBUM_NAME_MAX) == (name in VALID)
    try:
        stored = AlbumCreate(name=name).name
    except ValidationError:
        assert name not in VALID
    else:
        assert name in VALID and stored == name.strip()


def test_the_cli_refuses_an_album_name_the_api_would_before_touching_aws(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff")
    # No endpoint at all: a refusal must come before any AWS call.
    settings = Settings(_env_file=None, endpoint_url="http://127.0.0.1:9")
    args = argparse.Namespace(paths=[photo], user="local", album="\u3000", wait=False)
    with pytest.raises(UsageError, match="not only spaces"):
        asyncio.run(upload(args, settings))
