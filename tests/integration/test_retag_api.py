"""The operators' re-tag endpoints over HTTP: the status API on a real socket, a real moto
server, the real worker runtime (a stand-in tag handler whose "model" the test swaps), and an
album's live event stream, which must show the new labels."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from helpers import eventually

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.resources import ResourceNames, Stage
from imgproc_shared.settings import Settings

from workflow_harness import SwappableModel, pipeline, terminal, upload

sys.path.insert(0, str(Path(__file__).parents[1] / "api"))
from api_harness import ApiHarness, running_api

Stack = tuple[Settings, AwsClients, dict[str, Any]]


async def _album_events(
    api: ApiHarness, headers: dict[str, str], seen: list[dict[str, Any]], ready: asyncio.Event
) -> None:
    async with api.client.stream("GET", "/api/albums/album1/events", headers=headers) as response:
        assert response.status_code == 200
        kind = ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
                if kind == "ready":
                    ready.set()
            elif line.startswith("data:") and kind == "image":
                seen.append(json.loads(line.split(":", 1)[1]))


async def test_operators_retag_an_album_over_http_and_galleries_update_live(stack: Stack) -> None:
    settings, aws, _ = stack
    await Catalog(aws, ResourceNames.from_settings(settings)).put_album(
        album_id="album1", owner="alice", name="Holidays"
    )
    model = SwappableModel("OldCat")
    async with (
        pipeline(settings, aws, {Stage.TAG: model.tag}),
        running_api(stack, operators="ops") as api,
    ):
        for image_id in ("api-rt-1", "api-rt-2"):
            await upload(settings, aws, image_id)
            assert (await terminal(settings, aws, image_id))["status"] == "PROCESSED"
        alice, ops = await api.sign_in("alice"), await api.sign_in("ops")

        # Not an operator: refused, and nothing is started.
        refused = await api.client.post(
            "/api/operators/retag", json={"album_id": "album1"}, headers=alice
        )
        assert refused.status_code == 403 and refused.json()["code"] == "operator_only"
        follow = await api.client.get(
            "/api/operators/retag", params={"request_id": "abc"}, headers=alice
        )
        assert follow.status_code == 403
        missing = await api.client.post(
            "/api/operators/retag", json={"album_id": "nosuchalbum"}, headers=ops
        )
        assert missing.status_code == 404

        seen: list[dict[str, Any]] = []
        ready = asyncio.Event()
        listener = asyncio.create_task(_album_events(api, alice, seen, ready))
        await asyncio.wait_for(ready.wait(), timeout=10)
        try:
            model.label = "NewDog"
            started = await api.client.post(
                "/api/operators/retag", json={"album_id": "album1"}, headers=ops
            )
            assert started.status_code == 202, started.text
            request = started.json()
            assert (request["selected"], request["to_start"], request["skipped_count"]) == (2, 2, 0)
            request_id = request["request_id"]
            assert request["progress"] == f"/api/operators/retag?request_id={request_id}"

            async def finished() -> dict[str, Any] | None:
                progress = (await api.client.get(request["progress"], headers=ops)).json()
                done = progress["finished"] == 2 and not progress["starting"]
                return dict(progress) if done else None

            progress = await eventually(finished, timeout=40, what="both re-tagged")
            assert (progress["retagged"], progress["failed_count"]) == (2, 0)

            def live_labels() -> set[str] | None:
                new = {
                    e["image_id"]
                    for e in seen
                    if e["status"] == "PROCESSED"
                    and any(t["name"] == "NewDog" for t in (e.get("tags") or []))
                }
                return new if new == {"api-rt-1", "api-rt-2"} else None

            await eventually(live_labels, timeout=15, what="the gallery shows the new labels")
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

        # The same request again starts nothing.
        again = await api.client.post(
            "/api/operators/retag",
            json={"album_id": "album1", "request_id": request_id},
            headers=ops,
        )
        assert again.status_code == 202
        assert (again.json()["to_start"], again.json()["already_done"]) == (0, 2)
        after = (await api.client.get(request["progress"], headers=ops)).json()
        assert after["executions"] == 2
