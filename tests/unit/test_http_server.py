"""The embedded endpoint's HTTP server (`imgproc_local.http_server`), against a small WSGI
application over real sockets: what botocore and the web client send is served, bad requests
get a clear answer, and a stop closes every connection and joins every thread."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from imgproc_local.http_server import MAX_HEAD_BYTES, ConnectionServer

slow_started = threading.Event()


def echo_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    """Answers with what it was given; `/fail` raises, `/slow` takes 0.3 s (`slow_started`
    is set when it begins)."""
    path = environ["PATH_INFO"]
    if path == "/fail":
        raise RuntimeError("the application broke")
    if path == "/slow":
        slow_started.set()
        time.sleep(0.3)
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    seen = {
        "method": environ["REQUEST_METHOD"],
        "path": path,
        "query": environ["QUERY_STRING"],
        "request_uri": environ["REQUEST_URI"],
        "content_length": environ["CONTENT_LENGTH"],
        "content_type": environ.get("CONTENT_TYPE"),
        "host": environ.get("HTTP_HOST"),
        "x_many": environ.get("HTTP_X_MANY"),
        "transfer_encoding": environ.get("HTTP_TRANSFER_ENCODING"),
        "body": body.decode("latin-1"),
    }
    answer = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [answer]


@pytest.fixture
def server() -> Iterator[ConnectionServer]:
    serving = ConnectionServer(echo_app, "127.0.0.1", 0, name="test-http")
    serving.start()
    yield serving
    serving.stop(grace_s=2)


def _connect(server: ConnectionServer) -> socket.socket:
    return socket.create_connection(server.get_host_and_port(), timeout=5)


# What was received past the last answer read, by socket (pipelined answers arrive together).
_unread: dict[socket.socket, bytes] = {}


def _read_answer(sock: socket.socket) -> tuple[bytes, dict[str, str], bytes]:
    """One answer: status line, headers (lower-case names) and a Content-Length body."""
    data = _unread.pop(sock, b"")
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed inside the body"
        rest += chunk
    _unread[sock] = rest[length:]
    return status.encode(), headers, rest[:length]


def _ask(
    server: ConnectionServer, request: bytes
) -> tuple[socket.socket, bytes, dict[str, str], bytes]:
    """Send `request` on a new connection: the connection, still open, and the answer."""
    sock = _connect(server)
    sock.sendall(request)
    return (sock, *_read_answer(sock))


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def test_many_requests_on_one_connection(server: ConnectionServer) -> None:
    connection = http.client.HTTPConnection(*server.get_host_and_port(), timeout=5)
    for i in range(5):
        connection.request("POST", f"/item/{i}?x=1", body=b"abc" * i)
        response = connection.getresponse()
        seen = json.loads(response.read())
        assert response.status == 200
        assert seen["path"] == f"/item/{i}" and seen["query"] == "x=1"
        assert seen["body"] == "abc" * i
        assert (response.getheader("Connection") or "").lower() != "close"
    connection.close()


def test_the_path_is_decoded_and_the_signed_uri_kept(server: ConnectionServer) -> None:
    sock, status, _, body = _ask(
        server, b"GET /bucket/a%2Fb%20c?list-type=2 HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    seen = json.loads(body)
    assert status.startswith(b"HTTP/1.1 200")
    assert seen["path"] == "/bucket/a/b c"
    assert seen["request_uri"] == "/bucket/a%2Fb%20c?list-type=2"
    sock.close()


def test_repeated_headers_are_joined(server: ConnectionServer) -> None:
    sock = _connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\nX-Many: 1\r\nX-Many: 2\r\n\r\n")
    assert json.loads(_read_answer(sock)[2])["x_many"] == "1,2"
    sock.close()


def test_a_chunked_body_is_decoded(server: ConnectionServer) -> None:
    sock = _connect(server)
    sock.sendall(
        b"PUT /k HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n"
        b"Content-Type: image/jpeg\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"
    )
    seen = json.loads(_read_answer(sock)[2])
    assert seen["body"] == "hello world"
    assert seen["content_length"] == "11"
    assert seen["content_type"] == "image/jpeg"
    assert seen["transfer_encoding"] is None  # the application sees a plain body
    sock.close()


def test_expect_continue_is_answered_before_the_body(server: ConnectionServer) -> None:
    sock = _connect(server)
    sock.sendall(b"PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert sock.recv(1024) == b"HTTP/1.1 100 Continue\r\n\r\n"
    sock.sendall(b"body")
    assert json.loads(_read_answer(sock)[2])["body"] == "body"
    sock.close()


def test_expect_continue_without_a_body_is_served_at_once(server: ConnectionServer) -> None:
    # botocore sends it with `Content-Length: 0` for an empty PutObject.
    sock, status, _, body = _ask(
        server, b"PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nExpect: 100-continue\r\n\r\n"
    )
    assert status.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["body"] == ""
    sock.close()


def test_pipelined_requests_are_answered_in_order(server: ConnectionServer) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /one HTTP/1.1\r\nHost: h\r\n\r\nGET /two HTTP/1.1\r\nHost: h\r\n\r\n")
    assert json.loads(_read_answer(sock)[2])["path"] == "/one"
    assert json.loads(_read_answer(sock)[2])["path"] == "/two"
    sock.close()


def test_head_gets_headers_only() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Length", "1000")])
        return [b""]

    serving = ConnectionServer(app, "127.0.0.1", 0, name="test-http")
    serving.start()
    try:
        sock = _connect(serving)
        sock.sendall(b"HEAD /k HTTP/1.1\r\nHost: h\r\n\r\nHEAD /k HTTP/1.1\r\nHost: h\r\n\r\n")
        data = b""
        while data.count(b"\r\n\r\n") < 2:
            chunk = sock.recv(65536)
            assert chunk
            data += chunk
        first, second, rest = data.split(b"\r\n\r\n", 2)
        assert b"Content-Length: 1000" in first and b"Content-Length: 1000" in second
        assert rest == b""  # no body after either head
        sock.close()
    finally:
        serving.stop(grace_s=1)


@pytest.mark.parametrize(
    ("request_head", "closes"),
    [
        (b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\n\r\n", True),
        (b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", False),
    ],
)
def test_connection_close_is_honoured(
    server: ConnectionServer, request_head: bytes, closes: bool
) -> None:
    sock, status, headers, _ = _ask(server, request_head)
    assert status.endswith(b"200 OK")
    assert (headers.get("connection") == "close") is closes
    if closes:
        assert _closed(sock)
    else:
        sock.sendall(b"GET /again HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert json.loads(_read_answer(sock)[2])["path"] == "/again"
    sock.close()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"GET / HTTP/2.0\r\n\r\n", b"505"),
        (b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"PUT / HTTP/1.1\r\nContent-Length: ten\r\n\r\n", b"400"),
        (b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
        (b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 10), b"431"),
    ],
)
def test_a_bad_request_is_refused_and_closed(
    server: ConnectionServer, request_bytes: bytes, status: bytes
) -> None:
    sock, answer_status, headers, _ = _ask(server, request_bytes)
    assert answer_status.split(b" ")[1] == status
    assert headers["connection"] == "close"
    assert _closed(sock)
    sock.close()


def test_a_failing_application_answers_500(server: ConnectionServer) -> None:
    sock, status, headers, _ = _ask(server, b"GET /fail HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 500")
    assert headers["connection"] == "close"
    sock.close()
    # The server goes on serving other connections.
    sock = _connect(server)
    sock.sendall(b"GET /ok HTTP/1.1\r\nHost: h\r\n\r\n")
    assert _read_answer(sock)[0].startswith(b"HTTP/1.1 200")
    sock.close()


def test_an_answer_that_cannot_be_sent_is_a_500() -> None:
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        if environ["PATH_INFO"] == "/unsendable":
            start_response("200 OK", [("X-Name", "Grüße ✓")])  # not latin-1
        return [b"never started"]

    serving = ConnectionServer(app, "127.0.0.1", 0, name="test-http")
    serving.start()
    try:
        for path in ("/unsendable", "/never-started"):
            sock, status, headers, _ = _ask(serving, f"GET {path} HTTP/1.1\r\n\r\n".encode())
            assert status.startswith(b"HTTP/1.1 500")
            assert headers["connection"] == "close"
            sock.close()
    finally:
        serving.stop(grace_s=1)


def test_a_large_answer_arrives_whole() -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB, sent in two writes

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [])
        return [payload[: len(payload) // 2], payload[len(payload) // 2 :]]

    serving = ConnectionServer(app, "127.0.0.1", 0, name="test-http")
    serving.start()
    try:
        connection = http.client.HTTPConnection(*serving.get_host_and_port(), timeout=5)
        connection.request("GET", "/big")
        response = connection.getresponse()
        assert response.getheader("Content-Length") == str(len(payload))
        assert response.read() == payload
        connection.close()
    finally:
        serving.stop(grace_s=1)


def _threads(prefix: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(prefix)]


def test_stop_finishes_requests_in_flight_then_closes_everything() -> None:
    slow_started.clear()
    serving = ConnectionServer(echo_app, "127.0.0.1", 0, name="test-stop")
    serving.start()
    idle = [_connect(serving) for _ in range(5)]
    for sock in idle:  # each connection gets its thread, then waits for a next request
        sock.sendall(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        _read_answer(sock)
    busy = _connect(serving)
    busy.sendall(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
    assert slow_started.wait(5)
    assert len(_threads("test-stop")) == 7  # the acceptor and six connections

    began = time.monotonic()
    serving.stop(grace_s=2)
    took = time.monotonic() - began

    status, headers, body = _read_answer(busy)  # the request in flight was answered
    assert status.startswith(b"HTTP/1.1 200") and json.loads(body)["path"] == "/slow"
    assert headers["connection"] == "close"
    assert all(_closed(sock) for sock in [*idle, busy])
    assert _threads("test-stop") == []
    assert took < 2, f"stop took {took:.2f} s"
    with pytest.raises(OSError):
        _connect(serving)


def test_stop_joins_a_connection_thread_that_is_still_ending(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A connection's thread leaves the server's table of open connections, then closes its
    # socket and ends: a stop in between must still wait for it (found by `imgproc up`'s
    # "thread(s) still running" check). Here its socket's close is held for 0.3 s.
    original_close = socket.socket.close
    closing = threading.Event()

    def slow_close(self: socket.socket) -> None:
        if threading.current_thread().name.startswith("test-ending-connection"):
            closing.set()
            time.sleep(0.3)
        original_close(self)

    monkeypatch.setattr(socket.socket, "close", slow_close)
    serving = ConnectionServer(echo_app, "127.0.0.1", 0, name="test-ending")
    serving.start()
    sock, status, headers, _ = _ask(serving, b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200") and headers["connection"] == "close"
    assert closing.wait(5)
    serving.stop(grace_s=2)
    assert _threads("test-ending") == []
    sock.close()
