"""``soci-indexer ensure`` as a user (or a deployment script) runs it, against a real registry.

The registry is reached through a recording proxy, so a test can tell which blobs a run read.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from support.images import PlatformImage, PushedImage, gzip_tar_layer, push_image
from support.proxy import Proxy, proxy
from support.registry import LocalRegistry, free_port

LAYER = gzip_tar_layer(1.5, seed=61)
SMALL = gzip_tar_layer(0.05, seed=62)
FLAGS = ["--plain-http", "--min-layer-size", "262144", "--span-size", "524288"]


def run(argv: list[str]) -> tuple[int, list[str], str]:
    """The command in a process of its own, as a user runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "soci_indexer", *argv], capture_output=True, text=True, timeout=300
    )
    return done.returncode, done.stdout.splitlines(), done.stderr


@pytest.fixture(scope="module")
def front(registry: LocalRegistry) -> Iterator[Proxy]:
    with proxy(registry.host, lambda method, path, headers: None) as recording:
        yield recording


@pytest.fixture(scope="module")
def pushed(registry: LocalRegistry) -> PushedImage:
    return push_image(
        registry.client(), "ensure/app", "v2", [PlatformImage("linux", "amd64", (SMALL, LAYER))]
    )


@pytest.fixture(scope="module")
def first_run(front: Proxy, pushed: PushedImage) -> tuple[int, list[str], str]:
    return run(["ensure", f"{front.host}/ensure/app:v2", *FLAGS])


def test_ensure_prints_one_line_the_soci_enabled_image_by_digest(
    registry: LocalRegistry, front: Proxy, first_run: tuple[int, list[str], str]
) -> None:
    status, out, err = first_run
    assert status == 0, err
    soci = registry.served_digest("ensure/app", "v2-soci")
    assert out == [f"{front.host}/ensure/app@{soci}"]


def test_ensure_run_again_prints_the_same_line_and_reads_no_layer(
    front: Proxy, first_run: tuple[int, list[str], str]
) -> None:
    before = len(front.requests)
    status, out, err = run(["ensure", f"{front.host}/ensure/app:v2", *FLAGS])
    assert status == 0, err
    assert out == first_run[1]
    read = [path for method, path in front.requests[before:] if method == "GET"]
    assert read  # the proxy saw the run's manifest reads
    assert not [path for path in read if path.endswith((LAYER.digest, SMALL.digest))]


def test_ensure_v1_prints_the_original_image_by_digest(
    registry: LocalRegistry, front: Proxy
) -> None:
    image = push_image(
        registry.client(), "ensure/legacy", "v1", [PlatformImage("linux", "amd64", (LAYER,))]
    )
    argv = ["ensure", f"{front.host}/ensure/legacy:v1", *FLAGS, "--index-version", "v1"]
    status, out, err = run(argv)
    assert status == 0, err
    assert out == [f"{front.host}/ensure/legacy@{image.digest}"]


def test_ensure_of_a_missing_tag_is_bad_input_in_one_line(
    front: Proxy, pushed: PushedImage
) -> None:
    status, out, err = run(["ensure", f"{front.host}/ensure/app:no-such-tag", *FLAGS])
    assert status == 2
    assert out == []
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("soci-indexer: ")
    assert "no-such-tag" in err


def test_ensure_of_an_image_without_an_indexable_layer_is_bad_input_in_one_line(
    registry: LocalRegistry, front: Proxy
) -> None:
    push_image(registry.client(), "ensure/tiny", "v1", [PlatformImage("linux", "amd64", (SMALL,))])
    status, out, err = run(["ensure", f"{front.host}/ensure/tiny:v1", *FLAGS])
    assert status == 2
    assert out == []
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_ensure_of_a_malformed_reference_is_bad_input_in_one_line() -> None:
    status, out, err = run(["ensure", "127.0.0.1:5000/Bad_Repo:tag", "--plain-http"])
    assert status == 2
    assert out == []
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("soci-indexer: ")


def test_ensure_against_an_unreachable_registry_fails_in_one_line() -> None:
    status, out, err = run(["ensure", f"127.0.0.1:{free_port()}/x/y:z", *FLAGS])
    assert status == 1
    assert out == []
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err
