"""`imgproc` pointed at a deployed stack reads its settings from the stack's outputs."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from imgproc_cli.aws_target import StackNotFound, setting_name, settings_from_stack_outputs
from imgproc_local.embedded_aws import EmbeddedAws
from imgproc_shared.settings import Settings

REGION = "us-east-1"
STATE_MACHINE_ARN = "arn:aws:states:us-east-1:123456789012:stateMachine:demo-ImageProc"


def create_stack(
    endpoint_url: str, outputs: dict[str, str], parameters: dict[str, str] | None = None
) -> str:
    name = f"imgproc-{uuid.uuid4().hex[:8]}"
    parameters = parameters or {}
    template = {
        "Parameters": {key: {"Type": "String"} for key in parameters},
        "Resources": {
            "Placeholder": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}
        },
        "Outputs": {key: {"Value": value} for key, value in outputs.items()},
    }
    client = boto3.client("cloudformation", region_name=REGION, endpoint_url=endpoint_url)
    client.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    return name


def test_outputs_become_imgproc_settings(embedded_aws: EmbeddedAws) -> None:
    name = create_stack(
        embedded_aws.endpoint_url,
        {
            "ResourcePrefix": "demo",
            "StateMachineArn": STATE_MACHINE_ARN,
            "ApiUrl": "http://demo.example",
            "CognitoIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc",
        },
    )
    values = settings_from_stack_outputs(name, REGION, endpoint_url=embedded_aws.endpoint_url)
    assert values == {
        "IMGPROC_RESOURCE_PREFIX": "demo",
        "IMGPROC_STATE_MACHINE_ARN": STATE_MACHINE_ARN,
        "IMGPROC_API_URL": "http://demo.example",
        "IMGPROC_COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_abc",
        "IMGPROC_REGION": REGION,
    }
    settings = Settings.model_validate(
        {k.removeprefix("IMGPROC_").lower(): v for k, v in values.items()}
    )
    assert settings.resource_prefix == "demo"
    assert settings.state_machine_arn == STATE_MACHINE_ARN
    assert settings.endpoint_url is None  # real AWS


def test_a_parameter_named_after_a_setting_feeds_it(embedded_aws: EmbeddedAws) -> None:
    name = create_stack(
        embedded_aws.endpoint_url,
        {"ResourcePrefix": "demo"},
        {"TaggerBackend": "rekognition", "TaggerCpu": "256"},
    )
    values = settings_from_stack_outputs(name, REGION, endpoint_url=embedded_aws.endpoint_url)
    # `imgproc loadtest --stack` prices the backend the stack was deployed with.
    assert values["IMGPROC_TAGGER_BACKEND"] == "rekognition"
    assert "IMGPROC_TAGGER_CPU" not in values  # a size, not a setting


def test_a_missing_stack_is_reported(embedded_aws: EmbeddedAws) -> None:
    with pytest.raises(StackNotFound):
        settings_from_stack_outputs("no-such-stack", REGION, endpoint_url=embedded_aws.endpoint_url)


def test_every_output_of_the_cdk_stack_that_feeds_a_setting_names_a_real_field() -> None:
    pytest.importorskip("aws_cdk", reason="the CDK app needs `uv sync --group infra`")
    from imgproc_infra import stack

    fields = set(Settings.model_fields)
    try:
        from imgproc_status_api.config import ApiSettings

        fields |= set(ApiSettings.model_fields)
    except ImportError:  # pragma: no cover - the status API is a workspace member
        pass
    feeds = {
        stack.OUTPUT_RESOURCE_PREFIX,
        stack.OUTPUT_STATE_MACHINE_ARN,
        stack.OUTPUT_REGION,
        stack.OUTPUT_ISSUER,
        stack.OUTPUT_USER_POOL_CLIENT_ID,
    }
    for key in feeds:
        assert setting_name(key).removeprefix("IMGPROC_").lower() in fields, key
    # The deploy-time choice of label backend reaches the CLI as its setting.
    assert setting_name(stack.PARAMETER_TAGGER_BACKEND) == "IMGPROC_TAGGER_BACKEND"
