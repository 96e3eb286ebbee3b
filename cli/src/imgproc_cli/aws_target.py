"""Point `imgproc` at a deployed stack: its `IMGPROC_*` settings from the stack's outputs.

The CDK app (`infra/`) names each output after the setting it feeds, in CamelCase
(`StateMachineArn` → `IMGPROC_STATE_MACHINE_ARN`, `ResourcePrefix` → `IMGPROC_RESOURCE_PREFIX`),
so this module needs no list of keys and never imports CDK. The endpoint stays unset: the
settings address real AWS.
"""

from __future__ import annotations

import re
from typing import Any

import boto3

from imgproc_shared.settings import Settings

_WORD_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class StackNotFound(LookupError):
    """The stack does not exist in that region (or the caller may not describe it)."""


def setting_name(output_key: str) -> str:
    """`StateMachineArn` → `IMGPROC_STATE_MACHINE_ARN`."""
    return "IMGPROC_" + _WORD_BOUNDARY.sub("_", output_key).upper()


def settings_from_stack_outputs(
    stack_name: str, region: str, *, endpoint_url: str | None = None, client: Any = None
) -> dict[str, str]:
    """The `IMGPROC_*` values a deployed stack publishes, plus the region it runs in.

    A deploy-time parameter named after a setting feeds it too (`TaggerBackend` →
    `IMGPROC_TAGGER_BACKEND`); an output of the same setting wins. `endpoint_url` exists for
    tests against an embedded CloudFormation; leave it unset for AWS.
    """
    cloudformation = client or boto3.client(
        "cloudformation", region_name=region, endpoint_url=endpoint_url
    )
    try:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
    except cloudformation.exceptions.ClientError as exc:
        raise StackNotFound(f"stack {stack_name!r} not found in {region}: {exc}") from exc
    if not stacks:
        raise StackNotFound(f"stack {stack_name!r} not found in {region}")
    values = {
        setting_name(output["OutputKey"]): str(output["OutputValue"])
        for output in stacks[0].get("Outputs", [])
    }
    setting_fields = set(Settings.model_fields)
    for parameter in stacks[0].get("Parameters", []):
        name = setting_name(parameter["ParameterKey"])
        if name.removeprefix("IMGPROC_").lower() in setting_fields:
            values.setdefault(name, str(parameter["ParameterValue"]))
    values.setdefault("IMGPROC_REGION", region)
    return values
