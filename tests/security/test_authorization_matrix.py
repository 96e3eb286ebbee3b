"""Who may call what: every operation of the OpenAPI document, enumerated at run time (a new
endpoint is covered without touching this file), called

- without a token: 401 with the JSON error shape, except health and sign-in;
- with expired, tampered and foreign tokens: 401;
- by a second user with each of the first user's ids (album, image, granted upload): 404 with
  nothing of the first user's in the body, and nothing changed.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from helpers import make_settings

from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.models import ImageStatus, TagResult
from imgproc_shared.resources import Queue
from imgproc_shared.search import SearchIndex
from imgproc_status_api.auth import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalTokens
from imgproc_status_api.config import ApiSettings

from security_harness import (
    AUTH_SECRET,
    ThreadedApi,
    UserData,
    small_jpeg,
    threaded_api,
)

# How to sign in (auth-config) is asked before anyone is signed in.
PUBLIC_OPERATIONS = {
    ("GET", "/healthz"),
    ("POST", "/api/auth/sign-in"),
    ("GET", "/api/auth-config"),
}
# Operator views are not owned by anyone (see test_dead_letters_do_not_show_other_users_images).
UNOWNED_PATH_PARAMETERS = {"queue", "message_id"}
# Operator routes act on every user's things by design (who is an operator is checked in
# test_only_operators_see_and_act_on_dead_letters); ownership applies to the rest.
OPERATOR_PREFIX = "/api/operators/"
# A valid body for every request schema the API takes. A new schema fails the test until a
# body is added here, so no operation is silently skipped.
VALID_BODIES: dict[str, Any] = {
    "SignIn": {"username": "matrix-someone"},
    "AlbumCreate": {"name": "matrix album"},
    "UploadRequest": {"file_name": "x.jpg", "content_type": "image/jpeg", "size": 10},
    "ReplayIn": {"dry_run": True},
    "PurgeIn": {"confirm": True},
    "DeleteIn": {"message_ids": ["00000000-0000-0000-0000-000000000000"]},
    "RetagIn": {"dry_run": True},
}
MULTIPART_FILE = {"file": ("x.jpg", small_jpeg(), "image/jpeg")}


@pytest.fixture(scope="module")
def api(embedded_aws: EmbeddedAws) -> Iterator[ThreadedApi]:
    with threaded_api(make_settings(embedded_aws.endpoint_url)) as served:
        yield served


@pytest.fixture(scope="module")
def owner(api: ThreadedApi) -> UserData:
    return api.seed_user("matrix-owner")


@pytest.fixture(scope="module")
def intruder(api: ThreadedApi) -> UserData:
    return api.seed_user("matrix-intruder")


@pytest.fixture(scope="module")
def operations(api: ThreadedApi) -> list[tuple[str, str, dict[str, Any]]]:
    document = api.client.get("/openapi.json").json()
    found = [
        (method.upper(), path, spec)
        for path, item in document["paths"].items()
        for method, spec in item.items()
        if method in ("get", "post", "put", "patch", "delete")
    ]
    assert len(found) >= 15, found  # the document really was read
    return found


def path_parameters(path: str) -> list[str]:
    return re.findall(r"\{(\w+)\}", path)


def request_kwargs(spec: dict[str, Any]) -> dict[str, Any]:
    """A valid body for the operation, so only identity decides the answer."""
    content = spec.get("requestBody", {}).get("content", {})
    if not content:
        return {}
    if "multipart/form-data" in content:
        return {"files": MULTIPART_FILE}
    ref = content["application/json"]["schema"]["$ref"]
    name = ref.rsplit("/", 1)[1]
    assert name in VALID_BODIES, f"add a valid {name} body to VALID_BODIES"
    return {"json": VALID_BODIES[name]}


def fill(path: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def call(
    api: ThreadedApi, method: str, url: str, headers: dict[str, str], spec: dict[str, Any]
) -> httpx.Response:
    # Every answer here is immediate; the event stream only streams for its owner.
    return api.client.request(method, url, headers=headers, timeout=10, **request_kwargs(spec))


def assert_error(response: httpx.Response, status: int, codes: set[str]) -> dict[str, Any]:
    assert response.status_code == status, (response.request.url, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] in codes, body
    assert isinstance(body["message"], str) and body["message"]
    return body


def some_ids(user: UserData) -> dict[str, str]:
    return {
        "album_id": user.album_id,
        "image_id": user.image_id,
        "queue": "extract",
        "message_id": "00000000-0000-0000-0000-000000000000",
    }


# ---------- no token ----------


def test_every_operation_but_health_and_sign_in_needs_a_token(
    api: ThreadedApi, owner: UserData, operations: list[tuple[str, str, dict[str, Any]]]
) -> None:
    public = set()
    for method, path, spec in operations:
        url = fill(path, some_ids(owner))
        for headers in ({}, {"Authorization": "Basic bWF0cml4OnB3"}, {"Authorization": "Bearer"}):
            response = call(api, method, url, headers, spec)
            if (method, path) in PUBLIC_OPERATIONS:
                assert response.status_code < 400, (method, path, response.text)
                public.add((method, path))
                continue
            assert_error(response, 401, {"unauthorized"})
            assert response.headers.get("www-authenticate") == "Bearer"
    assert public == PUBLIC_OPERATIONS  # all still exist, so the exemption is not stale


# ---------- bad tokens ----------


def _segments(token: str) -> list[str]:
    return token.split(".")


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(sub: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "sub": sub,
        "iss": LOCAL_ISSUER,
        "aud": LOCAL_AUDIENCE,
        "iat": now,
        "exp": now + 600,
        **overrides,
    }


def bad_tokens(owner: UserData, intruder: UserData) -> dict[str, str]:
    """Tokens that must all be refused; each would otherwise act as `owner`."""
    header, payload, signature = _segments(intruder.token)
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    flipped = signature[:-2] + ("AA" if not signature.endswith("AA") else "BB")
    return {
        "expired": LocalTokens(AUTH_SECRET, ttl_s=60).issue(owner.name, now=time.time() - 3600),
        "subject swapped, signature kept": ".".join(
            [header, _b64({**claims, "sub": owner.name}), signature]
        ),
        "signature altered": ".".join([header, payload, flipped]),
        "signature removed": f"{header}.{payload}.",
        "alg none": ".".join([_b64({"alg": "none", "typ": "JWT"}), _b64(_claims(owner.name)), ""]),
        "another secret": jwt.encode(
            _claims(owner.name), "another-secret-of-the-same-length-0123456789", algorithm="HS256"
        ),
        "HS512 with the secret": jwt.encode(_claims(owner.name), AUTH_SECRET, algorithm="HS512"),
        "wrong audience": jwt.encode(
            _claims(owner.name, aud="someone-else"), AUTH_SECRET, algorithm="HS256"
        ),
        "wrong issuer": jwt.encode(
            _claims(owner.name, iss="someone-else"), AUTH_SECRET, algorithm="HS256"
        ),
        "no expiry": jwt.encode(
            {k: v for k, v in _claims(owner.name).items() if k != "exp"},
            AUTH_SECRET,
            algorithm="HS256",
        ),
        "subject with a path": jwt.encode(
            _claims(f"../{owner.name}"), AUTH_SECRET, algorithm="HS256"
        ),
        "not a jwt": "matrix-owner",
    }


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_expired_and_tampered_tokens_are_refused(
    api: ThreadedApi,
    owner: UserData,
    intruder: UserData,
    operations: list[tuple[str, str, dict[str, Any]]],
) -> None:
    protected = [op for op in operations if (op[0], op[1]) not in PUBLIC_OPERATIONS]
    for what, token in bad_tokens(owner, intruder).items():
        headers = {"Authorization": f"Bearer {token}"}
        for method, path, spec in protected:
            response = call(api, method, fill(path, some_ids(owner)), headers, spec)
            codes = {"token_expired"} if what == "expired" else {"unauthorized"}
            body = assert_error(response, 401, codes)
            assert owner.album_id not in response.text, (what, method, path, body)
    # The real tokens still work: the refusals above were about the tokens alone.
    me = api.client.get("/api/auth/me", headers=owner.headers)
    assert me.status_code == 200 and me.json()["id"] == owner.name


# ---------- another user's ids ----------


def owner_secrets(api: ThreadedApi, owner: UserData) -> list[str]:
    """Strings that only someone who can see the owner's things would know."""
    album = api.client.get(f"/api/albums/{owner.album_id}", headers=owner.headers).json()
    image = api.client.get(f"/api/images/{owner.image_id}", headers=owner.headers).json()
    return [album["name"], album["created_at"], image["file_name"], image["uploaded_at"]]


def test_another_users_ids_answer_404_and_change_nothing(
    api: ThreadedApi,
    owner: UserData,
    intruder: UserData,
    operations: list[tuple[str, str, dict[str, Any]]],
) -> None:
    secrets = owner_secrets(api, owner)
    checked = 0
    for method, path, spec in operations:
        names = [p for p in path_parameters(path) if p not in UNOWNED_PATH_PARAMETERS]
        if not names or path.startswith(OPERATOR_PREFIX):
            continue
        for name in names:
            # Each owned id of the other user in turn, the rest the intruder's own.
            candidates = {
                "album_id": [owner.album_id],
                "image_id": [owner.image_id, owner.upload_id],
            }
            assert name in candidates, f"{method} {path}: unknown id parameter {name}"
            for foreign in candidates[name]:
                values = {**some_ids(intruder), name: foreign}
                response = call(api, method, fill(path, values), intruder.headers, spec)
                kind = name.removesuffix("_id")
                assert_error(response, 404, {f"{kind}_not_found"})
                for secret in secrets:
                    assert secret not in response.text, (method, path, secret)
                checked += 1
    assert checked >= 10, checked
    # Nothing the intruder tried (deletes, uploads into the album) touched the owner's things.
    album = api.client.get(f"/api/albums/{owner.album_id}/images", headers=owner.headers)
    assert album.status_code == 200
    assert {i["image_id"] for i in album.json()["items"]} == {owner.image_id, owner.upload_id}
    assert owner_secrets(api, owner) == secrets


def test_unowned_listings_show_only_the_callers_things(
    api: ThreadedApi, owner: UserData, intruder: UserData
) -> None:
    albums = api.client.get("/api/albums", headers=intruder.headers).json()["items"]
    assert {a["album_id"] for a in albums} == {intruder.album_id}
    assert owner.album_id not in json.dumps(albums)
    me = api.client.get("/api/auth/me", headers=intruder.headers).json()
    # With no operator list configured, every signed-in user of the one-machine stack is one.
    assert me == {"id": intruder.name, "name": intruder.name, "operator": True}


def test_a_forged_cursor_cannot_reach_into_another_album(
    api: ThreadedApi, owner: UserData, intruder: UserData
) -> None:
    # A cursor positioned at the owner's image, used on the intruder's album.
    position = json.dumps(["9999-12-31T23:59:59", owner.image_id]).encode()
    cursor = base64.urlsafe_b64encode(position).decode().rstrip("=")
    response = api.client.get(
        f"/api/albums/{intruder.album_id}/images",
        params={"cursor": cursor},
        headers=intruder.headers,
    )
    assert response.status_code == 200, response.text
    assert {i["album_id"] for i in response.json()["items"]} <= {intruder.album_id}
    assert owner.image_id not in response.text and owner.upload_id not in response.text


def test_only_operators_see_and_act_on_dead_letters(
    api: ThreadedApi, owner: UserData, intruder: UserData
) -> None:
    """Dead letters name every user's images: with `IMGPROC_OPERATORS` set, only they may look."""
    state = api.app.state.api

    async def dead_letter() -> None:
        name = state.names.dead_letter_queue(Queue.TAG)
        url = (await state.aws.sqs.get_queue_url(QueueName=name))["QueueUrl"]
        body = {"image_id": owner.image_id, "stage": "tag", "task_token": "t"}
        await state.aws.sqs.send_message(QueueUrl=url, MessageBody=json.dumps(body))

    api.on_api_loop(dead_letter())
    everyone = state.api_settings
    state.api_settings = everyone.model_copy(update={"operators": [owner.name]})
    try:
        for method, path, body in (
            ("GET", "/api/operators/queues", None),
            ("GET", "/api/operators/dead-letters", None),
            ("GET", "/api/operators/dead-letters/tag", None),
            ("POST", "/api/operators/dead-letters/tag/replay", {"dry_run": True}),
            ("POST", "/api/operators/dead-letters/tag/purge", {"confirm": True}),
            ("GET", "/api/operators/dead-letters/tag/00000000-0000-0000-0000-000000000000", None),
            ("POST", "/api/operators/dead-letters/tag/delete", {"message_ids": ["x"]}),
            ("POST", f"/api/operators/images/{owner.image_id}/retry", None),
        ):
            refused = api.client.request(method, path, json=body, headers=intruder.headers)
            assert refused.status_code == 403, (path, refused.text)
            assert refused.json()["code"] == "operator_only"
            assert owner.image_id not in refused.text
        allowed = api.client.get("/api/operators/dead-letters/tag", headers=owner.headers)
        assert allowed.status_code == 200 and owner.image_id in allowed.text
    finally:
        state.api_settings = everyone


def test_who_is_an_operator() -> None:
    assert ApiSettings(_env_file=None).is_operator("anyone"), "one machine: its users operate it"
    assert not ApiSettings(cognito_issuer="https://idp.example").is_operator("anyone")
    listed = ApiSettings(operators="alice, bob", cognito_issuer="https://idp.example")
    assert listed.is_operator("bob") and not listed.is_operator("mallory")


def test_duplicates_list_only_the_callers_images(api: ThreadedApi) -> None:
    """Groups are made from the caller's images only: another owner's image with the same
    perceptual hash (or the same bytes) never joins or shows."""
    mine, theirs = api.seed_user("matrix-dup-mine"), api.seed_user("matrix-dup-theirs")
    state = api.app.state.api
    phash = {"renditions": [], "phash": "00ff00ff00ff00ff"}

    async def seed() -> None:
        for user in (mine, theirs):
            await state.aws.dynamodb.update_item(
                TableName=state.catalog.images_table,
                Key={"image_id": {"S": user.image_id}},
                UpdateExpression="SET #s = :processed, thumbnails = :t",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":processed": {"S": "PROCESSED"},
                    ":t": {"S": json.dumps(phash)},
                },
            )
            copy = await state.catalog.record_upload(
                image_id=f"{user.name}-copy",
                owner=user.name,
                album_id=user.album_id,
                bucket=state.names.bucket,
                key=f"incoming/{user.name}/{user.album_id}/{user.name}-copy.jpg",
                file_name="copy.jpg",
            )
            await state.aws.dynamodb.update_item(
                TableName=state.catalog.images_table,
                Key={"image_id": {"S": copy.image_id}},
                UpdateExpression="SET #s = :duplicate, duplicate_of = :original",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":duplicate": {"S": "DUPLICATE"},
                    ":original": {"S": user.image_id},
                },
            )

    api.on_api_loop(seed())
    for user, other in ((mine, theirs), (theirs, mine)):
        response = api.client.get("/api/duplicates", headers=user.headers)
        assert response.status_code == 200, response.text
        groups = response.json()["groups"]
        assert [[i["image_id"] for i in g["images"]] for g in groups] == [
            [user.image_id, f"{user.name}-copy"]
        ]
        assert other.image_id not in response.text and other.name not in response.text
    # The intruder's view of the owner's duplicate: the ordinary 404, nothing shown through it.
    response = api.client.get(f"/api/images/{mine.name}-copy", headers=theirs.headers)
    assert_error(response, 404, {"image_not_found"})


def test_a_signed_out_token_is_refused_by_every_operation(
    api: ThreadedApi, owner: UserData, operations: list[tuple[str, str, dict[str, Any]]]
) -> None:
    """After `POST /api/auth/sign-out` the token is worth nothing, on every operation (the
    original's download link included), while the owner's other tokens still work."""
    token = api.sign_in(owner.name)
    headers = {"Authorization": f"Bearer {token}"}
    signed_out = api.client.post("/api/auth/sign-out", headers=headers)
    assert signed_out.status_code == 204, signed_out.text
    protected = [op for op in operations if (op[0], op[1]) not in PUBLIC_OPERATIONS]
    assert ("GET", "/api/images/{image_id}/original") in {(m, p) for m, p, _ in protected}
    for method, path, spec in protected:
        ids = {"message_id": "any-message", **some_ids(owner)}
        response = call(api, method, fill(path, ids), headers, spec)
        assert_error(response, 401, {"token_revoked"})
        assert owner.album_id not in response.text, (method, path)
    assert api.client.get("/api/auth/me", headers=owner.headers).status_code == 200


def test_search_and_label_facets_show_only_the_callers_images(
    api: ThreadedApi, owner: UserData, intruder: UserData
) -> None:
    """`GET /api/images` and `GET /api/labels` take no ids to refuse: what they answer is
    scoped to the caller, whatever filters (the owner's album id included) are passed."""
    state = api.app.state.api

    async def index_as_processed(user: UserData) -> None:
        record = await state.catalog.get_image(user.image_id)
        labels = [{"name": "Secret Dog", "confidence": 90.0, "parents": ["Animal"]}]
        assert record is not None
        processed = record.model_copy(
            update={
                "status": ImageStatus.PROCESSED,
                "tags": TagResult.model_validate({"labels": labels, "backend": "test"}),
            }
        )
        await SearchIndex(state.aws, state.names).index_record(processed)

    api.on_api_loop(index_as_processed(owner))
    api.on_api_loop(index_as_processed(intruder))
    mine = api.client.get("/api/images", headers=owner.headers).json()["items"]
    assert [i["image_id"] for i in mine] == [owner.image_id]
    for params in ({}, {"album": owner.album_id}, {"label": "Secret Dog"}):
        found = api.client.get("/api/images", params=params, headers=intruder.headers)
        assert found.status_code == 200, found.text
        assert {i["owner"] for i in found.json()["items"]} <= {intruder.name}
        assert owner.image_id not in found.text and owner.album_id not in found.text
        facets = api.client.get("/api/labels", params=params, headers=intruder.headers).json()
        assert all(entry["count"] <= 1 for entry in facets["labels"]), facets
    facets = api.client.get(
        "/api/labels", params={"album": owner.album_id}, headers=intruder.headers
    )
    assert facets.json()["labels"] == []
