"""Search across the caller's albums (`GET /api/images`) and the label facets for a search
(`GET /api/labels`), answered from the search index (`imgproc_shared.search`)."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import Field

from imgproc_shared.models import IMAGE_ID_PATTERN
from imgproc_shared.search import (
    InvalidFilter,
    SearchFilter,
    SearchIndex,
    decode_cursor,
    encode_cursor,
    parse_near,
    parse_time_bound,
)
from imgproc_status_api.api.deps import CurrentUser, State
from imgproc_status_api.errors import ERROR_RESPONSES, ApiError
from imgproc_status_api.schemas import ImagePage, LabelCount, LabelFacets


class _ParametersAnswer400(APIRoute):
    """Bad query parameters are answered 400 `invalid_parameter`, naming the parameter."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                reasons = [
                    f"{error.get('loc', ('', '?'))[-1]}: {error.get('msg', 'invalid')}"
                    for error in exc.errors()[:5]
                ]
                raise ApiError(400, "invalid_parameter", "; ".join(reasons)) from exc

        return handle


router = APIRouter(
    prefix="/api", tags=["search"], responses=ERROR_RESPONSES, route_class=_ParametersAnswer400
)

_DATE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?)?$"
_NUMBER = r"-?\d{1,3}(\.\d{1,12})?"

Labels = Annotated[
    list[str],
    Query(
        max_length=10,
        description="a label or a parent of one (`Animal` finds dogs); repeat to require several",
    ),
]
From = Annotated[
    str | None,
    Query(
        alias="from",
        pattern=_DATE,
        description="taken on or after (ISO date or datetime; the camera's clock, else the "
        "upload time)",
    ),
]
To = Annotated[
    str | None, Query(pattern=_DATE, description="taken on or before (a date includes its day)")
]
Camera = Annotated[
    str | None,
    Query(min_length=1, max_length=100, description="text in the camera's make and model"),
]
Album = Annotated[str | None, Query(pattern=IMAGE_ID_PATTERN, description="an album id")]
Format = Annotated[
    str | None, Query(pattern=r"^[A-Za-z0-9]{1,10}$", description="e.g. JPEG, PNG, HEIF")
]
Status = Annotated[
    str | None, Query(pattern=r"^[A-Za-z_]{1,20}$", description="e.g. PROCESSED, FAILED")
]
Near = Annotated[
    str | None,
    Query(
        pattern=rf"^{_NUMBER},{_NUMBER},\d{{1,5}}(\.\d{{1,6}})?$",
        description="`LAT,LON,KM`: taken within KM kilometres of the point",
    ),
]


async def search_filters(
    label: Labels = [],  # noqa: B006 (FastAPI copies defaults)
    taken_from: From = None,
    to: To = None,
    camera: Camera = None,
    album: Album = None,
    format: Format = None,
    status: Status = None,
    near: Near = None,
) -> SearchFilter:
    """The filters both search endpoints take, as one search filter (400 naming a bad one)."""
    try:
        for name in label:
            if not name.strip() or len(name) > 100:
                raise InvalidFilter("label", "must be 1-100 characters")
        return SearchFilter(
            labels=tuple(name.strip() for name in label),
            taken_from=parse_time_bound("from", taken_from, end=False) if taken_from else None,
            taken_to=parse_time_bound("to", to, end=True) if to else None,
            camera=camera.strip() or None if camera else None,
            album_id=album,
            format=format.upper() if format else None,
            status=status.upper() if status else None,
            near=parse_near(near) if near else None,
        )
    except InvalidFilter as exc:
        raise ApiError(400, "invalid_parameter", str(exc)) from exc


Filters = Annotated[SearchFilter, Depends(search_filters)]


class SearchResults(ImagePage):
    next_cursor: str | None = Field(
        default=None,
        description="pass back as `cursor` for the images after these; null when there are "
        "none. One request reads at most one page of index entries beyond the images it "
        "returns, so a search whose filters reject most entries can answer fewer than `limit` "
        "images, even none, with a cursor: keep following it until the page is full or the "
        "cursor is null.",
    )


@router.get("/images")
async def search_images(
    user: CurrentUser,
    state: State,
    flt: Filters,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="the previous answer's `next_cursor`")
    ] = None,
) -> SearchResults:
    """The caller's images across albums that pass every given filter, newest capture first
    (`taken_at`, else the upload time); pass `next_cursor` back for the next page. A page may
    hold fewer than `limit` images while `next_cursor` is set (see `next_cursor`)."""
    try:
        after = decode_cursor(cursor) if cursor else None
    except InvalidFilter as exc:
        raise ApiError(400, "invalid_cursor", str(exc)) from exc
    page = await SearchIndex(state.aws, state.names).search(user.id, flt, limit=limit, after=after)
    records = await state.catalog.get_images([entry.image_id for entry in page.entries])
    by_id = {r.image_id: r for r in records if r.owner == user.id}
    items = [
        await state.view(by_id[entry.image_id]) for entry in page.entries if entry.image_id in by_id
    ]
    next_cursor = encode_cursor(page.next_after) if page.next_after else None
    return SearchResults(items=items, next_cursor=next_cursor)


@router.get("/labels")
async def label_facets(
    user: CurrentUser,
    state: State,
    flt: Filters,
    prefix: Annotated[
        str | None, Query(max_length=100, description="labels starting with this (any case)")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> LabelFacets:
    """How many of the caller's images that pass the filters carry each label (parents
    included), most frequent first: suggestions for the search box."""
    counts, complete = await SearchIndex(state.aws, state.names).label_counts(
        user.id, flt, prefix=prefix or "", limit=limit
    )
    return LabelFacets(
        labels=[LabelCount(name=name, count=count) for name, count in counts], complete=complete
    )
