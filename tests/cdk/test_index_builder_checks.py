"""SociIndexBuilder refuses bad props at synth, and ships the indexer package as it is."""

from __future__ import annotations

import compileall
import os
import re
from pathlib import Path
from typing import Any

import pytest
import soci_indexer
from aws_cdk import App, CfnParameter, Duration, Names, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk.assertions import Annotations, Match
from cdk_support import new_stack, template_of
from soci_cdk import InvalidPropError, SociIndexBuilder, SociRepository

PACKAGE_DIR = Path(soci_indexer.__file__).resolve().parent


@pytest.mark.parametrize(
    ("props", "prop", "received"),
    [
        ({"memory_size_mib": 64}, "memory_size_mib", "64"),
        ({"timeout": Duration.minutes(16)}, "timeout (seconds)", "960"),
        ({"timeout": Duration.seconds(90)}, "timeout (seconds)", "90"),
        ({"max_concurrency": 1}, "max_concurrency", "1"),
        ({"max_concurrency": 20, "reserved_concurrency": 10}, "reserved_concurrency", "10"),
        ({"index_version": "v3"}, "index_version", "'v3'"),
        ({"tag_suffix": ""}, "tag_suffix", "''"),
        ({"tag_suffix": "/soci"}, "tag_suffix", "'/soci'"),
        ({"platforms": ["linux"]}, "platforms", "'linux'"),
        ({"span_size_bytes": 0}, "span_size_bytes", "0"),
        ({"min_layer_size_bytes": -1}, "min_layer_size_bytes", "-1"),
        ({"max_layer_workers": 0}, "max_layer_workers", "0"),
        ({"blob_connections": 17}, "blob_connections", "17"),
        ({"range_size_bytes": 65536}, "range_size_bytes", "65536"),
        ({"tag_filters": ["v?"]}, "tag_filters", "'v?'"),
        ({"repository_name_filters": ["Team-A/*"]}, "repository_name_filters", "'Team-A/*'"),
        ({"log_level": "TRACE"}, "log_level", "'TRACE'"),
        ({"metrics_namespace": "AWS/Lambda"}, "metrics_namespace", "'AWS/Lambda'"),
        ({"service_name": "indexer!"}, "service_name", "'indexer!'"),
        ({"service_name": ""}, "service_name", "''"),
        ({"vpc_subnets": ec2.SubnetSelection()}, "vpc", "None"),
    ],
)
def test_bad_props_are_refused_at_synth_with_what_was_received_and_expected(
    props: dict[str, Any], prop: str, received: str
) -> None:
    with pytest.raises(InvalidPropError) as raised:
        SociIndexBuilder(new_stack(), "Builder", **props)
    message = str(raised.value)
    assert message.startswith(f"Test/Builder: {prop} must be ")
    assert message.endswith(f"; received {received}")


def test_unresolved_tokens_are_left_for_deploy_time() -> None:
    stack = new_stack()
    memory = CfnParameter(stack, "Memory", type="Number").value_as_number
    suffix = CfnParameter(stack, "Suffix").value_as_string
    SociIndexBuilder(stack, "Builder", memory_size_mib=memory, tag_suffix=suffix)  # type: ignore[arg-type]


def test_a_builder_scoped_to_no_repository_fails_validation() -> None:
    stack = new_stack()
    SociIndexBuilder(stack, "Builder", repositories=[])
    with pytest.raises(RuntimeError, match="SociIndexBuilder indexes no repository"):
        template_of(stack)


def test_a_builder_scoped_to_a_repository_added_later_passes_validation() -> None:
    stack = new_stack()
    builder = SociIndexBuilder(stack, "Builder", repositories=[])
    builder.add_repository(ecr.Repository.from_repository_name(stack, "Repo", "team-a/app"))
    assert template_of(stack)["Resources"]


def test_a_builder_path_the_service_dimension_cannot_hold_gives_its_unique_id() -> None:
    builder = SociIndexBuilder(new_stack(), "Builder (team a)")
    assert builder.service_name == Names.unique_id(builder)


def test_a_catch_all_filter_cannot_widen_a_scoped_builder() -> None:
    builder = SociIndexBuilder(new_stack(), "Builder", repository_name_filters=["team-a/*"])
    with pytest.raises(InvalidPropError, match="repository_name_filters must be a filter narrower"):
        builder.add_repository_name_filter("*")


# ------------------------------------------------------------------------- the asset


def synthesized_asset(outdir: Path) -> Path:
    app = App(outdir=str(outdir))
    SociIndexBuilder(Stack(app, "Test"), "Builder")
    app.synth()
    (asset,) = outdir.glob("asset.*")
    return asset


def files_under(root: Path) -> set[str]:
    return {
        str(Path(folder, name).relative_to(root))
        for folder, _, names in os.walk(root)
        for name in names
    }


@pytest.fixture(scope="module")
def asset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Make sure the source tree has bytecode caches, so leaving them out is tested.
    compileall.compile_dir(str(PACKAGE_DIR), quiet=1)
    return synthesized_asset(tmp_path_factory.mktemp("first"))


def test_the_asset_root_holds_only_the_indexer_package(asset: Path) -> None:
    assert [entry.name for entry in asset.iterdir()] == ["soci_indexer"]


def test_the_asset_holds_the_package_sources_without_bytecode(asset: Path) -> None:
    sources = {
        name
        for name in files_under(PACKAGE_DIR)
        if "__pycache__" not in name and not name.endswith(".pyc")
    }
    assert files_under(asset / "soci_indexer") == sources


def test_the_asset_hash_depends_only_on_the_sources(
    asset: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    (PACKAGE_DIR / "__pycache__" / "stray.cpython-311.pyc").write_bytes(b"not a source")
    try:
        again = synthesized_asset(tmp_path_factory.mktemp("second"))
    finally:
        (PACKAGE_DIR / "__pycache__" / "stray.cpython-311.pyc").unlink()
    assert again.name == asset.name


# ---------------------------------------------------------------- the pattern's size


def builder_with_filters(count: int) -> Stack:
    stack = new_stack()
    filters = [f"team-a/service-{number:03}" for number in range(count)]
    SociIndexBuilder(stack, "Builder", repository_name_filters=filters)
    return stack


def filters_said_to_fit(count: int) -> int:
    with pytest.raises(RuntimeError) as raised:
        template_of(builder_with_filters(count))
    found = re.search(
        r"(\d+) of its (\d+) repositories and repository filters fit", str(raised.value)
    )
    assert found, str(raised.value)
    assert int(found[2]) == count
    return int(found[1])


def test_a_rule_pattern_over_eventbridges_limit_fails_synth_saying_what_to_do() -> None:
    with pytest.raises(RuntimeError) as raised:
        template_of(builder_with_filters(100))
    message = str(raised.value)
    assert "more than EventBridge's limit of 2048" in message
    assert "with a wildcard filter (team-a/*)" in message
    assert "split them between several SociIndexBuilders" in message


def test_as_many_filters_as_the_message_says_fit_do_fit() -> None:
    fit = filters_said_to_fit(100)
    assert template_of(builder_with_filters(fit))["Resources"]


def test_one_filter_more_than_the_message_says_fit_does_not_fit() -> None:
    fit = filters_said_to_fit(100)
    assert filters_said_to_fit(fit + 1) == fit


# ------------------------------------------------------------ builders that overlap


def test_two_builders_writing_the_same_tags_of_the_same_repositories_fail_synth() -> None:
    stack = new_stack()
    SociIndexBuilder(stack, "TeamA", repository_name_filters=["team-a/*"])
    SociIndexBuilder(stack, "Apis", repository_name_filters=["*/api"], tag_filters=["v*"])
    with pytest.raises(RuntimeError) as raised:
        template_of(stack)
    assert (
        "SociIndexBuilders Test/TeamA and Test/Apis both index tags '*' of the repositories "
        "'team-a/*', and both write '-soci' tags"
    ) in str(raised.value)


def test_two_builders_given_the_same_repository_fail_synth() -> None:
    stack = new_stack()
    repository = SociRepository(stack, "Repository")
    for name in ("First", "Second"):
        SociIndexBuilder(stack, name, repositories=[repository])
    with pytest.raises(RuntimeError, match="SociIndexBuilders Test/First and Test/Second"):
        template_of(stack)


def test_builders_of_distinct_repositories_pass() -> None:
    stack = new_stack()
    SociIndexBuilder(stack, "TeamA", repository_name_filters=["team-a/*"])
    SociIndexBuilder(stack, "TeamB", repository_name_filters=["team-b/*"])
    SociIndexBuilder(stack, "Other", repositories=[SociRepository(stack, "Repository")])
    assert template_of(stack)["Resources"]


def test_builders_of_distinct_tags_of_one_repository_pass() -> None:
    stack = new_stack()
    SociIndexBuilder(stack, "Releases", repository_name_filters=["team-a/*"], tag_filters=["v*"])
    SociIndexBuilder(stack, "Latest", repository_name_filters=["team-a/*"], tag_filters=["latest"])
    assert template_of(stack)["Resources"]


def test_overlapping_builders_with_distinct_suffixes_get_a_warning() -> None:
    stack = new_stack()
    SociIndexBuilder(stack, "V2", repository_name_filters=["team-a/*"])
    SociIndexBuilder(stack, "V1", index_version="v1", tag_suffix="-soci-v1")
    warnings = Annotations.from_stack(stack).find_warning("/Test/V1", Match.any_value())
    assert [warning.entry.data for warning in warnings] == [
        "SociIndexBuilders Test/V2 and Test/V1 both index tags '*' of the repositories "
        "'team-a/*': every push is indexed twice, once per tag suffix "
        "[ack: soci-fargate:overlapping-builders]"
    ]
