"""SociIndexBuilder: rule -> queue -> function wiring, settings, permissions, alarms, validation."""

from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Duration, Stack
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from cdk_support import (
    as_list,
    logical_id,
    new_stack,
    policy_statements,
    repository_arn,
    resources,
    template_of,
)
from soci_cdk import SociIndexBuilder, SociRepository
from soci_indexer import settings
from soci_indexer.aws.config import load_config

IMPORTED_KEY_ARN = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
# The module the deployed function's handler string names.
HANDLER_SOURCE = Path(
    str(importlib.util.find_spec(settings.LAMBDA_HANDLER.rpartition(".")[0]).origin)
)


@dataclass
class Built:
    """One stack holding every builder configuration under test, synthesized once."""

    stack: Stack
    template: dict[str, Any]
    filtered: SociIndexBuilder
    everything: SociIndexBuilder
    custom: SociIndexBuilder
    repository_key: kms.Key
    queue_key: kms.Key
    topic: sns.Topic
    late_repository: ecr.IRepository

    def id(self, construct: Any) -> str:
        return logical_id(self.stack, construct)

    def props(self, construct: Any) -> dict[str, Any]:
        properties: dict[str, Any] = self.template["Resources"][self.id(construct)]["Properties"]
        return properties

    def statements(self, builder: SociIndexBuilder) -> list[dict[str, Any]]:
        return policy_statements(self.template, self.id(builder.role))


@pytest.fixture(scope="module")
def built() -> Built:
    stack = new_stack()
    topic = sns.Topic(stack, "Alarms")
    repository_key = kms.Key(stack, "RepositoryKey")
    queue_key = kms.Key(stack, "QueueKey")
    filtered = SociIndexBuilder(
        stack,
        "Filtered",
        repository_name_filters=["team-a/*"],
        alarm_topic=topic,
    )
    SociRepository(stack, "Encrypted", builder=filtered, encryption_key=repository_key)
    late_repository = ecr.Repository.from_repository_name(stack, "Late", "platform/late")
    filtered.add_repository(late_repository)
    custom = SociIndexBuilder(
        stack,
        "Custom",
        repository_name_filters=["team-b/*"],
        index_version="v1",
        tag_suffix="-lazy",
        platforms=["linux/amd64", "linux/arm64/v8"],
        min_layer_size_bytes=0,
        span_size_bytes=1048576,
        max_layer_workers=2,
        blob_connections=8,
        range_size_bytes=4194304,
        memory_size_mib=1769,
        timeout=Duration.minutes(5),
        architecture=lambda_.Architecture.X86_64,
        max_concurrency=25,
        reserved_concurrency=30,
        encryption_key=queue_key,
        log_retention=logs.RetentionDays.ONE_WEEK,
        log_level="DEBUG",
        metrics_namespace="Team/Soci",
        service_name="team-indexer",
    )
    # Its own tag suffix: two builders of one stack may not write the same tags.
    everything = SociIndexBuilder(stack, "Everything", tag_suffix="-all")
    return Built(
        stack=stack,
        template=template_of(stack),
        filtered=filtered,
        everything=everything,
        custom=custom,
        repository_key=repository_key,
        queue_key=queue_key,
        topic=topic,
        late_repository=late_repository,
    )


def getatt(built: Built, construct: Any, attribute: str = "Arn") -> dict[str, Any]:
    return {"Fn::GetAtt": [built.id(construct), attribute]}


# ------------------------------------------------------------------ rule and queues


def test_the_rule_sends_matching_events_to_the_queue(built: Built) -> None:
    (target,) = built.props(built.filtered.rule)["Targets"]
    assert target["Arn"] == getatt(built, built.filtered.queue)


def test_events_the_rule_cannot_deliver_go_to_the_dead_letter_queue(built: Built) -> None:
    (target,) = built.props(built.filtered.rule)["Targets"]
    assert target["DeadLetterConfig"]["Arn"] == getatt(built, built.filtered.dead_letter_queue)


def test_messages_move_to_the_dead_letter_queue_after_three_receives(built: Built) -> None:
    assert built.props(built.filtered.queue)["RedrivePolicy"] == {
        "deadLetterTargetArn": getatt(built, built.filtered.dead_letter_queue),
        "maxReceiveCount": 3,
    }


def test_the_visibility_timeout_is_six_times_the_function_timeout(built: Built) -> None:
    assert built.props(built.filtered.queue)["VisibilityTimeout"] == 6 * 15 * 60


def test_the_visibility_timeout_follows_a_shorter_function_timeout(built: Built) -> None:
    assert built.props(built.custom.queue)["VisibilityTimeout"] == 6 * 5 * 60


def test_queues_are_encrypted_by_sqs_without_a_key(built: Built) -> None:
    for queue in (built.filtered.queue, built.filtered.dead_letter_queue):
        assert built.props(queue)["SqsManagedSseEnabled"] is True


def test_queues_are_encrypted_with_the_given_key(built: Built) -> None:
    for queue in (built.custom.queue, built.custom.dead_letter_queue):
        assert built.props(queue)["KmsMasterKeyId"] == getatt(built, built.queue_key)


def test_queues_refuse_requests_without_tls(built: Built) -> None:
    denied: set[str] = set()
    for policy in resources(built.template, "AWS::SQS::QueuePolicy").values():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            if statement["Effect"] == "Deny" and statement.get("Condition") == {
                "Bool": {"aws:SecureTransport": "false"}
            }:
                denied.update(str(queue) for queue in as_list(policy["Properties"]["Queues"]))
    for queue in (built.filtered.queue, built.filtered.dead_letter_queue):
        assert str({"Ref": built.id(queue)}) in denied


def test_the_dead_letter_queue_keeps_messages_for_fourteen_days(built: Built) -> None:
    assert built.props(built.filtered.dead_letter_queue)["MessageRetentionPeriod"] == 14 * 86400


def event_source_mapping(built: Built, builder: SociIndexBuilder) -> dict[str, Any]:
    (mapping,) = (
        resource["Properties"]
        for resource in resources(built.template, "AWS::Lambda::EventSourceMapping").values()
        if resource["Properties"]["FunctionName"] == {"Ref": built.id(builder.function)}
    )
    return mapping


def test_the_function_reads_the_queue(built: Built) -> None:
    mapping = event_source_mapping(built, built.filtered)
    assert mapping["EventSourceArn"] == getatt(built, built.filtered.queue)


def test_the_function_may_hide_a_failed_message_until_its_retry(built: Built) -> None:
    queue = getatt(built, built.filtered.queue)
    assert any(
        "sqs:ChangeMessageVisibility" in as_list(statement["Action"])
        and queue in as_list(statement["Resource"])
        for statement in built.statements(built.filtered)
    )


def test_the_function_reports_partial_batch_failures(built: Built) -> None:
    mapping = event_source_mapping(built, built.filtered)
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_each_invocation_indexes_one_image(built: Built) -> None:
    assert event_source_mapping(built, built.filtered)["BatchSize"] == 1


def test_at_most_ten_images_are_indexed_at_once_by_default(built: Built) -> None:
    mapping = event_source_mapping(built, built.filtered)
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 10}


def test_max_concurrency_caps_the_event_source(built: Built) -> None:
    mapping = event_source_mapping(built, built.custom)
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 25}


# ------------------------------------------------------------------------ function


def test_the_function_runs_the_indexer_handler_on_the_newest_python(built: Built) -> None:
    props = built.props(built.filtered.function)
    assert (props["Handler"], props["Runtime"]) == (
        "soci_indexer.aws.handler.handler",
        "python3.14",
    )


def test_the_function_runs_on_arm64_by_default(built: Built) -> None:
    assert built.props(built.filtered.function)["Architectures"] == ["arm64"]


def test_the_architecture_can_be_chosen(built: Built) -> None:
    assert built.props(built.custom.function)["Architectures"] == ["x86_64"]


def test_the_function_gets_two_vcpus_of_memory_by_default(built: Built) -> None:
    assert built.props(built.filtered.function)["MemorySize"] == 2 * 1769


def test_the_function_may_run_fifteen_minutes_by_default(built: Built) -> None:
    assert built.props(built.filtered.function)["Timeout"] == 900


def test_the_function_has_no_layer(built: Built) -> None:
    assert "Layers" not in built.props(built.filtered.function)


def test_the_function_logs_json_to_its_own_log_group(built: Built) -> None:
    logging = built.props(built.filtered.function)["LoggingConfig"]
    assert logging["LogFormat"] == "JSON"
    assert logging["LogGroup"] == {"Ref": built.id(built.filtered.log_group)}


def test_the_log_group_keeps_logs_one_month_by_default(built: Built) -> None:
    assert built.props(built.filtered.log_group)["RetentionInDays"] == 30


def test_the_log_group_is_encrypted_with_the_given_key(built: Built) -> None:
    assert built.props(built.custom.log_group)["KmsKeyId"] == getatt(built, built.queue_key)


LOGS_PRINCIPAL = {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}


def key_policy_statements_for(built: Built, service: Any) -> list[dict[str, Any]]:
    statements = built.props(built.queue_key)["KeyPolicy"]["Statement"]
    return [s for s in statements if s["Principal"] == {"Service": service}]


def test_cloudwatch_logs_may_use_the_key_only_for_log_groups_of_the_stacks_account_and_region(
    built: Built,
) -> None:
    log_groups = {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":logs:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                ":log-group:*",
            ],
        ]
    }
    (statement,) = key_policy_statements_for(built, LOGS_PRINCIPAL)
    assert statement["Condition"] == {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}}


def test_eventbridge_may_use_the_key_only_for_the_stacks_account(built: Built) -> None:
    (statement,) = key_policy_statements_for(built, "events.amazonaws.com")
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    }


def test_the_environment_carries_the_default_index_settings(built: Built) -> None:
    assert built.props(built.filtered.function)["Environment"]["Variables"] == {
        "SOCI_INDEX_VERSION": "v2",
        "SOCI_TAG_SUFFIX": "-soci",
        "SOCI_MIN_LAYER_SIZE_BYTES": "10485760",
        "SOCI_SPAN_SIZE_BYTES": "4194304",
        "SOCI_PLATFORMS": "",
        "SOCI_BUILD_TOOL": "soci-fargate v0.1.0",
        "SOCI_MAX_LAYER_WORKERS": "4",
        "SOCI_BLOB_CONNECTIONS": "4",
        "SOCI_RANGE_SIZE_BYTES": "8388608",
        "POWERTOOLS_METRICS_NAMESPACE": "SociIndexBuilder",
        "POWERTOOLS_SERVICE_NAME": "Test/Filtered",
        "LOG_LEVEL": "INFO",
    }


def test_index_settings_props_reach_the_environment(built: Built) -> None:
    variables = built.props(built.custom.function)["Environment"]["Variables"]
    assert {name: variables[name] for name in variables if name != "SOCI_BUILD_TOOL"} == {
        "SOCI_INDEX_VERSION": "v1",
        "SOCI_TAG_SUFFIX": "-lazy",
        "SOCI_MIN_LAYER_SIZE_BYTES": "0",
        "SOCI_SPAN_SIZE_BYTES": "1048576",
        "SOCI_PLATFORMS": "linux/amd64,linux/arm64/v8",
        "SOCI_MAX_LAYER_WORKERS": "2",
        "SOCI_BLOB_CONNECTIONS": "8",
        "SOCI_RANGE_SIZE_BYTES": "4194304",
        "POWERTOOLS_METRICS_NAMESPACE": "Team/Soci",
        "POWERTOOLS_SERVICE_NAME": "team-indexer",
        "LOG_LEVEL": "DEBUG",
    }


def test_the_environment_variable_names_are_the_handlers(built: Built) -> None:
    names = {value for name, value in vars(settings).items() if name.startswith("ENV_")} - {
        settings.ENV_ALLOW_CROSS_ACCOUNT,
        settings.ENV_SOCI_DIGESTS,  # the pull-time monitor's
    }
    assert set(built.props(built.filtered.function)["Environment"]["Variables"]) == names


def test_the_handler_reads_back_the_settings_the_builder_writes(built: Built) -> None:
    config = load_config(built.props(built.custom.function)["Environment"]["Variables"])
    options = config.index_options
    assert (options.index_version, options.tag_suffix, options.platforms) == (
        "v1",
        "-lazy",
        ("linux/amd64", "linux/arm64/v8"),
    )
    assert (options.min_layer_size, options.span_size, options.max_workers) == (0, 1048576, 2)
    assert (options.blob_connections, options.range_size) == (8, 4194304)
    assert (config.metrics_namespace, config.service_name, config.log_level) == (
        "Team/Soci",
        "team-indexer",
        "DEBUG",
    )


def test_lambda_filters_application_logs_at_the_chosen_level(built: Built) -> None:
    assert built.props(built.custom.function)["LoggingConfig"]["ApplicationLogLevel"] == "DEBUG"


def test_no_concurrency_is_reserved_by_default(built: Built) -> None:
    assert "ReservedConcurrentExecutions" not in built.props(built.filtered.function)


def test_reserved_concurrency_is_set_when_given(built: Built) -> None:
    assert built.props(built.custom.function)["ReservedConcurrentExecutions"] == 30


# ----------------------------------------------------------------------------- IAM


def test_only_get_authorization_token_is_allowed_on_every_resource(built: Built) -> None:
    for builder in (built.filtered, built.everything, built.custom):
        on_everything = [s for s in built.statements(builder) if s["Resource"] == "*"]
        assert [s["Action"] for s in on_everything] == ["ecr:GetAuthorizationToken"]


def image_statement(built: Built, builder: SociIndexBuilder) -> dict[str, Any]:
    (statement,) = (s for s in built.statements(builder) if "ecr:PutImage" in as_list(s["Action"]))
    return statement


def test_the_function_may_pull_and_push_images_and_nothing_else(built: Built) -> None:
    assert sorted(image_statement(built, built.filtered)["Action"]) == [
        "ecr:BatchCheckLayerAvailability",
        "ecr:BatchGetImage",
        "ecr:CompleteLayerUpload",
        "ecr:GetDownloadUrlForLayer",
        "ecr:InitiateLayerUpload",
        "ecr:PutImage",
        "ecr:UploadLayerPart",
    ]


def test_image_actions_are_limited_to_the_selected_repositories(built: Built) -> None:
    assert as_list(image_statement(built, built.custom)["Resource"]) == [repository_arn("team-b/*")]


def test_repository_objects_are_granted_by_their_own_arn(built: Built) -> None:
    resources_ = as_list(image_statement(built, built.filtered)["Resource"])
    encrypted = built.stack.node.find_child("Encrypted")
    assert getatt(built, encrypted) in resources_


def test_repositories_added_later_are_granted(built: Built) -> None:
    resources_ = as_list(image_statement(built, built.filtered)["Resource"])
    assert built.stack.resolve(built.late_repository.repository_arn) in resources_


def test_repositories_added_later_are_matched_by_the_rule(built: Built) -> None:
    names = built.props(built.filtered.rule)["EventPattern"]["detail"]["repository-name"]
    assert "platform/late" in names


def test_a_builder_for_every_repository_may_act_on_every_repository_of_its_account(
    built: Built,
) -> None:
    assert as_list(image_statement(built, built.everything)["Resource"]) == [repository_arn("*")]


def test_the_function_gets_no_kms_permission_for_repository_keys(built: Built) -> None:
    # ECR encrypts and decrypts images through grants it creates on the key for the
    # repository; who pushes or pulls needs no KMS permission of its own.
    kms_actions = [
        action
        for statement in built.statements(built.filtered)
        for action in as_list(statement["Action"])
        if action.startswith("kms:")
    ]
    assert kms_actions == []


# -------------------------------------------------------------------------- alarms


def test_a_message_in_the_dead_letter_queue_raises_an_alarm(built: Built) -> None:
    alarm = built.props(built.filtered.dead_letter_alarm)
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": getatt(built, built.filtered.dead_letter_queue, "QueueName")}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_function_errors_raise_an_alarm(built: Built) -> None:
    alarm = built.props(built.filtered.errors_alarm)
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", "Errors")
    assert alarm["Dimensions"] == [
        {"Name": "FunctionName", "Value": {"Ref": built.id(built.filtered.function)}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_a_failed_image_raises_an_alarm_within_a_minute_of_its_metric(built: Built) -> None:
    alarm = built.props(built.filtered.images_failed_alarm)
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "SociIndexBuilder",
        "ImagesFailed",
        "Sum",
    )
    # The default service dimension is the builder's construct path.
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "Test/Filtered"}]
    assert (alarm["Period"], alarm["EvaluationPeriods"]) == (60, 1)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_the_failed_images_alarm_reads_the_builders_namespace_and_service(built: Built) -> None:
    alarm = built.props(built.custom.images_failed_alarm)
    assert (alarm["Namespace"], alarm["Dimensions"]) == (
        "Team/Soci",
        [{"Name": "service", "Value": "team-indexer"}],
    )


def test_the_failed_images_alarm_is_one_of_the_alarms(built: Built) -> None:
    assert built.filtered.images_failed_alarm in built.filtered.alarms


def test_alarms_notify_the_given_topic(built: Built) -> None:
    for alarm in built.filtered.alarms:
        assert built.props(alarm)["AlarmActions"] == [{"Ref": built.id(built.topic)}]


def test_alarms_notify_nobody_without_a_topic(built: Built) -> None:
    for alarm in built.everything.alarms:
        assert "AlarmActions" not in built.props(alarm)


# ------------------------------------------------------------------------- metrics


def test_metrics_are_read_under_the_builders_namespace_and_service(built: Built) -> None:
    metric = built.custom.metric_images_indexed()
    assert (metric.namespace, metric.dimensions) == ("Team/Soci", {"service": "team-indexer"})


def test_metrics_default_to_the_handlers_namespace_and_the_builders_path(built: Built) -> None:
    metric = built.filtered.metric_layers_skipped()
    assert (metric.namespace, metric.dimensions) == (
        "SociIndexBuilder",
        {"service": "Test/Filtered"},
    )


def test_metric_methods_take_cloudwatchs_metric_options(built: Built) -> None:
    metric = built.filtered.metric_images_failed(
        label="failed images", statistic=cloudwatch.Stats.MAXIMUM, period=Duration.minutes(1)
    )
    assert (metric.label, metric.statistic, metric.period.to_minutes()) == (
        "failed images",
        cloudwatch.Stats.MAXIMUM,
        1,
    )


def test_two_builders_have_distinct_default_service_dimensions(built: Built) -> None:
    assert built.filtered.metric_images_indexed().dimensions != (
        built.everything.metric_images_indexed().dimensions
    )


def test_the_default_service_dimension_is_the_same_on_every_synth() -> None:
    def service() -> object:
        return SociIndexBuilder(new_stack(), "Builder").metric_images_indexed().dimensions

    assert service() == service()


def test_every_metric_method_reads_a_metric_the_handler_emits(built: Built) -> None:
    source = HANDLER_SOURCE.read_text()
    emitted = set(re.findall(r'METRICS\.add\(\s*"(\w+)"', source)) | {
        getattr(settings, name) for name in re.findall(r"METRICS\.add\(\s*settings\.(\w+)", source)
    }
    builder = built.filtered
    metrics = [getattr(builder, name)() for name in dir(builder) if name.startswith("metric_")]
    read = {
        used.metric_name
        for metric in metrics
        for used in (
            metric.using_metrics.values()
            if isinstance(metric, cloudwatch.MathExpression)
            else [metric]
        )
    }
    assert read <= emitted, f"read but never emitted: {sorted(read - emitted)}"


# ------------------------------------------------------------------- names, grants


PHYSICAL_NAMES = ("FunctionName", "QueueName", "Name", "LogGroupName", "RoleName", "AlarmName")


def test_no_resource_has_a_physical_name(built: Built) -> None:
    named = {
        logical: name
        for logical, resource in built.template["Resources"].items()
        if resource["Type"] != "AWS::Lambda::EventSourceMapping"
        for name in PHYSICAL_NAMES
        if name in resource.get("Properties", {})
    }
    assert named == {}


def test_grant_enqueue_lets_a_principal_send_messages_to_the_queue() -> None:
    stack = new_stack()
    builder = SociIndexBuilder(stack, "Builder")
    role = iam.Role(stack, "Caller", assumed_by=iam.AccountRootPrincipal())
    grant = builder.grant_enqueue(role)
    assert grant.success
    statements = stack.resolve(role.node.find_child("DefaultPolicy").document)["Statement"]
    assert "sqs:SendMessage" in statements[0]["Action"]
