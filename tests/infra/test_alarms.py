"""Alarms that page someone (alarms.py) and the state machines' failure logs (workflow.py)."""

from __future__ import annotations

from typing import Any

import pytest

from imgproc_shared.resources import STAGE_QUEUES, Queue, ResourceNames
from imgproc_shared.workflow import (
    NOT_SUPPORTED_IMAGE_TYPE,
    RETAG_SKIPPED,
    retag_state_machine_name,
)

from .conftest import CDK_MISSING, PREFIX, EffectiveTemplate, Synthesized

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

from imgproc_infra.alarms import (
    CONDITION_HAS_ALARM_EMAIL,
    NO_TASK_PERIODS,
    PARAMETER_ALARM_EMAIL,
)
from imgproc_infra.config import WORKER_IMAGES

NAMES = ResourceNames(PREFIX)
MACHINES = (NAMES.state_machine, retag_state_machine_name(PREFIX))


def alarms_by_name(synth: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        a["Properties"]["AlarmName"]: a["Properties"]
        for a in synth.resources("AWS::CloudWatch::Alarm").values()
        if "AlarmName" in a["Properties"]
    }


def alarm_topic(synth: Synthesized) -> str:
    (topic_id,) = (
        logical_id
        for logical_id, topic in synth.resources("AWS::SNS::Topic").items()
        if topic["Properties"]["TopicName"] == f"{PREFIX}-alarms"
    )
    return topic_id


def test_every_named_alarm_notifies_the_alarm_topic(synthesized: Synthesized) -> None:
    topic = {"Ref": alarm_topic(synthesized)}
    named = alarms_by_name(synthesized)
    expected = (
        {f"{NAMES.dead_letter_queue(q)}-not-empty" for q in Queue}
        | {f"{NAMES.queue(q)}-oldest-message-age" for q in Queue}
        | {f"{m}-executions-failed" for m in MACHINES}
        | {f"{m}-executions-timed-out-or-aborted" for m in MACHINES}
        | {f"{PREFIX}-status-api-target-5xx", f"{PREFIX}-status-api-load-balancer-5xx"}
        | {f"{PREFIX}-{i.service}-waiting-without-tasks" for i in WORKER_IMAGES.values()}
    )
    assert set(named) == expected
    for name, alarm in named.items():
        assert alarm["AlarmActions"] == [topic], name
        assert alarm["OKActions"] == [topic], name
    # The unnamed alarms are the scaling policies' own, whose action is a scaling step.
    for alarm in synthesized.resources("AWS::CloudWatch::Alarm").values():
        if "AlarmName" not in alarm["Properties"]:
            (action,) = alarm["Properties"]["AlarmActions"]
            assert synthesized.template["Resources"][action["Ref"]]["Type"] == (
                "AWS::ApplicationAutoScaling::ScalingPolicy"
            )


def test_the_email_subscription_exists_only_when_an_address_is_given(
    synthesized: Synthesized,
) -> None:
    assert synthesized.template["Parameters"][PARAMETER_ALARM_EMAIL]["Default"] == ""

    def email_subscriptions(**parameters: str) -> list[dict[str, Any]]:
        effective = EffectiveTemplate(synthesized.template, **parameters)
        return [
            s["Properties"]
            for s in effective.of_type("AWS::SNS::Subscription").values()
            if s["Properties"]["Protocol"] == "email"
        ]

    assert email_subscriptions() == []
    (subscription,) = email_subscriptions(AlarmEmail="ops@example.org")
    assert subscription["Endpoint"] == "ops@example.org"
    assert subscription["TopicArn"] == {"Ref": alarm_topic(synthesized)}
    assert CONDITION_HAS_ALARM_EMAIL in synthesized.template["Conditions"]


def test_cloudwatch_may_use_the_alarm_topics_key(synthesized: Synthesized) -> None:
    topic = synthesized.template["Resources"][alarm_topic(synthesized)]["Properties"]
    key_id = topic["KmsMasterKeyId"]["Fn::GetAtt"][0]
    key_policy = synthesized.template["Resources"][key_id]["Properties"]["KeyPolicy"]
    (statement,) = [s for s in key_policy["Statement"] if s.get("Sid") == "CloudWatchAlarms"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert set(statement["Action"]) == {"kms:GenerateDataKey*", "kms:Decrypt"}


def test_oldest_message_age_thresholds_follow_the_heartbeat_and_redelivery(
    synthesized: Synthesized,
) -> None:
    settings = synthesized.settings
    named = alarms_by_name(synthesized)
    for queue in Queue:
        alarm = named[f"{NAMES.queue(queue)}-oldest-message-age"]
        assert alarm["MetricName"] == "ApproximateAgeOfOldestMessage"
        if queue in STAGE_QUEUES.values():
            # Older than the heartbeat, the message's task token has already timed out.
            assert alarm["Threshold"] == settings.task_heartbeat_s
        else:
            assert alarm["Threshold"] == settings.visibility_timeout_s * settings.max_receive_count


def test_failed_executions_count_unexpected_failures_from_the_error_logs(
    synthesized: Synthesized,
) -> None:
    machines = {
        props["StateMachineName"]: props
        for props in (
            r["Properties"]
            for r in synthesized.resources("AWS::StepFunctions::StateMachine").values()
        )
    }
    assert set(machines) == set(MACHINES)
    log_groups = synthesized.resources("AWS::Logs::LogGroup")
    filters = synthesized.resources("AWS::Logs::MetricFilter")
    named = alarms_by_name(synthesized)
    for name, machine in machines.items():
        logging = machine["LoggingConfiguration"]
        assert logging["Level"] == "ERROR"
        (destination,) = logging["Destinations"]
        group_id = destination["CloudWatchLogsLogGroup"]["LogGroupArn"]["Fn::GetAtt"][0]
        assert log_groups[group_id]["Properties"]["RetentionInDays"] == 30
        (metric_filter,) = (
            f["Properties"]
            for f in filters.values()
            if f["Properties"]["LogGroupName"] == {"Ref": group_id}
        )
        pattern = metric_filter["FilterPattern"]
        assert '($.type = "ExecutionFailed")' in pattern
        for expected in (NOT_SUPPORTED_IMAGE_TYPE, RETAG_SKIPPED):
            assert f'($.details.error != "{expected}")' in pattern
        (transformation,) = metric_filter["MetricTransformations"]
        alarm = named[f"{name}-executions-failed"]
        (metric,) = (
            [m for m in alarm["Metrics"] if "MetricStat" in m]
            if "Metrics" in alarm
            else [{"MetricStat": {"Metric": {k: alarm[k] for k in ("MetricName", "Namespace")}}}]
        )
        assert metric["MetricStat"]["Metric"]["MetricName"] == transformation["MetricName"]
        assert metric["MetricStat"]["Metric"]["Namespace"] == transformation["MetricNamespace"]
        timed_out = named[f"{name}-executions-timed-out-or-aborted"]
        used = {
            m["MetricStat"]["Metric"]["MetricName"]
            for m in timed_out["Metrics"]
            if "MetricStat" in m
        }
        assert used == {"ExecutionsTimedOut", "ExecutionsAborted"}


def test_state_machine_logging_is_granted_to_the_workflow_role(synthesized: Synthesized) -> None:
    (role_id,) = {
        r["Properties"]["RoleArn"]["Fn::GetAtt"][0]
        for r in synthesized.resources("AWS::StepFunctions::StateMachine").values()
    }
    effective = EffectiveTemplate(synthesized.template)
    actions = {
        action
        for statement in effective.role_statements(role_id)
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        )
    }
    assert "logs:CreateLogDelivery" in actions


def test_load_balancer_5xx_alarms_watch_targets_and_the_balancer(synthesized: Synthesized) -> None:
    named = alarms_by_name(synthesized)
    assert named[f"{PREFIX}-status-api-target-5xx"]["MetricName"] == "HTTPCode_Target_5XX_Count"
    assert named[f"{PREFIX}-status-api-load-balancer-5xx"]["MetricName"] == "HTTPCode_ELB_5XX_Count"


def test_a_worker_with_messages_waiting_and_no_task_pages(synthesized: Synthesized) -> None:
    named = alarms_by_name(synthesized)
    services = {
        r["Properties"]["ServiceName"]: logical_id
        for logical_id, r in synthesized.resources("AWS::ECS::Service").items()
    }
    for stage, image in WORKER_IMAGES.items():
        alarm = named[f"{PREFIX}-{image.service}-waiting-without-tasks"]
        assert alarm["EvaluationPeriods"] == NO_TASK_PERIODS
        (expression,) = [m for m in alarm["Metrics"] if "Expression" in m]
        assert (
            expression["Expression"] == "IF(FILL(waiting, 0) > 0 AND FILL(running, 0) == 0, 1, 0)"
        )
        metrics = {
            m["Id"]: m["MetricStat"]["Metric"] for m in alarm["Metrics"] if "MetricStat" in m
        }
        assert metrics["waiting"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
        (queue_dimension,) = metrics["waiting"]["Dimensions"]
        queue_id = queue_dimension["Value"]["Fn::GetAtt"][0]
        queue_name = synthesized.template["Resources"][queue_id]["Properties"]["QueueName"]
        assert queue_name == NAMES.queue(STAGE_QUEUES[stage])
        assert metrics["running"]["Namespace"] == "ECS/ContainerInsights"
        assert metrics["running"]["MetricName"] == "RunningTaskCount"
        dimensions = {d["Name"]: d["Value"] for d in metrics["running"]["Dimensions"]}
        assert dimensions["ServiceName"] == {
            "Fn::GetAtt": [services[f"{PREFIX}-{image.service}"], "Name"]
        }
