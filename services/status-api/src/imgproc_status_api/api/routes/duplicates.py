"""Duplicates: the signed-in user's groups of the same photo, exact and near."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from imgproc_shared.duplicates import duplicate_groups
from imgproc_status_api.api.deps import CurrentUser, State
from imgproc_status_api.errors import ERROR_RESPONSES
from imgproc_status_api.schemas import DuplicateGroupOut, DuplicatesOut

router = APIRouter(prefix="/api", tags=["duplicates"], responses=ERROR_RESPONSES)


@router.get("/duplicates")
async def list_duplicates(
    user: CurrentUser,
    state: State,
    distance: Annotated[
        int | None,
        Query(
            ge=0,
            le=32,
            description="most bits two perceptual hashes may differ in to be near duplicates "
            "(default: the `IMGPROC_NEAR_DUPLICATE_DISTANCE` setting, 12)",
        ),
    ] = None,
) -> DuplicatesOut:
    """Groups of my images that are the same photo: `exact` (an original and the uploads of the
    same bytes recorded as DUPLICATE of it) and `near` (resized, re-encoded or slightly cropped
    copies: processed images whose 64-bit perceptual hashes are within `distance`)."""
    max_distance = state.settings.near_duplicate_distance if distance is None else distance
    groups = await duplicate_groups(state.catalog, user.id, max_distance)
    wanted = list(dict.fromkeys(i for group in groups for i in group.image_ids))
    records = {r.image_id: r for r in await state.catalog.get_images(wanted) if r.owner == user.id}
    out: list[DuplicateGroupOut] = []
    for group in groups:
        images = [await state.view(records[i]) for i in group.image_ids if i in records]
        if len(images) > 1:  # a member deleted meanwhile may leave a group of one
            out.append(DuplicateGroupOut(kind=group.kind, distance=group.distance, images=images))
    return DuplicatesOut(groups=out)
