"""The `imgproc` command: run the stack locally, upload, follow, operate, benchmark."""

from __future__ import annotations

import argparse
import sys

from botocore.exceptions import BotoCoreError
from pydantic import ValidationError

from imgproc_cli import (
    bench,
    dlq,
    duplicates,
    library_import,
    loadtest,
    retag,
    search,
    uploads,
    workers,
)
from imgproc_cli.aws_target import StackNotFound
from imgproc_cli.uploads import UsageError
from imgproc_local import local_cognito, up
from imgproc_local.local_stack import NoTarget
from imgproc_shared.settings import Settings

COMMANDS = (
    up,
    uploads,
    search,
    library_import,
    duplicates,
    workers,
    dlq,
    retag,
    bench,
    loadtest,
    local_cognito,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgproc", description="imgproc: image recognition and processing backend"
    )
    parser.add_argument(
        "--stack",
        metavar="NAME",
        help="target a stack deployed to AWS with infra/ (its outputs give every name)",
    )
    parser.add_argument("--region", help="AWS region of --stack (default: IMGPROC_REGION)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def _target_deployed_stack(stack: str, region: str | None) -> None:
    """Point every command at a deployed stack: its outputs become `IMGPROC_*` settings."""
    import os

    from imgproc_cli.aws_target import settings_from_stack_outputs  # boto3: only when used

    region = region or Settings().region
    os.environ.update(settings_from_stack_outputs(stack, region))
    os.environ["IMGPROC_TARGET"] = "aws"
    os.environ.pop("IMGPROC_ENDPOINT_URL", None)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.stack:
            _target_deployed_stack(args.stack, args.region)
        settings = Settings()
    except ValidationError as exc:
        print(f"imgproc: invalid IMGPROC_* setting: {exc}", file=sys.stderr)
        return 2
    except (StackNotFound, BotoCoreError) as exc:
        print(f"imgproc: {exc}", file=sys.stderr)
        return 2
    try:
        code: int = args.func(args, settings)
        return code
    except (UsageError, NoTarget, BotoCoreError) as exc:
        print(f"imgproc: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
