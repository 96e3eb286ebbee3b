"""Re-tagging PROCESSED images through `ImageRetag`, against a real moto server.

The tag stage is the real worker runtime with a stand-in handler whose "model" the test swaps,
so a re-tag must store what the current backend gives while everything else stays.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import eventually

from imgproc_shared.aws import AwsClients
from imgproc_shared.catalog import Catalog
from imgproc_shared.resources import ResourceNames, Stage
from imgproc_shared.retag import Retagger, RetagScope, RetagStart, execution_name
from imgproc_shared.settings import Settings
from imgproc_shared.workflow import RETAG_SKIPPED

from workflow_harness import SwappableModel, pipeline, record, stored_record, terminal, upload

Stack = tuple[Settings, AwsClients, dict[str, Any]]


async def _processed(settings: Settings, aws: AwsClients, image_ids: list[str]) -> None:
    for image_id in image_ids:
        assert (await terminal(settings, aws, image_id))["status"] == "PROCESSED"


async def _execution_names(aws: AwsClients, arn: str) -> list[str]:
    listed = await aws.stepfunctions.list_executions(stateMachineArn=arn)
    return sorted(e["name"] for e in listed["executions"])


async def test_retag_of_an_album_stores_the_current_labels_and_keeps_everything_else(
    stack: Stack,
) -> None:
    settings, aws, _ = stack
    catalog = Catalog(aws, ResourceNames.from_settings(settings))
    model = SwappableModel("OldCat")
    album = ["rt-a", "rt-b", "rt-c"]
    async with pipeline(settings, aws, {Stage.TAG: model.tag}):
        for image_id in album:
            await upload(settings, aws, image_id)
        await _processed(settings, aws, album)
        await record(settings, aws, "rt-uploading")  # never put: stays UPLOADING
        before = {i: await stored_record(catalog, i) for i in album}
        assert all(r and r["tags"]["labels"][0]["name"] == "OldCat" for r in before.values())

        model.label = "NewDog"
        retagger = Retagger(aws, settings)
        report = await retagger.request(RetagScope(album_id="album1"), rate_per_s=50)
        assert (report.selected, report.started, report.already_done) == (3, 3, 0)
        assert report.skipped == {"rt-uploading": "image is UPLOADING, not PROCESSED"}

        progress = await retagger.wait(report.request_id, 3, timeout_s=40, poll_s=0.2)
        assert (progress.executions, progress.running, progress.retagged) == (3, 0, 3)
        assert progress.finished == 3 and not progress.failed and not progress.skipped

        for image_id in album:
            after = await stored_record(catalog, image_id)
            assert after is not None
            assert after["tags"]["labels"][0]["name"] == "NewDog"
            assert after["tags"]["backend"] == "NewDog"
            assert after["retag_request"] == report.request_id
            for kept in ("status", "metadata", "thumbnails", "execution_arn", "finished_at"):
                assert after[kept] == before[image_id][kept], kept

        # The same request again starts nothing: no second execution for any image.
        arn = await retagger.state_machine_arn()
        names = await _execution_names(aws, arn)
        assert names == sorted(execution_name(i, report.request_id) for i in album)
        again = await retagger.request(
            RetagScope(album_id="album1"), report.request_id, rate_per_s=50
        )
        assert (again.selected, again.started, again.already_done) == (3, 0, 3)
        assert await _execution_names(aws, arn) == names


async def test_image_that_left_processed_meanwhile_is_skipped_with_a_reason(
    stack: Stack,
) -> None:
    settings, aws, _ = stack
    catalog = Catalog(aws, ResourceNames.from_settings(settings))
    model = SwappableModel("Old")
    async with pipeline(settings, aws, {Stage.TAG: model.tag}):
        await upload(settings, aws, "rt-kept")
        await upload(settings, aws, "rt-gone")
        await _processed(settings, aws, ["rt-kept", "rt-gone"])
        model.label = "New"
        retagger = Retagger(aws, settings)
        plan = await retagger.plan(RetagScope(album_id="album1"), "meanwhile1")
        # Between the selection and its store, the image is re-run (a DLQ replay, say).
        await aws.dynamodb.update_item(
            TableName=catalog.images_table,
            Key={"image_id": {"S": "rt-gone"}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "PROCESSING"}},
        )
        await retagger.start(plan, rate_per_s=50)
        progress = await retagger.wait("meanwhile1", 2, timeout_s=40, poll_s=0.2)
        assert (progress.retagged, progress.skipped_count, progress.failed_count) == (1, 1, 0)
        assert progress.skipped["rt-gone"].startswith(RETAG_SKIPPED)
        gone = await stored_record(catalog, "rt-gone")
        assert gone is not None and gone["tags"]["labels"][0]["name"] == "Old"
        assert gone["status"] == "PROCESSING" and "retag_request" not in gone
        kept = await stored_record(catalog, "rt-kept")
        assert kept is not None and kept["tags"]["labels"][0]["name"] == "New"


class StarterStopped(Exception):
    """Stands for the process that starts a request's executions stopping half way."""


async def test_a_request_cut_short_is_finished_by_running_it_again(stack: Stack) -> None:
    settings, aws, _ = stack
    catalog = Catalog(aws, ResourceNames.from_settings(settings))
    model = SwappableModel("Old")
    album = [f"rt-half-{n}" for n in range(5)]
    async with pipeline(settings, aws, {Stage.TAG: model.tag}):
        for image_id in album:
            await upload(settings, aws, image_id)
        await _processed(settings, aws, album)
        model.label = "New"
        retagger = Retagger(aws, settings)

        def stop_after_two(report: RetagStart) -> None:
            if report.started == 2:
                raise StarterStopped

        with pytest.raises(StarterStopped):
            await retagger.request(
                RetagScope(album_id="album1"), "half1", rate_per_s=50, on_started=stop_after_two
            )
        first = await retagger.wait("half1", 2, timeout_s=40, poll_s=0.2)
        assert first.retagged == 2
        tags = [await stored_record(catalog, i) for i in album]
        assert (
            sorted(r["tags"]["labels"][0]["name"] for r in tags if r) == ["New"] * 2 + ["Old"] * 3
        )
        assert all(r and r["status"] == "PROCESSED" for r in tags)

        # The same request once more: exactly the three left are started.
        rest = await retagger.request(RetagScope(album_id="album1"), "half1", rate_per_s=50)
        assert rest.started == 3 and rest.already_done + rest.already_started == 2
        done = await retagger.wait("half1", 5, timeout_s=40, poll_s=0.2)
        assert (done.executions, done.retagged) == (5, 5)

        async def all_new() -> bool:
            records = [await stored_record(catalog, i) for i in album]
            return all(r and r["tags"]["labels"][0]["name"] == "New" for r in records)

        await eventually(all_new, timeout=10, what="every image re-tagged")


async def test_scope_by_owner_and_every_image(stack: Stack) -> None:
    settings, aws, _ = stack
    # An owner's images are found through their albums, as the API lists them.
    await Catalog(aws, ResourceNames.from_settings(settings)).put_album(
        album_id="album1", owner="alice", name="Album 1"
    )
    async with pipeline(settings, aws):
        await upload(settings, aws, "rt-own")
        await _processed(settings, aws, ["rt-own"])
        retagger = Retagger(aws, settings)
        mine = await retagger.plan(RetagScope(owner="alice"), "scope1")
        nobody = await retagger.plan(RetagScope(owner="bob"), "scope1")
        every = await retagger.plan(RetagScope(), "scope1")
        assert [r.image_id for r in mine.to_start] == ["rt-own"]
        assert nobody.to_start == [] and nobody.report.selected == 0
        assert [r.image_id for r in every.to_start] == ["rt-own"]
        with pytest.raises(ValueError):
            await retagger.plan(RetagScope(), "Not-An-Id!")
