"""HTTPS without owning a domain: a CloudFront distribution in front of the status API.

The viewer side uses CloudFront's own `*.cloudfront.net` certificate (or, with `domain_name`
and `edge_certificate_arn`, the team's domain). The load balancer is internal: CloudFront
reaches it through a VPC origin (ENIs that CloudFront places in the VPC), so it has no public
address at all, and its security group admits only the VPC's own range (see `StatusApi`).

Nothing is cached: every path is the API, the web client's files or the live event stream, and
each answer depends on the signed-in user. The event stream sends a keep-alive comment every
`events_keepalive_s` (15 s by default), well inside the origin read timeout below, which for a
stream is the longest CloudFront waits between two packets.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from constructs import Construct

from imgproc_infra.config import DeploymentConfig

# CloudFront's origin response timeout: 60 s is the most every account may set without a quota
# increase; the event stream's keep-alive (15 s) must stay below it, or CloudFront cuts the
# stream with a 504.
ORIGIN_READ_TIMEOUT = Duration.seconds(60)
# How long CloudFront keeps an idle connection to the load balancer for reuse.
ORIGIN_KEEPALIVE = Duration.seconds(60)


class Edge(Construct):
    """The distribution: HTTPS for viewers (HTTP redirects), no caching, the ALB as VPC origin."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        load_balancer: elbv2.IApplicationLoadBalancer,
        origin_uses_https: bool,
    ) -> None:
        super().__init__(scope, construct_id)
        if origin_uses_https and not config.domain_name:
            raise ValueError(
                "certificate_arn needs domain_name: CloudFront checks the load balancer's "
                "certificate against the name it connects to"
            )
        # With a load balancer certificate, CloudFront speaks TLS to it too, naming the
        # certificate's domain (it checks the certificate against the name it sends).
        origin = origins.VpcOrigin.with_application_load_balancer(
            load_balancer,
            vpc_origin_name=f"{config.prefix}-status-api",
            protocol_policy=(
                cloudfront.OriginProtocolPolicy.HTTPS_ONLY
                if origin_uses_https
                else cloudfront.OriginProtocolPolicy.HTTP_ONLY
            ),
            domain_name=config.domain_name if origin_uses_https else None,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            read_timeout=ORIGIN_READ_TIMEOUT,
            keepalive_timeout=ORIGIN_KEEPALIVE,
        )
        alias = bool(config.domain_name and config.edge_certificate_arn)
        self._alias = config.domain_name if alias else None
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"{config.prefix}: the status API and web client over HTTPS",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
                cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
                # Every header but Host (the ALB's own name goes to the origin), including
                # Authorization, which CloudFront forwards only when caching is disabled.
                origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
                # Compressing would buffer the event stream.
                compress=False,
            ),
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            # North America and Europe edges only: the cheapest class.
            price_class=cloudfront.PriceClass.PRICE_CLASS_100,
            domain_names=[config.domain_name] if alias and config.domain_name else None,
            certificate=(
                acm.Certificate.from_certificate_arn(
                    self, "EdgeCertificate", config.edge_certificate_arn
                )
                if alias and config.edge_certificate_arn
                else None
            ),
            # Only settable with a certificate of one's own; the default certificate keeps
            # CloudFront's default policy.
            minimum_protocol_version=(
                cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021 if alias else None
            ),
        )

    @property
    def url(self) -> str:
        """The URL users open: the team's domain where it has one, else CloudFront's."""
        return f"https://{self._alias or self.distribution.distribution_domain_name}"
