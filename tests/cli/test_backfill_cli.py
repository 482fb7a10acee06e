"""``soci-indexer backfill`` as a user runs it, against a real registry."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from support.images import PlatformImage, corrupt_gzip_layer, gzip_tar_layer, push_image
from support.registry import LocalRegistry

FLAGS = ["--plain-http", "--min-layer-size", "262144", "--span-size", "524288"]
GOOD = PlatformImage("linux", "amd64", (gzip_tar_layer(1.5, seed=51),))
CORRUPT = PlatformImage("linux", "amd64", (corrupt_gzip_layer(1.5, seed=52),))


def run(argv: list[str]) -> tuple[int, list[str], str]:
    """The command in a process of its own, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "soci_indexer", *argv], capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout.splitlines(), done.stderr


def repository(registry: LocalRegistry, name: str, *tags: str) -> str:
    """Push one image per tag (a corrupt one for tags containing "bad"); REGISTRY/REPO."""
    for tag in tags:
        push_image(registry.client(), name, tag, [CORRUPT if "bad" in tag else GOOD])
    return f"{registry.host}/{name}"


def indexed_line(repo: str, tag: str) -> str:
    return re.escape(f"{tag}  indexed {repo}:{tag}-soci@") + r"sha256:[0-9a-f]{64}"


def test_backfill_indexes_the_tags_a_pattern_matches_one_line_each(
    registry: LocalRegistry,
) -> None:
    repo = repository(registry, "cli-backfill/pattern", "v1", "dev-1", "v2")
    status, out, err = run(["backfill", repo, "--tag", "v*", *FLAGS])
    assert (status, err) == (0, "")
    assert len(out) == 2
    assert re.fullmatch(indexed_line(repo, "v1"), out[0])
    assert re.fullmatch(indexed_line(repo, "v2"), out[1])


def test_backfill_takes_several_patterns(registry: LocalRegistry) -> None:
    repo = repository(registry, "cli-backfill/patterns", "v1", "dev-1", "latest")
    status, out, _ = run(["backfill", repo, "--tag", "v*", "--tag", "latest", *FLAGS])
    assert status == 0
    assert [line.split()[0] for line in out] == ["latest", "v1"]


def test_backfill_run_again_skips_indexed_tags_and_the_soci_tags(registry: LocalRegistry) -> None:
    repo = repository(registry, "cli-backfill/again", "v1")
    run(["backfill", repo, *FLAGS])
    status, out, _ = run(["backfill", repo, *FLAGS])
    assert status == 0
    assert re.fullmatch(
        re.escape(f"v1  skipped already-indexed: {repo}:v1-soci@") + r"sha256:[0-9a-f]{64}",
        out[0],
    )
    assert out[1] == "v1-soci  skipped soci-output-tag"


def test_a_corrupt_image_fails_its_tag_the_others_are_indexed_and_the_status_is_1(
    registry: LocalRegistry,
) -> None:
    repo = repository(registry, "cli-backfill/corrupt", "a", "bad", "z")
    status, out, err = run(["backfill", repo, *FLAGS])
    assert status == 1
    assert re.fullmatch(indexed_line(repo, "a"), out[0])
    assert out[1].startswith("bad  failed ")
    assert "skipped-corrupt" in out[1]
    assert re.fullmatch(indexed_line(repo, "z"), out[2])
    assert "Traceback" not in err


@pytest.mark.parametrize("given", ["{host}/cli-backfill/none:v1", "{host}/Cli-Backfill"])
def test_a_malformed_repository_is_bad_input(registry: LocalRegistry, given: str) -> None:
    status, out, err = run(["backfill", given.format(host=registry.host), "--plain-http"])
    assert (status, out) == (2, [])
    assert len(err.splitlines()) == 1
    assert err.startswith("soci-indexer: ")


def test_patterns_that_match_no_tag_are_bad_input(registry: LocalRegistry) -> None:
    repo = repository(registry, "cli-backfill/none", "v1")
    status, out, err = run(["backfill", repo, "--tag", "release-*", "--plain-http"])
    assert (status, out) == (2, [])
    assert err == "soci-indexer: no tag of cli-backfill/none matches release-*: nothing to index\n"
