"""The synthesized template holds every resource of the design, from the shared definitions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from imgproc_shared.resources import (
    INCOMING_PREFIX,
    STAGE_QUEUES,
    SUBSCRIPTIONS,
    TABLES,
    THUMBNAILS_PREFIX,
    Queue,
    ResourceNames,
    Table,
    Topic,
)
from imgproc_shared.scaling import POLICIES
from imgproc_shared.workflow import (
    WorkflowLimits,
    WorkflowTargets,
    build_definition,
    build_retag_definition,
    happy_path_states,
    retag_state_machine_name,
)

from .conftest import CDK_MISSING, PREFIX, EffectiveTemplate, Synthesized, resolve_join

pytest.importorskip("aws_cdk", reason=CDK_MISSING)

from aws_cdk.assertions import Match

from imgproc_infra.config import (
    STATUS_API_IMAGE,
    TAGGER_BACKENDS,
    WORKER_IMAGES,
)

NAMES = ResourceNames(PREFIX)


def by_property(synth: Synthesized, type_: str, key: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Resources of one type keyed by one of their properties (e.g. queues by QueueName)."""
    return {
        res["Properties"][key]: (logical_id, res["Properties"])
        for logical_id, res in synth.resources(type_).items()
        if isinstance(res["Properties"].get(key), str)
    }


def test_bucket_is_private_encrypted_tls_only_and_aborts_multipart_uploads(
    synthesized: Synthesized,
) -> None:
    synthesized.assertions.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketName": NAMES.bucket,
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "LifecycleConfiguration": {
                "Rules": Match.array_with(
                    [
                        Match.object_like(
                            {"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}
                        )
                    ]
                )
            },
        },
    )
    synthesized.assertions.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {
            "PolicyDocument": {
                "Statement": Match.array_with(
                    [
                        Match.object_like(
                            {
                                "Effect": "Deny",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        )
                    ]
                )
            }
        },
    )


def test_uploads_under_incoming_notify_the_upload_topic(synthesized: Synthesized) -> None:
    topics = by_property(synthesized, "AWS::SNS::Topic", "TopicName")
    upload_topic_id = topics[NAMES.topic(Topic.UPLOAD)][0]
    (notification,) = synthesized.resources("Custom::S3BucketNotifications").values()
    config = notification["Properties"]["NotificationConfiguration"]
    assert config == {
        "TopicConfigurations": [
            {
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": INCOMING_PREFIX}]}},
                "TopicArn": {"Ref": upload_topic_id},
            }
        ]
    }


def test_tables_are_on_demand_with_point_in_time_recovery_and_the_shared_indexes(
    synthesized: Synthesized,
) -> None:
    tables = by_property(synthesized, "AWS::DynamoDB::Table", "TableName")
    assert set(tables) == {NAMES.table(spec.table) for spec in TABLES}
    for spec in TABLES:
        _, props = tables[NAMES.table(spec.table)]
        assert props["BillingMode"] == "PAY_PER_REQUEST"
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
        assert props["KeySchema"] == [{"AttributeName": spec.hash_key.name, "KeyType": "HASH"}] + (
            [{"AttributeName": spec.range_key.name, "KeyType": "RANGE"}] if spec.range_key else []
        )
        assert sorted(props["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == sorted(
            ({"AttributeName": a.name, "AttributeType": a.type} for a in spec.attributes()),
            key=lambda a: a["AttributeName"],
        )
        indexes = {gsi["IndexName"]: gsi for gsi in props.get("GlobalSecondaryIndexes", [])}
        assert set(indexes) == {index.name for index in spec.indexes}
        for index in spec.indexes:
            expected = [{"AttributeName": index.hash_key.name, "KeyType": "HASH"}]
            if index.range_key:
                expected.append({"AttributeName": index.range_key.name, "KeyType": "RANGE"})
            assert indexes[index.name]["KeySchema"] == expected
            assert indexes[index.name]["Projection"] == {"ProjectionType": "ALL"}


def test_topics_are_encrypted_with_a_key_that_s3_may_use(synthesized: Synthesized) -> None:
    topics = by_property(synthesized, "AWS::SNS::Topic", "TopicName")
    # The alarm topic (alarms.py) shares the key.
    assert set(topics) == {NAMES.topic(topic) for topic in Topic} | {f"{PREFIX}-alarms"}
    (key_id,) = synthesized.resources("AWS::KMS::Key")
    for _, props in topics.values():
        assert props["KmsMasterKeyId"] == {"Fn::GetAtt": [key_id, "Arn"]}
    key_policy = synthesized.template["Resources"][key_id]["Properties"]["KeyPolicy"]
    s3_statements = [
        s for s in key_policy["Statement"] if s["Principal"] == {"Service": "s3.amazonaws.com"}
    ]
    assert s3_statements and "kms:GenerateDataKey*" in s3_statements[0]["Action"]


def test_every_queue_is_encrypted_and_has_a_dead_letter_queue_with_an_alarm(
    synthesized: Synthesized,
) -> None:
    queues = by_property(synthesized, "AWS::SQS::Queue", "QueueName")
    assert set(queues) == {NAMES.queue(q) for q in Queue} | {
        NAMES.dead_letter_queue(q) for q in Queue
    }
    alarms = synthesized.resources("AWS::CloudWatch::Alarm")
    for queue in Queue:
        _, props = queues[NAMES.queue(queue)]
        dlq_id, dlq_props = queues[NAMES.dead_letter_queue(queue)]
        assert props["SqsManagedSseEnabled"] is True
        assert dlq_props["SqsManagedSseEnabled"] is True
        assert props["VisibilityTimeout"] == synthesized.settings.visibility_timeout_s
        assert props["RedrivePolicy"] == {
            "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
            "maxReceiveCount": synthesized.settings.max_receive_count,
        }
        dlq_alarms = [
            a["Properties"]
            for a in alarms.values()
            if a["Properties"].get("MetricName") == "ApproximateNumberOfMessagesVisible"
            and a["Properties"].get("Dimensions")
            == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [dlq_id, "QueueName"]}}]
        ]
        assert len(dlq_alarms) == 1, queue
        assert dlq_alarms[0]["Threshold"] == 0
        assert dlq_alarms[0]["ComparisonOperator"] == "GreaterThanThreshold"


def test_subscriptions_deliver_raw_messages_with_the_shared_filter_policies(
    synthesized: Synthesized,
) -> None:
    topics = by_property(synthesized, "AWS::SNS::Topic", "TopicName")
    queues = by_property(synthesized, "AWS::SQS::Queue", "QueueName")
    found = {
        (json.dumps(p["TopicArn"]), json.dumps(p["Endpoint"])): p
        for p in (r["Properties"] for r in synthesized.resources("AWS::SNS::Subscription").values())
        if p["Protocol"] == "sqs"  # not the alarm e-mail (alarms.py)
    }
    assert len(found) == len(SUBSCRIPTIONS)
    for sub in SUBSCRIPTIONS:
        topic_id = topics[NAMES.topic(sub.topic)][0]
        queue_id = queues[NAMES.queue(sub.queue)][0]
        props = found[
            (json.dumps({"Ref": topic_id}), json.dumps({"Fn::GetAtt": [queue_id, "Arn"]}))
        ]
        assert props["Protocol"] == "sqs"
        assert props["RawMessageDelivery"] is True
        assert props.get("FilterPolicy") == sub.filter_policy


def test_state_machine_runs_the_definition_the_local_stack_runs(synthesized: Synthesized) -> None:
    machines = {
        m["Properties"]["StateMachineName"]: m["Properties"]
        for m in synthesized.resources("AWS::StepFunctions::StateMachine").values()
    }
    retag_name = retag_state_machine_name(NAMES.prefix)
    assert set(machines) == {NAMES.state_machine, retag_name}
    props = machines[NAMES.state_machine]
    assert props.get("StateMachineType", "STANDARD") == "STANDARD"
    rendered = json.loads(resolve_join(props["DefinitionString"]))

    queues = by_property(synthesized, "AWS::SQS::Queue", "QueueName")
    topics = by_property(synthesized, "AWS::SNS::Topic", "TopicName")
    tables = by_property(synthesized, "AWS::DynamoDB::Table", "TableName")
    placeholders = WorkflowTargets(
        extract_queue_url=f"<Ref {queues[NAMES.queue(Queue.EXTRACT)][0]}>",
        validated_topic_arn=f"<Ref {topics[NAMES.topic(Topic.VALIDATED)][0]}>",
        stored_topic_arn=f"<Ref {topics[NAMES.topic(Topic.STORED)][0]}>",
        images_table=f"<Ref {tables[NAMES.table(Table.IMAGES)][0]}>",
    )
    limits = WorkflowLimits.from_settings(synthesized.settings)
    expected = build_definition(placeholders, limits)
    assert rendered == expected
    assert len(happy_path_states(rendered)) == 7
    # Re-tagging (imgproc_shared.retag) runs on its own machine, so ImageProc keeps its 7.
    retag = json.loads(resolve_join(machines[retag_name]["DefinitionString"]))
    assert retag == build_retag_definition(
        placeholders, WorkflowLimits.from_settings(synthesized.settings)
    )


def test_state_machine_role_may_call_only_its_tasks(synthesized: Synthesized) -> None:
    role_id = synthesized.logical_id(synthesized.stack.workflow.role)
    statements = policy_statements(synthesized, role_id)
    queues = by_property(synthesized, "AWS::SQS::Queue", "QueueName")
    topics = by_property(synthesized, "AWS::SNS::Topic", "TopicName")
    tables = by_property(synthesized, "AWS::DynamoDB::Table", "TableName")
    granted = {
        (action, json.dumps(resource))
        for s in statements
        for action in as_list(s["Action"])
        for resource in as_list(s["Resource"])
        # The topics' key and the logging delivery (test_permissions_template.py) aside.
        if not action.startswith(("kms:", "logs:"))
    }
    assert granted == {
        (
            "sqs:SendMessage",
            json.dumps({"Fn::GetAtt": [queues[NAMES.queue(Queue.EXTRACT)][0], "Arn"]}),
        ),
        ("sns:Publish", json.dumps({"Ref": topics[NAMES.topic(Topic.VALIDATED)][0]})),
        ("sns:Publish", json.dumps({"Ref": topics[NAMES.topic(Topic.STORED)][0]})),
        (
            "dynamodb:UpdateItem",
            json.dumps({"Fn::GetAtt": [tables[NAMES.table(Table.IMAGES)][0], "Arn"]}),
        ),
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def policy_statements(synth: Synthesized, role_id: str, **parameters: str) -> list[dict[str, Any]]:
    """Every statement that applies to one role as deployed with these parameters (else the
    defaults): its inline policies and the policies attached to it."""
    return EffectiveTemplate(synth.template, **parameters).role_statements(role_id)


DATA_SERVICES = ("s3:", "sqs:", "sns:", "dynamodb:", "states:", "kms:")


def task_roles(synth: Synthesized) -> dict[str, str]:
    roles = {
        image.service: synth.logical_id(synth.stack.workers[stage].task_role)
        for stage, image in WORKER_IMAGES.items()
    }
    roles["status-api"] = synth.logical_id(synth.stack.status_api.task_role)
    return roles


@pytest.mark.parametrize("backend", TAGGER_BACKENDS)
def test_no_task_role_grants_a_data_action_on_every_resource(
    synthesized: Synthesized, backend: str
) -> None:
    for service, role_id in task_roles(synthesized).items():
        statements = policy_statements(synthesized, role_id, TaggerBackend=backend)
        assert statements, service
        for statement in statements:
            actions = as_list(statement["Action"])
            if "*" in as_list(statement["Resource"]):
                assert not [a for a in actions if a.startswith(DATA_SERVICES) or a == "*"], (
                    service,
                    statement,
                )


def test_each_worker_touches_only_its_own_queue_and_prefixes(synthesized: Synthesized) -> None:
    queues = by_property(synthesized, "AWS::SQS::Queue", "QueueName")
    for stage, image in WORKER_IMAGES.items():
        role_id = synthesized.logical_id(synthesized.stack.workers[stage].task_role)
        statements = policy_statements(synthesized, role_id)
        own_queue = {"Fn::GetAtt": [queues[NAMES.queue(STAGE_QUEUES[stage])][0], "Arn"]}
        sqs_resources = [
            r
            for s in statements
            if any(a.startswith("sqs:") for a in as_list(s["Action"]))
            for r in as_list(s["Resource"])
        ]
        assert sqs_resources == [own_queue], image.service
        s3_grants = {
            (action, resolve_join(resource).split("/", 1)[1])
            for s in statements
            for action in as_list(s["Action"])
            if action.startswith("s3:") and action != "s3:ListBucket"
            for resource in as_list(s["Resource"])
        }
        # Listing (bucket-level, no object access) lets S3 answer 404 for a missing original.
        listers = {"extractor"}
        listing = [s for s in statements if "s3:ListBucket" in as_list(s["Action"])]
        assert bool(listing) == (image.service in listers), image.service
        expected = {("s3:GetObject", f"{INCOMING_PREFIX}*")}
        if image.service == "thumbnailer":
            expected.add(("s3:PutObject", f"{THUMBNAILS_PREFIX}*"))
        assert s3_grants == expected, image.service
        actions = {a for s in statements for a in as_list(s["Action"])}
        assert {
            "states:SendTaskSuccess",
            "states:SendTaskFailure",
            "states:SendTaskHeartbeat",
        } <= actions
        # With the default backend (local) no worker may call Rekognition; the tagger's grant
        # under TaggerBackend=rekognition: test_tagger_backend.py.
        assert not [a for a in actions if a.startswith("rekognition:")], image.service
        # Progress on the image and a dead letter's note: writes, no reads.
        assert {a for a in actions if a.startswith("dynamodb:")} == {"dynamodb:UpdateItem"}


def test_cluster_has_container_insights(synthesized: Synthesized) -> None:
    synthesized.assertions.has_resource_properties(
        "AWS::ECS::Cluster",
        {"ClusterSettings": [{"Name": "containerInsights", "Value": "enabled"}]},
    )


def container_of(synth: Synthesized, service: str) -> dict[str, Any]:
    for task in synth.resources("AWS::ECS::TaskDefinition").values():
        for container in task["Properties"]["ContainerDefinitions"]:
            if container["Name"] == service:
                return container  # type: ignore[no-any-return]
    raise AssertionError(f"no container {service}")


def test_every_service_runs_its_image_with_settings_logs_and_a_drain_timeout(
    synthesized: Synthesized,
) -> None:
    log_groups = synthesized.resources("AWS::Logs::LogGroup")
    for image in [*WORKER_IMAGES.values(), STATUS_API_IMAGE]:
        container = container_of(synthesized, image.service)
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert env["IMGPROC_RESOURCE_PREFIX"] == PREFIX
        assert env["IMGPROC_TAGGER_BACKEND"] == {"Ref": "TaggerBackend"}
        assert env["IMGPROC_REGION"] == {"Ref": "AWS::Region"}
        assert "Ref" in env["IMGPROC_STATE_MACHINE_ARN"]
        assert container["Command"] == image.command
        # The worker drains within its stop timeout; ECS waits longer before SIGKILL.
        assert synthesized.settings.stop_timeout_s < container["StopTimeout"] <= 120
        log_group = container["LogConfiguration"]["Options"]["awslogs-group"]["Ref"]
        assert log_groups[log_group]["Properties"]["RetentionInDays"] == 30


def test_workers_scale_on_backlog_per_task(synthesized: Synthesized) -> None:
    policies = synthesized.resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    targets = synthesized.resources("AWS::ApplicationAutoScaling::ScalableTarget")
    assert len(targets) == len(WORKER_IMAGES)
    for stage, image in WORKER_IMAGES.items():
        scaling = synthesized.stack.scaling[stage]
        target_id = str(synthesized.stack.resolve(scaling.target.logical_id))
        label = image.service.capitalize()
        target = targets[target_id]["Properties"]
        assert target["MinCapacity"] == {"Ref": f"{label}MinTasks"}
        assert target["MaxCapacity"] == {"Ref": f"{label}MaxTasks"}
        assert target["ScalableDimension"] == "ecs:service:DesiredCount"
        mine = [
            p for p in policies.values() if p["Properties"]["ScalingTargetId"] == {"Ref": target_id}
        ]
        tracking = [p for p in mine if p["Properties"]["PolicyType"] == "TargetTrackingScaling"]
        steps = [p for p in mine if p["Properties"]["PolicyType"] == "StepScaling"]
        assert len(tracking) == 1 and len(steps) == 1

        config = tracking[0]["Properties"]["TargetTrackingScalingPolicyConfiguration"]
        assert config["TargetValue"] == {"Ref": f"{label}TargetLatencySeconds"}
        metrics = {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}
        visible = metrics["visible"]["MetricStat"]["Metric"]
        tasks = metrics["tasks"]["MetricStat"]["Metric"]
        queue_id = synthesized.logical_id(synthesized.stack.messaging.queues[STAGE_QUEUES[stage]])
        assert visible["Namespace"] == "AWS/SQS"
        assert visible["MetricName"] == "ApproximateNumberOfMessagesVisible"
        assert visible["Dimensions"] == [
            {"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}
        ]
        assert tasks["Namespace"] == "ECS/ContainerInsights"
        assert tasks["MetricName"] == "RunningTaskCount"
        assert {d["Name"] for d in tasks["Dimensions"]} == {"ClusterName", "ServiceName"}
        # Waiting and in-flight messages (test_scaling.py checks the backlog's terms).
        assert metrics["backlog_per_task"]["Expression"] == "backlog / tasks"
        returned = [m for m in metrics.values() if m.get("ReturnData")]
        assert [m["Id"] for m in returned] == ["wait_s"]
        assert resolve_join(returned[0]["Expression"]) == (
            f"backlog_per_task * <Ref {label}SecondsPerMessage>"
        )
        # The shared policy (the local scaler applies the same one) gives every default.
        policy = POLICIES[stage]
        parameters = synthesized.template["Parameters"]
        assert config["ScaleOutCooldown"] == policy.scale_out_cooldown_s
        assert config["ScaleInCooldown"] == policy.scale_in_cooldown_s
        assert parameters[f"{label}MinTasks"]["Default"] == policy.min_capacity
        assert parameters[f"{label}MaxTasks"]["Default"] == policy.max_capacity
        assert parameters[f"{label}SecondsPerMessage"]["Default"] == policy.seconds_per_message
        assert parameters[f"{label}TargetLatencySeconds"]["Default"] == policy.acceptable_latency_s

        step = steps[0]
        assert step["Condition"] == synthesized.stack.resolve(
            scaling.from_zero_condition.logical_id
        )
        step_config = step["Properties"]["StepScalingPolicyConfiguration"]
        assert step_config["AdjustmentType"] == "ChangeInCapacity"
        assert step_config["StepAdjustments"] == [
            {"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}
        ]
        step_id = str(synthesized.stack.resolve(scaling.from_zero_policy.logical_id))
        alarms = [
            a
            for a in synthesized.resources("AWS::CloudWatch::Alarm").values()
            if a["Properties"].get("AlarmActions") == [{"Ref": step_id}]
        ]
        assert len(alarms) == 1 and alarms[0]["Condition"] == step["Condition"]
        condition = synthesized.template["Conditions"][step["Condition"]]
        assert condition == {"Fn::Equals": [{"Ref": f"{label}MinTasks"}, "0"]}


def test_status_api_sits_behind_a_load_balancer_checking_healthz(synthesized: Synthesized) -> None:
    synthesized.assertions.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::LoadBalancer", {"Scheme": "internal"}
    )
    synthesized.assertions.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {"HealthCheckPath": "/healthz", "Port": 80, "Matcher": {"HttpCode": "200"}},
    )
    container = container_of(synthesized, "status-api")
    assert container["PortMappings"][0]["ContainerPort"] == 8080
    assert container["Command"] == [
        "python",
        "-m",
        "imgproc_status_api",
        "--host",
        "0.0.0.0",
        "--port",
        "8080",
    ]
    assert container["HealthCheck"]["Command"][0] == "CMD"
    env = {e["Name"]: resolve_join(e["Value"]) for e in container["Environment"]}
    pool_id = synthesized.logical_id(synthesized.stack.identity.user_pool)
    client_id = synthesized.logical_id(synthesized.stack.identity.web_client)
    issuer = f"https://cognito-idp.<Ref AWS::Region>.amazonaws.com/<Ref {pool_id}>"
    assert env["IMGPROC_COGNITO_ISSUER"] == issuer
    assert env["IMGPROC_COGNITO_AUDIENCE"] == f"<Ref {client_id}>"
    assert env["IMGPROC_COGNITO_JWKS_URL"] == f"{issuer}/.well-known/jwks.json"


def test_cognito_pool_and_public_web_client(synthesized: Synthesized) -> None:
    synthesized.assertions.has_resource_properties(
        "AWS::Cognito::UserPool",
        {"AdminCreateUserConfig": {"AllowAdminCreateUserOnly": True}},
    )
    synthesized.assertions.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {"GenerateSecret": False, "ExplicitAuthFlows": Match.array_with(["ALLOW_USER_SRP_AUTH"])},
    )


def test_outputs_and_size_parameters(synthesized: Synthesized) -> None:
    assert set(synthesized.template["Outputs"]) >= {
        "ApiUrl",
        "BucketName",
        "CognitoUserPoolId",
        "CognitoAudience",
        "CognitoIssuer",
        "StateMachineArn",
        "ResourcePrefix",
    }
    assert synthesized.template["Outputs"]["ResourcePrefix"]["Value"] == PREFIX
    parameters = synthesized.template["Parameters"]
    for label in ("Extractor", "Tagger", "Thumbnailer"):
        for suffix in (
            "Cpu",
            "MemoryMiB",
            "MinTasks",
            "MaxTasks",
            "SecondsPerMessage",
            "TargetLatencySeconds",
        ):
            assert f"{label}{suffix}" in parameters
    assert {"StatusApiCpu", "StatusApiMemoryMiB", "StatusApiTasks"} <= set(parameters)
    # Fargate task sizes follow the parameters.
    for task in synthesized.resources("AWS::ECS::TaskDefinition").values():
        assert set(task["Properties"]["Cpu"]) == {"Ref"}
