"""Acknowledgments of cdk-nag findings that are part of a construct's design.

cdk-nag (v3) reports through CDK's own validation framework, so a construct
can acknowledge a finding with ``Validations`` alone, without depending on
cdk-nag. Each acknowledgment names one finding on one construct subtree and
says why; a finding the construct did not expect still fails the synth. The
subtree is the policy holding the statement the finding is about, never a
whole role: users add their own statements to roles.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, CfnElement, Stack, Token, Validations
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

AWS_SOLUTIONS = "AwsSolutions"
# ecr:GetAuthorizationToken has no resource-level permissions: "*" is the only resource.
WHY_ECR_LOGIN_NEEDS_ANY_RESOURCE = (
    "ecr:GetAuthorizationToken supports no resource-level permissions; it is the only "
    "action on '*' in this policy (image actions are scoped to repositories)"
)


def acknowledge(scope: IConstruct, finding: str, reason: str) -> None:
    """Acknowledge ``finding`` (``AwsSolutions-IAM5[Resource::*]``) on ``scope`` and below."""
    Validations.of(scope).acknowledge(
        Acknowledgment(id=f"{AWS_SOLUTIONS}::{finding}", reason=reason)
    )


def ecr_policy(
    scope: Construct, id: str, role: iam.IRole, *statements: iam.PolicyStatement
) -> iam.Policy:
    """A policy of its own on ``role``: ecr:GetAuthorizationToken on '*', and ``statements``.

    The '*' finding is acknowledged on this policy only. A statement added to
    the role later lands in the role's default policy, where cdk-nag still
    reports it: an acknowledgment on the role would cover it with a false reason.
    """
    policy = iam.Policy(
        scope,
        id,
        roles=[role],
        statements=[
            iam.PolicyStatement(actions=["ecr:GetAuthorizationToken"], resources=["*"]),
            *statements,
        ],
    )
    acknowledge(policy, wildcard_resource_finding("*"), WHY_ECR_LOGIN_NEEDS_ANY_RESOURCE)
    return policy


def wildcard_resource_finding(resource: str) -> str:
    """The IAM5 finding cdk-nag reports for a wildcard resource, as it renders the ARN."""
    return f"AwsSolutions-IAM5[Resource::{resource}]"


def invoke_versions_finding(function: IConstruct) -> str:
    """The IAM5 finding for ``<function ARN>:*`` (what ``grant_invoke`` writes), as cdk-nag
    names the function: by its CloudFormation logical id."""
    child = function.node.default_child
    assert isinstance(child, CfnElement), f"{function.node.path} has no CloudFormation resource"
    logical_id = Stack.of(function).resolve(child.logical_id)
    return wildcard_resource_finding(f"<{logical_id}.Arn>:*")


def repository_finding(scope: IConstruct, name: str) -> str:
    """The IAM5 finding for ``repository/<name>`` in ``scope``'s stack, as cdk-nag renders
    the ARN: unresolved pseudo parameters appear as ``<AWS::Region>``."""
    stack = Stack.of(scope)

    def show(value: str, pseudo: str) -> str:
        return f"<AWS::{pseudo}>" if Token.is_unresolved(value) else value

    arn = (
        f"arn:{show(stack.partition, 'Partition')}:ecr:{show(stack.region, 'Region')}:"
        f"{show(stack.account, 'AccountId')}:repository/{name}"
    )
    return wildcard_resource_finding(arn)
