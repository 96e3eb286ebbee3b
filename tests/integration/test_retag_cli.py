"""`imgproc retag` as a user runs it (a subprocess), against a real moto server and the real
worker runtime: its `--json` summary, and a run killed half way finished by the same command."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from helpers import eventually

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.resources import ResourceNames, Stage
from imgproc_shared.retag import Retagger
from imgproc_shared.settings import Settings

from workflow_harness import SwappableModel, pipeline, stored_record, terminal, upload

IMGPROC = Path(sys.executable).parent / "imgproc"
Stack = tuple[Settings, AwsClients, dict[str, Any]]


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMGPROC_")}
    env.update(
        {
            "IMGPROC_ENDPOINT_URL": str(settings.endpoint_url),
            "IMGPROC_RESOURCE_PREFIX": settings.resource_prefix,
            "IMGPROC_STATE_MACHINE_ARN": str(settings.state_machine_arn),
            "IMGPROC_HOME": str(settings.home),
        }
    )
    return env


async def _imgproc(settings: Settings, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(IMGPROC),
        *args,
        env=_env(settings),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _labels(catalog: Catalog, image_ids: list[str]) -> list[str]:
    records = [await stored_record(catalog, i) for i in image_ids]
    return [r["tags"]["labels"][0]["name"] if r else "?" for r in records]


async def test_cli_retag_json_summary_and_a_killed_run_finished_by_running_it_again(
    stack: Stack,
) -> None:
    settings, aws, _ = stack
    catalog = Catalog(aws, ResourceNames.from_settings(settings))
    await catalog.put_album(album_id="album1", owner="alice", name="Holidays")
    model = SwappableModel("Old")
    album = [f"cli-rt-{n}" for n in range(6)]
    async with pipeline(settings, aws, {Stage.TAG: model.tag}):
        for image_id in album:
            await upload(settings, aws, image_id)
        for image_id in album:
            assert (await terminal(settings, aws, image_id))["status"] == "PROCESSED"
        model.label = "New"

        # One start a second; killed (as a stopped machine would) after the first starts.
        args = ["retag", "--album", "album1", "--request", "clihalf", "--rate", "1"]
        killed = await _imgproc(settings, *args)
        retagger = Retagger(aws, settings)

        async def some_started() -> int | None:
            progress = await retagger.progress("clihalf")
            return progress.executions if progress.executions >= 2 else None

        await eventually(some_started, timeout=30, what="the first executions")
        killed.send_signal(signal.SIGKILL)
        await killed.wait()
        first = await retagger.progress("clihalf")
        assert 2 <= first.executions < len(album)
        await eventually(
            lambda: _all_finished(retagger, "clihalf"), timeout=30, what="the started ones"
        )
        labels = await _labels(catalog, album)
        assert labels.count("New") == first.executions and labels.count("Old") > 0
        records = [await stored_record(catalog, i) for i in album]
        assert all(r and r["status"] == "PROCESSED" and r["thumbnails"] for r in records)

        # The same command again: only the rest is started, and the summary says so.
        again = await _imgproc(settings, *args[:-2], "--rate", "50", "--json")
        out, err = await asyncio.wait_for(again.communicate(), timeout=120)
        assert again.returncode == 0, err.decode()
        summary = json.loads(out)
        assert summary["request_id"] == "clihalf"
        assert summary["selected"] == len(album)
        assert summary["started"] == len(album) - first.executions
        assert summary["already_started"] + summary["already_done"] == first.executions
        assert summary["complete"] is True and summary["running"] == 0
        assert summary["retagged"] == len(album) and summary["failed_count"] == 0
        assert summary["skipped_count"] == 0 and summary["skipped_meanwhile_count"] == 0
        assert await _labels(catalog, album) == ["New"] * len(album)
        assert (await retagger.progress("clihalf")).executions == len(album)


async def _all_finished(retagger: Retagger, request_id: str) -> bool:
    progress = await retagger.progress(request_id)
    return progress.running == 0


async def test_cli_retag_refuses_an_unknown_album(stack: Stack) -> None:
    settings, _, _ = stack
    process = await _imgproc(settings, "retag", "--album", "nosuchalbum", "--json")
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert "no album nosuchalbum" in err.decode()
