"""The embedded endpoint's HTTP server: HTTP/1.1 keep-alive, one thread per connection.

Every API call of every service goes through it, so its cost per request is paid about 40
times per image. waitress (used before) parses each request and writes each answer on its
one I/O-loop thread and hands the request to a pool thread and back (a condition variable, a
wake-up pipe, a `poll` over every open connection per turn). Here the connection's own thread
reads the request, calls the application and writes the answer: no hand-over, no loop. The
threads are cheap because connections are long-lived (each client keeps a pool of them); an SQS
long poll holds only its own connection's thread.

It serves what botocore, aiobotocore and the web client send: `Content-Length` and chunked
bodies, `Expect: 100-continue` (answered only when a body follows: botocore sends it with an
empty `PutObject` too), HEAD, keep-alive and `Connection: close`. The WSGI environ carries
`REQUEST_URI`, the path as the client signed it (`moto_iam` checks signatures against it).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote_to_bytes

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# A request head larger than this is refused (431), as is a body chunk-size line past 1 KiB.
MAX_HEAD_BYTES = 64 * 1024
# An idle connection is closed after this long (longer than any long poll: 20 s).
IDLE_TIMEOUT_S = 300
# Connections open at once; past it a new one is answered 503 and closed.
MAX_CONNECTIONS = 4096
_RECV_BYTES = 256 * 1024
# Answers larger than this are sent in two writes rather than copied into one buffer.
_JOIN_LIMIT = 64 * 1024


class BadRequest(Exception):
    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _Reader:
    """Buffered reads from one connection's socket."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()

    def _fill(self) -> bool:
        data = self._sock.recv(_RECV_BYTES)
        if not data:
            return False
        self._buffer += data
        return True

    def head(self) -> bytes | None:
        """The next request's head (request line and headers), or None at the end of the
        connection. Blank lines before a request are skipped (RFC 9112 2.2)."""
        while True:
            while self._buffer.startswith(b"\r\n"):
                del self._buffer[:2]
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                head = bytes(self._buffer[:end])
                del self._buffer[: end + 4]
                return head
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise BadRequest("431 Request Header Fields Too Large", "request head too large")
            if not self._fill():
                return None

    def exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not self._fill():
                raise BadRequest("400 Bad Request", "connection closed inside the body")
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > 1024:
                raise BadRequest("400 Bad Request", "chunk size line too long")
            if not self._fill():
                raise BadRequest("400 Bad Request", "connection closed inside a chunk")
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def chunked(self) -> bytes:
        """A chunked body, decoded (its trailer, if any, is read and dropped)."""
        body = bytearray()
        while True:
            size_line = self.line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise BadRequest("400 Bad Request", "bad chunk size") from None
            if size == 0:
                while self.line():  # trailer fields, up to the blank line
                    pass
                return bytes(body)
            body += self.exactly(size)
            if self.exactly(2) != b"\r\n":
                raise BadRequest("400 Bad Request", "chunk not followed by CRLF")


class _Request:
    __slots__ = ("headers", "method", "target", "version")

    def __init__(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        try:
            self.method, self.target, self.version = lines[0].split(" ")
        except ValueError:
            raise BadRequest("400 Bad Request", "bad request line") from None
        if not self.version.startswith("HTTP/1."):
            raise BadRequest("505 HTTP Version Not Supported", "HTTP/1.x only")
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise BadRequest("400 Bad Request", "bad header line")
            key = name.upper().replace("-", "_")
            value = value.strip()
            previous = self.headers.get(key)
            self.headers[key] = value if previous is None else f"{previous},{value}"

    def keep_alive(self) -> bool:
        connection = self.headers.get("CONNECTION", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


class ConnectionServer:
    """A WSGI application served on `host:port`, one thread per connection."""

    def __init__(self, app: WsgiApp, host: str, port: int, name: str = "embedded-aws") -> None:
        self._app = app
        self._name = name
        self._listener = socket.create_server((host, port), backlog=1024)
        self._host, self._port = self._listener.getsockname()[:2]
        self._accepting = threading.Thread(target=self._accept, name=name, daemon=True)
        self._connections: dict[socket.socket, threading.Thread] = {}
        # Every connection thread not known to have ended: one leaves `_connections` before it
        # ends (it closes its socket after), and a stop joins it all the same.
        self._threads: list[threading.Thread] = []
        self._busy = 0  # connections in the middle of a request
        self._lock = threading.Lock()
        self._closing = False
        self._numbers = itertools.count(1)

    def start(self) -> None:
        self._accepting.start()

    def get_host_and_port(self) -> tuple[str, int]:
        return str(self._host), int(self._port)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, let requests being served finish (up to `grace_s`), close every
        connection and join every thread. SQS long polls must be ended first (`moto_fixes`)."""
        with self._lock:
            self._closing = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accept
        self._listener.close()
        self._accepting.join(timeout=5)
        deadline = time.monotonic() + grace_s
        while self._busy and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            sockets, threads = list(self._connections), list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread waiting for the next request
        for thread in threads:
            thread.join(timeout=max(0.5, deadline - time.monotonic()))

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self._listener.accept()
            except OSError:
                return  # the listener was closed
            with self._lock:
                refused = self._closing or len(self._connections) >= MAX_CONNECTIONS
                if not refused:
                    thread = threading.Thread(
                        target=self._serve,
                        args=(sock, address),
                        name=f"{self._name}-connection-{next(self._numbers)}",
                        daemon=True,
                    )
                    self._connections[sock] = thread
                    self._threads = [t for t in self._threads if t.is_alive()]
                    self._threads.append(thread)
            if refused:
                with contextlib.suppress(OSError):
                    sock.sendall(_error_answer("503 Service Unavailable", "too many connections"))
                sock.close()
                continue
            thread.start()

    def _serve(self, sock: socket.socket, address: tuple[Any, ...]) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # A blocking socket with a receive timeout: no poll before every read, as Python's own
        # timeouts would add; an expired wait raises OSError (EAGAIN) and ends the connection.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", IDLE_TIMEOUT_S, 0))
        reader = _Reader(sock)
        try:
            while not self._closing:
                try:
                    head = reader.head()
                    if head is None:
                        return
                    with self._lock:
                        self._busy += 1
                    try:
                        if not self._answer(sock, reader, _Request(head), address):
                            return
                    finally:
                        with self._lock:
                            self._busy -= 1
                except BadRequest as exc:
                    sock.sendall(_error_answer(exc.status, str(exc)))
                    return
        except OSError:
            return  # the client went away, the idle timeout expired, or the server stopped
        finally:
            with self._lock:
                self._connections.pop(sock, None)
            sock.close()

    def _answer(
        self, sock: socket.socket, reader: _Reader, request: _Request, address: tuple[Any, ...]
    ) -> bool:
        """Serve one request; True when the connection stays open."""
        headers = request.headers
        chunked = "chunked" in headers.get("TRANSFER_ENCODING", "").lower()
        try:
            length = 0 if chunked else int(headers.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise BadRequest("400 Bad Request", "bad Content-Length") from None
        if length < 0:
            raise BadRequest("400 Bad Request", "bad Content-Length")
        if (chunked or length) and headers.get("EXPECT", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = reader.chunked() if chunked else reader.exactly(length) if length else b""

        environ = self._environ(request, body, address)
        answer: list[Any] = []
        written: list[bytes] = []

        def start_response(
            status: str, response_headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if exc_info and answer:
                raise exc_info[1].with_traceback(exc_info[2])
            answer[:] = [status, response_headers]
            return written.append

        try:
            result = self._app(environ, start_response)
            try:
                written.extend(chunk for chunk in result if chunk)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
            if not answer:
                raise RuntimeError("the application never called start_response")
            payload = b"".join(written) if len(written) != 1 else written[0]
            head, keep_alive, bodyless = self._head(request, answer[0], answer[1], len(payload))
        except Exception as exc:  # the application failed outside its own error handling
            print(f"embedded endpoint: {request.method} {request.target}: {exc!r}", file=sys.stderr)
            sock.sendall(_error_answer("500 Internal Server Error", "internal error"))
            return False
        if bodyless or not payload:
            sock.sendall(head)
        elif len(payload) <= _JOIN_LIMIT:
            sock.sendall(head + payload)
        else:
            sock.sendall(head)
            sock.sendall(payload)
        return keep_alive

    def _head(
        self,
        request: _Request,
        status: str,
        response_headers: list[tuple[str, str]],
        length: int,
    ) -> tuple[bytes, bool, bool]:
        """The answer's status line and headers; whether the connection stays open; whether
        the answer has no body (HEAD, 1xx, 204, 304)."""
        keep_alive = request.keep_alive() and not self._closing  # a stop closes after this one
        lines = [f"HTTP/1.1 {status}"]
        has_length = False
        for name, value in response_headers:
            lowered = name.lower()
            if lowered == "content-length":
                has_length = True
            elif lowered == "connection":
                if value.lower() == "close":
                    keep_alive = False
                continue
            lines.append(f"{name}: {value}")
        code = status[:3]
        bodyless = request.method == "HEAD" or code in ("204", "304") or code.startswith("1")
        if not has_length and not bodyless:
            lines.append(f"Content-Length: {length}")
        if not keep_alive:
            lines.append("Connection: close")
        # WSGI header values are latin-1; one that is not fails here, answered as a 500.
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"), keep_alive, bodyless

    def _environ(self, request: _Request, body: bytes, address: tuple[Any, ...]) -> dict[str, Any]:
        target = request.target
        if target.startswith(("http://", "https://")):  # absolute form: keep the path
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        path, _, query = target.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            # PEP 3333: the decoded path's bytes, as latin-1.
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "REQUEST_URI": target,
            "RAW_URI": target,
            "SERVER_NAME": self._host,
            "SERVER_PORT": str(self._port),
            "SERVER_PROTOCOL": request.version,
            "REMOTE_ADDR": str(address[0]),
            "REMOTE_PORT": str(address[1]),
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.input_terminated": True,
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for key, value in request.headers.items():
            if key == "CONTENT_TYPE":
                environ["CONTENT_TYPE"] = value
            elif key not in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):  # the body is decoded
                environ["HTTP_" + key] = value
        return environ


def _error_answer(status: str, reason: str) -> bytes:
    body = reason.encode()
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body
