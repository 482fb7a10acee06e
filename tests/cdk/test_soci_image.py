"""SociImage: the custom resource, its shared provider, its grants, and the pinned image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aws_cdk import Duration, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Annotations, Match
from cdk_support import (
    as_list,
    cfn_lint_findings,
    logical_id,
    new_stack,
    policy_statements,
    resources,
    template_of,
)
from soci_cdk import (
    InvalidPropError,
    SociFargateTask,
    SociImage,
    SociIndexBuilder,
    SociRepository,
)
from soci_indexer.aws.custom_resource import parse_properties

IMAGE_FOLDER = Path(__file__).resolve().parents[2] / "constructs/soci_cdk/sample_image"
BOOTSTRAP_REPOSITORY = {
    "Fn::Sub": "cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}"
}


def soci_images(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(template, "Custom::SociImage")


def image_of(template: dict[str, Any], task: SociFargateTask) -> Any:
    definition = template["Resources"][logical_id(Stack.of(task), task.task_definition)]
    (container,) = definition["Properties"]["ContainerDefinitions"]
    return container["Image"]


def ecr_resources(template: dict[str, Any], role_id: str, action: str) -> list[Any]:
    """Every resource on which ``role_id`` may do ``action`` (one entry per statement)."""
    return [
        resource
        for statement in policy_statements(template, role_id)
        if action in as_list(statement["Action"])
        for resource in as_list(statement["Resource"])
    ]


@pytest.fixture
def stack() -> Stack:
    return new_stack()


def test_the_task_runs_the_custom_resources_image_uri(stack: Stack) -> None:
    """A GetAtt, so CloudFormation creates the task definition after the index exists."""
    repository = ecr.Repository(stack, "Repo")
    image = SociImage(stack, "Image", repository=repository, tag="v1")
    task = SociFargateTask(stack, "Task", image=image)
    assert image_of(template_of(stack), task) == {
        "Fn::GetAtt": [logical_id(stack, image.resource), "ImageUri"]
    }


def test_the_resource_carries_the_source_and_the_builders_defaults(stack: Stack) -> None:
    repository = ecr.Repository(stack, "Repo")
    image = SociImage(stack, "Image", repository=repository, tag="v1")
    properties = template_of(stack)["Resources"][logical_id(stack, image.resource)]
    assert properties["Type"] == "Custom::SociImage"
    props = properties["Properties"]
    assert {key: props[key] for key in props if key not in ("ServiceToken", "Registry")} == {
        "Repository": {"Ref": logical_id(stack, repository)},
        "Reference": "v1",
        "IndexVersion": "v2",
        "SpanSize": "4194304",
        "MinLayerSize": "10485760",
        "Platforms": [],
        "TagSuffix": "-soci",
        "ServiceTimeout": "1800",
    }
    # The registry host: what precedes the first "/" of the repository URI.
    assert props["Registry"]["Fn::Select"][0] == 0
    assert props["Registry"]["Fn::Select"][1]["Fn::Split"][0] == "/"


def test_every_option_reaches_the_resource(stack: Stack) -> None:
    repository = ecr.Repository(stack, "Repo")
    target = ecr.Repository(stack, "Target")
    image = SociImage(
        stack,
        "Image",
        repository=repository,
        digest="sha256:" + "a" * 64,
        target_repository=target,
        index_version="v1",
        span_size_bytes=1 << 20,
        min_layer_size_bytes=0,
        platforms=["linux/arm64"],
        tag_suffix="-lazy",
        timeout=Duration.minutes(45),
    )
    props = template_of(stack)["Resources"][logical_id(stack, image.resource)]["Properties"]
    assert {key: props[key] for key in props if key not in ("ServiceToken", "Registry")} == {
        "Repository": {"Ref": logical_id(stack, repository)},
        "Reference": "sha256:" + "a" * 64,
        "TargetRepository": {"Ref": logical_id(stack, target)},
        "IndexVersion": "v1",
        "SpanSize": "1048576",
        "MinLayerSize": "0",
        "Platforms": ["linux/arm64"],
        "TagSuffix": "-lazy",
        "ServiceTimeout": "2700",
    }


def test_the_handler_accepts_the_properties_the_construct_writes(stack: Stack) -> None:
    """The construct and ``aws.custom_resource`` agree on every property's name and form."""
    repository = ecr.Repository(stack, "Repo")
    target = ecr.Repository(stack, "Target")
    image = SociImage(
        stack,
        "Image",
        repository=repository,
        tag="v1",
        target_repository=target,
        span_size_bytes=1 << 20,
        min_layer_size_bytes=0,
        platforms=["linux/arm64", "linux/arm/v7"],
        tag_suffix="-lazy",
    )
    props = dict(template_of(stack)["Resources"][logical_id(stack, image.resource)]["Properties"])
    # What CloudFormation substitutes for the intrinsic functions.
    props.update(
        ServiceToken="arn:aws:lambda:eu-west-1:123456789012:function:framework-onEvent",
        Registry="123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        Repository="test-repo-1a2b",
        TargetRepository="test-target-3c4d",
    )
    parsed = parse_properties(props)
    assert (parsed.registry, parsed.repository, parsed.reference, parsed.target_repository) == (
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
        "test-repo-1a2b",
        "v1",
        "test-target-3c4d",
    )
    options = parsed.options
    assert (options.span_size, options.min_layer_size, options.tag_suffix) == (
        1 << 20,
        0,
        "-lazy",
    )
    assert options.platforms == ("linux/arm64", "linux/arm/v7")


def test_a_docker_image_asset_is_indexed_in_the_bootstrap_repository_by_its_hash(
    stack: Stack,
) -> None:
    asset = ecr_assets.DockerImageAsset(stack, "Asset", directory=str(IMAGE_FOLDER))
    image = SociImage.from_docker_image_asset(stack, "Image", asset)
    task = SociFargateTask(stack, "Task", image=image)
    template = template_of(stack)
    props = template["Resources"][logical_id(stack, image.resource)]["Properties"]
    assert (props["Repository"], props["Reference"]) == (BOOTSTRAP_REPOSITORY, asset.asset_hash)
    assert "TargetRepository" not in props
    assert image_of(template, task) == {
        "Fn::GetAtt": [logical_id(stack, image.resource), "ImageUri"]
    }


def test_a_target_soci_repository_receives_the_image_with_its_suffix(stack: Stack) -> None:
    builder = SociIndexBuilder(stack, "Builder", repositories=[])
    target = SociRepository(stack, "Target", builder=builder)
    asset = ecr_assets.DockerImageAsset(stack, "Asset", directory=str(IMAGE_FOLDER))
    image = SociImage.from_docker_image_asset(stack, "Image", asset, target_repository=target)
    props = template_of(stack)["Resources"][logical_id(stack, image.resource)]["Properties"]
    assert props["TargetRepository"] == {"Ref": logical_id(stack, target)}
    assert props["TagSuffix"] == builder.tag_suffix
    with pytest.raises(InvalidPropError, match="tag_suffix must be the repository's suffix"):
        SociImage.from_docker_image_asset(
            stack, "Other", asset, target_repository=target, tag_suffix="-lazy"
        )


def test_two_images_share_one_provider(stack: Stack) -> None:
    first = SociImage(stack, "First", repository=ecr.Repository(stack, "A"), tag="v1")
    second = SociImage(stack, "Second", repository=ecr.Repository(stack, "B"), tag="v2")
    template = template_of(stack)
    assert first.provider is second.provider
    assert len(resources(template, "AWS::StepFunctions::StateMachine")) == 1
    # Two user functions and the framework's three: one set for the stack.
    assert len(resources(template, "AWS::Lambda::Function")) == 5
    tokens = {
        props["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
        for props in soci_images(template).values()
    }
    assert len(tokens) == 1


def test_the_functions_run_the_indexers_custom_resource_handlers(stack: Stack) -> None:
    image = SociImage(stack, "Image", repository=ecr.Repository(stack, "Repo"), tag="v1")
    template = template_of(stack)
    functions = template["Resources"]
    on_event = functions[logical_id(stack, image.provider.on_event_function)]["Properties"]
    is_complete = functions[logical_id(stack, image.provider.is_complete_function)]["Properties"]
    assert (on_event["Handler"], is_complete["Handler"]) == (
        "soci_indexer.aws.custom_resource.on_event",
        "soci_indexer.aws.custom_resource.is_complete",
    )
    for function in (on_event, is_complete):
        assert function["Timeout"] == 900
        assert function["Runtime"] == lambda_.Runtime.PYTHON_3_14.name
        assert function["LoggingConfig"]["LogGroup"] == {
            "Ref": logical_id(stack, image.provider.log_group)
        }
    (group,) = resources(template, "AWS::Logs::LogGroup").values()
    assert group["Properties"]["RetentionInDays"] == 30


def test_the_deployment_polls_every_30_seconds(stack: Stack) -> None:
    SociImage(stack, "Image", repository=ecr.Repository(stack, "Repo"), tag="v1")
    (machine,) = resources(template_of(stack), "AWS::StepFunctions::StateMachine").values()
    definition = "".join(
        part if isinstance(part, str) else ""
        for part in machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    )
    assert '"IntervalSeconds":30' in definition
    # The waiter allows the longest wait; each resource's ServiceTimeout sets its own.
    assert '"MaxAttempts":120' in definition


def test_iam_is_scoped_to_exactly_the_repositories_used(stack: Stack) -> None:
    source = ecr.Repository(stack, "Source")
    target = ecr.Repository(stack, "Target")
    ecr.Repository(stack, "Unused")
    other = ecr.Repository(stack, "Other")
    image = SociImage(stack, "Image", repository=source, tag="v1", target_repository=target)
    SociImage(stack, "Again", repository=other, tag="v1")
    SociImage(stack, "Twice", repository=other, tag="v2")
    template = template_of(stack)
    provider = image.provider

    def arns(*repositories: ecr.Repository) -> list[Any]:
        return [{"Fn::GetAtt": [logical_id(stack, r), "Arn"]} for r in repositories]

    on_event = logical_id(stack, provider.on_event_role)
    is_complete = logical_id(stack, provider.is_complete_role)
    assert ecr_resources(template, on_event, "ecr:BatchGetImage") == arns(source, target, other)
    assert ecr_resources(template, on_event, "ecr:PutImage") == []
    assert ecr_resources(template, is_complete, "ecr:PutImage") == arns(target, other)
    assert sorted(map(str, ecr_resources(template, is_complete, "ecr:BatchGetImage"))) == sorted(
        map(str, arns(source, other, target, other))
    )
    for role in (on_event, is_complete):
        assert ecr_resources(template, role, "ecr:GetAuthorizationToken") == ["*"]


def test_the_execution_role_may_pull_from_where_the_image_lives(stack: Stack) -> None:
    source = ecr.Repository(stack, "Source")
    target = ecr.Repository(stack, "Target")
    image = SociImage(stack, "Image", repository=source, tag="v1", target_repository=target)
    task = SociFargateTask(stack, "Task", image=image)
    template = template_of(stack)
    role = logical_id(stack, task.execution_role)
    target_arn = {"Fn::GetAtt": [logical_id(stack, target), "Arn"]}
    for action in ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"):
        assert ecr_resources(template, role, action) == [target_arn]
    assert ecr_resources(template, role, "ecr:GetAuthorizationToken") == ["*"]
    assert task.pull_policy is None


def test_the_container_image_works_in_any_task_definition(stack: Stack) -> None:
    image = SociImage(stack, "Image", repository=ecr.Repository(stack, "Repo"), tag="v1")
    definition = ecs.FargateTaskDefinition(stack, "Definition")
    definition.add_container("app", image=image.container_image)
    template = template_of(stack)
    (container,) = template["Resources"][logical_id(stack, definition)]["Properties"][
        "ContainerDefinitions"
    ]
    assert container["Image"] == {"Fn::GetAtt": [logical_id(stack, image.resource), "ImageUri"]}
    role = logical_id(stack, definition.obtain_execution_role())
    assert ecr_resources(template, role, "ecr:BatchGetImage") != []


def test_cfn_lint_finds_nothing_unexplained(stack: Stack) -> None:
    asset = ecr_assets.DockerImageAsset(stack, "Asset", directory=str(IMAGE_FOLDER))
    image = SociImage.from_docker_image_asset(stack, "Image", asset)
    SociFargateTask(stack, "Task", image=image)
    assert cfn_lint_findings(template_of(stack)) == []


def test_a_v1_index_in_the_bootstrap_repository_is_warned_about(stack: Stack) -> None:
    asset = ecr_assets.DockerImageAsset(stack, "Asset", directory=str(IMAGE_FOLDER))
    SociImage.from_docker_image_asset(stack, "Image", asset, index_version="v1")
    SociImage.from_docker_image_asset(stack, "V2", asset)
    warnings = Annotations.from_stack(stack).find_warning("*", Match.string_like_regexp("v1 SOCI"))
    assert [warning.id for warning in warnings] == ["/Test/Image"]


# --------------------------------------------------------------------------- bad props


@pytest.mark.parametrize(
    ("props", "prop", "expected"),
    [
        ({}, "tag/digest", "exactly one of tag and digest"),
        ({"tag": "v1", "digest": "sha256:" + "a" * 64}, "tag/digest", "exactly one"),
        ({"tag": "-v1"}, "tag", "an image tag"),
        ({"digest": "sha256:abc"}, "digest", "a digest"),
        ({"tag": "v" * 124}, "tag", "at most 123 characters"),
        ({"tag": "v1", "index_version": "v3"}, "index_version", "one of 'v1', 'v2'"),
        ({"tag": "v1", "platforms": "linux/amd64"}, "platforms", "a list of strings"),
        ({"tag": "v1", "platforms": ["amd64"]}, "platforms", '"os/arch"'),
        ({"tag": "v1", "span_size_bytes": 0}, "span_size_bytes", "a whole number"),
        ({"tag": "v1", "tag_suffix": ""}, "tag_suffix", "1 to 64"),
        ({"tag": "v1", "timeout": 1800}, "timeout", "aws_cdk.Duration"),
        ({"tag": "v1", "timeout": Duration.hours(2)}, "timeout (seconds)", "from 60 to 3600"),
        ({"tag": "v1", "target_repository": "team-a/app"}, "target_repository", "IRepository"),
    ],
)
def test_bad_props_are_refused_at_synth(
    stack: Stack, props: dict[str, Any], prop: str, expected: str
) -> None:
    with pytest.raises(InvalidPropError) as raised:
        SociImage(stack, "Image", repository=ecr.Repository(stack, "Repo"), **props)
    assert (raised.value.construct_path, raised.value.prop) == ("Test/Image", prop)
    assert expected in raised.value.expected


def test_from_docker_image_asset_refuses_anything_else(stack: Stack) -> None:
    with pytest.raises(InvalidPropError, match="Test/Image: asset must be"):
        SociImage.from_docker_image_asset(stack, "Image", "my-image:v1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("props", "prop"),
    [
        ({}, "repository/image"),
        ({"image": "IMAGE", "repository": "REPO"}, "repository/image"),
        ({"image": "IMAGE", "image_tag": "v1"}, "image_tag"),
        ({"image": "IMAGE", "tag_suffix": "-soci"}, "tag_suffix"),
    ],
)
def test_a_task_takes_exactly_one_of_repository_and_image(
    stack: Stack, props: dict[str, Any], prop: str
) -> None:
    real = {
        "IMAGE": SociImage(stack, "Image", repository=ecr.Repository(stack, "Repo"), tag="v1"),
        "REPO": ecr.Repository(stack, "Other"),
    }
    props = {key: real.get(value, value) for key, value in props.items()}
    with pytest.raises(InvalidPropError) as raised:
        SociFargateTask(stack, "Task", **props)
    assert raised.value.prop == prop


def test_a_task_runs_any_container_image(stack: Stack) -> None:
    task = SociFargateTask(
        stack,
        "Task",
        image=ecs.ContainerImage.from_registry("public.ecr.aws/x/y@sha256:" + "b" * 64),
    )
    assert image_of(template_of(stack), task) == "public.ecr.aws/x/y@sha256:" + "b" * 64
    assert task.image_tag is None
