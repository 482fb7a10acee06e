"""A stack using every construct with every option turned on: cfn-lint and cdk-nag accept it."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Duration, Stack, Validations
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from cdk_nag import AwsSolutionsChecks
from cdk_support import cfn_lint_findings, template_of
from soci_cdk import (
    Backfill,
    SociFargateTask,
    SociIndexBuilder,
    SociRepository,
    SociRepositoryTemplate,
)


def build(stack: Stack) -> None:
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    vpc = ec2.Vpc(
        stack, "Vpc", max_azs=2, nat_gateways=0, flow_logs={"FlowLogs": ec2.FlowLogOptions()}
    )
    builder = SociIndexBuilder(
        stack,
        "Builder",
        repositories=[],
        repository_name_filters=["team-a/*", "*/simulation", "team-*/api", "exact/name"],
        tag_filters=["v*", "release-*", "latest"],
        index_version="v1",
        tag_suffix="-lazy",
        platforms=["linux/amd64"],
        min_layer_size_bytes=0,
        span_size_bytes=1048576,
        max_layer_workers=8,
        memory_size_mib=10240,
        timeout=Duration.minutes(10),
        architecture=lambda_.Architecture.X86_64,
        max_concurrency=100,
        reserved_concurrency=100,
        encryption_key=key,
        log_level="WARNING",
        alarm_topic=sns.Topic(stack, "Alarms", master_key=key, enforce_ssl=True),
        vpc=vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        security_groups=[ec2.SecurityGroup(stack, "BuilderGroup", vpc=vpc)],
        backfill=Backfill(max_age=Duration.days(90), max_images=1000),
    )
    repository = SociRepository(
        stack, "Repository", builder=builder, encryption_key=key, max_image_count=50
    )
    SociRepositoryTemplate(
        stack, "Template", prefix="team-c", builder=builder, encryption_key=key, max_image_count=9
    )
    SociFargateTask(
        stack,
        "Task",
        repository=repository,
        tag_suffix=builder.tag_suffix,
        cpu=4096,
        memory_limit_mib=30720,
        cpu_architecture=ecs.CpuArchitecture.ARM64,
        cluster=ecs.Cluster(
            stack, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        ),
        schedule=scheduler.ScheduleExpression.cron(minute="0", hour="6"),
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
        assign_public_ip=True,
    )


@pytest.fixture(scope="module")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(outdir=str(outdir))
    stack = Stack(app, "Everything")
    build(stack)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    # A finding fails the synth; the tests read what it was from the report.
    with contextlib.suppress(RuntimeError):
        app.synth()
    return template_of(stack), outdir / "validation-report.json"


def test_every_option_synthesizes_to_a_template_cfn_lint_accepts(
    synthesized: tuple[dict[str, Any], Path],
) -> None:
    template, _ = synthesized
    assert cfn_lint_findings(template) == []


def test_the_constructs_leave_no_aws_solutions_finding_unacknowledged(
    synthesized: tuple[dict[str, Any], Path],
) -> None:
    _, report_path = synthesized
    (report,) = json.loads(report_path.read_text())["pluginReports"]
    assert report["violations"] == []


def test_the_constructs_acknowledge_only_their_intended_wildcards(
    synthesized: tuple[dict[str, Any], Path],
) -> None:
    _, report_path = synthesized
    (report,) = json.loads(report_path.read_text())["pluginReports"]
    arn = "arn:<AWS::Partition>:ecr:<AWS::Region>:<AWS::AccountId>:repository/"
    assert {(f["ruleName"], f["acknowledgedAt"]) for f in report["suppressedViolations"]} == {
        ("AwsSolutions-IAM5[Resource::*]", "Everything/Builder/EcrPolicy"),
        ("AwsSolutions-IAM5[Resource::*]", "Everything/Task/PullPolicy"),
        (f"AwsSolutions-IAM5[Resource::{arn}team-a/*]", "Everything/Builder/EcrPolicy"),
        (f"AwsSolutions-IAM5[Resource::{arn}*/simulation]", "Everything/Builder/EcrPolicy"),
        (f"AwsSolutions-IAM5[Resource::{arn}team-*/api]", "Everything/Builder/EcrPolicy"),
        (f"AwsSolutions-IAM5[Resource::{arn}team-c/*]", "Everything/Builder/EcrPolicy"),
        (f"AwsSolutions-IAM5[Resource::{arn}team-c/*]", "Everything/Template/CreationPolicy"),
        # The backfill describes the images of the same repositories, lists repositories
        # to match the filters, and its Provider invokes its function's versions.
        (f"AwsSolutions-IAM5[Resource::{arn}team-a/*]", "Everything/Builder/Backfill/EcrPolicy"),
        (
            f"AwsSolutions-IAM5[Resource::{arn}*/simulation]",
            "Everything/Builder/Backfill/EcrPolicy",
        ),
        (f"AwsSolutions-IAM5[Resource::{arn}team-*/api]", "Everything/Builder/Backfill/EcrPolicy"),
        (f"AwsSolutions-IAM5[Resource::{arn}team-c/*]", "Everything/Builder/Backfill/EcrPolicy"),
        (f"AwsSolutions-IAM5[Resource::{arn}*]", "Everything/Builder/Backfill/EcrPolicy"),
        (
            "AwsSolutions-IAM5[Resource::<BuilderBackfillFunction11259204.Arn>:*]",
            "Everything/Builder/Backfill/ProviderRole/DefaultPolicy",
        ),
        # In a VPC, Lambda's own managed policy for network interfaces.
        (
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AWSLambdaVPCAccessExecutionRole]",
            "Everything/Builder/ServiceRole",
        ),
    }
