"""`imgproc up`: the whole stack on this machine, in one command.

Starts the embedded AWS endpoint in this process, creates every resource, starts the four
services as separate processes, and stops everything on Ctrl-C (or SIGTERM) within 15 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import signal
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import FrameType

from imgproc_cli.bootstrap import bootstrap
from imgproc_cli.embedded_aws import start_embedded_aws
from imgproc_cli.local_stack import LocalStack, read_stack, remove_stack, write_stack
from imgproc_cli.persistence import SNAPSHOT_INTERVAL_S, Snapshots, StateStore
from imgproc_cli.scaler import (
    WORKER_SERVICES,
    LocalScaler,
    QueueWatcher,
    decision_logger,
    workers_file,
)
from imgproc_cli.supervisor import Supervisor, service_specs
from imgproc_shared.aws import AwsClients
from imgproc_shared.scaling import local_policy
from imgproc_shared.settings import Settings, check_auth_secret

# Workers get this long to drain; `up` as a whole stops within 15 s.
_SERVICE_STOP_TIMEOUT_S = 8.0
_STOP_DEADLINE_S = 13.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("up", help="run imgproc on this machine (embedded AWS)")
    parser.add_argument("--port", type=int, default=8080, help="status API port (default 8080)")
    parser.add_argument("--host", default="127.0.0.1", help="status API address")
    parser.add_argument(
        "--aws-port", type=int, default=0, help="embedded AWS endpoint port (default: any free)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where logs and local state go (default: ~/.imgproc/data)",
    )
    parser.add_argument(
        "--tagger",
        choices=("local", "rekognition"),
        default=None,
        help="label backend (default: local model; rekognition = moto's canned labels)",
    )
    parser.add_argument(
        "--min-workers",
        type=int,
        default=1,
        metavar="N",
        help="fewest processes per worker service (default 1; 0 lets an idle service stop)",
    )
    parser.add_argument(
        "--max-workers",
        type=int,
        default=2,
        metavar="N",
        help="most processes per worker service when its queue backs up (default 2)",
    )
    parser.set_defaults(func=run)


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, deadline: float, supervisor: Supervisor) -> bool:
    while time.monotonic() < deadline:
        supervisor.check()
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


class Snapshotter:
    """Saves the stack's data in the background, with one set of clients for its lifetime.

    It shares the process (and the GIL) with the embedded endpoint, so it never takes more than
    about a sixth of the time: the pause after a snapshot is at least five times its duration.
    With the endpoint in this process, it reads moto's backends directly and skips the
    periodic snapshot while nothing changed (`persistence.Snapshots`); the clients are for the
    fallback over the API.
    """

    def __init__(self, store: StateStore, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self.snapshots = Snapshots(store, settings)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop_and_flush(self, timeout: float = 10.0) -> None:
        """Take the last snapshot (call it after the services stopped) and end the thread."""
        self._stopping.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        async with AwsClients(self.settings) as aws:
            while True:
                started = time.monotonic()
                await self._snapshot(aws)
                pause = max(SNAPSHOT_INTERVAL_S, 5 * (time.monotonic() - started))
                if await asyncio.to_thread(self._stopping.wait, pause):
                    await self._snapshot(aws, final=True)
                    return

    async def _snapshot(self, aws: AwsClients, *, final: bool = False) -> None:
        try:
            # The last one is always taken: it is what a clean stop promises.
            await self.snapshots.take(aws, force=final)
        except Exception as exc:  # a failed snapshot must never stop the stack
            print(f"warning: snapshot to {self.store.root} failed: {exc!r}", file=sys.stderr)


class _Stop(BaseException):  # not an Exception: nothing may swallow a stop request
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop()


def run(args: argparse.Namespace, settings: Settings) -> int:
    existing = read_stack(settings)
    if existing is not None:
        print(
            f"imgproc is already running (pid {existing.pid}, status API {existing.api_url}). "
            "Stop it first.",
            file=sys.stderr,
        )
        return 1
    port = args.port or _free_port(args.host)
    if not _port_free(args.host, port):
        print(f"port {port} on {args.host} is in use: pass --port N", file=sys.stderr)
        return 1
    if not 0 <= args.min_workers <= args.max_workers or args.max_workers < 1:
        print("need 0 <= --min-workers <= --max-workers, and --max-workers >= 1", file=sys.stderr)
        return 2
    auth_secret = os.environ.get("IMGPROC_AUTH_SECRET") or secrets.token_hex(32)
    try:
        check_auth_secret(auth_secret)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    data_dir: Path = (args.data_dir or Path(settings.home) / "data").expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    tagger = args.tagger or os.environ.get("IMGPROC_TAGGER_BACKEND") or "local"

    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    aws_server = None
    supervisor: Supervisor | None = None
    scaler: LocalScaler | None = None
    snapshots: Snapshotter | None = None
    decision_log = None
    try:
        aws_server = start_embedded_aws(port=args.aws_port)
        local = settings.model_copy(update={"endpoint_url": aws_server.endpoint_url})

        store = StateStore(data_dir)

        async def create() -> dict[str, object]:
            async with AwsClients(local) as aws:
                created = await bootstrap(aws, local)
                restored = await store.restore(aws, local)
                if any(restored.values()):
                    print(f"restored from {data_dir}: {restored}", flush=True)
                return created

        outputs = asyncio.run(create())
        state_machine_arn = str(outputs["state_machine_arn"])
        env = {
            **os.environ,
            "IMGPROC_ENDPOINT_URL": aws_server.endpoint_url,
            "IMGPROC_STATE_MACHINE_ARN": state_machine_arn,
            "IMGPROC_RESOURCE_PREFIX": settings.resource_prefix,
            "IMGPROC_TAGGER_BACKEND": tagger,
            "IMGPROC_HOME": str(settings.home),
            "IMGPROC_AUTH_SECRET": auth_secret,
            "IMGPROC_STOP_TIMEOUT_S": str(
                min(settings.stop_timeout_s, _SERVICE_STOP_TIMEOUT_S - 2)
            ),
            "PYTHONUNBUFFERED": "1",
        }
        # A retired worker drains (stop timeout) and releases what is left before it exits.
        supervisor = Supervisor(env, data_dir / "logs", retire_timeout=2 * _SERVICE_STOP_TIMEOUT_S)
        specs = service_specs(args.host, port)
        for spec in specs:
            if spec.name not in WORKER_SERVICES:
                supervisor.start(spec)
        # Worker services run as many processes as their queue needs, within the bounds.
        policies = {
            name: local_policy(stage, min_workers=args.min_workers, max_workers=args.max_workers)
            for name, stage in WORKER_SERVICES.items()
        }
        logger, decision_log = decision_logger(data_dir / "logs" / "scaler.log")
        scaler = LocalScaler(
            supervisor,
            [spec for spec in specs if spec.name in WORKER_SERVICES],
            policies,
            QueueWatcher(local, list(WORKER_SERVICES.values())),
            workers_file(settings),
            logger,
        )
        scaler.start()
        api_url = f"http://{args.host}:{port}"
        if not _wait_healthy(f"{api_url}/healthz", time.monotonic() + 60, supervisor):
            print(
                f"the status API did not become healthy; see {data_dir / 'logs'}", file=sys.stderr
            )
            return 1
        write_stack(
            settings,
            LocalStack(
                endpoint_url=aws_server.endpoint_url,
                api_url=api_url,
                state_machine_arn=state_machine_arn,
                resource_prefix=settings.resource_prefix,
                pid=os.getpid(),
                data_dir=str(data_dir),
            ),
        )
        print(
            "imgproc is up.\n"
            f"  status API and web client: {api_url}\n"
            f"  embedded AWS endpoint:     {aws_server.endpoint_url}\n"
            f"  label backend:             {tagger}\n"
            f"  service logs:              {data_dir / 'logs'}\n"
            f"  workers per service:       {args.min_workers}-{args.max_workers}, "
            "following queue depth (imgproc workers)\n"
            "Upload from another terminal:  .venv/bin/imgproc upload PHOTO.jpg --wait\n"
            "Stop: press Ctrl-C.",
            flush=True,
        )
        # The endpoint runs in this process: snapshots read its backends directly.
        snapshots = Snapshotter(store, local)
        snapshots.start()
        while True:
            time.sleep(0.5)
            supervisor.check()
            scaler.step()
    except _Stop:
        print("\nstopping imgproc...", flush=True)
        return 0
    finally:
        stop_began = time.monotonic()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if scaler is not None:
            scaler.stop()
        if supervisor is not None:
            supervisor.stop(_SERVICE_STOP_TIMEOUT_S)
        if snapshots is not None:
            # Whatever the services' drain left of the 15 s promised to Ctrl-C.
            snapshots.stop_and_flush(
                timeout=max(2.0, _STOP_DEADLINE_S - (time.monotonic() - stop_began))
            )
        if decision_log is not None:
            decision_log.close()
        if aws_server is not None:
            aws_server.stop()
        remove_stack(settings, os.getpid())
        print("imgproc stopped.", flush=True)
