"""SociFargateTask: runs the SOCI-enabled tag, logs with retention, optionally on a schedule."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from aws_cdk import Duration, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_scheduler as scheduler
from cdk_support import (
    as_list,
    logical_id,
    new_stack,
    only_resource,
    policy_statements,
    resources,
    template_of,
)
from soci_cdk import InvalidPropError, SociFargateTask, SociIndexBuilder, SociRepository


@dataclass
class Built:
    stack: Stack
    template: dict[str, Any]
    repository: ecr.Repository
    scheduled: SociFargateTask
    custom: SociFargateTask

    def props(self, construct: Any) -> dict[str, Any]:
        resource = self.template["Resources"][logical_id(self.stack, construct)]
        properties: dict[str, Any] = resource["Properties"]
        return properties

    def container(self, task: SociFargateTask) -> dict[str, Any]:
        (container,) = self.props(task.task_definition)["ContainerDefinitions"]
        return container


@pytest.fixture(scope="module")
def built() -> Built:
    stack = new_stack()
    repository = ecr.Repository(stack, "Repository")
    cluster = ecs.Cluster(stack, "Cluster", vpc=ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0))
    scheduled = SociFargateTask(
        stack,
        "Scheduled",
        repository=repository,
        cluster=cluster,
        schedule=scheduler.ScheduleExpression.rate(Duration.minutes(5)),
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
        assign_public_ip=True,
    )
    custom = SociFargateTask(
        stack,
        "Custom",
        repository=repository,
        image_tag="v2",
        tag_suffix="-lazy",
        cpu=2048,
        memory_limit_mib=8192,
        cpu_architecture=ecs.CpuArchitecture.ARM64,
        command=["simulate", "--steps", "100"],
    )
    return Built(stack, template_of(stack), repository, scheduled, custom)


def test_the_container_runs_the_soci_enabled_tag_of_the_image(built: Built) -> None:
    image = built.container(built.scheduled)["Image"]["Fn::Join"][1]
    assert image[-3:] == ["/", {"Ref": logical_id(built.stack, built.repository)}, ":latest-soci"]


def test_the_image_tag_and_suffix_can_be_chosen(built: Built) -> None:
    assert built.container(built.custom)["Image"]["Fn::Join"][1][-1] == ":v2-lazy"


def test_the_task_size_is_one_vcpu_and_two_gib_by_default(built: Built) -> None:
    props = built.props(built.scheduled.task_definition)
    assert (props["Cpu"], props["Memory"]) == ("1024", "2048")


def test_the_task_size_and_architecture_can_be_chosen(built: Built) -> None:
    props = built.props(built.custom.task_definition)
    assert (props["Cpu"], props["Memory"]) == ("2048", "8192")
    assert props["RuntimePlatform"] == {
        "CpuArchitecture": "ARM64",
        "OperatingSystemFamily": "LINUX",
    }


def test_the_task_runs_on_fargate_x86_64_linux_by_default(built: Built) -> None:
    props = built.props(built.scheduled.task_definition)
    assert props["RequiresCompatibilities"] == ["FARGATE"]
    assert props["RuntimePlatform"] == {
        "CpuArchitecture": "X86_64",
        "OperatingSystemFamily": "LINUX",
    }


def test_the_command_can_be_chosen(built: Built) -> None:
    assert built.container(built.custom)["Command"] == ["simulate", "--steps", "100"]


def test_container_logs_go_to_a_log_group_with_retention(built: Built) -> None:
    logging = built.container(built.scheduled)["LogConfiguration"]
    assert logging["LogDriver"] == "awslogs"
    assert logging["Options"]["awslogs-group"] == {
        "Ref": logical_id(built.stack, built.scheduled.log_group)
    }
    assert built.props(built.scheduled.log_group)["RetentionInDays"] == 30


def test_the_execution_role_may_pull_from_the_repository(built: Built) -> None:
    role_id = logical_id(built.stack, built.scheduled.execution_role)
    repository_arn = {"Fn::GetAtt": [logical_id(built.stack, built.repository), "Arn"]}
    pulls = [
        statement
        for statement in policy_statements(built.template, role_id)
        if statement["Resource"] == repository_arn
    ]
    actions = {action for statement in pulls for action in as_list(statement["Action"])}
    assert {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"} <= actions


def schedule_of(built: Built) -> dict[str, Any]:
    return only_resource(built.template, "AWS::Scheduler::Schedule")["Properties"]


def test_the_schedule_runs_the_task_every_five_minutes(built: Built) -> None:
    schedule = schedule_of(built)
    assert schedule["ScheduleExpression"] == "rate(5 minutes)"
    assert schedule["Target"]["EcsParameters"]["TaskDefinitionArn"] == {
        "Ref": logical_id(built.stack, built.scheduled.task_definition)
    }


def test_scheduled_runs_use_the_fargate_platform_that_lazy_loads(built: Built) -> None:
    parameters = schedule_of(built)["Target"]["EcsParameters"]
    assert (parameters["LaunchType"], parameters["PlatformVersion"]) == ("FARGATE", "1.4.0")


def test_a_run_that_cannot_start_is_skipped_not_retried(built: Built) -> None:
    assert schedule_of(built)["Target"]["RetryPolicy"]["MaximumRetryAttempts"] == 0


def test_scheduled_runs_use_the_given_subnets_and_public_ip(built: Built) -> None:
    network = schedule_of(built)["Target"]["EcsParameters"]["NetworkConfiguration"]
    assert network["AwsvpcConfiguration"]["AssignPublicIp"] == "ENABLED"


def test_scheduled_runs_get_a_security_group_of_their_own(built: Built) -> None:
    group = built.scheduled.security_group
    assert group is not None
    network = schedule_of(built)["Target"]["EcsParameters"]["NetworkConfiguration"]
    assert network["AwsvpcConfiguration"]["SecurityGroups"] == [
        {"Fn::GetAtt": [logical_id(built.stack, group), "GroupId"]}
    ]


def test_the_runs_security_group_lets_https_out_and_nothing_in(built: Built) -> None:
    assert built.scheduled.security_group is not None
    group_id = logical_id(built.stack, built.scheduled.security_group)
    props = built.props(built.scheduled.security_group)
    egress = [
        (rule["IpProtocol"], rule["FromPort"], rule["ToPort"], rule["CidrIp"])
        for rule in props["SecurityGroupEgress"]
    ]
    assert egress == [("tcp", 443, 443, "0.0.0.0/0")]
    assert "SecurityGroupIngress" not in props
    ingress = resources(built.template, "AWS::EC2::SecurityGroupIngress").values()
    assert [rule for rule in ingress if group_id in json.dumps(rule)] == []


def test_given_security_groups_replace_the_runs_own() -> None:
    stack = new_stack()
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0)
    given = ec2.SecurityGroup(stack, "Given", vpc=vpc)
    task = SociFargateTask(
        stack,
        "Task",
        repository=ecr.Repository(stack, "Repository"),
        cluster=ecs.Cluster(stack, "Cluster", vpc=vpc),
        schedule=scheduler.ScheduleExpression.rate(Duration.minutes(5)),
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
        security_groups=[given],
    )
    template = template_of(stack)
    schedule = only_resource(template, "AWS::Scheduler::Schedule")["Properties"]
    network = schedule["Target"]["EcsParameters"]["NetworkConfiguration"]
    assert network["AwsvpcConfiguration"]["SecurityGroups"] == [
        {"Fn::GetAtt": [logical_id(stack, given), "GroupId"]}
    ]
    assert task.security_group is None
    assert len(resources(template, "AWS::EC2::SecurityGroup")) == 1


def test_a_task_without_schedule_gets_no_security_group(built: Built) -> None:
    assert built.custom.security_group is None


def test_a_task_without_schedule_is_never_started(built: Built) -> None:
    assert built.custom.schedule is None
    assert len(resources(built.template, "AWS::Scheduler::Schedule")) == 1


def test_a_schedule_needs_a_cluster() -> None:
    stack = new_stack()
    with pytest.raises(InvalidPropError, match=r"cluster must be an ecs\.ICluster"):
        SociFargateTask(
            stack,
            "Task",
            repository=ecr.Repository(stack, "Repository"),
            schedule=scheduler.ScheduleExpression.rate(Duration.minutes(5)),
        )


def test_the_task_runs_the_tag_suffix_of_a_soci_repository() -> None:
    stack = new_stack()
    repository = SociRepository(stack, "Repository", tag_suffix="-lazy")
    task = SociFargateTask(stack, "Task", repository=repository, image_tag="v1")
    assert task.image_tag == "v1-lazy"


def test_the_task_runs_the_suffix_of_the_builder_a_repository_registered_with() -> None:
    stack = new_stack()
    builder = SociIndexBuilder(stack, "Builder", tag_suffix="-indexed")
    repository = SociRepository(stack, "Repository", builder=builder)
    task = SociFargateTask(stack, "Task", repository=repository, image_tag="v1")
    assert task.image_tag == "v1-indexed"


def test_a_suffix_the_soci_repository_also_has_is_kept() -> None:
    stack = new_stack()
    repository = SociRepository(stack, "Repository", tag_suffix="-lazy")
    task = SociFargateTask(stack, "Task", repository=repository, image_tag="v1", tag_suffix="-lazy")
    assert task.image_tag == "v1-lazy"


def test_a_suffix_other_than_the_soci_repositorys_is_refused() -> None:
    stack = new_stack()
    repository = SociRepository(stack, "Repository", tag_suffix="-lazy")
    with pytest.raises(
        InvalidPropError, match="tag_suffix must be the repository's suffix '-lazy'"
    ):
        SociFargateTask(stack, "Task", repository=repository, tag_suffix="-soci")


@pytest.mark.parametrize(
    ("cpu", "memory", "message"),
    [
        (1000, 2048, "cpu must be a Fargate CPU size"),
        (256, 4096, "memory_limit_mib must be a Fargate memory size for cpu=256: 512, 1024, 2048"),
        (1024, 1024, "memory_limit_mib must be a Fargate memory size for cpu=1024"),
    ],
)
def test_task_sizes_fargate_does_not_offer_are_refused(cpu: int, memory: int, message: str) -> None:
    stack = new_stack()
    with pytest.raises(InvalidPropError, match=message):
        SociFargateTask(
            stack,
            "Task",
            repository=ecr.Repository(stack, "Repository"),
            cpu=cpu,
            memory_limit_mib=memory,
        )
