"""The cheaper options: Fargate Spot for workers (a parameter), Graviton images and tasks in
public subnets without a NAT gateway (synth-time context, one more synthesis)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import CDK_MISSING, EffectiveTemplate, Synthesized, synthesize

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

from imgproc_infra.config import DeploymentConfig, context_options

WORKERS = ("Extractor", "Tagger", "Thumbnailer")


@pytest.fixture(scope="module")
def cheapest(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Synthesized]:
    yield synthesize(
        tmp_path_factory.mktemp("cdk.out.cheapest"),
        validation=False,
        architecture="arm64",
        tasks_in_public_subnets=True,
    )


def _services(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == "AWS::ECS::Service"}


def _worker_services(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    ids = {synthesized.logical_id(w.service): w for w in synthesized.stack.workers.values()}
    return {k: v for k, v in _services(synthesized.template).items() if k in ids}


def test_workers_run_on_the_capacity_provider_the_parameter_names(
    synthesized: Synthesized,
) -> None:
    parameter = synthesized.template["Parameters"]["WorkerCapacityProvider"]
    assert parameter["Default"] == "FARGATE"
    assert parameter["AllowedValues"] == ["FARGATE", "FARGATE_SPOT"]
    (association_id,) = synthesized.resources("AWS::ECS::ClusterCapacityProviderAssociations")
    association = synthesized.template["Resources"][association_id]["Properties"]
    assert set(association["CapacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}
    workers = _worker_services(synthesized)
    assert len(workers) == len(WORKERS)
    for service in workers.values():
        assert "LaunchType" not in service["Properties"]
        assert association_id in service["DependsOn"]
    spot = EffectiveTemplate(synthesized.template, WorkerCapacityProvider="FARGATE_SPOT")
    for logical_id in workers:
        strategy = spot.resources[logical_id]["Properties"]["CapacityProviderStrategy"]
        assert strategy == [{"CapacityProvider": "FARGATE_SPOT", "Weight": 1}]


def test_by_default_tasks_are_x86_in_private_subnets_behind_one_nat_gateway(
    synthesized: Synthesized,
) -> None:
    assert len(synthesized.resources("AWS::EC2::NatGateway")) == 1
    for task in synthesized.resources("AWS::ECS::TaskDefinition").values():
        assert task["Properties"]["RuntimePlatform"]["CpuArchitecture"] == "X86_64"
    assert {source["platform"] for source in synthesized.assets().values()} == {"linux/amd64"}
    for service in _services(synthesized.template).values():
        network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"


def test_graviton_builds_and_runs_arm64(cheapest: Synthesized) -> None:
    tasks = cheapest.resources("AWS::ECS::TaskDefinition")
    assert len(tasks) == 4
    for task in tasks.values():
        assert task["Properties"]["RuntimePlatform"]["CpuArchitecture"] == "ARM64"
    assert {source["platform"] for source in cheapest.assets().values()} == {"linux/arm64"}


def test_public_subnets_drop_the_nat_gateway(cheapest: Synthesized) -> None:
    assert cheapest.resources("AWS::EC2::NatGateway") == {}
    assert cheapest.resources("AWS::EC2::EIP") == {}
    subnets = cheapest.resources("AWS::EC2::Subnet")
    public = {k for k, v in subnets.items() if v["Properties"]["MapPublicIpOnLaunch"]}
    services = _services(cheapest.template)
    assert len(services) == 4
    for service in services.values():
        network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
        # Without NAT a task reaches ECR, SQS and Step Functions through its own public IP.
        assert network["AssignPublicIp"] == "ENABLED"
        assert {s["Ref"] for s in network["Subnets"]} <= public
    # The load balancer stays internal, in the subnets with no route to the internet.
    (load_balancer,) = cheapest.resources("AWS::ElasticLoadBalancingV2::LoadBalancer").values()
    assert load_balancer["Properties"]["Scheme"] == "internal"
    assert not {s["Ref"] for s in load_balancer["Properties"]["Subnets"]} & public
    # Tasks admit nothing from the internet: only the status API's port, from the load balancer.
    for group in cheapest.resources("AWS::EC2::SecurityGroupIngress").values():
        assert "CidrIp" not in group["Properties"] or group["Properties"]["CidrIp"] != "0.0.0.0/0"


def test_context_options_reach_the_config() -> None:
    given = {"architecture": "arm64", "public_subnets": "true"}
    assert context_options(given.get) == {"architecture": "arm64", "tasks_in_public_subnets": True}
    assert context_options({}.get) == {}
    with pytest.raises(ValueError, match="architecture"):
        DeploymentConfig(settings=None, architecture="sparc")  # type: ignore[arg-type]
