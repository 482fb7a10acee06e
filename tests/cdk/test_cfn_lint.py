"""cfn-lint on a stack that uses every construct with every option turned on."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sns as sns
from cdk_support import cfn_lint_findings, new_stack, template_of
from soci_cdk import SociFargateTask, SociIndexBuilder, SociRepository, SociRepositoryTemplate


def test_every_option_synthesizes_to_a_template_cfn_lint_accepts() -> None:
    stack = new_stack("Everything")
    key = kms.Key(stack, "Key", enable_key_rotation=True)
    builder = SociIndexBuilder(
        stack,
        "Builder",
        repositories=[],
        repository_name_filters=["team-a/*", "*/simulation", "team-*/api"],
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
        alarm_topic=sns.Topic(stack, "Alarms", master_key=key),
    )
    repository = SociRepository(
        stack, "Repository", builder=builder, encryption_key=key, max_image_count=50
    )
    SociRepositoryTemplate(
        stack, "Template", prefix="team-c", builder=builder, encryption_key=key, max_image_count=9
    )
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    SociFargateTask(
        stack,
        "Task",
        repository=repository,
        tag_suffix=builder.tag_suffix,
        cpu=4096,
        memory_limit_mib=30720,
        cpu_architecture=ecs.CpuArchitecture.ARM64,
        cluster=ecs.Cluster(stack, "Cluster", vpc=vpc),
        schedule=scheduler.ScheduleExpression.cron(minute="0", hour="6"),
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
        assign_public_ip=True,
    )
    assert cfn_lint_findings(template_of(stack)) == []
