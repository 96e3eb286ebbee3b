"""cfn-lint on the synthesized template, hadolint on every Dockerfile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import CDK_MISSING, Synthesized

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Warnings CDK generates itself, which the template cannot avoid:
# W3005: CDK adds an explicit DependsOn beside a Ref/GetAtt (bucket notifications, the
#        state machine's role, the ALB listener's target group).
IGNORED_CHECKS = ["W3005"]


def test_cfn_lint_finds_no_errors_or_unexpected_warnings(synthesized: Synthesized) -> None:
    template = synthesized.outdir / f"{synthesized.stack.stack_name}.template.json"
    result = subprocess.run(
        [
            str(BIN / "cfn-lint"),
            "--format",
            "json",
            "--ignore-checks",
            *IGNORED_CHECKS,
            "--",
            str(template),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=1)
    assert result.returncode == 0, result.stderr


def dockerfiles() -> list[Path]:
    return sorted((REPO_ROOT / "docker").glob("*Dockerfile*"))


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: p.name)
def test_hadolint_passes(dockerfile: Path) -> None:
    result = subprocess.run(
        [str(BIN / "hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_a_dockerfile() -> None:
    assert dockerfiles()
