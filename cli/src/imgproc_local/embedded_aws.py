"""The embedded AWS endpoint: moto 5.2.5 in server mode, inside this process.

Before serving, it turns Step Functions execution on (state machines created before that vanish
when it flips), points the interpreter's callbacks at the bound port (`MOTO_PORT`; moto's
threaded server never sets it) and patches moto: the behaviour fixes (`moto_fixes`, with
`moto_iam` and `s3_post_policy`), the request counter (`request_counter`) and the record of
written items that snapshots read (`table_changes`) always, the speed-ups (`moto_speedups`)
unless `IMGPROC_MOTO_SPEEDUPS=0`, and one line per workflow failure in the log (`moto_logs`).

The HTTP server is our own (`http_server`), not moto's `ThreadedMotoServer`: werkzeug's
development server answers every request with `Connection: close` and starts a thread for each
connection, so every API call would pay a TCP handshake, a new thread and a new socket selector
on both sides. Ours keeps connections alive and serves each on its own thread (waitress, used
before it, cost 20% more of the endpoint's CPU per image). The collector is tuned for moto's
large, long-lived heap. `IMGPROC_MOTO_SPEEDUPS=0` keeps moto's own server and the default
collector too: the stock baseline the load test compares against.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

from imgproc_local import moto_fixes, moto_logs, moto_speedups, request_counter, table_changes
from imgproc_local.http_server import ConnectionServer

EMBEDDED_ACCOUNT = "123456789012"


@dataclass
class EmbeddedAws:
    server: Any
    host: str
    port: int

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        moto_fixes.end_long_polls()
        self.server.stop()


def start_embedded_aws(host: str = "127.0.0.1", port: int = 0) -> EmbeddedAws:
    """Start moto on `host:port` (0 picks a free port) and return where it listens."""
    # Moto reads these at import time in places; no real credentials are ever used.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    from moto.core.config import default_user_config

    default_user_config["stepfunctions"] = {"execute_state_machine": True}
    # Each patch's names are checked first (moto_patches.PATCH_TARGETS): an upgrade of moto that
    # moved one stops here, naming the patch.
    request_counter.install()
    moto_fixes.install()
    table_changes.install()  # snapshots read only the items written since the last one
    if moto_speedups.speedups_enabled():
        moto_speedups.install()
    moto_logs.install()  # one line per workflow failure, not the interpreter's state dumps

    # moto allocates many short-lived objects per request (parsed requests, deep copies) over a
    # large heap that lives as long as the endpoint (every execution's history, items, messages),
    # so the default collector thresholds scan that heap again and again. Startup objects are
    # frozen out of collection and the young generation is collected less often: 4-8% less
    # endpoint CPU per image in the load test, cycles are still collected.
    server: Any
    if moto_speedups.speedups_enabled():
        gc.freeze()
        gc.set_threshold(50_000, 20, 100)
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

        server = ConnectionServer(DomainDispatcherApplication(create_backend_app), host, port)
    else:  # the stock-moto baseline: its own werkzeug server, default collector
        from moto.moto_server.threaded_moto_server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    # The interpreter calls services back at localhost:$MOTO_PORT.
    os.environ["MOTO_PORT"] = str(bound_port)
    return EmbeddedAws(server, bound_host, bound_port)
