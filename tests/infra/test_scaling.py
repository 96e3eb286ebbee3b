"""Scaling that holds: the backlog counts work in flight; the heartbeat outlasts a cold start."""

from __future__ import annotations

import json
import re

import pytest

from imgproc_shared.resources import STAGE_QUEUES, Stage
from imgproc_shared.scaling import (
    COLD_START,
    POLICIES,
    heartbeat_covers_scale_from_zero,
    longest_unanswered_s,
)

from .conftest import CDK_MISSING, Synthesized

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

from imgproc_infra.config import WORKER_IMAGES


def _tracking_metrics(synthesized: Synthesized, stage: Stage) -> dict[str, dict[str, object]]:
    target_id = str(synthesized.stack.resolve(synthesized.stack.scaling[stage].target.logical_id))
    (policy,) = [
        p
        for p in synthesized.resources("AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"]["ScalingTargetId"] == {"Ref": target_id}
        and p["Properties"]["PolicyType"] == "TargetTrackingScaling"
    ]
    config = policy["Properties"]["TargetTrackingScalingPolicyConfiguration"]
    return {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}


@pytest.mark.parametrize("stage", list(WORKER_IMAGES), ids=lambda s: s.value)
def test_backlog_counts_waiting_and_in_flight_messages(
    synthesized: Synthesized, stage: Stage
) -> None:
    metrics = _tracking_metrics(synthesized, stage)
    queue_id = synthesized.logical_id(synthesized.stack.messaging.queues[STAGE_QUEUES[stage]])
    queue_dimension = [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    for metric_id, name in (
        ("visible", "ApproximateNumberOfMessagesVisible"),
        ("in_flight", "ApproximateNumberOfMessagesNotVisible"),
        ("received", "NumberOfMessagesReceived"),
    ):
        metric = metrics[metric_id]["MetricStat"]["Metric"]  # type: ignore[index]
        assert (metric["Namespace"], metric["MetricName"]) == ("AWS/SQS", name)
        assert metric["Dimensions"] == queue_dimension
    backlog = str(metrics["backlog"]["Expression"])
    # Both SQS gauges are summed: a task working on a message is never scaled in to zero.
    assert re.search(r"\bvisible\b", backlog) and re.search(r"\bin_flight\b", backlog)
    assert "+" in backlog and "received" in backlog
    assert metrics["backlog_per_task"]["Expression"] == "backlog / tasks"
    assert [m for m, spec in metrics.items() if spec.get("ReturnData")] == ["wait_s"]


def _heartbeats(synthesized: Synthesized) -> set[int]:
    machines = synthesized.resources("AWS::StepFunctions::StateMachine")
    text = json.dumps([m["Properties"] for m in machines.values()])
    return {int(n) for n in re.findall(r'HeartbeatSeconds\\*":\s*(\d+)', text)}


def test_heartbeat_outlasts_the_worst_cold_start_where_a_service_may_scale_to_zero(
    synthesized: Synthesized,
) -> None:
    settings = synthesized.settings
    heartbeats = _heartbeats(synthesized)
    assert heartbeats == {settings.task_heartbeat_s}
    # The documented worst case: ~5 minutes from a message to the first task taking it.
    assert 240 <= COLD_START.worst_case_s <= 420
    parameters = synthesized.template["Parameters"]
    rules = synthesized.template["Rules"]
    for stage, image in WORKER_IMAGES.items():
        label = image.service.capitalize()
        minimum = int(parameters[f"{label}MinTasks"]["Default"])
        at_zero = POLICIES[stage].with_bounds(0, POLICIES[stage].max_workers)
        covered = heartbeat_covers_scale_from_zero(
            at_zero, settings.task_heartbeat_s, settings.heartbeat_interval_s
        )
        forbids_zero = any(
            a["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": f"{label}MinTasks"}, "0"]}]}
            for a in rules[f"{label}TaskCount"]["Assertions"]
        )
        # Either the heartbeat covers a cold start, or the service never starts from zero.
        assert covered or (minimum >= 1 and forbids_zero), label
        assert covered != forbids_zero, label
    # The tagger scales to zero by default, so the default heartbeat must cover it.
    tagger = POLICIES[Stage.TAG]
    assert tagger.min_workers == 0
    assert settings.task_heartbeat_s >= longest_unanswered_s(tagger, settings.heartbeat_interval_s)


def test_a_short_heartbeat_forbids_scaling_to_zero() -> None:
    """The rule the stack adds when IMGPROC_TASK_HEARTBEAT_S is below the cold start."""
    import aws_cdk as cdk

    from imgproc_infra.parameter_rules import task_count_rule

    tagger = POLICIES[Stage.TAG]
    assert not heartbeat_covers_scale_from_zero(tagger, 300, 20)
    assert heartbeat_covers_scale_from_zero(tagger.with_bounds(1, 10), 300, 20)

    app = cdk.App()
    stack = cdk.Stack(app, "Rules")
    low = cdk.CfnParameter(stack, "TaggerMinTasks", type="Number", default=1)
    high = cdk.CfnParameter(stack, "TaggerMaxTasks", type="Number", default=10)
    task_count_rule(stack, "Tagger", low, high, scale_from_zero_allowed=False)
    template = app.synth().get_stack_by_name("Rules").template
    descriptions = [
        a["AssertDescription"] for a in template["Rules"]["TaggerTaskCount"]["Assertions"]
    ]
    assert any("TaggerMinTasks=0 needs a task heartbeat" in d for d in descriptions)
