"""`imgproc bench thumbnails|tagger [DIR] [--json]`: the benchmarks in the repository's bench/."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from imgproc_shared.settings import Settings

# The CLI is installed from the workspace; the benchmarks live beside it in the checkout.
REPO_ROOT = Path(__file__).resolve().parents[3]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("bench", help="run a benchmark from bench/")
    parser.add_argument("suite", choices=("thumbnails", "tagger"))
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="DIR and --json")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    if not (REPO_ROOT / "bench" / f"{args.suite}.py").exists():
        print(f"imgproc: bench/{args.suite}.py not found under {REPO_ROOT}", file=sys.stderr)
        return 2
    sys.path.insert(0, str(REPO_ROOT))
    module = importlib.import_module(f"bench.{args.suite}")
    code: int = module.main(list(args.rest))
    return code
