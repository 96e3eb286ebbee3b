"""`imgproc up`: the whole stack on this machine, in one command.

Starts the embedded AWS endpoint in this process, creates every resource, starts the four
services as separate processes (restarting one that exits, with back-off), and stops everything
on Ctrl-C (or SIGTERM): the services drain within their stop timeout, the final snapshot is
taken, and every thread started here is joined. A second Ctrl-C stops at once: the services
are killed and the last periodic snapshot is what stays.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import select
import signal
import socket
import sys
import threading
import time
import urllib.request
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import IO, Any

from imgproc_local import local_cognito
from imgproc_local.bootstrap import Identity, bootstrap, create_identities
from imgproc_local.embedded_aws import EmbeddedAws, start_embedded_aws
from imgproc_local.local_stack import LocalStack, read_stack, remove_stack, write_stack
from imgproc_local.persistence import SNAPSHOT_INTERVAL_S, Snapshots, StateStore
from imgproc_local.scaler import (
    WORKER_SERVICES,
    LocalScaler,
    QueueWatcher,
    decision_logger,
    workers_file,
)
from imgproc_local.supervisor import ServiceSpec, Supervisor, import_problems, service_specs
from imgproc_shared.aws import AwsClients
from imgproc_shared.permissions import Principal
from imgproc_shared.scaling import local_policy
from imgproc_shared.settings import Settings, check_auth_secret

# Workers get this long to drain; then the final snapshot is taken (its time is reported).
_SERVICE_STOP_TIMEOUT_S = 8.0
# The final snapshot is waited for this long at most (a second Ctrl-C stops waiting).
_FINAL_SNAPSHOT_TIMEOUT_S = 60.0
# The threads `up` starts (the endpoint's server and its connections' threads, snapshots, the
# queue watcher): a clean stop joins them all.
_OWN_THREADS = ("embedded-aws", "snapshots", "queue-watcher")
# Exit status of a stop forced by a second Ctrl-C (the shell's "interrupted").
EXIT_FORCED_STOP = 130


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
    parser.add_argument(
        "--auth",
        choices=("local", "cognito"),
        default="local",
        help="sign-in: local (a username, this machine only) or cognito (a user pool in the "
        "embedded endpoint, as on AWS; add users with `imgproc users add`)",
    )
    parser.add_argument(
        "--no-iam",
        action="store_true",
        help="do not check permissions: every service uses the administrator key "
        "(as IMGPROC_IAM_ENFORCEMENT=false)",
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


class StopRequests:
    """Ctrl-C and SIGTERM, counted for the main loop to read: nothing is raised in a handler.

    A handler runs between two bytecodes of whatever the main thread is doing; an exception
    raised there inside, say, `logging`'s lock release is reported as "Exception ignored" and
    the stop is lost. The handler only counts (no lock: one held by the interrupted code would
    deadlock it); the wakeup fd ends `wait` at once.
    """

    def __init__(self) -> None:
        self.count = 0
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1

    @property
    def requested(self) -> bool:
        return self.count >= 1

    @property
    def forced(self) -> bool:
        """A second request: stop now."""
        return self.count >= 2

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        self._previous_fd = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)

    def uninstall(self) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        os.close(self._read)
        os.close(self._write)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1

    def wait_for_second(self, timeout: float) -> None:
        """Sleep up to `timeout` while stopping: a second Ctrl-C ends it at once."""
        if not self.forced:
            self._sleep(timeout)

    def _sleep(self, timeout: float) -> None:
        select.select([self._read], [], [], timeout)
        try:
            while os.read(self._read, 512):
                pass
        except BlockingIOError:
            pass

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout`, less if a signal arrives; returns whether a stop was asked."""
        if not self.requested:
            self._sleep(timeout)
        return self.requested


def _wait_healthy(url: str, deadline: float, supervisor: Supervisor, stop: StopRequests) -> bool:
    while time.monotonic() < deadline and not stop.requested:
        supervisor.check()
        if supervisor.configuration_error:
            return False
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        stop.wait(0.2)
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
        self._final = True
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        # The last snapshot written (wall clock), and the final one's duration and counts.
        self.last_taken_at: float | None = None
        self.final_took_s: float | None = None
        self.final_counts: dict[str, int] | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, final: bool, wait: Any, give_up: Any) -> bool:
        """End the thread, after a final snapshot if `final` (call it once the services
        stopped). `wait(s)` pauses; `give_up()` true stops waiting. Returns whether it ended."""
        self._final = final
        self._stopping.set()
        deadline = time.monotonic() + _FINAL_SNAPSHOT_TIMEOUT_S
        while self._thread.is_alive() and time.monotonic() < deadline and not give_up():
            self._thread.join(0.05)
            wait(0.0)
        return not self._thread.is_alive()

    def _run(self) -> None:
        asyncio.run(self._loop())

    async def _loop(self) -> None:
        async with AwsClients(self.settings) as aws:
            while True:
                started = time.monotonic()
                await self._snapshot(aws)
                pause = max(SNAPSHOT_INTERVAL_S, 5 * (time.monotonic() - started))
                if await asyncio.to_thread(self._stopping.wait, pause):
                    if self._final:
                        began = time.monotonic()
                        self.final_counts = await self._snapshot(aws, final=True)
                        self.final_took_s = time.monotonic() - began
                    return

    async def _snapshot(self, aws: AwsClients, *, final: bool = False) -> dict[str, int] | None:
        try:
            # The last one is always taken: it is what a clean stop promises.
            counts = await self.snapshots.take(aws, force=final)
        except Exception as exc:  # a failed snapshot must never stop the stack
            print(f"warning: snapshot to {self.store.root} failed: {exc!r}", file=sys.stderr)
            return None
        if counts is not None:
            self.last_taken_at = time.time()
        return counts


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

    # A service that cannot even be imported is a configuration error: say so before starting.
    problems = import_problems(service_specs(args.host, port), dict(os.environ))
    if problems:
        for name, reason in problems.items():
            print(f"imgproc: the {name} service cannot be imported: {reason}", file=sys.stderr)
        return 1

    stop = StopRequests()
    stop.install()
    stack = _Running()
    exit_code = 1
    try:
        exit_code = _serve(args, settings, stack, stop, port, data_dir, tagger, auth_secret)
    finally:
        forced = _shutdown(stack, stop, settings, data_dir)
        stop.uninstall()
    return EXIT_FORCED_STOP if forced else exit_code


class _Running:
    """What `up` has started so far: the shutdown stops exactly these, in reverse order."""

    def __init__(self) -> None:
        self.aws_server: EmbeddedAws | None = None
        self.supervisor: Supervisor | None = None
        self.scaler: LocalScaler | None = None
        self.snapshots: Snapshotter | None = None
        self.decision_log: IO[str] | None = None


def _serve(
    args: argparse.Namespace,
    settings: Settings,
    stack: _Running,
    stop: StopRequests,
    port: int,
    data_dir: Path,
    tagger: str,
    auth_secret: str,
) -> int:
    """Start the stack and supervise it until a stop is requested; returns the exit status."""
    aws_server = stack.aws_server = start_embedded_aws(port=args.aws_port)
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
    if stop.requested:
        return 0
    sign_in_env = local_cognito.set_up(local) if args.auth == "cognito" else {}
    identities = _run_as_identities(
        local.model_copy(update={"tagger_backend": tagger}),
        enforce=settings.iam_enforcement and not args.no_iam,
    )
    state_machine_arn = str(outputs["state_machine_arn"])
    env = {
        # A service signs with its own key (below), or the administrator's: never one inherited.
        **{k: v for k, v in os.environ.items() if k not in _KEY_VARIABLES},
        "IMGPROC_ENDPOINT_URL": aws_server.endpoint_url,
        "IMGPROC_STATE_MACHINE_ARN": state_machine_arn,
        "IMGPROC_RESOURCE_PREFIX": settings.resource_prefix,
        "IMGPROC_TAGGER_BACKEND": tagger,
        "IMGPROC_HOME": str(settings.home),
        "IMGPROC_AUTH_SECRET": auth_secret,
        "IMGPROC_STOP_TIMEOUT_S": str(min(settings.stop_timeout_s, _SERVICE_STOP_TIMEOUT_S - 2)),
        "PYTHONUNBUFFERED": "1",
        **sign_in_env,
    }
    # A retired worker drains (stop timeout) and releases what is left before it exits.
    supervisor = stack.supervisor = Supervisor(
        env, data_dir / "logs", retire_timeout=2 * _SERVICE_STOP_TIMEOUT_S
    )
    specs = [_with_identity(spec, identities) for spec in service_specs(args.host, port)]
    for spec in specs:
        if spec.name not in WORKER_SERVICES:
            supervisor.start(spec)
    # Worker services run as many processes as their queue needs, within the bounds.
    policies = {
        name: local_policy(stage, min_workers=args.min_workers, max_workers=args.max_workers)
        for name, stage in WORKER_SERVICES.items()
    }
    logger, stack.decision_log = decision_logger(data_dir / "logs" / "scaler.log")
    scaler = stack.scaler = LocalScaler(
        supervisor,
        [spec for spec in specs if spec.name in WORKER_SERVICES],
        policies,
        QueueWatcher(local, list(WORKER_SERVICES.values())),
        workers_file(settings),
        logger,
    )
    scaler.start()
    api_url = f"http://{args.host}:{port}"
    if not _wait_healthy(f"{api_url}/healthz", time.monotonic() + 60, supervisor, stop):
        if supervisor.configuration_error:
            print(f"imgproc: {supervisor.configuration_error}", file=sys.stderr, flush=True)
            return 1
        if stop.requested:
            return 0
        print(f"the status API did not become healthy; see {data_dir / 'logs'}", file=sys.stderr)
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
            tagger_backend=tagger,
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
        "Stop: press Ctrl-C (twice to stop at once).",
        flush=True,
    )
    # The endpoint runs in this process: snapshots read its backends directly.
    stack.snapshots = Snapshotter(store, local)
    stack.snapshots.start()
    while not stop.wait(0.5):
        supervisor.check()
        if supervisor.configuration_error:
            print(f"imgproc: {supervisor.configuration_error}; stopping", file=sys.stderr)
            return 1
        scaler.step()
    return 0


_KEY_VARIABLES = ("IMGPROC_ENDPOINT_ACCESS_KEY_ID", "IMGPROC_ENDPOINT_SECRET_ACCESS_KEY")


def _run_as_identities(local: Settings, *, enforce: bool) -> dict[Principal, Identity]:
    """With enforcement, one IAM user per service with its deployed policy, and the endpoint
    checking every call; this process (snapshots, the scaler) stays the administrator."""
    from imgproc_local import moto_iam

    if not enforce:
        moto_iam.set_enforcement(False)
        print(
            "IAM enforcement off (IMGPROC_IAM_ENFORCEMENT=false or --no-iam): "
            "every service uses the administrator key",
            flush=True,
        )
        return {}
    identities = create_identities(local)
    moto_iam.set_enforcement(True)
    users = ", ".join(identity.user_name for identity in identities.values())
    print(f"IAM enforcement on: each service runs as its own IAM user ({users})", flush=True)
    roles = [i.operations_role_arn for i in identities.values() if i.operations_role_arn]
    # The status API gets IMGPROC_OPERATIONS_ROLE_ARN through Identity.env.
    print(f"operator endpoints act as the assumed role {', '.join(roles)}", flush=True)
    return identities


def _with_identity(spec: ServiceSpec, identities: dict[Principal, Identity]) -> ServiceSpec:
    """The spec whose processes (the scaler's extra workers too) sign with the service's key."""
    if not identities:
        return spec
    identity = identities[Principal(spec.name)]
    return replace(spec, env=tuple(identity.env().items()))


def _shutdown(stack: _Running, stop: StopRequests, settings: Settings, data_dir: Path) -> bool:
    """Stop what `up` started; returns whether a second Ctrl-C forced it.

    In order: the scaler (nothing new starts), the services (SIGTERM: they stop taking work and
    drain within their stop timeout; SIGKILL to their process groups past it, or at once on a
    second Ctrl-C), the final snapshot (skipped when forced: the last periodic one stays), the
    embedded endpoint. Every thread started here is joined.
    """
    began = time.monotonic()
    if stop.requested:
        print("\nstopping imgproc (Ctrl-C again to stop at once)...", flush=True)
    if stack.scaler is not None:
        stack.scaler.stop()
    if stack.supervisor is not None:
        stack.supervisor.stop(
            _SERVICE_STOP_TIMEOUT_S, wait=stop.wait_for_second, force=lambda: stop.forced
        )
    snapshot = stack.snapshots
    if snapshot is not None:
        snapshot.stop(final=not stop.forced, wait=stop.wait_for_second, give_up=lambda: stop.forced)
    if stack.decision_log is not None:
        stack.decision_log.close()
    if stack.aws_server is not None:
        stack.aws_server.stop()
    remove_stack(settings, os.getpid())
    took = time.monotonic() - began
    left = [t.name for t in threading.enumerate() if t.name.startswith(_OWN_THREADS)]
    if left and not stop.forced:
        print(f"warning: {len(left)} thread(s) still running: {', '.join(left)}", file=sys.stderr)
    if stop.forced:
        kept = "no snapshot was taken in this run"
        if snapshot is not None and snapshot.last_taken_at is not None:
            kept = f"the last snapshot, {time.time() - snapshot.last_taken_at:.1f} s old, is kept"
        print(
            f"imgproc stopped at once (second Ctrl-C) in {took:.1f} s: services killed, "
            f"no final snapshot; {kept} in {data_dir / 'state'}.",
            flush=True,
        )
        return True
    if snapshot is not None and snapshot.final_took_s is not None:
        print(
            f"imgproc stopped in {took:.1f} s; final snapshot took {snapshot.final_took_s:.2f} s "
            f"({snapshot.final_counts or {}}) in {data_dir / 'state'}.",
            flush=True,
        )
    else:
        print(f"imgproc stopped in {took:.1f} s.", flush=True)
    return False
