"""One album per name, whoever creates it: `imgproc upload --album` (and the load test, through
the same `Catalog.album_named`) and the status API asking for one new name at the same moment,
against the embedded endpoint over HTTP, end with one album holding every upload."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from helpers import FIXTURES

from imgproc_cli.uploads import upload
from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.resources import ResourceNames
from imgproc_shared.settings import Settings

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
from api_harness import running_api

Stack = tuple[Settings, AwsClients, dict[str, Any]]

OWNER = "racer"
# Spelled differently on purpose: names are unique per owner ignoring case, and the CLI joins
# the album that holds the name rather than failing.
CLI_NAMES = ("Trip", "trip", "TRIP", "Trip ")
API_NAMES = ("Trip", "tRIP", "Trip", "trip")


async def test_cli_and_api_creating_one_album_name_at_once_make_one_album(stack: Stack) -> None:
    settings, aws, _ = stack
    photo = FIXTURES / "images" / "cmyk.jpg"
    catalog = Catalog(aws, ResourceNames.from_settings(settings))

    async def cli_upload(name: str) -> int:
        args = argparse.Namespace(
            paths=[photo], user=OWNER, album=name, wait=False, timeout=10.0, json=True
        )
        return await upload(args, settings)

    async with running_api(stack) as api:
        headers = await api.sign_in(OWNER)

        async def api_create(name: str) -> int:
            response = await api.client.post("/api/albums", json={"name": name}, headers=headers)
            return response.status_code

        results = await asyncio.gather(
            *(cli_upload(name) for name in CLI_NAMES),
            *(api_create(name) for name in API_NAMES),
        )
        listed = (await api.client.get("/api/albums", headers=headers)).json()["items"]

    cli_codes, api_codes = results[: len(CLI_NAMES)], results[len(CLI_NAMES) :]
    assert cli_codes == [0] * len(CLI_NAMES)
    # At most one creation through the API succeeds; the rest are told the name is taken.
    assert api_codes.count(201) <= 1 and set(api_codes) <= {201, 409}, api_codes

    albums = await catalog.list_albums(OWNER)
    assert len(albums) == 1, albums
    assert [a["album_id"] for a in listed] == [albums[0].album_id]
    assert albums[0].name.casefold() == "trip"

    # Every CLI upload went into that one album (the whole table: this test's stack is its own).
    images = [image async for image in catalog.iter_images()]
    assert len(images) == len(CLI_NAMES)
    assert {image.album_id for image in images} == {albums[0].album_id}
