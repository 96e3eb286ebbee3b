"""One synthesized stack shared by every infra test (CDK synthesis costs seconds, not ms).

The shared synth runs with CDK's built-in template validation on (the one validated synth);
variants synthesize with it off.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imgproc_shared.settings import Settings

# CDK is in the `infra` dependency group; each test module skips itself without it, and this
# file imports it only inside fixtures.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
CDK_MISSING = "the CDK app needs `uv sync --group infra`"

PREFIX = "imgtest"


@dataclass
class Synthesized:
    stack: Any  # imgproc_infra.stack.ImgprocStack
    settings: Settings
    outdir: Path
    template: dict[str, Any]
    assertions: Any  # aws_cdk.assertions.Template

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def logical_id(self, construct: Any) -> str:
        return str(self.stack.resolve(construct.node.default_child.logical_id))

    def assets(self) -> dict[str, dict[str, Any]]:
        manifest = json.loads((self.outdir / f"{self.stack.stack_name}.assets.json").read_text())
        return {k: v["source"] for k, v in manifest["dockerImages"].items()}


def clean_settings(**overrides: Any) -> Settings:
    """Settings from defaults only: no `IMGPROC_*` variable of the test run leaks in."""
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("IMGPROC_")}
    try:
        return Settings(resource_prefix=PREFIX, **overrides)
    finally:
        os.environ.update(saved)


def synthesize(outdir: Path, *, validation: bool, **config: Any) -> Synthesized:
    from aws_cdk import assertions

    from imgproc_infra.app import build_app
    from imgproc_infra.config import DeploymentConfig

    settings = clean_settings()
    app, stack = build_app(
        DeploymentConfig(settings=settings, **config), outdir=outdir, validation=validation
    )
    assembly = app.synth()
    template = assembly.get_stack_artifact(stack.artifact_id).template
    return Synthesized(stack, settings, outdir, template, assertions.Template.from_json(template))


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(tmp_path_factory.mktemp("cdk.out"), validation=True)


def resolve_join(value: Any) -> Any:
    """A template value with each Ref/GetAtt replaced by a readable placeholder string."""
    if isinstance(value, dict):
        if "Ref" in value:
            return f"<Ref {value['Ref']}>"
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return f"<GetAtt {logical_id}.{attribute}>"
        if "Fn::Join" in value:
            separator, parts = value["Fn::Join"]
            return separator.join(str(resolve_join(part)) for part in parts)
        return {k: resolve_join(v) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve_join(v) for v in value]
    return value
