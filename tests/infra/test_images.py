"""The container images: what CDK sends to Docker, and what each image installs and runs.

No Docker engine here: the build context CDK copies into cdk.out is checked against the
Dockerfile's COPY lines, and each image's install step is replayed in a fresh virtual
environment from that same copied context.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .conftest import CDK_MISSING, Synthesized

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

from imgproc_infra.config import (
    DOCKERFILE,
    HEALTHCHECK_COMMAND,
    SERVICE_IMAGES,
    ServiceImage,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
# The tagger's models beside its code: package data, installed with the package into the image's
# virtual environment (the EfficientNet graph is built in the `tagger-model` stage instead).
TAGGER_DATA = Path("services/tagger/src/imgproc_tagger/data")
DETECTOR = TAGGER_DATA / "nanodet-coco.onnx"


def find_uv() -> str:
    """uv as `make` installs it (.tools/bin/uv), or from $UV or the PATH."""
    for candidate in (os.environ.get("UV"), shutil.which("uv"), REPO_ROOT / ".tools/bin/uv"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise AssertionError("uv not found: run `make install` or set UV=/path/to/uv")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse_dockerfile(path: Path) -> dict[str, Stage]:
    """Stages by name, each with its (INSTRUCTION, arguments) pairs, continuations joined."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else parts[0]
            current = stages[name] = Stage(name, parts[0])
        elif current is not None:
            current.instructions.append((instruction, args.strip()))
    return stages


def stage_chain(stages: dict[str, Stage], target: str) -> list[Stage]:
    """The target stage and the stages it is built FROM, base first."""
    chain = [stages[target]]
    while chain[0].base in stages:
        chain.insert(0, stages[chain[0].base])
    return chain


def copied_sources(stages: dict[str, Stage], target: str) -> set[str]:
    """Every build-context path the target's stages (and those it copies from) COPY."""
    needed: set[str] = set()
    todo, seen = [target], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in stages:
            continue
        seen.add(name)
        for stage in stage_chain(stages, name):
            todo.append(stage.name)
            for instruction, args in stage.instructions:
                if instruction not in ("COPY", "ADD"):
                    continue
                words = shlex.split(args)
                source_from = [w for w in words if w.startswith("--from=")]
                paths = [w for w in words if not w.startswith("--")]
                if source_from:
                    todo.append(source_from[0].split("=", 1)[1])
                    continue
                needed.update(paths[:-1])
    return needed


STAGES = parse_dockerfile(REPO_ROOT / DOCKERFILE)


def asset_dir(synth: Synthesized, image: ServiceImage) -> Path:
    (source,) = [s for s in synth.assets().values() if s.get("dockerBuildTarget") == image.target]
    assert source["dockerFile"] == DOCKERFILE
    assert source["dockerBuildArgs"] == {"PACKAGE": image.package}
    return synth.outdir / source["directory"]


@pytest.mark.parametrize("image", SERVICE_IMAGES, ids=lambda i: i.service)
def test_asset_holds_the_dockerfile_and_everything_it_copies(
    synthesized: Synthesized, image: ServiceImage
) -> None:
    directory = asset_dir(synthesized, image)
    assert (directory / DOCKERFILE).is_file(), "the .dockerignore drops the Dockerfile"
    sources = copied_sources(STAGES, image.target)
    assert "uv.lock" in sources
    for source in sources:
        assert (directory / source).exists(), f"{source} is excluded from the build context"
    # And nothing heavy rides along.
    for unwanted in (".venv", ".git", "tests", "infra/cdk.out", "bench"):
        assert not (directory / unwanted).exists(), unwanted


@pytest.mark.parametrize("image", SERVICE_IMAGES, ids=lambda i: i.service)
def test_each_target_runs_the_command_ecs_runs_as_a_non_root_user(image: ServiceImage) -> None:
    chain = stage_chain(STAGES, image.target)
    instructions = [i for stage in chain for i in stage.instructions]
    cmd = [args for instruction, args in instructions if instruction == "CMD"][-1]
    assert shlex.split(cmd.replace(",", " ").strip("[]")) == image.command
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users and not users[-1].startswith(("root", "0")), users
    # The final image copies the environment, never the build tools.
    runs = " ".join(args for instruction, args in instructions if instruction == "RUN")
    assert "uv " not in runs and "pip " not in runs


def test_status_api_image_has_the_health_check_ecs_uses() -> None:
    (healthcheck,) = [
        args
        for instruction, args in STAGES["status-api"].instructions
        if instruction == "HEALTHCHECK"
    ]
    command = healthcheck.split("CMD", 1)[1].strip()
    assert command == "[" + ", ".join(f'"{part}"' for part in HEALTHCHECK_COMMAND) + "]"


def test_dockerignore_keeps_the_tagger_models_in_the_build_context(
    synthesized: Synthesized,
) -> None:
    from aws_cdk import IgnoreStrategy

    patterns = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    ignore = IgnoreStrategy.docker(str(REPO_ROOT), patterns)
    # By name, whether or not the file is in this checkout yet.
    assert not ignore.ignores(str(REPO_ROOT / DETECTOR))
    assert ignore.ignores(str(REPO_ROOT / "tests" / "fixtures" / "photo.jpg"))
    # And every data file of this checkout reaches the tagger's build context.
    (tagger,) = [i for i in SERVICE_IMAGES if i.service == "tagger"]
    context = asset_dir(synthesized, tagger)
    data_files = [f.relative_to(REPO_ROOT) for f in (REPO_ROOT / TAGGER_DATA).rglob("*")]
    assert data_files
    for relative in data_files:
        if (REPO_ROOT / relative).is_file():
            assert (context / relative).is_file(), f"{relative} is not in the build context"


def install_command(image: ServiceImage) -> list[str]:
    """The last `uv sync` of the build stage, as the Dockerfile runs it for this image."""
    (build,) = [s for s in STAGES.values() if s.name == "build"]
    runs = [args for instruction, args in build.instructions if instruction == "RUN"]
    line = [run for run in runs if "uv sync" in run][-1]
    words = shlex.split(line[line.index("uv sync") :].replace("${PACKAGE}", image.package))
    return [find_uv(), *words[1:]]


def model_build_command() -> str:
    runs = [
        args for instruction, args in STAGES["tagger-model"].instructions if instruction == "RUN"
    ]
    (run,) = runs
    return run


@pytest.mark.parametrize("image", SERVICE_IMAGES, ids=lambda i: i.service)
def test_install_step_replayed_from_the_asset_imports_the_entry_point(
    synthesized: Synthesized, image: ServiceImage, tmp_path: Path
) -> None:
    context = asset_dir(synthesized, image)
    venv = tmp_path / "venv"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "IMGPROC_"))},
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON": sys.executable,
        "UV_OFFLINE": "1",  # the uv cache of the workspace's own sync has every wheel
        "UV_NO_PROGRESS": "1",
    }
    result = subprocess.run(
        install_command(image), cwd=context, env=env, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stderr
    python = venv / "bin" / "python"
    probe = (
        f"import importlib, importlib.util; importlib.import_module('{image.module}.__main__');"
        # Installed, not run from the context: the image holds no sources beside the venv.
        f" print(importlib.util.find_spec('{image.module}').origin)"
    )
    result = subprocess.run(
        [str(python), "-c", probe],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert str(venv) in result.stdout
    # Only this member (and the shared library) is installed.
    others = {i.module for i in SERVICE_IMAGES} - {image.module}
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert not [m for m in others if (site / m).exists()]
    assert not [m for m in ("imgproc_cli", "imgproc_local", "aws_cdk") if (site / m).exists()]

    if image.service == "tagger":
        # The package data (label map, NanoDet detector) is installed with the package.
        installed = site / "imgproc_tagger" / "data"
        for source in (REPO_ROOT / TAGGER_DATA).iterdir():
            if source.is_file():
                assert (installed / source.name).is_file(), f"{source.name} is not installed"
        models = tmp_path / "models"
        command = model_build_command().replace("/app/.venv/bin/python", str(python))
        result = subprocess.run(
            command,
            shell=True,
            cwd=tmp_path,
            env={**env, "IMGPROC_TAGGER_MODEL_CACHE_DIR": str(models)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert result.returncode == 0, result.stderr
        assert list(models.glob("*.onnx")), "the model was not built into the image's cache"
