"""The `imgproc` command: run the stack locally, upload, follow, operate, benchmark."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from imgproc_cli import bench, up, uploads
from imgproc_cli.local_stack import NoTarget
from imgproc_cli.uploads import UsageError
from imgproc_shared.settings import Settings

COMMANDS = (up, uploads, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgproc", description="imgproc: image recognition and processing backend"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"imgproc: invalid IMGPROC_* setting: {exc}", file=sys.stderr)
        return 2
    try:
        code: int = args.func(args, settings)
        return code
    except (UsageError, NoTarget) as exc:
        print(f"imgproc: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
