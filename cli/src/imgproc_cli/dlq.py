"""`imgproc dlq`: list, show, replay and purge dead letters (local stack or AWS)."""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import asdict

from imgproc_cli.uploads import UsageError
from imgproc_local.local_stack import target_settings
from imgproc_shared.aws import AwsClients
from imgproc_shared.dead_letters import DeadLetters, UnknownQueue, parse_queue
from imgproc_shared.models import is_valid_id
from imgproc_shared.resources import Queue
from imgproc_shared.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dlq", help="list, show, replay, delete and purge dead letters")
    commands = parser.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    queues = ", ".join(q.value for q in Queue)

    listing = commands.add_parser("list", help="dead-letter counts, or one queue's messages")
    listing.add_argument("queue", nargs="?", help=f"a queue ({queues})")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=run, action=list_dead_letters)

    show = commands.add_parser("show", help="one dead letter, with its body and attributes")
    show.add_argument("queue")
    show.add_argument("message_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=run, action=show_dead_letter)

    replay = commands.add_parser(
        "replay", help="return dead letters to their queue and re-run their FAILED images"
    )
    replay.add_argument("queue")
    replay.add_argument("--max", type=int, default=None, dest="max_messages", metavar="N")
    replay.add_argument("--image", default=None, metavar="ID", help="only this image's messages")
    replay.add_argument(
        "--message",
        action="append",
        default=None,
        dest="message_ids",
        metavar="MESSAGE_ID",
        help="only this message (repeatable)",
    )
    replay.add_argument("--dry-run", action="store_true", help="show what would move")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(func=run, action=replay_dead_letters)

    delete = commands.add_parser("delete", help="delete dead letters by message id, for good")
    delete.add_argument("queue")
    delete.add_argument("message_ids", nargs="+", metavar="MESSAGE_ID")
    delete.add_argument("--json", action="store_true")
    delete.set_defaults(func=run, action=delete_dead_letters)

    purge = commands.add_parser("purge", help="delete every dead letter of a queue")
    purge.add_argument("queue")
    purge.add_argument("--yes", action="store_true", help="required: purging cannot be undone")
    purge.add_argument("--json", action="store_true")
    purge.set_defaults(func=run, action=purge_dead_letters)


def _queue(name: str) -> Queue:
    try:
        return parse_queue(name)
    except UnknownQueue as exc:
        raise UsageError(str(exc)) from exc


async def list_dead_letters(args: argparse.Namespace, dead: DeadLetters) -> int:
    if args.queue is None:
        depths = await dead.depths()
        if args.json:
            print(json.dumps({"queues": [asdict(d) for d in depths]}))
        else:
            print(f"{'queue':<14} {'dead letters':>12} {'waiting':>8} {'in flight':>9}")
            for d in depths:
                print(f"{d.queue:<14} {d.dead_letters:>12} {d.visible:>8} {d.in_flight:>9}")
        return 0
    queue = _queue(args.queue)
    letters = await dead.messages(queue)
    if args.json:
        print(json.dumps({"queue": queue.value, "messages": [x.summary() for x in letters]}))
        return 0
    if not letters:
        print(f"no dead letters in {queue.value}")
        return 0
    for letter in letters:
        error = letter.last_error or {}
        print(
            f"{letter.message_id}  image {letter.image_id or '?'}  stage {letter.stage or '-'}  "
            f"received {letter.receive_count}x  first {letter.first_receive_at or '?'}  "
            f"last {letter.last_receive_at or '?'}"
        )
        if error:
            print(f"    {error.get('code')}: {error.get('message')}")
    return 0


async def show_dead_letter(args: argparse.Namespace, dead: DeadLetters) -> int:
    queue = _queue(args.queue)
    letter = await dead.show(queue, args.message_id)
    if letter is None:
        raise UsageError(f"no message {args.message_id} in the {queue.value} dead-letter queue")
    detail = letter.detail()
    if args.json:
        print(json.dumps(detail))
    else:
        for key, value in detail.items():
            if key in ("body_preview", "body_truncated"):
                continue  # the whole body follows
            if key == "body":
                value = _pretty_body(str(value))
            print(f"{key}: {value}")
    return 0


def _pretty_body(body: str) -> str:
    try:
        return "\n" + json.dumps(json.loads(body), indent=2)
    except ValueError:
        return body


async def replay_dead_letters(args: argparse.Namespace, dead: DeadLetters) -> int:
    if args.max_messages is not None and args.max_messages < 1:
        raise UsageError("--max must be at least 1")
    if args.image is not None and not is_valid_id(args.image):
        raise UsageError(f"{args.image!r} is not an image id")
    report = await dead.replay(
        _queue(args.queue),
        max_messages=args.max_messages,
        image_id=args.image,
        message_ids=args.message_ids,
        dry_run=args.dry_run,
    )
    if args.json:
        print(json.dumps(report.as_dict()))
        return 0 if report.failed == 0 else 1
    if report.dry_run:
        print(f"would move {report.selected} message(s) to {report.queue}")
        for image_id in report.image_ids:
            print(f"  image {image_id}")
        return 0
    print(f"moved {report.moved} message(s) to {report.queue} ({report.method})")
    if report.failed:
        print(f"{report.failed} message(s) could not be sent; they stay in the dead-letter queue")
    for image_id, arn in report.reran.items():
        print(f"  image {image_id}: re-run as {arn.rsplit(':', 1)[-1]}")
    for image_id, why in report.not_rerun.items():
        print(f"  image {image_id}: not re-run ({why})")
    return 0 if report.failed == 0 else 1


async def delete_dead_letters(args: argparse.Namespace, dead: DeadLetters) -> int:
    report = await dead.delete(_queue(args.queue), args.message_ids)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"deleted {len(report.deleted)} message(s) from the {report.queue} dead-letter queue")
        for message_id in report.not_found:
            print(f"  {message_id}: not in the queue")
    return 0 if not report.not_found else 1


async def purge_dead_letters(args: argparse.Namespace, dead: DeadLetters) -> int:
    queue = _queue(args.queue)
    if not args.yes:
        raise UsageError(f"purging the {queue.value} dead-letter queue cannot be undone: add --yes")
    purged = await dead.purge(queue)
    if args.json:
        print(json.dumps({"queue": queue.value, "purged": purged}))
    else:
        print(f"purged about {purged} message(s) from the {queue.value} dead-letter queue")
    return 0


def run(args: argparse.Namespace, settings: Settings) -> int:
    if getattr(args, "queue", None):
        _queue(args.queue)  # a bad name is reported before looking for a target
    target = target_settings(settings)

    async def act() -> int:
        async with AwsClients(target) as aws:
            code: int = await args.action(args, DeadLetters(aws, target))
            return code

    return asyncio.run(act())
