"""Fuzz the status API from its own OpenAPI document (schemathesis).

Every operation of the document gets generated requests, valid and invalid, sent as a
signed-in user; path ids are, half the time, ids that exist (so the 2xx answers are checked
too, not only 404s). Every answer must not be a 5xx and must match the document: a documented
status code and content type, a body that fits the documented schema, and 401 without the token.

One pytest test per operation; bounded (a few examples each) and deterministic (derandomized,
no example database), so CI sees the same requests every run.

(schemathesis' `from_fixture` integration does not run on pytest 9.2 (it writes
`Node._nodeid`), so operations are parametrized here and driven with `as_strategy`.)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import schemathesis
from helpers import make_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation

from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.settings import Settings
from imgproc_status_api.app import create_app
from imgproc_status_api.config import ApiSettings

from security_harness import ThreadedApi, UserData, threaded_api, wait_for

MAX_EXAMPLES = 20

# The document, built from the app without serving it (the running API must publish the same).
DOCUMENT = create_app(
    Settings(), api_settings=ApiSettings(auth_secret="unused-but-long-enough-for-hs256")
).openapi()
SCHEMA = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=SchemathesisConfig.from_dict(
        {
            "seed": 20240601,
            # The token goes on every request (below); generating the Authorization header
            # too would turn "header removed" cases valid again once it is added.
            "generation": {
                "deterministic": True,
                "database": "none",
                "with-security-parameters": False,
            },
            # The album's event stream never ends: read its first event, then hang up.
            "max-stream-events": 1,
            "request-timeout": 15,
            # One operation per entry, by name: schemathesis ORs an entry's `include-*` filters,
            # so a path and a method would pick every operation with either.
            "operations": [
                {
                    # The size limit is a setting (IMGPROC_MAX_UPLOAD_BYTES), so the document
                    # states it as a 413 answer, not as a maximum in the schema.
                    "include-name": "POST /api/albums/{album_id}/uploads",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "401", "404", "413"]
                        }
                    },
                },
                # Search: a date that fits the pattern may not exist (2024-02-30), `from` may
                # be after `to`, a place out of range, a cursor not issued here: 400 each.
                *(
                    {
                        "include-name": name,
                        "checks": {
                            "positive_data_acceptance": {"expected-statuses": ["2xx", "400", "401"]}
                        },
                    }
                    for name in ("GET /api/images", "GET /api/labels")
                ),
                {
                    # The cursor is opaque: any string fits the document, only the ones this
                    # API issued are accepted (others are answered 400 `invalid_cursor`).
                    "include-name": "GET /api/albums/{album_id}/images",
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "401", "404"]
                        }
                    },
                },
            ],
        }
    ),
)
OPERATIONS: list[APIOperation] = []
for _result in SCHEMA.get_all_operations():
    assert isinstance(_result, Ok), _result  # the document itself is sound
    OPERATIONS.append(_result.ok())


# Operations that succeed only on a state the fuzz does not make (a FAILED image, a dead
# letter): their answers are still checked against the document; their successes are tested
# in tests/api/test_api_retry.py.
NEEDS_STATE = {
    "POST /api/images/{image_id}/retry",
    "POST /api/operators/images/{image_id}/retry",
    "GET /api/operators/dead-letters/{queue}/{message_id}",
}


def file_parts(operation: APIOperation) -> frozenset[str]:
    """The multipart fields of `operation` that carry a file (`contentMediaType`)."""
    body = DOCUMENT["paths"][operation.path][operation.method.lower()].get("requestBody", {})
    schema = body.get("content", {}).get("multipart/form-data", {}).get("schema", {})
    if "$ref" in schema:
        schema = DOCUMENT["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    properties = schema.get("properties", {})
    return frozenset(name for name, field in properties.items() if "contentMediaType" in field)


def negates(case: Any, location: ParameterLocation) -> bool:
    component = case.meta.components.get(location) if case.meta else None
    return component is not None and component.mode.is_negative


@pytest.fixture(scope="module")
def api(embedded_aws: EmbeddedAws) -> Iterator[ThreadedApi]:
    # With the starter, uploads get real executions, so `/execution` answers 200 too.
    with threaded_api(make_settings(embedded_aws.endpoint_url), run_starter=True) as served:
        assert served.client.get("/openapi.json").json() == DOCUMENT
        yield served


@dataclass
class FuzzUser:
    """The fuzzer's things to read, and others of its own for the deletes to find."""

    reads: UserData
    album_deletes: UserData
    image_deletes: UserData


@pytest.fixture(scope="module")
def user(api: ThreadedApi) -> FuzzUser:
    user = api.seed_user("fuzzer")
    seeded = FuzzUser(
        user, api.seed_user("fuzzer", "doomed album"), api.seed_user("fuzzer", "doomed images")
    )

    def has_execution() -> bool:
        image = api.client.get(f"/api/images/{user.image_id}", headers=user.headers).json()
        return bool(image.get("execution_arn"))

    wait_for(has_execution, timeout=30, what="the seeded image's execution")
    return seeded


def existing_ids(operation: APIOperation, user: FuzzUser) -> dict[str, list[str]]:
    # Deletes get ids of their own, so the other operations keep finding what they read.
    album, images = user.reads, user.reads
    if operation.method.upper() == "DELETE":
        album, images = user.album_deletes, user.image_deletes
    return {
        "album_id": [album.album_id],
        "image_id": [images.image_id, images.upload_id],
        "queue": ["extract", "tag", "thumbnail", "ingest", "status-events"],
    }


@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: f"{op.method.upper()} {op.path}")
def test_answers_match_the_openapi_document(
    operation: APIOperation, api: ThreadedApi, user: FuzzUser
) -> None:
    headers = {"Authorization": f"Bearer {user.reads.token}"}
    ids = existing_ids(operation, user)
    cases = st.one_of(
        operation.as_strategy(GenerationMode.POSITIVE),
        operation.as_strategy(GenerationMode.NEGATIVE),
    )
    # Per path parameter: None keeps the generated value, else an id that exists.
    substitutes = st.fixed_dictionaries(
        {
            name: st.one_of(st.sampled_from(ids[name]), st.none())
            for name in (parameter.name for parameter in operation.path_parameters)
            if name in ids
        }
    )

    @given(case=cases, substitute=substitutes)
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: Any, substitute: dict[str, str | None]) -> None:
        # A path the case negates keeps its invalid ids: schemathesis judges a case by what it
        # mutated, so a negated path made valid would make it expect a refusal for nothing.
        chosen = {
            name: value
            for name, value in substitute.items()
            if value is not None and not negates(case, ParameterLocation.PATH)
        }
        body = case.body
        if isinstance(body, dict):
            # A file part is bytes on the wire whatever JSON type was generated for it: a list
            # goes as its JSON text, which is as good a file as any (it is rejected later, as
            # not an image). Written as sent, so schemathesis judges the request the server got
            # instead of expecting a "wrong type" to be refused. Only reassigned when changed:
            # an assignment makes schemathesis revalidate the body.
            typed = {
                name: json.dumps(body[name])
                for name in file_parts(operation) & body.keys()
                if not isinstance(body[name], str | bytes)
            }
            if typed:
                case.body = {**body, **typed}
        if chosen:
            # Assigned, not updated in place: schemathesis then re-checks whether a negative
            # case is still negative.
            case.path_parameters = {**case.path_parameters, **chosen}
        sent = headers
        if operation.path == "/api/auth/sign-out":
            # Each sign-out revokes its token: a token of its own, so the others keep working.
            sent = {"Authorization": f"Bearer {api.sign_in('fuzzer')}"}
        response = case.call_and_validate(base_url=api.base_url, headers=sent)
        statuses.append(response.status_code)

    statuses: list[int] = []
    fuzz()
    # The fuzzer got past identity and validation at least once: the successful answers were
    # checked against the document too, not only the errors.
    if f"{operation.method.upper()} {operation.path}" in NEEDS_STATE:
        return
    assert any(status < 400 for status in statuses), statuses
