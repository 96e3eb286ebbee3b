"""Who may use the API: a Cognito user pool, the web client's app client and the operators'
group."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_cognito as cognito
from constructs import Construct

from imgproc_shared.resources import ResourceNames

# Members are operators: the status API reads the token's `cognito:groups` (its `config.py`
# names the same group).
OPERATORS_GROUP = "operators"


class Identity(Construct):
    """Users sign in to the web client; the status API verifies the pool's ID/access tokens."""

    def __init__(self, scope: Construct, construct_id: str, *, names: ResourceNames) -> None:
        super().__init__(scope, construct_id)
        self.user_pool = cognito.UserPool(
            self,
            "Users",
            user_pool_name=f"{names.prefix}-users",
            # An operator invites users (`aws cognito-idp admin-create-user`).
            self_sign_up_enabled=False,
            sign_in_aliases=cognito.SignInAliases(email=True, username=True),
            auto_verify=cognito.AutoVerifiedAttrs(email=True),
            password_policy=cognito.PasswordPolicy(
                min_length=12, require_digits=True, require_lowercase=True, require_uppercase=True
            ),
            account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
            removal_policy=RemovalPolicy.RETAIN,
        )
        # A public client (a browser cannot keep a secret): the web client signs in with SRP
        # against the user pool API (ALLOW_USER_SRP_AUTH, plus ALLOW_REFRESH_TOKEN_AUTH, which
        # CDK adds), short-lived tokens. No OAuth: the hosted UI is not used, so no implicit
        # grant, no code grant and no callback URLs for tokens to be sent to.
        self.web_client = self.user_pool.add_client(
            "WebClient",
            user_pool_client_name=f"{names.prefix}-web",
            generate_secret=False,
            auth_flows=cognito.AuthFlow(user_srp=True),
            disable_o_auth=True,
            enable_token_revocation=True,
            prevent_user_existence_errors=True,
            id_token_validity=Duration.hours(1),
            access_token_validity=Duration.hours(1),
            refresh_token_validity=Duration.days(30),
        )

        self.operators_group = cognito.CfnUserPoolGroup(
            self,
            "Operators",
            user_pool_id=self.user_pool.user_pool_id,
            group_name=OPERATORS_GROUP,
            description="Operators: queues, dead letters and re-tagging in the web client and API",
        )

    @property
    def issuer(self) -> str:
        region = Stack.of(self).region
        return f"https://cognito-idp.{region}.amazonaws.com/{self.user_pool.user_pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.issuer}/.well-known/jwks.json"
