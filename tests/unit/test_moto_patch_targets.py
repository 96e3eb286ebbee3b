"""Every moto (and aiobotocore) name the endpoint's patches rely on is where they expect it.

`moto_speedups.PATCH_TARGETS` is the one list: `install` checks a patch's names before applying
it, and this test checks them all, so an upgrade of moto that moves or renames one fails here
with the patch's name ("moto_speedups.<patch> relies on moto.x.Y.z, which moto <version> no
longer has") instead of a patch that silently does nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import tomllib
from pathlib import Path

import pytest

from imgproc_cli import moto_speedups
from imgproc_cli.moto_speedups import PATCH_TARGETS, PatchTarget

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "target", PATCH_TARGETS, ids=[f"{t.patch}:{t.name}" for t in PATCH_TARGETS]
)
def test_patched_name_exists_with_the_expected_shape(target: PatchTarget) -> None:
    problem = target.problem()
    assert problem is None, problem


def test_every_installed_patch_declares_its_targets() -> None:
    declared = {t.patch for t in PATCH_TARGETS}
    patches = {name for name, _ in moto_speedups.patches_to_install(speedups=True)}
    # The others touch nothing of moto's: a logger's level, the hosting process's own client.
    assert patches - declared <= {"quiet_request_log"}, patches - declared


def test_moto_is_pinned_to_the_version_the_patches_were_written_for() -> None:
    project = tomllib.loads((REPO_ROOT / "cli" / "pyproject.toml").read_text())
    pins = [d for d in project["project"]["dependencies"] if d.startswith("moto")]
    assert pins == ["moto[server]==5.2.5"], pins
    assert importlib.metadata.version("moto") == "5.2.5"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"name": "ExecutionWorker._renamed_entrypoint"},
            "moto_speedups.program_cache relies on moto.stepfunctions.parser.backend."
            "execution_worker.ExecutionWorker._renamed_entrypoint, which moto 5.2.5 no longer has",
        ),
        ({"module": "moto.no_such_module"}, "relies on the module moto.no_such_module"),
        ({"parameters": ("self", "program")}, "(it has (self))"),
    ],
)
def test_a_moved_name_fails_naming_the_patch(change: dict[str, object], expected: str) -> None:
    target = next(t for t in PATCH_TARGETS if t.patch == "program_cache")
    problem = dataclasses.replace(target, **change).problem()  # type: ignore[arg-type]
    assert problem is not None and expected in problem, problem
