"""What the embedded endpoint serves, counted by service and action: always on.

`imgproc loadtest` reads it (GET `/_imgproc/stats`) to report the AWS API calls per image, and
`persistence` to skip a snapshot when nothing changed. Requests that the hosting process makes
with its own aiobotocore clients (`imgproc up`'s bootstrap, snapshots and queue watching) carry
a marker header and are counted apart, as housekeeping that AWS would not see. The service
tasks that `moto_speedups` serves in process are counted as the API calls they are
(`count_in_process`).
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs

from imgproc_local import moto_patches

STATS_PATH = "/_imgproc/stats"


def install() -> None:
    """Count every request from now on, and serve the counts at `STATS_PATH` (idempotent)."""
    moto_patches.apply("measurement", PATCHES)


LOCAL_ORIGIN_HEADER = "X-Imgproc-Local-Origin"
_LOCAL_ORIGIN_ENVIRON = "HTTP_X_IMGPROC_LOCAL_ORIGIN"
_requests: Counter[tuple[str, str]] = Counter()
_housekeeping: Counter[tuple[str, str]] = Counter()
_served_in_process: Counter[tuple[str, str]] = Counter()  # part of _requests, not over HTTP
# CPU seconds in moto's handlers, by action (HTTP and in-process requests).
_request_cpu_s: defaultdict[tuple[str, str], float] = defaultdict(float)
_requests_lock = threading.Lock()
_counting_since = time.time()
# More sections of the report, by name: a speed-up's own statistics (its cache hits).
_sections: dict[str, Callable[[], Any]] = {}


def add_section(name: str, read: Callable[[], Any]) -> None:
    """Report `read()` under `name` in `request_counts`."""
    _sections[name] = read


def count_in_process(service: str, action: str, cpu_s: float) -> None:
    """Count a request served without HTTP (a service task's call, handled in process)."""
    with _requests_lock:
        _requests[(service, action)] += 1
        _served_in_process[(service, action)] += 1
        _request_cpu_s[(service, action)] += cpu_s


def request_counts() -> dict[str, Any]:
    """What the embedded server has served since it started, by service and action."""
    with _requests_lock:
        snapshot = dict(_requests)
        housekeeping = dict(_housekeeping)
        in_process = dict(_served_in_process)
        cpu = {key: round(value, 4) for key, value in _request_cpu_s.items()}
    return {
        "since": _counting_since,
        "total": sum(snapshot.values()),
        "requests": _by_service(snapshot),
        "housekeeping_requests": _by_service(housekeeping),
        "served_in_process": _by_service(in_process),
        "request_cpu_s": _by_service(cpu),
        "speedups": sorted(moto_patches.installed("speedup")),
        **{name: read() for name, read in _sections.items()},
    }


def _by_service(counts: dict[tuple[str, str], Any]) -> dict[str, dict[str, Any]]:
    by_service: dict[str, dict[str, Any]] = {}
    for (service, action), count in sorted(counts.items()):
        by_service.setdefault(service, {})[action] = count
    return by_service


def _service_of(environ: dict[str, Any], query: dict[str, list[str]]) -> str:
    auth = environ.get("HTTP_AUTHORIZATION", "")
    credential = ""
    if "Credential=" in auth:
        credential = auth.split("Credential=", 1)[1].split(",", 1)[0]
    elif "X-Amz-Credential" in query:
        credential = query["X-Amz-Credential"][0]
    parts = credential.split("/")
    return parts[3] if len(parts) >= 5 else "unknown"


_S3_ACTIONS = {
    "PUT": "PutObject",
    "POST": "PostObject",
    "GET": "GetObject",
    "HEAD": "HeadObject",
    "DELETE": "DeleteObject",
}


def _action_of(environ: dict[str, Any], service: str, query: dict[str, list[str]]) -> str:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return str(target.rsplit(".", 1)[-1])
    if "Action" in query:
        return query["Action"][0]
    method = str(environ.get("REQUEST_METHOD", "GET"))
    if service == "s3":
        path = str(environ.get("PATH_INFO", "")).strip("/")
        if "/" not in path:  # bucket-level: ListObjects, CreateBucket, notifications...
            return f"{method}Bucket"
        return _S3_ACTIONS.get(method, method)
    content_type = str(environ.get("CONTENT_TYPE", ""))
    if content_type.startswith("application/x-www-form-urlencoded"):
        # Query protocol (SNS): the action is in the form body; read it and put it back.
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if 0 < length <= 1 << 20:
            body = environ["wsgi.input"].read(length)
            environ["wsgi.input"] = io.BytesIO(body)
            form = parse_qs(body.decode("utf-8", "replace"))
            if "Action" in form:
                return str(form["Action"][0])
    return method


def _patch_request_counter() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    original_call = DomainDispatcherApplication.__call__

    def call(self: Any, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path == STATS_PATH:
            body = json.dumps(request_counts()).encode()
            start_response(
                "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        if path.startswith("/moto-api"):
            moto_api: Iterable[bytes] = original_call(self, environ, start_response)
            return moto_api
        cpu_before = time.thread_time()
        query = parse_qs(str(environ.get("QUERY_STRING", "")))
        service = _service_of(environ, query)
        key = (service, _action_of(environ, service, query))
        local = _LOCAL_ORIGIN_ENVIRON in environ
        result: Iterable[bytes] = original_call(self, environ, start_response)
        # CPU of this request's thread in the application (parsing, backend, serializing):
        # where the endpoint's time goes, by action (the HTTP server's own share is not in it).
        cpu = time.thread_time() - cpu_before
        with _requests_lock:
            (_housekeeping if local else _requests)[key] += 1
            if not local:
                _request_cpu_s[key] += cpu
        return result

    DomainDispatcherApplication.__call__ = call  # type: ignore[method-assign]


def _patch_local_origin() -> None:
    """Mark requests sent by this process's own aiobotocore clients (the hosting `up` process's
    bootstrap and snapshots; the interpreter's boto3 clients are untouched)."""
    from aiobotocore.httpsession import AIOHTTPSession

    original_send = AIOHTTPSession.send

    async def send(self: Any, request: Any) -> Any:
        request.headers[LOCAL_ORIGIN_HEADER] = "1"
        return await original_send(self, request)

    AIOHTTPSession.send = send  # type: ignore[method-assign]


PATCHES: list[moto_patches.Patch] = [
    ("request_counter", _patch_request_counter),
    ("local_origin", _patch_local_origin),
]
