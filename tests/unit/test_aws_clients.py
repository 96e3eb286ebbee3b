"""The clients `AwsClients` makes: what every request they send carries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from imgproc_shared.aws import USER_AGENT, AwsClients
from imgproc_shared.settings import Settings


class _Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[dict[str, str]]] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append(dict(self.headers))
        body = json.dumps({"TableNames": []}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def recording_endpoint() -> Iterator[str]:
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


async def test_every_request_carries_the_fixed_user_agent(recording_endpoint: str) -> None:
    # botocore's own User-Agent ("... ua/2.1 os/... md/...") is rebuilt twice per request, a
    # measurable share of each call's CPU; ours is a constant (the session appends its name).
    async with AwsClients(Settings(endpoint_url=recording_endpoint)) as aws:
        await aws.dynamodb.list_tables()
        await aws.dynamodb.list_tables()
    agents = [headers["User-Agent"] for headers in _Recorder.seen]
    assert len(agents) == 2
    for agent in agents:
        assert agent.split()[0] == USER_AGENT
        assert "ua/2.1" not in agent
