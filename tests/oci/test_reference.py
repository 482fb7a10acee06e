"""Image reference parsing, with the distribution grammar's edge cases."""

from __future__ import annotations

import pytest
from soci_indexer.errors import InvalidReference
from soci_indexer.oci.reference import Reference, Repository, parse_reference, parse_repository

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/repo:tag", Reference("127.0.0.1:5000", "repo", "tag")),
        (
            "123456789012.dkr.ecr.us-west-2.amazonaws.com/team-a/simulation:v1.4.2",
            Reference(
                "123456789012.dkr.ecr.us-west-2.amazonaws.com", "team-a/simulation", "v1.4.2"
            ),
        ),
        (f"localhost/a/b@{DIGEST}", Reference("localhost", "a/b", None, DIGEST)),
        (f"registry.example/app:v1@{DIGEST}", Reference("registry.example", "app", "v1", DIGEST)),
        ("ubuntu:24.04", Reference("docker.io", "library/ubuntu", "24.04")),
        ("team/app:latest", Reference("docker.io", "team/app", "latest")),
        ("[::1]:5000/app:v", Reference("[::1]:5000", "app", "v")),
    ],
)
def test_references_split_into_registry_repository_tag_and_digest(
    text: str, expected: Reference
) -> None:
    assert parse_reference(text) == expected


def test_a_reference_prints_back_as_written() -> None:
    text = f"registry.example/app:v1@{DIGEST}"
    assert str(parse_reference(text)) == text


@pytest.mark.parametrize(
    ("reference", "target"),
    [
        ("r.example/a:t", "t"),
        (f"r.example/a@{DIGEST}", DIGEST),
        (f"r.example/a:t@{DIGEST}", f"t@{DIGEST}"),
    ],
)
def test_the_pipeline_target_keeps_tag_and_digest(reference: str, target: str) -> None:
    assert parse_reference(reference).target == target


def test_docker_hub_is_reached_through_its_api_host() -> None:
    assert parse_reference("ubuntu:24.04").api_host == "registry-1.docker.io"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("registry.example/app", "neither a :tag nor an @digest"),
        ("registry.example/App:v1", "must be lowercase"),
        ("registry.example/app:-v1", "not a valid tag"),
        ("registry.example/app@sha256:123", "not a digest"),
        ("registry.example/a//b:v", "must be lowercase"),
        ("bad_host:5000/app:v", "not a registry host"),
    ],
)
def test_malformed_references_say_which_part_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        parse_reference(text)


@pytest.mark.parametrize(
    ("text", "registry", "name"),
    [
        ("127.0.0.1:5000/team-a/app", "127.0.0.1:5000", "team-a/app"),
        ("ubuntu", "docker.io", "library/ubuntu"),
    ],
)
def test_a_repository_splits_into_registry_and_name(text: str, registry: str, name: str) -> None:
    assert parse_repository(text) == Repository(registry, name)


def test_docker_hub_repositories_are_reached_through_its_api_host() -> None:
    assert parse_repository("team/app").api_host == "registry-1.docker.io"


@pytest.mark.parametrize(
    "text", ["127.0.0.1:5000/app:v1", f"127.0.0.1:5000/app@{DIGEST}", "127.0.0.1:5000/App", ""]
)
def test_a_repository_with_a_tag_a_digest_or_a_bad_name_is_refused(text: str) -> None:
    with pytest.raises(InvalidReference):
        parse_repository(text)
