"""Helpers shared by the CDK tests: stacks, templates, ECR event fixtures, masking."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aws_cdk import App, CfnElement, Stack
from aws_cdk.assertions import Template
from cfnlint.api import ManualArgs, lint

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")
ASSET_PLACEHOLDER = "ASSET-HASH"

LINT_REGIONS = ["us-east-1", "eu-west-1", "ap-southeast-2"]
# cfn-lint findings we accept, each with the reason.
LINT_IGNORED = {
    # CDK makes a function depend on its role as well as on the role's policy; the
    # extra DependsOn on the role is redundant with the GetAtt, and harmless.
    "W3005",
}

# matches(pattern, event): does the EventBridge pattern match the event?
PatternMatcher = Callable[[dict[str, Any], dict[str, Any]], bool]


def new_stack(name: str = "Test") -> Stack:
    """An environment-agnostic stack in a fresh app: what ``cdk synth`` sees without credentials."""
    return Stack(App(), name)


def template_of(stack: Stack) -> dict[str, Any]:
    template: dict[str, Any] = Template.from_stack(stack).to_json()
    return template


def resources(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        logical_id: resource
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == resource_type
    }


def only_resource(template: dict[str, Any], resource_type: str) -> dict[str, Any]:
    found = resources(template, resource_type)
    assert len(found) == 1, f"expected one {resource_type}, found {sorted(found)}"
    return next(iter(found.values()))


def logical_id(stack: Stack, construct: Any) -> str:
    """The CloudFormation logical id of a resource, or of an L2 construct's primary resource."""
    element = construct if isinstance(construct, CfnElement) else construct.node.default_child
    resolved: str = stack.resolve(element.logical_id)
    return resolved


def policy_statements(template: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement of the inline policies attached to one role."""
    return [
        statement
        for policy in resources(template, "AWS::IAM::Policy").values()
        if {"Ref": role_logical_id} in policy["Properties"]["Roles"]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def repository_arn(name: str) -> dict[str, Any]:
    """``arn:${Partition}:ecr:${Region}:${Account}:repository/<name>`` as the template writes it."""
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":ecr:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":repository/{name}",
            ],
        ]
    }


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def load_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return event


def mask_asset_hashes(value: Any) -> Any:
    """The template with every asset hash (S3 keys, asset ids) replaced by a placeholder,
    so the snapshot changes only when the infrastructure does, not the Lambda code."""
    return json.loads(ASSET_HASH.sub(ASSET_PLACEHOLDER, json.dumps(value)))


def cfn_lint_findings(template: dict[str, Any]) -> list[str]:
    """cfn-lint's errors and warnings on ``template``, less the ones in LINT_IGNORED."""
    matches = lint(json.dumps(template), config=ManualArgs(regions=LINT_REGIONS))
    return [
        f"{m.rule.id} {'/'.join(map(str, m.path))}: {m.message}"
        for m in matches
        if m.rule.id not in LINT_IGNORED
    ]
