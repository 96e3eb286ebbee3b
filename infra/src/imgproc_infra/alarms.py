"""Alarms that page someone: every alarm notifies one SNS topic, which e-mails `AlarmEmail`.

What is watched, and why each threshold:
- each dead-letter queue holding a message (Messaging's alarms): work failed every try;
- each queue's oldest message: a stage queue's message older than the task heartbeat has
  outlived its task token (Step Functions has already timed that task out and retries or fails
  the image), so work is being lost, not just slow; any other queue's message older than
  visibility timeout × max receives is neither processed nor failing into its dead-letter
  queue, so its consumer is not running;
- failed executions of either state machine, except the failures that are answers (a file that
  is not a supported image; a re-tag skipped because the image went away): counted from the
  machines' ERROR logs, since the ExecutionsFailed metric cannot tell them apart;
- timed-out and aborted executions (the ExecutionsTimedOut and ExecutionsAborted metrics);
- 5xx answers from the status API's targets and from the load balancer itself;
- a worker service with messages waiting and no running task for longer than twice the worst
  cold start (scale-from-zero failed, or tasks crash on start).
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Aws, CfnCondition, CfnOutput, CfnParameter, Duration, Fn, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from imgproc_infra.config import WORKER_IMAGES
from imgproc_infra.messaging import Messaging
from imgproc_infra.scaling import CONTAINER_INSIGHTS_NAMESPACE, RUNNING_TASKS
from imgproc_infra.workflow import Workflow
from imgproc_shared.resources import STAGE_QUEUES, Queue, ResourceNames, Stage
from imgproc_shared.settings import Settings
from imgproc_shared.workflow import NOT_SUPPORTED_IMAGE_TYPE, RETAG_SKIPPED

PARAMETER_ALARM_EMAIL = "AlarmEmail"
OUTPUT_ALARM_TOPIC = "AlarmTopicArn"
CONDITION_HAS_ALARM_EMAIL = "AlarmEmailGiven"

# Where the failed-executions metrics go (one per state machine, from its log group).
METRIC_NAMESPACE = "imgproc"
UNEXPECTED_FAILURES_METRIC = "UnexpectedFailedExecutions"

ONE_MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
# A few 5xx answers are one bad request or a task replaced mid-request; this many in five
# minutes is an outage.
HTTP_5XX_THRESHOLD = 10
# A cold start from zero takes 2.5 to 5 minutes (image pull, task start, models loaded): twice
# the worst case before "messages wait and nothing runs" pages.
NO_TASK_PERIODS = 10


def oldest_message_threshold_s(queue: Queue, settings: Settings) -> int:
    """How old a queue's oldest message may get before someone is paged (see the module doc)."""
    if queue in STAGE_QUEUES.values():
        return settings.task_heartbeat_s
    return settings.visibility_timeout_s * settings.max_receive_count


class Alarms(Construct):
    """The alarm topic, its optional e-mail subscription and every paging alarm."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        names: ResourceNames,
        settings: Settings,
        messaging: Messaging,
        workflow: Workflow,
        workers: Mapping[Stage, tuple[ecs.FargateService, sqs.IQueue]],
        cluster: ecs.ICluster,
        load_balancer: elbv2.IApplicationLoadBalancer,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.names = names
        self.email = CfnParameter(
            stack,
            PARAMETER_ALARM_EMAIL,
            type="String",
            default="",
            allowed_pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$",
            description="Who is paged when an alarm fires (empty: nobody is subscribed; "
            "subscribe later to the AlarmTopicArn output). The address must confirm by e-mail.",
        )
        self.has_email = CfnCondition(
            stack,
            CONDITION_HAS_ALARM_EMAIL,
            expression=Fn.condition_not(Fn.condition_equals(self.email.value_as_string, "")),
        )
        # The topics' customer-managed key (Messaging), which CloudWatch may then use to
        # publish; an AWS-managed key would not let it.
        messaging.topic_key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],  # in a key policy, "*" means this key
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=f"{names.prefix}-alarms",
            display_name=f"{names.prefix} alarms",
            master_key=messaging.topic_key,
            enforce_ssl=True,
        )
        subscription = sns.CfnSubscription(
            self,
            "EmailSubscription",
            topic_arn=self.topic.topic_arn,
            protocol="email",
            endpoint=self.email.value_as_string,
        )
        subscription.cfn_options.condition = self.has_email
        CfnOutput(
            stack,
            OUTPUT_ALARM_TOPIC,
            value=self.topic.topic_arn,
            description="Alarm notifications: subscribe more people or tools here",
        )
        self._action = cloudwatch_actions.SnsAction(self.topic)
        self.alarms: list[cloudwatch.Alarm] = []

        for alarm in messaging.dead_letter_alarms.values():
            self._page(alarm)
        for queue, sqs_queue in messaging.queues.items():
            self._oldest_message(queue, sqs_queue, settings)
        for name, state_machine in (
            (names.state_machine, workflow.state_machine),
            (workflow.retag_name, workflow.retag_state_machine),
        ):
            self._failed_executions(name, workflow.log_groups[name])
            self._add(
                f"{name}-executions-timed-out-or-aborted",
                f"{name}: executions timed out or were aborted",
                cloudwatch.MathExpression(
                    expression="FILL(timedOut, 0) + FILL(aborted, 0)",
                    using_metrics={
                        "timedOut": state_machine.metric_timed_out(period=FIVE_MINUTES),
                        "aborted": state_machine.metric_aborted(period=FIVE_MINUTES),
                    },
                    period=FIVE_MINUTES,
                ),
                threshold=0,
            )
        self._http_5xx(load_balancer)
        for stage, (service, work_queue) in workers.items():
            self._waiting_without_tasks(stage, service, work_queue, cluster)

    def _page(self, alarm: cloudwatch.Alarm) -> cloudwatch.Alarm:
        """The alarm notifies the topic when it fires and when it clears."""
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        self.alarms.append(alarm)
        return alarm

    def _add(
        self,
        name: str,
        description: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        evaluation_periods: int = 1,
        comparison: cloudwatch.ComparisonOperator = (
            cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
        ),
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            name.removeprefix(f"{self.names.prefix}-").title().replace("-", ""),
            alarm_name=name,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            comparison_operator=comparison,
            evaluation_periods=evaluation_periods,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        return self._page(alarm)

    def _oldest_message(self, queue: Queue, sqs_queue: sqs.IQueue, settings: Settings) -> None:
        threshold = oldest_message_threshold_s(queue, settings)
        name = self.names.queue(queue)
        self._add(
            f"{name}-oldest-message-age",
            f"A message has waited {threshold} s in {name}: "
            + (
                "its task token has expired (the task heartbeat), so the workflow retries or "
                "fails that image; is the worker service running and keeping up?"
                if queue in STAGE_QUEUES.values()
                else "it is neither processed nor dead-lettered; is its consumer running?"
            ),
            sqs_queue.metric_approximate_age_of_oldest_message(
                period=ONE_MINUTE, statistic=cloudwatch.Stats.MAXIMUM
            ),
            threshold=threshold,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )

    def _failed_executions(self, machine_name: str, log_group: logs.ILogGroup) -> None:
        """Failed executions whose error is not one of the expected answers."""
        expected = [NOT_SUPPORTED_IMAGE_TYPE, RETAG_SKIPPED]
        metric_filter = logs.MetricFilter(
            self,
            f"{machine_name.removeprefix(f'{self.names.prefix}-')}FailuresFilter",
            log_group=log_group,
            metric_namespace=f"{METRIC_NAMESPACE}/{self.names.prefix}",
            metric_name=UNEXPECTED_FAILURES_METRIC,
            filter_pattern=logs.FilterPattern.all(
                logs.FilterPattern.string_value("$.type", "=", "ExecutionFailed"),
                *(
                    logs.FilterPattern.string_value("$.details.error", "!=", error)
                    for error in expected
                ),
            ),
            metric_value="1",
        )
        self._add(
            f"{machine_name}-executions-failed",
            f"{machine_name}: executions failed (other than {', '.join(expected)}); "
            f"their errors are in {log_group.log_group_name}",
            metric_filter.metric(period=FIVE_MINUTES, statistic=cloudwatch.Stats.SUM),
            threshold=0,
        )

    def _http_5xx(self, load_balancer: elbv2.IApplicationLoadBalancer) -> None:
        metrics = load_balancer.metrics
        for name, metric, origin in (
            (
                "target-5xx",
                metrics.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=FIVE_MINUTES
                ),
                "the status API's tasks",
            ),
            (
                "load-balancer-5xx",
                metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=FIVE_MINUTES),
                "the load balancer (no healthy task, or a task's connection failed)",
            ),
        ):
            self._add(
                f"{self.names.prefix}-status-api-{name}",
                f"{HTTP_5XX_THRESHOLD}+ server errors in 5 minutes from {origin}",
                metric,
                threshold=HTTP_5XX_THRESHOLD,
                comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            )

    def _waiting_without_tasks(
        self, stage: Stage, service: ecs.FargateService, queue: sqs.IQueue, cluster: ecs.ICluster
    ) -> None:
        # Messages visible all minute long, and no task running at any moment of it.
        waiting = queue.metric_approximate_number_of_messages_visible(
            period=ONE_MINUTE, statistic=cloudwatch.Stats.MINIMUM
        )
        running = cloudwatch.Metric(
            namespace=CONTAINER_INSIGHTS_NAMESPACE,
            metric_name=RUNNING_TASKS,
            dimensions_map={
                "ClusterName": cluster.cluster_name,
                "ServiceName": service.service_name,
            },
            period=ONE_MINUTE,
            statistic=cloudwatch.Stats.MAXIMUM,
        )
        self._add(
            f"{self.names.prefix}-{WORKER_IMAGES[stage].service}-waiting-without-tasks",
            f"Messages have waited in {stage.value}'s queue for {NO_TASK_PERIODS} minutes "
            "with no task of its service running: scaling from zero failed or tasks crash "
            "on start (see the service's events and logs).",
            cloudwatch.MathExpression(
                # Container Insights may publish nothing while a service has no task.
                expression="IF(FILL(waiting, 0) > 0 AND FILL(running, 0) == 0, 1, 0)",
                using_metrics={"waiting": waiting, "running": running},
                period=ONE_MINUTE,
            ),
            threshold=1,
            evaluation_periods=NO_TASK_PERIODS,
            comparison=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        )
