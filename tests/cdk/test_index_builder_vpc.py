"""SociIndexBuilder's function placed in a VPC, as organisations and cdk-nag's NIST and
HIPAA packs require."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from cdk_support import logical_id, new_stack, only_resource, template_of
from soci_cdk import SociIndexBuilder

VPC_ACCESS_POLICY = "service-role/AWSLambdaVPCAccessExecutionRole"


@dataclass(frozen=True)
class InVpc:
    stack: Stack
    template: dict[str, Any]
    builder: SociIndexBuilder
    vpc: ec2.Vpc
    group: ec2.SecurityGroup

    def function_vpc_config(self) -> dict[str, Any]:
        function = only_resource(self.template, "AWS::Lambda::Function")
        config: dict[str, Any] = function["Properties"]["VpcConfig"]
        return config


@pytest.fixture(scope="module")
def in_vpc() -> InVpc:
    stack = new_stack()
    vpc = ec2.Vpc(
        stack,
        "Vpc",
        max_azs=2,
        nat_gateways=0,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC),
            ec2.SubnetConfiguration(name="Isolated", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        ],
    )
    group = ec2.SecurityGroup(stack, "Group", vpc=vpc)
    builder = SociIndexBuilder(
        stack,
        "Builder",
        vpc=vpc,
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        security_groups=[group],
    )
    return InVpc(stack, template_of(stack), builder, vpc, group)


def test_the_function_runs_in_the_selected_subnets(in_vpc: InVpc) -> None:
    isolated = [logical_id(in_vpc.stack, subnet) for subnet in in_vpc.vpc.isolated_subnets]
    subnet_ids = in_vpc.function_vpc_config()["SubnetIds"]
    assert sorted(ref["Ref"] for ref in subnet_ids) == sorted(isolated)


def test_the_function_has_the_given_security_groups(in_vpc: InVpc) -> None:
    group_ids = in_vpc.function_vpc_config()["SecurityGroupIds"]
    assert group_ids == [{"Fn::GetAtt": [logical_id(in_vpc.stack, in_vpc.group), "GroupId"]}]


def test_the_function_role_may_attach_it_to_the_vpc(in_vpc: InVpc) -> None:
    role = in_vpc.template["Resources"][logical_id(in_vpc.stack, in_vpc.builder.role)]
    arns = [arn["Fn::Join"][1][-1] for arn in role["Properties"].get("ManagedPolicyArns", [])]
    assert arns == [f":iam::aws:policy/{VPC_ACCESS_POLICY}"]


def test_a_builder_without_a_vpc_runs_outside_any_vpc() -> None:
    stack = new_stack()
    SociIndexBuilder(stack, "Builder")
    function = only_resource(template_of(stack), "AWS::Lambda::Function")
    assert "VpcConfig" not in function["Properties"]
