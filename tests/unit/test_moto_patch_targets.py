"""Every moto (and aiobotocore) name the endpoint's patches rely on is where they expect it.

`moto_patches.PATCH_TARGETS` is the one list: every patch's names are checked before it is
applied, and this test checks them all, so an upgrade of moto that moves or renames one fails here
with the patch's module and name ("moto_speedups.<patch> relies on moto.x.Y.z, which moto
<version> no longer has") instead of a patch that silently does nothing.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import tomllib
from pathlib import Path

import pytest

from imgproc_local import moto_fixes, moto_speedups, request_counter, table_changes
from imgproc_local.moto_patches import PATCH_TARGETS, PatchTarget

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "target", PATCH_TARGETS, ids=[f"{t.patch}:{t.name}" for t in PATCH_TARGETS]
)
def test_patched_name_exists_with_the_expected_shape(target: PatchTarget) -> None:
    problem = target.problem()
    assert problem is None, problem


MODULES = (moto_fixes, request_counter, moto_speedups, table_changes)


def test_every_installed_patch_declares_its_targets_under_its_own_module() -> None:
    declared = {(t.owner, t.patch) for t in PATCH_TARGETS}
    # Each patch is declared under the module its function lives in (moto_fixes installs
    # moto_iam's and s3_post_policy's).
    patches = {
        (patch.__module__.rsplit(".", 1)[1], name)
        for module in MODULES
        for name, patch in module.PATCHES
    }
    # The one that touches nothing of moto's: a logger's level.
    assert patches - declared <= {("moto_speedups", "quiet_request_log")}, patches - declared
    # Every declared target belongs to a patch that is installed.
    assert {patch for _, patch in declared} <= {patch for _, patch in patches}


def test_fixes_and_speedups_are_apart() -> None:
    """A patch is a fix (always on) or a speed-up (off with IMGPROC_MOTO_SPEEDUPS=0), not both."""
    fixes = {name for name, _ in moto_fixes.PATCHES}
    speedups = {name for name, _ in moto_speedups.PATCHES}
    assert fixes and speedups and not fixes & speedups
    assert {t.patch for t in PATCH_TARGETS if t.owner == "moto_speedups"} <= speedups


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
