"""cdk-nag acknowledgments cover the construct's own statements, never one a user adds."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_iam as iam
from cdk_nag import AwsSolutionsChecks
from soci_cdk import Backfill, SociFargateTask, SociImage, SociIndexBuilder, SociRepository

IMAGE_FOLDER = Path(__file__).resolve().parents[2] / "constructs/soci_cdk/sample_image"

DELETE_ANY_REPOSITORY = iam.PolicyStatement(actions=["ecr:DeleteRepository"], resources=["*"])


def nag_violations(outdir: Path) -> list[dict[str, Any]]:
    report: dict[str, Any] = json.loads((outdir / "validation-report.json").read_text())
    (nag,) = (r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions")
    violations: list[dict[str, Any]] = nag["violations"]
    return violations


@pytest.fixture(scope="module")
def violations(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The findings on a stack where a user gives both roles ecr:DeleteRepository on '*'."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(outdir=str(outdir))
    stack = Stack(app, "Test")
    builder = SociIndexBuilder(stack, "Builder", repositories=[], backfill=Backfill())
    repository = SociRepository(stack, "Repository", builder=builder)
    task = SociFargateTask(stack, "Task", repository=repository)
    asset = ecr_assets.DockerImageAsset(stack, "Asset", directory=str(IMAGE_FOLDER))
    image = SociImage.from_docker_image_asset(stack, "Image", asset, target_repository=repository)
    image_task = SociFargateTask(stack, "ImageTask", image=image)
    builder.function.add_to_role_policy(DELETE_ANY_REPOSITORY)
    assert builder.backfill is not None
    builder.backfill.function.add_to_role_policy(DELETE_ANY_REPOSITORY)
    task.execution_role.add_to_principal_policy(DELETE_ANY_REPOSITORY)
    image_task.execution_role.add_to_principal_policy(DELETE_ANY_REPOSITORY)
    for function in (image.provider.on_event_function, image.provider.is_complete_function):
        function.add_to_role_policy(DELETE_ANY_REPOSITORY)
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with contextlib.suppress(RuntimeError):  # the synth fails on findings; the report lists them
        app.synth()
    return nag_violations(outdir)


def wildcard_findings_under(violations: list[dict[str, Any]], path: str) -> list[str]:
    return [
        f"{violation['ruleName']} {resource['constructPath']}"
        for violation in violations
        if violation["ruleName"] == "AwsSolutions-IAM5[Resource::*]"
        for resource in violation["violatingConstructs"]
        if resource["constructPath"].startswith(path)
    ]


def test_a_wildcard_statement_added_to_the_builders_role_is_reported(
    violations: list[dict[str, Any]],
) -> None:
    assert wildcard_findings_under(violations, "Test/Builder/") != []


def test_a_wildcard_statement_added_to_the_tasks_execution_role_is_reported(
    violations: list[dict[str, Any]],
) -> None:
    assert wildcard_findings_under(violations, "Test/Task/") != []


def test_a_wildcard_statement_added_to_the_backfill_role_is_reported(
    violations: list[dict[str, Any]],
) -> None:
    assert wildcard_findings_under(violations, "Test/Builder/Backfill/ServiceRole/") != []


def test_a_wildcard_statement_added_to_a_soci_image_tasks_execution_role_is_reported(
    violations: list[dict[str, Any]],
) -> None:
    assert wildcard_findings_under(violations, "Test/ImageTask/") != []


def test_a_wildcard_statement_added_to_the_soci_image_functions_is_reported(
    violations: list[dict[str, Any]],
) -> None:
    assert sorted(wildcard_findings_under(violations, "Test/SociImageProvider/")) == [
        f"AwsSolutions-IAM5[Resource::*] Test/SociImageProvider/{role}/DefaultPolicy/Resource"
        for role in ("IsCompleteRole", "OnEventRole")
    ]


def test_nothing_else_of_soci_image_and_its_provider_is_reported(
    violations: list[dict[str, Any]],
) -> None:
    """Only the statements the user added: the provider framework, its waiter and the
    grants are clean or acknowledged, each finding on the policy that holds it."""
    reported = {
        (violation["ruleName"], resource["constructPath"])
        for violation in violations
        for resource in violation["violatingConstructs"]
        if resource["constructPath"].startswith(("Test/SociImageProvider/", "Test/Image"))
    }
    assert reported == {
        ("AwsSolutions-IAM5[Resource::*]", f"Test/{path}/DefaultPolicy/Resource")
        for path in (
            "SociImageProvider/IsCompleteRole",
            "SociImageProvider/OnEventRole",
            "ImageTask/TaskDefinition/ExecutionRole",
        )
    }
