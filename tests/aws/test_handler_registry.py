"""The handler end to end against a real registry (docker-registry on loopback).

These run the production ``process_event`` with only the client factory
swapped for a loopback client, the way the demo does. Expected values come
from the test images themselves (layer digests and sizes hashed here) and
from reading back what the registry holds.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from soci_indexer import settings
from soci_indexer.aws import handler
from soci_indexer.aws.config import HandlerConfig
from soci_indexer.aws.handler import process_event
from soci_indexer.oci import manifests
from soci_indexer.oci.auth import Credentials
from soci_indexer.oci.client import RegistryClient
from support.images import PlatformImage, PushedImage, gzip_tar_layer, push_image
from support.lambda_shapes import (
    FakeContext,
    emf_documents,
    load_event,
    log_lines,
    metric_values,
    sqs_batch,
)
from support.registry import LocalRegistry, running_registry

pytestmark = pytest.mark.registry

SOCI_INDEX_DIGEST = "com.amazon.soci.index-digest"
LAYER_DIGEST = "com.amazon.soci.image-layer-digest"
BIG = gzip_tar_layer(1.5, seed=41)  # indexed: over the 1 MiB minimum below
SMALL = gzip_tar_layer(0.25, seed=42)  # skipped: under it


@pytest.fixture
def config() -> HandlerConfig:
    options = replace(handler.CONFIG.index_options, min_layer_size=1024 * 1024, span_size=65536)
    return replace(handler.CONFIG, index_options=options)


@pytest.fixture
def requests() -> list[tuple[str, str, int]]:
    """Every request the loopback client makes: (method, URL, status)."""
    return []


@pytest.fixture
def loopback(
    registry: LocalRegistry, requests: list[tuple[str, str, int]]
) -> Callable[[str, str], RegistryClient]:
    client = registry.client(
        observer=lambda method, url, status: requests.append((method, url, status))
    )
    return lambda account, region: client


def push(registry: LocalRegistry, repository: str, tag: str = "v1") -> PushedImage:
    image = PlatformImage("linux", "amd64", (SMALL, BIG))
    return push_image(registry.client(), repository, tag, [image])


def push_event(pushed: PushedImage, tag: str | None = None) -> dict[str, Any]:
    """The event ECR sends for this push (tagged unless ``tag`` says otherwise)."""
    event = load_event("push-tagged")
    event["detail"].update(
        {
            "repository-name": pushed.repository,
            "image-digest": pushed.digest,
            "image-tag": pushed.tag if tag is None else tag,
            "manifest-media-type": pushed.media_type,
        }
    )
    return event


def manifest_json(registry: LocalRegistry, repository: str, reference: str) -> dict[str, Any]:
    found: dict[str, Any] = json.loads(registry.client().get_manifest(repository, reference).data)
    return found


def run_batch(
    events: list[dict[str, Any]],
    factory: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
    context: FakeContext | None = None,
) -> dict[str, object]:
    batch = sqs_batch(*(json.dumps(event) for event in events))
    return process_event(batch, context or FakeContext(), client_factory=factory, config=config)


def test_a_tagged_push_is_indexed_and_tagged_with_the_suffix(
    registry: LocalRegistry,
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
) -> None:
    pushed = push(registry, "handler/tagged")
    assert run_batch([push_event(pushed)], loopback, config) == {"batchItemFailures": []}
    output = manifest_json(registry, "handler/tagged", "v1-soci")
    assert output["mediaType"] == settings.OCI_INDEX
    enabled = [m for m in output["manifests"] if SOCI_INDEX_DIGEST in m.get("annotations", {})]
    soci_index = manifest_json(
        registry, "handler/tagged", enabled[0]["annotations"][SOCI_INDEX_DIGEST]
    )
    assert [layer["annotations"][LAYER_DIGEST] for layer in soci_index["layers"]] == [BIG.digest]


def test_an_indexed_image_is_reported_in_logs_and_metrics(
    registry: LocalRegistry,
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed = push(registry, "handler/reported")
    run_batch([push_event(pushed)], loopback, config)
    out = capsys.readouterr().out
    values = metric_values(emf_documents(out))
    assert values[("ImagesIndexed", "")] == [1]
    assert values[("LayersIndexed", "")] == [1]
    assert values[("LayersSkipped", "too-small")] == [1]
    assert values[("BytesIndexed", "")] == [len(BIG.data)]
    layer_lines = {line["layer"]: line for line in log_lines(out) if "layer" in line}
    assert (layer_lines[BIG.digest]["status"], layer_lines[SMALL.digest]["status"]) == (
        "indexed",
        "skipped-too-small",
    )
    (indexed,) = [line for line in log_lines(out) if line["message"] == "image indexed"]
    assert (indexed["repository"], indexed["tag"], indexed["digest"]) == (
        "handler/reported",
        "v1",
        pushed.digest,
    )


def test_the_time_from_the_push_to_the_output_tag_is_reported(
    registry: LocalRegistry,
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed = push(registry, "handler/waited")
    event = push_event(pushed)
    event["time"] = (datetime.now(UTC) - timedelta(seconds=90)).strftime("%Y-%m-%dT%H:%M:%SZ")
    started = time.monotonic()
    run_batch([event], loopback, config)
    took = time.monotonic() - started
    (waited,) = metric_values(emf_documents(capsys.readouterr().out))[
        (settings.METRIC_PUSH_TO_SOCI_SECONDS, "")
    ]
    # 90 s before the run, less up to 1 s of truncation to whole seconds, plus the run itself
    assert 89 <= waited <= 90 + took + 1


def test_a_skipped_push_reports_no_time_to_an_output_tag(
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run_batch([load_event("push-soci-output")], loopback, config)
    values = metric_values(emf_documents(capsys.readouterr().out))
    assert (settings.METRIC_PUSH_TO_SOCI_SECONDS, "") not in values
    assert values[("ImagesSkipped", "soci-output-tag")] == [1]


def test_a_layer_shared_by_two_platforms_is_counted_once(
    registry: LocalRegistry,
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    images = [
        PlatformImage("linux", "amd64", (SMALL, BIG)),
        PlatformImage("linux", "arm64", (BIG,), variant="v8"),
    ]
    pushed = push_image(registry.client(), "handler/multi", "v1", images)
    assert run_batch([push_event(pushed)], loopback, config) == {"batchItemFailures": []}
    values = metric_values(emf_documents(capsys.readouterr().out))
    assert (values[("LayersIndexed", "")], values[("BytesIndexed", "")]) == ([1], [len(BIG.data)])


def test_a_direct_invocation_returns_the_output_reference(
    registry: LocalRegistry,
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
) -> None:
    pushed = push(registry, "handler/direct")
    result = process_event(
        push_event(pushed), FakeContext(), client_factory=loopback, config=config
    )
    digest = manifests.sha256_digest(
        registry.client().get_manifest("handler/direct", "v1-soci").data
    )
    assert result["output"] == f"{registry.host}/handler/direct:v1-soci@{digest}"


def test_the_pushes_an_indexing_run_causes_are_all_skipped_without_writes(
    registry: LocalRegistry,
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
    requests: list[tuple[str, str, int]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed = push(registry, "handler/cascade")
    run_batch([push_event(pushed)], loopback, config)
    output = manifest_json(registry, "handler/cascade", "v1-soci")
    soci_digest = next(
        m["annotations"][SOCI_INDEX_DIGEST]
        for m in output["manifests"]
        if SOCI_INDEX_DIGEST in m.get("annotations", {})
    )
    untagged_index = push_event(replace(pushed, digest=soci_digest), tag="")
    untagged_index["detail"]["artifact-media-type"] = "application/vnd.amazon.soci.index.v2+json"
    cascade = [push_event(pushed, tag="v1-soci"), untagged_index, push_event(pushed, tag="")]
    requests.clear()
    capsys.readouterr()
    assert run_batch(cascade, loopback, config) == {"batchItemFailures": []}
    assert requests == []
    values = metric_values(emf_documents(capsys.readouterr().out))
    assert values[("ImagesSkipped", "soci-output-tag")] == [1]
    assert values[("ImagesSkipped", "soci-artifact")] == [1]
    assert values[("ImagesSkipped", "untagged")] == [1]


def test_a_duplicate_delivery_keeps_the_same_digests_and_does_not_fail(
    registry: LocalRegistry,
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed = push(registry, "handler/duplicate")
    run_batch([push_event(pushed)], loopback, config)
    first = registry.client().head_manifest("handler/duplicate", "v1-soci")
    capsys.readouterr()
    assert run_batch([push_event(pushed)], loopback, config) == {"batchItemFailures": []}
    assert registry.client().head_manifest("handler/duplicate", "v1-soci") == first
    values = metric_values(emf_documents(capsys.readouterr().out))
    assert values[("ImagesSkipped", "already-indexed")] == [1]


def test_a_tag_moved_by_a_newer_push_during_the_run_is_a_counted_skip(
    registry: LocalRegistry, config: HandlerConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    pushed = push(registry, "handler/moved")
    newer = PlatformImage("linux", "arm64", (BIG,), variant="v8")

    def push_newer_on_first_upload(method: str, url: str, status: int) -> None:
        if method == "POST" and "/blobs/uploads/" in url and not moved:
            moved.append(push_image(registry.client(), "handler/moved", "v1", [newer]))

    moved: list[PushedImage] = []
    client = registry.client(observer=push_newer_on_first_upload)
    result = run_batch([push_event(pushed)], lambda account, region: client, config)
    assert result == {"batchItemFailures": []}
    assert moved
    assert registry.client().head_manifest("handler/moved", "v1-soci") is None
    values = metric_values(emf_documents(capsys.readouterr().out))
    assert values[("ImagesSkipped", "tag-moved")] == [1]


def test_an_image_whose_output_tag_cannot_exist_is_skipped_and_never_delivered_again(
    registry: LocalRegistry,
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    longest_tag = "v" * 128  # a valid tag; with "-soci" appended it is not
    pushed = push(registry, "handler/longtag", tag=longest_tag)
    assert run_batch([push_event(pushed)], loopback, config) == {"batchItemFailures": []}
    values = metric_values(emf_documents(capsys.readouterr().out))
    assert values == {("ImagesSkipped", "invalid-reference"): [1]}


def test_a_deadline_too_close_fails_the_record_and_writes_no_output_tag(
    registry: LocalRegistry,
    loopback: Callable[[str, str], RegistryClient],
    config: HandlerConfig,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pushed = push(registry, "handler/deadline")
    # One millisecond past the safety margin: the pipeline starts, then must stop.
    context = FakeContext(remaining_ms=int(handler.SAFETY_MARGIN_SECONDS * 1000) + 1)
    result = run_batch([push_event(pushed)], loopback, config, context)
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert registry.client().head_manifest("handler/deadline", "v1-soci") is None
    (failed,) = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert failed["error_type"] == "DeadlineExceeded"


# ---- credentials never reach the logs ------------------------------------------------------

LOGIN = Credentials("indexer", "pa55-w0rd-that-must-not-leak")


@pytest.fixture(scope="module")
def locked_registry() -> Iterator[LocalRegistry]:
    with running_registry(login=LOGIN) as running:
        yield running


@pytest.fixture
def debug_logs() -> Iterator[None]:
    """Log everything a run can log, to give a leak every chance to show."""
    handler.LOGGER.set_level("DEBUG")
    yield
    handler.LOGGER.set_level(handler.CONFIG.log_level)


def secrets_of(login: Credentials) -> list[str]:
    basic = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
    return [login.password, basic]


@pytest.mark.usefixtures("debug_logs")
def test_logs_of_an_authenticated_run_hold_no_credential(
    locked_registry: LocalRegistry, config: HandlerConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    pushed = push(locked_registry, "handler/locked")
    client = locked_registry.client()
    result = run_batch([push_event(pushed)], lambda account, region: client, config)
    out = capsys.readouterr().out
    assert result == {"batchItemFailures": []}
    assert "image indexed" in out
    for secret in secrets_of(LOGIN):
        assert secret not in out


@pytest.mark.usefixtures("debug_logs")
def test_logs_of_a_refused_login_hold_no_credential(
    locked_registry: LocalRegistry, config: HandlerConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    pushed = push(locked_registry, "handler/refused")
    wrong = Credentials("indexer", "wr0ng-pa55-that-must-not-leak")
    client = locked_registry.client(credentials=wrong)
    result = run_batch([push_event(pushed)], lambda account, region: client, config)
    out = capsys.readouterr().out
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    assert "AuthError" in out
    for secret in secrets_of(wrong):
        assert secret not in out
