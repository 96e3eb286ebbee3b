"""The web client's Cognito app client and the operators' group, read from the synthesized
template: the browser signs in with SRP against the user pool API (no hosted UI, so no OAuth
flow, above all no implicit grant), and members of `operators` are operators."""

from __future__ import annotations

import pytest

from .conftest import CDK_MISSING, Synthesized

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

from imgproc_infra.identity import OPERATORS_GROUP
from imgproc_status_api.config import OPERATORS_GROUP as API_OPERATORS_GROUP


def test_the_web_client_signs_in_with_srp_and_offers_no_oauth_flow(
    synthesized: Synthesized,
) -> None:
    (client,) = synthesized.resources("AWS::Cognito::UserPoolClient").values()
    properties = client["Properties"]
    assert properties["GenerateSecret"] is False
    assert set(properties["ExplicitAuthFlows"]) == {
        "ALLOW_USER_SRP_AUTH",
        "ALLOW_REFRESH_TOKEN_AUTH",
    }
    # No implicit grant (tokens in URLs), and no OAuth at all: no callback URL to send them to.
    assert properties["AllowedOAuthFlowsUserPoolClient"] is False
    for key in ("AllowedOAuthFlows", "CallbackURLs", "LogoutURLs", "AllowedOAuthScopes"):
        assert key not in properties, key
    assert properties["EnableTokenRevocation"] is True
    assert properties["PreventUserExistenceErrors"] == "ENABLED"


def test_the_operators_group_exists_in_the_user_pool_the_api_trusts(
    synthesized: Synthesized,
) -> None:
    (pool_id,) = synthesized.resources("AWS::Cognito::UserPool")
    groups = synthesized.resources("AWS::Cognito::UserPoolGroup").values()
    assert [g["Properties"]["GroupName"] for g in groups] == ["operators"]
    (group,) = groups
    assert group["Properties"]["UserPoolId"] == {"Ref": pool_id}
    # The API reads the same name from the token's `cognito:groups`.
    assert OPERATORS_GROUP == API_OPERATORS_GROUP == "operators"


def test_the_status_api_is_told_where_to_sign_in(synthesized: Synthesized) -> None:
    """`GET /api/auth-config` derives the pool id and the regional endpoint from the issuer."""
    definitions = synthesized.resources("AWS::ECS::TaskDefinition").values()
    environments = [
        {e["Name"]: e["Value"] for e in container.get("Environment", [])}
        for definition in definitions
        for container in definition["Properties"]["ContainerDefinitions"]
    ]
    api = [env for env in environments if "IMGPROC_COGNITO_ISSUER" in env]
    assert len(api) == 1
    assert "IMGPROC_COGNITO_AUDIENCE" in api[0]
