"""``pipeline.backfill``: every matching tag of a repository, against a real docker-registry."""

from __future__ import annotations

import pytest
from soci_cdk import event_pattern
from soci_indexer.aws.events import SkipReason
from soci_indexer.errors import TagSelectionError
from soci_indexer.pipeline import (
    BackfillOutcome,
    BackfillResult,
    IndexOptions,
    backfill,
    tag_matches,
)
from support.images import PlatformImage, corrupt_gzip_layer, gzip_tar_layer, push_image
from support.registry import LocalRegistry

OPTIONS = IndexOptions(min_layer_size=256 * 1024, span_size=512 * 1024, max_workers=2)
GOOD = PlatformImage("linux", "amd64", (gzip_tar_layer(1.5, seed=41),))
CORRUPT = PlatformImage("linux", "amd64", (corrupt_gzip_layer(1.5, seed=42),))


def push_tags(registry: LocalRegistry, repository: str, *tags: str) -> None:
    for tag in tags:
        push_image(registry.client(), repository, tag, [CORRUPT if "bad" in tag else GOOD])


def outcomes(results: list[BackfillResult]) -> dict[str, BackfillOutcome]:
    return {result.tag: result.outcome for result in results}


def test_without_patterns_every_tag_is_indexed_and_gets_its_output_tag(
    registry: LocalRegistry,
) -> None:
    push_tags(registry, "backfill/all", "v1", "v2")
    results = backfill(registry.client(), "backfill/all", (), OPTIONS)
    assert outcomes(results) == {"v1": BackfillOutcome.INDEXED, "v2": BackfillOutcome.INDEXED}
    tags = registry.client().list_tags("backfill/all")
    assert {"v1-soci", "v2-soci"} <= set(tags)
    for result in results:
        assert result.detail.startswith(f"{registry.host}/backfill/all:{result.tag}-soci@sha256:")


def test_only_tags_matching_a_pattern_are_indexed(registry: LocalRegistry) -> None:
    push_tags(registry, "backfill/pattern", "v1", "dev-1", "v2")
    results = backfill(registry.client(), "backfill/pattern", ("v*",), OPTIONS)
    assert outcomes(results) == {"v1": BackfillOutcome.INDEXED, "v2": BackfillOutcome.INDEXED}
    assert "dev-1-soci" not in registry.client().list_tags("backfill/pattern")


def test_a_run_again_skips_indexed_tags_and_leaves_output_tags_alone(
    registry: LocalRegistry,
) -> None:
    push_tags(registry, "backfill/again", "v1")
    backfill(registry.client(), "backfill/again", (), OPTIONS)
    results = backfill(registry.client(), "backfill/again", (), OPTIONS)
    by_tag = {result.tag: result for result in results}
    assert outcomes(results) == {"v1": BackfillOutcome.SKIPPED, "v1-soci": BackfillOutcome.SKIPPED}
    assert by_tag["v1"].detail.startswith("already-indexed: ")
    assert by_tag["v1-soci"].detail == SkipReason.SOCI_OUTPUT_TAG.value


def test_a_tag_whose_image_cannot_be_indexed_fails_and_the_others_go_on(
    registry: LocalRegistry,
) -> None:
    push_tags(registry, "backfill/corrupt", "a", "bad", "z")
    seen: list[str] = []
    results = backfill(
        registry.client(),
        "backfill/corrupt",
        (),
        OPTIONS,
        on_result=lambda result: seen.append(result.tag),
    )
    assert outcomes(results) == {
        "a": BackfillOutcome.INDEXED,
        "bad": BackfillOutcome.FAILED,
        "z": BackfillOutcome.INDEXED,
    }
    assert "skipped-corrupt" in results[1].detail
    assert seen == ["a", "bad", "z"]


def test_patterns_that_match_no_tag_are_an_error(registry: LocalRegistry) -> None:
    push_tags(registry, "backfill/none", "v1")
    with pytest.raises(TagSelectionError, match="no tag"):
        backfill(registry.client(), "backfill/none", ("release-*",), OPTIONS)


def test_a_pattern_that_no_tag_could_match_is_an_error(registry: LocalRegistry) -> None:
    with pytest.raises(TagSelectionError, match="v1:latest"):
        backfill(registry.client(), "backfill/none", ("v1:latest",), OPTIONS)


@pytest.mark.parametrize(
    ("tag", "pattern"),
    [
        ("v1", "v1"),
        ("v1", "v2"),
        ("v1.2", "v1*"),
        ("v1", "v1*"),
        ("release-v1", "*v1"),
        ("prod-a-1", "prod*1"),
        ("prod-a-2", "prod*1"),
        ("abc", "a**c"),
        ("V1", "v*"),
        ("anything", "*"),
    ],
)
def test_star_matches_tags_as_the_builders_tag_filters_do(tag: str, pattern: str) -> None:
    assert tag_matches(tag, pattern) == event_pattern.filters_overlap(tag, pattern)
