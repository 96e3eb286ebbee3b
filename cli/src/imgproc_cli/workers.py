"""`imgproc workers`: each worker service's processes, backlog, in-flight and dead letters."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from imgproc_local.local_stack import read_stack, target_settings
from imgproc_local.scaler import WORKER_SERVICES, read_workers_file
from imgproc_shared.aws import AwsClients
from imgproc_shared.dead_letters import DeadLetters
from imgproc_shared.resources import STAGE_QUEUES
from imgproc_shared.settings import Settings
from imgproc_shared.workers_record import WorkersRecord


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "workers", help="worker processes per service, with their queue's backlog"
    )
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


async def report(settings: Settings, scaler_state: WorkersRecord | None) -> dict[str, Any]:
    """One entry per worker service; worker counts come from the local scaler when it runs."""
    recorded = scaler_state.services if scaler_state is not None else {}
    async with AwsClients(settings) as aws:
        dead = DeadLetters(aws, settings)
        depths = await asyncio.gather(
            *(dead.depth(STAGE_QUEUES[stage]) for stage in WORKER_SERVICES.values())
        )
    services = []
    for (name, stage), depth in zip(WORKER_SERVICES.items(), depths, strict=True):
        # Unknown (null) where no local scaler runs them, e.g. ECS on AWS.
        local = recorded.get(name)
        decision = local.last_decision if local else None
        services.append(
            {
                "service": name,
                "stage": stage.value,
                "queue": depth.name,
                "workers": local.workers if local else None,
                "pids": local.pids if local else [],
                "min": local.min if local else None,
                "max": local.max if local else None,
                "backlog": depth.visible,
                "in_flight": depth.in_flight,
                "dead_letters": depth.dead_letters,
                "last_decision": decision.model_dump(mode="json") if decision else None,
                # From the local supervisor: running, or restarting (waiting out a back-off
                # after an exit), with its restarts and last exit code; null where none runs.
                "state": local.state if local else None,
                "restarts": local.restarts if local else None,
                "last_exit_code": local.last_exit_code if local else None,
                "last_exit_at": local.last_exit_at if local else None,
                "next_restart_at": local.next_restart_at if local else None,
            }
        )
    return {"services": services}


def _print(result: dict[str, Any]) -> None:
    print(
        f"{'service':<12} {'state':<10} {'workers':>7} {'bounds':>6} {'backlog':>8} "
        f"{'in flight':>9} {'dead':>5} {'restarts':>8}  pids"
    )
    notes = []
    for s in result["services"]:
        workers = "-" if s["workers"] is None else str(s["workers"])
        bounds = "-" if s["min"] is None else f"{s['min']}-{s['max']}"
        pids = " ".join(str(p) for p in s["pids"]) or "-"
        restarts = "-" if s["restarts"] is None else str(s["restarts"])
        print(
            f"{s['service']:<12} {s['state'] or '-':<10} {workers:>7} {bounds:>6} "
            f"{s['backlog']:>8} {s['in_flight']:>9} {s['dead_letters']:>5} {restarts:>8}  {pids}"
        )
        if s["state"] == "restarting":
            notes.append(
                f"{s['service']}: last exit code {s['last_exit_code']} at {s['last_exit_at']}; "
                f"next start at {s['next_restart_at']}"
            )
    for note in notes:
        print(note)


def run(args: argparse.Namespace, settings: Settings) -> int:
    target = target_settings(settings)
    stack = read_stack(settings)
    # Only a live local stack's file describes running processes.
    state = read_workers_file(settings) if stack is not None else None
    if state is not None and stack is not None and state.pid != stack.pid:
        state = None
    result = asyncio.run(report(target, state))
    if args.json:
        print(json.dumps(result))
    else:
        _print(result)
    return 0
