"""HTTPS without a domain: CloudFront in front of an internal load balancer (edge.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import CDK_MISSING, Synthesized, resolve_join, synthesize

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

from imgproc_infra.edge import ORIGIN_READ_TIMEOUT

# CloudFront's managed policies, by their fixed ids.
CACHING_DISABLED = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad"
ALL_VIEWER_EXCEPT_HOST_HEADER = "b689b0a8-53d0-40ab-baf2-68738e2966ac"

DOMAIN = "images.example.org"
REGIONAL_CERTIFICATE = "arn:aws:acm:eu-west-1:123456789012:certificate/regional"
EDGE_CERTIFICATE = "arn:aws:acm:us-east-1:123456789012:certificate/edge"


def only(resources: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    assert len(resources) == 1, list(resources)
    ((logical_id, resource),) = resources.items()
    return logical_id, resource["Properties"]


def distribution_config(synth: Synthesized) -> dict[str, Any]:
    _, props = only(synth.resources("AWS::CloudFront::Distribution"))
    return props["DistributionConfig"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def with_domain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(
        Path(tmp_path_factory.mktemp("cdk.out.domain")),
        validation=False,
        certificate_arn=REGIONAL_CERTIFICATE,
        domain_name=DOMAIN,
        edge_certificate_arn=EDGE_CERTIFICATE,
    )


def test_the_api_url_is_cloudfronts_https_address(synthesized: Synthesized) -> None:
    distribution_id, _ = only(synthesized.resources("AWS::CloudFront::Distribution"))
    url = resolve_join(synthesized.template["Outputs"]["ApiUrl"]["Value"])
    assert url == f"https://<GetAtt {distribution_id}.DomainName>"
    # No output points users at the load balancer's plain-HTTP address.
    for output in synthesized.template["Outputs"].values():
        assert not str(resolve_join(output["Value"])).startswith("http://")


def test_viewers_are_redirected_to_https_and_nothing_is_cached(synthesized: Synthesized) -> None:
    config = distribution_config(synthesized)
    assert "CacheBehaviors" not in config  # one behaviour for every path, /api/* included
    behavior = config["DefaultCacheBehavior"]
    assert behavior["ViewerProtocolPolicy"] == "redirect-to-https"
    assert behavior["CachePolicyId"] == CACHING_DISABLED
    # Authorization reaches the API only through an all-viewer policy with caching disabled.
    assert behavior["OriginRequestPolicyId"] == ALL_VIEWER_EXCEPT_HOST_HEADER
    assert set(behavior["AllowedMethods"]) >= {"GET", "POST", "PUT", "DELETE", "PATCH"}
    assert behavior["Compress"] is False  # compression would hold back the event stream
    # The default certificate: no alias and no certificate of our own.
    assert "Aliases" not in config and "ViewerCertificate" not in config


def test_the_event_stream_keepalive_fits_in_the_origin_read_timeout(
    synthesized: Synthesized,
) -> None:
    from imgproc_status_api.config import ApiSettings

    (origin,) = distribution_config(synthesized)["Origins"]
    read_timeout = origin["VpcOriginConfig"]["OriginReadTimeout"]
    assert read_timeout == ORIGIN_READ_TIMEOUT.to_seconds() <= 60
    keepalive = ApiSettings.model_fields["events_keepalive_s"].default
    assert keepalive * 2 <= read_timeout  # a lost keep-alive still does not cut the stream
    # The load balancer keeps an idle stream open longer than CloudFront waits.
    _, lb = only(synthesized.resources("AWS::ElasticLoadBalancingV2::LoadBalancer"))
    attributes = {a["Key"]: a["Value"] for a in lb["LoadBalancerAttributes"]}
    assert int(attributes["idle_timeout.timeout_seconds"]) > read_timeout


def test_the_load_balancer_is_internal_and_reached_through_a_vpc_origin(
    synthesized: Synthesized,
) -> None:
    lb_id, lb = only(synthesized.resources("AWS::ElasticLoadBalancingV2::LoadBalancer"))
    assert lb["Scheme"] == "internal"
    private_subnets = {
        logical_id
        for logical_id, subnet in synthesized.resources("AWS::EC2::Subnet").items()
        if subnet["Properties"]["MapPublicIpOnLaunch"] is False
    }
    assert {s["Ref"] for s in lb["Subnets"]} <= private_subnets
    _, vpc_origin = only(synthesized.resources("AWS::CloudFront::VpcOrigin"))
    endpoint = vpc_origin["VpcOriginEndpointConfig"]
    assert endpoint["Arn"] == {"Ref": lb_id}
    assert endpoint["OriginProtocolPolicy"] == "http-only"  # inside the VPC, no certificate
    (origin,) = distribution_config(synthesized)["Origins"]
    assert origin["DomainName"] == {"Fn::GetAtt": [lb_id, "DNSName"]}
    assert "CustomOriginConfig" not in origin  # not a public origin


def test_the_load_balancer_admits_only_the_vpc_range(synthesized: Synthesized) -> None:
    _, lb = only(synthesized.resources("AWS::ElasticLoadBalancingV2::LoadBalancer"))
    (group,) = lb["SecurityGroups"]
    group_id = group["Fn::GetAtt"][0]
    rules = list(synthesized.template["Resources"][group_id]["Properties"]["SecurityGroupIngress"])
    rules += [
        r["Properties"]
        for r in synthesized.resources("AWS::EC2::SecurityGroupIngress").values()
        if r["Properties"]["GroupId"] == group
    ]
    (vpc_id,) = synthesized.resources("AWS::EC2::VPC")
    assert rules == [
        {
            "CidrIp": {"Fn::GetAtt": [vpc_id, "CidrBlock"]},
            "Description": "CloudFront VPC origin (the load balancer is internal)",
            "FromPort": 80,
            "IpProtocol": "tcp",
            "ToPort": 80,
        }
    ]
    attributes = {a["Key"]: a["Value"] for a in lb["LoadBalancerAttributes"]}
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


def test_a_domain_of_ones_own_gets_the_alias_and_tls_to_the_origin(
    with_domain: Synthesized,
) -> None:
    config = distribution_config(with_domain)
    assert config["Aliases"] == [DOMAIN]
    assert config["ViewerCertificate"] == {
        "AcmCertificateArn": EDGE_CERTIFICATE,
        "MinimumProtocolVersion": "TLSv1.2_2021",
        "SslSupportMethod": "sni-only",
    }
    assert with_domain.template["Outputs"]["ApiUrl"]["Value"] == f"https://{DOMAIN}"
    _, vpc_origin = only(with_domain.resources("AWS::CloudFront::VpcOrigin"))
    assert vpc_origin["VpcOriginEndpointConfig"]["OriginProtocolPolicy"] == "https-only"
    (origin,) = config["Origins"]
    assert origin["DomainName"] == DOMAIN  # the name the load balancer's certificate is for
    (listener,) = with_domain.resources("AWS::ElasticLoadBalancingV2::Listener").values()
    props = listener["Properties"]
    assert props["Protocol"] == "HTTPS" and props["Port"] == 443
    assert props["Certificates"] == [{"CertificateArn": REGIONAL_CERTIFICATE}]
    assert props["SslPolicy"] == "ELBSecurityPolicy-TLS13-1-2-2021-06"
