"""Every prop of every construct refuses a value of the wrong type at synth, naming it.

Python checks no argument type, and a bare string is a sequence of strings:
``repository_name_filters="team-a/*"`` would be read as nine filters, one of
them ``*``. The table below holds one wrong-typed value per prop; the props
come from the constructors' signatures, so a new prop without a row (or a
row without a check) fails here.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest
from aws_cdk import App, CfnParameter, Stack
from aws_cdk import aws_ecr as ecr
from cdk_support import new_stack
from soci_cdk import (
    InvalidPropError,
    PullTimeMonitor,
    SociDashboard,
    SociFargateTask,
    SociImage,
    SociIndexBuilder,
    SociRepository,
    SociRepositoryTemplate,
)
from soci_cdk.sample_stack import SampleSettings, SociSampleStack

CONSTRUCTS: tuple[type[Any], ...] = (
    SociIndexBuilder,
    SociRepository,
    SociRepositoryTemplate,
    SociFargateTask,
    SociImage,
    PullTimeMonitor,
    SociDashboard,
)

# One value of the wrong type per (construct, prop): the mistakes a caller makes.
WRONG: dict[tuple[type[Any], str], object] = {
    (SociIndexBuilder, "repositories"): "team-a/app",
    (SociIndexBuilder, "repository_name_filters"): "team-a/*",
    (SociIndexBuilder, "tag_filters"): "v*",
    (SociIndexBuilder, "index_version"): 2,
    (SociIndexBuilder, "tag_suffix"): ["-soci"],
    (SociIndexBuilder, "min_layer_size_bytes"): "10485760",
    (SociIndexBuilder, "span_size_bytes"): 4194304.0,
    (SociIndexBuilder, "platforms"): "linux/amd64",
    (SociIndexBuilder, "max_layer_workers"): True,
    (SociIndexBuilder, "blob_connections"): "4",
    (SociIndexBuilder, "range_size_bytes"): 8388608.0,
    (SociIndexBuilder, "memory_size_mib"): "3538",
    (SociIndexBuilder, "timeout"): 900,
    (SociIndexBuilder, "architecture"): "arm64",
    (SociIndexBuilder, "max_concurrency"): "10",
    (SociIndexBuilder, "reserved_concurrency"): 10.0,
    (SociIndexBuilder, "encryption_key"): "alias/soci",
    (SociIndexBuilder, "log_retention"): 30,
    (SociIndexBuilder, "log_level"): 20,
    (SociIndexBuilder, "metrics_namespace"): None,
    (SociIndexBuilder, "service_name"): 7,
    (SociIndexBuilder, "alarm_topic"): "arn:aws:sns:us-east-1:111111111111:alarms",
    (SociIndexBuilder, "vpc"): "vpc-0123456789abcdef0",
    (SociIndexBuilder, "vpc_subnets"): ["subnet-0123456789abcdef0"],
    (SociIndexBuilder, "security_groups"): "sg-0123456789abcdef0",
    (SociIndexBuilder, "backfill"): 100,
    (SociRepository, "builder"): "IndexBuilder",
    (SociRepository, "encryption_key"): "alias/soci",
    (SociRepository, "tag_suffix"): 5,
    (SociRepository, "immutable_tags"): "yes",
    (SociRepository, "max_image_count"): "50",
    (SociRepository, "repository_name"): ["team-a/app"],
    (SociRepository, "encryption"): "KMS",
    (SociRepository, "image_scan_on_push"): "true",
    (SociRepository, "image_tag_mutability"): "MUTABLE",
    (SociRepository, "image_tag_mutability_exclusion_filters"): "*-soci",
    (SociRepository, "lifecycle_registry_id"): 123456789012,
    (SociRepository, "lifecycle_rules"): {"max_image_count": 5},
    (SociRepository, "removal_policy"): "destroy",
    (SociRepository, "empty_on_delete"): 1,
    (SociRepositoryTemplate, "prefix"): ["team-a"],
    (SociRepositoryTemplate, "builder"): "IndexBuilder",
    (SociRepositoryTemplate, "encryption_key"): "alias/soci",
    (SociRepositoryTemplate, "tag_suffix"): 5,
    (SociRepositoryTemplate, "immutable_tags"): "no",
    (SociRepositoryTemplate, "max_image_count"): 9.5,
    (SociFargateTask, "repository"): "team-a/app",
    (SociFargateTask, "image"): "team-a/app:v1",
    (SociFargateTask, "image_tag"): 3,
    (SociFargateTask, "tag_suffix"): 5,
    (SociFargateTask, "cpu"): "1024",
    (SociFargateTask, "memory_limit_mib"): "2048",
    (SociFargateTask, "cpu_architecture"): "ARM64",
    (SociFargateTask, "command"): "sleep 5",
    (SociFargateTask, "container_name"): 1,
    (SociFargateTask, "log_retention"): "ONE_WEEK",
    (SociFargateTask, "cluster"): "default",
    (SociFargateTask, "schedule"): "rate(5 minutes)",
    (SociFargateTask, "vpc_subnets"): "subnet-0123456789abcdef0",
    (SociFargateTask, "security_groups"): "sg-0123456789abcdef0",
    (SociFargateTask, "assign_public_ip"): "true",
    (SociImage, "repository"): "team-a/app",
    (SociImage, "tag"): 1,
    (SociImage, "digest"): ["sha256:" + "a" * 64],
    (SociImage, "target_repository"): "team-a/soci",
    (SociImage, "index_version"): 2,
    (SociImage, "span_size_bytes"): "4194304",
    (SociImage, "min_layer_size_bytes"): 1.5,
    (SociImage, "platforms"): "linux/amd64",
    (SociImage, "tag_suffix"): 5,
    (SociImage, "timeout"): 1800,
    (PullTimeMonitor, "clusters"): "sims",
    (PullTimeMonitor, "builder"): "IndexBuilder",
    (PullTimeMonitor, "tag_suffix"): 5,
    (PullTimeMonitor, "soci_image_digests"): "sha256:" + "0" * 64,
    (PullTimeMonitor, "metrics_namespace"): None,
    (PullTimeMonitor, "service_name"): 7,
    (PullTimeMonitor, "log_retention"): 30,
    (SociDashboard, "monitor"): "PullTimes",
    (SociDashboard, "builder"): "IndexBuilder",
    (SociDashboard, "dashboard_name"): 5,
}


def props_of(construct: type[Any]) -> list[str]:
    parameters = inspect.signature(construct.__init__).parameters.values()
    return [p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY]


def required_props(construct: type[Any], stack: Stack) -> dict[str, object]:
    """Valid values for the props without a default, so only the prop under test is wrong."""
    if construct is SociFargateTask:
        return {"repository": ecr.Repository.from_repository_name(stack, "Repo", "team-a/app")}
    if construct is SociRepositoryTemplate:
        return {"prefix": "team-a"}
    if construct is SociImage:
        repository = ecr.Repository.from_repository_name(stack, "Repo", "team-a/app")
        return {"repository": repository, "tag": "v1"}
    return {}


CASES = [(construct, prop) for construct in CONSTRUCTS for prop in props_of(construct)]


@pytest.mark.parametrize(
    ("construct", "prop"), CASES, ids=[f"{c.__name__}.{prop}" for c, prop in CASES]
)
def test_a_wrong_typed_prop_is_refused_with_its_path_name_and_value(
    construct: type[Any], prop: str
) -> None:
    assert (construct, prop) in WRONG, f"add a wrong-typed value for {construct.__name__}.{prop}"
    value = WRONG[construct, prop]
    stack = new_stack()
    props = {**required_props(construct, stack), prop: value}
    with pytest.raises(InvalidPropError) as raised:
        construct(stack, "Construct", **props)
    error = raised.value
    assert (error.construct_path, error.prop, error.received) == ("Test/Construct", prop, value)


def test_every_row_of_the_table_is_a_prop() -> None:
    props = {(construct, prop) for construct, prop in CASES}
    assert set(WRONG) - props == set()


def test_a_bare_string_for_a_list_says_which_list_was_meant() -> None:
    with pytest.raises(InvalidPropError) as raised:
        SociIndexBuilder(new_stack(), "Builder", repository_name_filters="team-a/*")  # type: ignore[arg-type]
    assert str(raised.value) == (
        "Test/Builder: repository_name_filters must be a list of strings such as "
        "['team-a/*']; received 'team-a/*'"
    )


def test_a_list_parameter_is_left_for_deploy_time() -> None:
    stack = new_stack()
    commands = CfnParameter(stack, "Command", type="CommaDelimitedList").value_as_list
    repository = ecr.Repository.from_repository_name(stack, "Repo", "team-a/app")
    task = SociFargateTask(stack, "Task", repository=repository, command=commands)
    assert task.container.container_name == "main"


# ------------------------------------------------------------------ the sample's context

WRONG_CONTEXT: dict[str, object] = {
    "repository_name_filters": {"team-a/*": True},
    "tag_filters": 1,
    "image_tag": ["v1"],
    "schedule": 5,
}


@pytest.mark.parametrize("key", [field.name for field in dataclasses.fields(SampleSettings)])
def test_a_wrong_typed_sample_context_value_is_refused(key: str) -> None:
    assert key in WRONG_CONTEXT, f"add a wrong-typed context value for {key}"
    app = App(context={key: WRONG_CONTEXT[key]})
    with pytest.raises(InvalidPropError) as raised:
        SociSampleStack(app, "Sample")
    error = raised.value
    assert (error.construct_path, error.prop, error.received) == (
        "Sample",
        f"context {key}",
        WRONG_CONTEXT[key],
    )
