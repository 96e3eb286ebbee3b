"""`python -m imgproc_infra [--outdir DIR]`: synthesize the imgproc CloudFormation template.

The `cdk` CLI runs the same entry point (see `infra/cdk.json`). Context values (`-c key=value`
with the CLI, `IMGPROC_*` settings in the environment without it):
- `prefix`: the resource prefix (default `imgproc`); the bucket is `{prefix}-images`, so pick
  one that is globally unique;
- `stack_name` (default `Imgproc`);
- optional, a domain of one's own (CloudFront's HTTPS URL works without): `domain_name`,
  `edge_certificate_arn` (us-east-1, for CloudFront), `certificate_arn` (the stack's region,
  TLS from CloudFront to the load balancer);
- cheaper options: `architecture=arm64` (Graviton images and tasks), `public_subnets=true`
  (tasks with public IPs, no NAT gateway).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import aws_cdk as cdk

from imgproc_infra.config import DeploymentConfig, context_options
from imgproc_infra.stack import ImgprocStack
from imgproc_shared.settings import Settings

DEFAULT_STACK_NAME = "Imgproc"
DEFAULT_OUTDIR = Path(__file__).resolve().parents[2] / "cdk.out"


def build_app(
    config: DeploymentConfig | None = None,
    *,
    outdir: Path | None = None,
    stack_name: str | None = None,
    validation: bool = True,
) -> tuple[cdk.App, ImgprocStack]:
    """The CDK app with its one stack; `validation=False` skips CDK's slow template checks."""
    app = cdk.App(
        outdir=str(outdir) if outdir else None,
        # Synthesis spends ~95% of its time validating the template (docs/FACTS.md); the
        # environment's CDK_VALIDATION=false also turns it off.
        builtin_cloud_formation_validation=validation,
        stack_traces=False,
    )
    if config is None:
        prefix = app.node.try_get_context("prefix") or Settings().resource_prefix
        config = DeploymentConfig(
            settings=Settings(resource_prefix=prefix),
            certificate_arn=app.node.try_get_context("certificate_arn"),
            domain_name=app.node.try_get_context("domain_name"),
            edge_certificate_arn=app.node.try_get_context("edge_certificate_arn"),
            **context_options(app.node.try_get_context),
        )
    name = stack_name or app.node.try_get_context("stack_name") or DEFAULT_STACK_NAME
    stack = ImgprocStack(
        app,
        name,
        config=config,
        description="imgproc: image processing on ECS Fargate, SQS, SNS, Step Functions, "
        "DynamoDB and S3",
        env=cdk.Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"),
            region=os.environ.get("CDK_DEFAULT_REGION"),
        ),
    )
    return app, stack


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m imgproc_infra")
    parser.add_argument("--outdir", type=Path, default=None, help="default: infra/cdk.out")
    args = parser.parse_args()
    outdir = args.outdir or (None if os.environ.get("CDK_OUTDIR") else DEFAULT_OUTDIR)
    app, _ = build_app(outdir=outdir)
    app.synth()
