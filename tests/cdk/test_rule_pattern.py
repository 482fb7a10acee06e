"""The builder's EventBridge rule, evaluated against ECR events shaped like real ones.

Patterns come from synthesized templates and are matched by moto's
EventBridge (TestEventPattern), so these tests check the pattern we deploy
with an implementation that is not ours.
"""

from __future__ import annotations

from typing import Any

import pytest
from aws_cdk import App, Stack
from aws_cdk import aws_ecr as ecr
from cdk_support import PatternMatcher, load_event, logical_id, template_of
from soci_cdk.event_pattern import matcher
from soci_cdk.index_builder import SociIndexBuilder

Patterns = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def patterns() -> Patterns:
    """The rule pattern of each builder configuration, by name: one stack per builder,
    since builders of one stack that index the same repositories fail validation."""
    app = App()
    configurations: dict[str, dict[str, Any]] = {
        "team-a": {"repository_name_filters": ["team-a/*"]},
        "everything": {},
        "release-tags": {"repository_name_filters": ["team-a/*"], "tag_filters": ["v*"]},
        "suffix-lazy": {"repository_name_filters": ["team-a/*"], "tag_suffix": "-lazy"},
        "middle-wildcard": {"repository_name_filters": ["team-*/simulation"]},
        "leading-wildcard": {"repository_name_filters": ["*/simulation"]},
    }
    builders = {
        name: SociIndexBuilder(Stack(app, f"Pattern{index}"), "Builder", **props)
        for index, (name, props) in enumerate(configurations.items())
    }
    one_repository = Stack(app, "OneRepository")
    builders["one-repository"] = SociIndexBuilder(
        one_repository,
        "Builder",
        repositories=[
            ecr.Repository.from_repository_name(one_repository, "Sim", "team-a/simulation")
        ],
    )
    return {name: rule_pattern(builder) for name, builder in builders.items()}


def rule_pattern(builder: SociIndexBuilder) -> dict[str, Any]:
    stack = Stack.of(builder)
    rule = template_of(stack)["Resources"][logical_id(stack, builder.rule)]
    pattern: dict[str, Any] = rule["Properties"]["EventPattern"]
    return pattern


def test_tagged_pushes_to_a_matching_repository_are_indexed(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert matches(patterns["team-a"], load_event("push-tagged.json"))


def test_tagged_multi_platform_index_pushes_are_indexed(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert matches(patterns["team-a"], load_event("push-tagged-with-media-types.json"))


def test_tagged_single_platform_oci_manifest_pushes_are_indexed(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert matches(patterns["team-a"], load_event("push-tagged-manifest.json"))


def test_tagged_docker_manifest_pushes_are_indexed(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert matches(patterns["team-a"], load_event("push-tagged-docker-manifest.json"))


def test_untagged_pushes_do_not_trigger_indexing(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(patterns["team-a"], load_event("push-untagged-child.json"))


def test_untagged_pushes_without_media_types_do_not_trigger_indexing(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(patterns["team-a"], load_event("push-untagged-legacy.json"))


def test_the_builders_own_soci_output_does_not_trigger_indexing(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(patterns["team-a"], load_event("push-soci-output.json"))


def test_soci_index_manifests_do_not_trigger_indexing(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(patterns["team-a"], load_event("push-soci-index-manifest.json"))


def test_artifacts_that_are_not_images_do_not_trigger_indexing(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(patterns["team-a"], load_event("push-helm-chart.json"))


def test_pushes_to_other_repositories_do_not_trigger_indexing(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(patterns["team-a"], load_event("push-other-repo.json"))


def test_deletes_do_not_trigger_indexing(patterns: Patterns, matches: PatternMatcher) -> None:
    assert not matches(patterns["team-a"], load_event("delete.json"))


def test_failed_pushes_do_not_trigger_indexing(patterns: Patterns, matches: PatternMatcher) -> None:
    assert not matches(patterns["team-a"], load_event("push-failed.json"))


def test_other_ecr_events_do_not_trigger_indexing(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(patterns["team-a"], load_event("image-scan.json"))


def test_every_repository_is_indexed_when_none_is_selected(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert matches(patterns["everything"], load_event("push-other-repo.json"))


def test_indexing_every_repository_still_skips_untagged_pushes(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(patterns["everything"], load_event("push-untagged-child.json"))


def test_tags_matching_a_tag_filter_are_indexed(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert matches(patterns["release-tags"], load_event("push-tagged.json"))  # v1.4.2


def test_tags_outside_the_tag_filters_do_not_trigger_indexing(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(
        patterns["release-tags"], load_event("push-tagged-with-media-types.json")
    )  # latest


def test_a_custom_tag_suffix_is_excluded_from_indexing(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    event = load_event("push-soci-output.json")
    event["detail"]["image-tag"] = "v1.4.2-lazy"
    assert not matches(patterns["suffix-lazy"], event)


def test_with_a_custom_suffix_the_default_suffix_is_an_ordinary_tag(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert matches(patterns["suffix-lazy"], load_event("push-soci-output.json"))


def test_a_repository_given_as_an_object_is_matched_by_its_name(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert matches(patterns["one-repository"], load_event("push-tagged.json"))


def test_a_repository_given_as_an_object_matches_no_other_repository(
    patterns: Patterns, matches: PatternMatcher
) -> None:
    assert not matches(patterns["one-repository"], load_event("push-other-repo.json"))


@pytest.mark.parametrize("name", ["middle-wildcard", "leading-wildcard"])
def test_wildcards_anywhere_in_a_repository_filter_match(
    patterns: Patterns, matches: PatternMatcher, name: str
) -> None:
    assert matches(patterns[name], load_event("push-tagged.json"))  # team-a/simulation


@pytest.mark.parametrize("name", ["middle-wildcard", "leading-wildcard"])
def test_wildcards_in_a_repository_filter_do_not_match_other_names(
    patterns: Patterns, matches: PatternMatcher, name: str
) -> None:
    assert not matches(patterns[name], load_event("push-other-repo.json"))  # platform/base-images


@pytest.mark.parametrize(
    ("name_filter", "expected"),
    [
        ("team-a/simulation", "team-a/simulation"),
        ("team-a/*", {"prefix": "team-a/"}),
        ("*/simulation", {"suffix": "/simulation"}),
        ("team-*/sim*", {"wildcard": "team-*/sim*"}),
        ("team-a/**", {"prefix": "team-a/"}),
    ],
)
def test_each_filter_becomes_the_simplest_eventbridge_operator(
    name_filter: str, expected: object
) -> None:
    assert matcher(name_filter) == expected
