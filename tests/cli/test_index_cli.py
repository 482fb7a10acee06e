"""``soci-indexer index`` and ``verify`` as a user runs them, against a real registry."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from support.images import PlatformImage, gzip_tar_layer, push_image
from support.registry import LocalRegistry, free_port

LAYER = gzip_tar_layer(1.5, seed=31)
OTHER_LAYER = gzip_tar_layer(1.5, seed=33)
SMALL = gzip_tar_layer(0.05, seed=32)
FLAGS = ["--plain-http", "--min-layer-size", "262144", "--span-size", "524288"]


@pytest.fixture(scope="module")
def image(registry: LocalRegistry) -> str:
    push_image(
        registry.client(), "cli/app", "v2", [PlatformImage("linux", "amd64", (SMALL, LAYER))]
    )
    return f"{registry.host}/cli/app:v2"


def run(argv: list[str], *, python_flags: tuple[str, ...] = ()) -> tuple[int, list[str], str]:
    """The command in a process of its own, as a user runs it."""
    done = subprocess.run(
        [sys.executable, *python_flags, "-m", "soci_indexer", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout.splitlines(), done.stderr


@pytest.fixture(scope="module")
def first_run(image: str) -> tuple[int, list[str]]:
    """The first ``index`` of the image (later runs find it indexed)."""
    status, out, _ = run(["index", image, *FLAGS])
    return status, out


def test_index_prints_the_soci_enabled_reference_first(
    image: str, first_run: tuple[int, list[str]]
) -> None:
    status, out = first_run
    assert status == 0
    assert re.fullmatch(re.escape(image) + r"-soci@sha256:[0-9a-f]{64}", out[0])


def test_index_prints_one_line_per_layer_with_its_fate(first_run: tuple[int, list[str]]) -> None:
    _, out = first_run
    layer_lines = [line for line in out if line.startswith("  ")]
    assert len(layer_lines) == 2
    assert SMALL.digest[:19] in layer_lines[0]
    assert "skipped-too-small" in layer_lines[0]
    assert LAYER.digest[:19] in layer_lines[1]
    assert " indexed " in layer_lines[1]


def test_index_run_again_says_nothing_was_pushed(
    image: str, first_run: tuple[int, list[str]]
) -> None:
    status, out, _ = run(["index", image, *FLAGS])
    assert status == 0
    assert out[0] == f"{first_run[1][0]}  (already indexed: nothing pushed)"


def test_verify_passes_on_the_indexed_image(image: str, first_run: tuple[int, list[str]]) -> None:
    status, out, _ = run(["verify", f"{image}-soci", "--plain-http"])
    assert status == 0
    assert out[-1] == "verified: OK"
    assert any(line.startswith("lazy start fetched ") for line in out)


def test_verify_fails_with_a_reason_on_an_image_without_an_index(image: str) -> None:
    status, out, _ = run(["verify", image, "--plain-http"])
    assert status == 1
    assert out[-1] == "verification FAILED"
    assert any("not SOCI-enabled" in line for line in out)


def test_a_malformed_reference_is_a_one_line_error() -> None:
    status, out, err = run(["index", "127.0.0.1:5000/Bad_Repo:tag", "--plain-http"])
    assert status == 2  # bad input
    assert out == []
    assert err.startswith("soci-indexer: ")
    assert "Traceback" not in err


def test_an_unreachable_registry_is_a_one_line_error() -> None:
    status, _, err = run(["index", f"127.0.0.1:{free_port()}/x/y:z", *FLAGS])
    assert status == 1
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_index_leaves_no_connection_unclosed(registry: LocalRegistry) -> None:
    push_image(
        registry.client(),
        "cli/sockets",
        "v1",
        [PlatformImage("linux", "amd64", (LAYER, OTHER_LAYER))],
    )
    # -X dev shows every ResourceWarning, among them a socket left open by a pool thread
    status, _, err = run(
        ["index", f"{registry.host}/cli/sockets:v1", *FLAGS], python_flags=("-X", "dev")
    )
    assert status == 0, err
    assert "unclosed" not in err
