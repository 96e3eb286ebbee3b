"""Scale a worker service on its queue's backlog per task (AWS's recommendation for queue workers).

Target tracking keeps `backlog / running tasks × seconds per message` (the time a new message
waits) at the acceptable latency, which is the same as keeping the backlog per task at
`latency ÷ time per message` while both stay deploy-time parameters (CloudFormation cannot
divide). The backlog is what the local scaler counts too: messages waiting (visible) and
messages being worked on (in flight, `ApproximateNumberOfMessagesNotVisible`), so a service
that is working is never scaled in to zero. SQS samples both once a minute, and a message that
takes a fraction of a second is rarely in flight at the sample: a minute in which any message
was received (`NumberOfMessagesReceived`, a count over the whole minute) adds one to the
backlog, so a trickle of one message a minute or more keeps a task instead of flapping to zero
and back through a cold start. Target tracking scales in only after 15 minutes below target.

Target tracking cannot scale out from zero tasks, so where the minimum is 0 a step policy adds
the first task when messages wait and the service wants none. That path takes up to
`imgproc_shared.scaling.COLD_START.worst_case_s` (~5 minutes), which the task heartbeat must
cover: `test_scaling.py` checks the synthesized heartbeat against it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import CfnCondition, CfnParameter, Duration, Fn
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from imgproc_infra.config import METRIC_PERIOD_S
from imgproc_shared.scaling import ScalingPolicy

SQS_NAMESPACE = "AWS/SQS"
CONTAINER_INSIGHTS_NAMESPACE = "ECS/ContainerInsights"
VISIBLE_MESSAGES = "ApproximateNumberOfMessagesVisible"
IN_FLIGHT_MESSAGES = "ApproximateNumberOfMessagesNotVisible"
RECEIVED_MESSAGES = "NumberOfMessagesReceived"
RUNNING_TASKS = "RunningTaskCount"
DESIRED_TASKS = "DesiredTaskCount"
# Missing SQS data (an idle queue) counts as 0 so the policy can still scale in.
BACKLOG_EXPRESSION = "FILL(visible, 0) + FILL(in_flight, 0) + IF(FILL(received, 0) > 0, 1, 0)"
BACKLOG_PER_TASK_EXPRESSION = "backlog / tasks"


@dataclass(frozen=True)
class WorkerScalingParameters:
    """The deploy-time knobs of one worker service."""

    min_tasks: CfnParameter
    max_tasks: CfnParameter
    seconds_per_message: CfnParameter
    target_latency_s: CfnParameter


class BacklogScaling(Construct):
    """A scalable target, a backlog-per-task target tracking policy and a 0 → 1 step policy."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        cluster: ecs.ICluster,
        service: ecs.FargateService,
        queue: sqs.IQueue,
        parameters: WorkerScalingParameters,
        policy: ScalingPolicy,
    ) -> None:
        super().__init__(scope, construct_id)
        self.target = appscaling.CfnScalableTarget(
            self,
            "Target",
            service_namespace="ecs",
            scalable_dimension="ecs:service:DesiredCount",
            resource_id=f"service/{cluster.cluster_name}/{service.service_name}",
            min_capacity=parameters.min_tasks.value_as_number,
            max_capacity=parameters.max_tasks.value_as_number,
        )

        def stat(
            metric_id: str, namespace: str, name: str, dims: dict[str, str], statistic: str
        ) -> appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty:
            return appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                id=metric_id,
                return_data=False,
                metric_stat=appscaling.CfnScalingPolicy.TargetTrackingMetricStatProperty(
                    stat=statistic,
                    metric=appscaling.CfnScalingPolicy.TargetTrackingMetricProperty(
                        namespace=namespace,
                        metric_name=name,
                        dimensions=[
                            appscaling.CfnScalingPolicy.TargetTrackingMetricDimensionProperty(
                                name=key, value=value
                            )
                            for key, value in dims.items()
                        ],
                    ),
                ),
            )

        service_dims = {"ClusterName": cluster.cluster_name, "ServiceName": service.service_name}
        self.backlog_policy = appscaling.CfnScalingPolicy(
            self,
            "BacklogPerTask",
            policy_name=f"{construct_id}-backlog-per-task",
            policy_type="TargetTrackingScaling",
            scaling_target_id=self.target.ref,
            target_tracking_scaling_policy_configuration=appscaling.CfnScalingPolicy.TargetTrackingScalingPolicyConfigurationProperty(
                target_value=parameters.target_latency_s.value_as_number,
                scale_out_cooldown=int(policy.scale_out_cooldown_s),
                scale_in_cooldown=int(policy.scale_in_cooldown_s),
                customized_metric_specification=appscaling.CfnScalingPolicy.CustomizedMetricSpecificationProperty(
                    metrics=[
                        stat(
                            "visible",
                            SQS_NAMESPACE,
                            VISIBLE_MESSAGES,
                            {"QueueName": queue.queue_name},
                            "Sum",
                        ),
                        stat(
                            "in_flight",
                            SQS_NAMESPACE,
                            IN_FLIGHT_MESSAGES,
                            {"QueueName": queue.queue_name},
                            "Sum",
                        ),
                        stat(
                            "received",
                            SQS_NAMESPACE,
                            RECEIVED_MESSAGES,
                            {"QueueName": queue.queue_name},
                            "Sum",
                        ),
                        stat(
                            "tasks",
                            CONTAINER_INSIGHTS_NAMESPACE,
                            RUNNING_TASKS,
                            service_dims,
                            "Average",
                        ),
                        appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                            id="backlog",
                            expression=BACKLOG_EXPRESSION,
                            label="messages waiting or worked on (1 if any was received)",
                            return_data=False,
                        ),
                        appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                            id="backlog_per_task",
                            expression=BACKLOG_PER_TASK_EXPRESSION,
                            label="backlog per running task",
                            return_data=False,
                        ),
                        appscaling.CfnScalingPolicy.TargetTrackingMetricDataQueryProperty(
                            id="wait_s",
                            expression=Fn.join(
                                "",
                                [
                                    "backlog_per_task * ",
                                    parameters.seconds_per_message.value_as_string,
                                ],
                            ),
                            label="seconds a new message waits",
                            return_data=True,
                        ),
                    ]
                ),
            ),
        )

        # 0 → 1: only where the minimum is 0 (elsewhere the service never has zero tasks).
        self.from_zero_condition = CfnCondition(
            self,
            "MinimumIsZero",
            expression=Fn.condition_equals(parameters.min_tasks.value_as_string, "0"),
        )
        self.from_zero_policy = appscaling.CfnScalingPolicy(
            self,
            "FromZero",
            policy_name=f"{construct_id}-from-zero",
            policy_type="StepScaling",
            scaling_target_id=self.target.ref,
            step_scaling_policy_configuration=appscaling.CfnScalingPolicy.StepScalingPolicyConfigurationProperty(
                adjustment_type="ChangeInCapacity",
                # Long enough for the first task to start and report before it could fire again.
                cooldown=3 * METRIC_PERIOD_S,
                metric_aggregation_type="Maximum",
                step_adjustments=[
                    appscaling.CfnScalingPolicy.StepAdjustmentProperty(
                        metric_interval_lower_bound=0, scaling_adjustment=1
                    )
                ],
            ),
        )
        self.from_zero_policy.cfn_options.condition = self.from_zero_condition
        period = Duration.seconds(METRIC_PERIOD_S)
        waiting_with_no_tasks = cloudwatch.MathExpression(
            expression="IF(visible > 0 AND FILL(desired, 0) == 0, 1, 0)",
            using_metrics={
                "visible": queue.metric_approximate_number_of_messages_visible(
                    period=period, statistic=cloudwatch.Stats.MAXIMUM
                ),
                "desired": cloudwatch.Metric(
                    namespace=CONTAINER_INSIGHTS_NAMESPACE,
                    metric_name=DESIRED_TASKS,
                    dimensions_map=service_dims,
                    period=period,
                    statistic=cloudwatch.Stats.MAXIMUM,
                ),
            },
            period=period,
            label="messages wait and the service wants no task",
        )
        self.from_zero_alarm = cloudwatch.Alarm(
            self,
            "FromZeroAlarm",
            metric=waiting_with_no_tasks,
            threshold=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description="Start the first task of a service scaled to zero.",
        )
        cfn_alarm = self.from_zero_alarm.node.default_child
        assert isinstance(cfn_alarm, cloudwatch.CfnAlarm)
        cfn_alarm.alarm_actions = [self.from_zero_policy.ref]
        cfn_alarm.cfn_options.condition = self.from_zero_condition
