"""The deploy-time custom resource (``aws.custom_resource``) against a real registry.

CloudFormation-shaped requests go through ``process_on_event`` and
``process_is_complete`` with only the client factory swapped for a loopback
client, as the demo does; the event ``is_complete`` gets is ``on_event``'s
request with its answer merged in, as aws-cdk-lib's provider framework builds it.
Expected digests come from the test images and from what the registry serves.
"""

from __future__ import annotations

import importlib
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from soci_indexer import settings, verify
from soci_indexer.aws.custom_resource import process_is_complete, process_on_event
from soci_indexer.errors import (
    AuthError,
    DeadlineExceeded,
    ImageNotFound,
    InvalidProperty,
    NothingToIndex,
)
from soci_indexer.oci.client import RegistryClient
from support.images import (
    Blob,
    PlatformImage,
    PushedImage,
    corrupt_gzip_layer,
    gzip_tar_layer,
    push_image,
)
from support.lambda_shapes import FakeContext
from support.proxy import Answer, proxy
from support.registry import LocalRegistry

pytestmark = pytest.mark.registry

BIG = gzip_tar_layer(1.5, seed=71, random_share=0.9)
NEWER = gzip_tar_layer(1.5, seed=72, random_share=0.9)
SMALL = gzip_tar_layer(0.1, seed=73)
CORRUPT = corrupt_gzip_layer(4, seed=74)
MIN_LAYER = 1024 * 1024
SPAN = 256 * 1024
STACK = (
    "arn:aws:cloudformation:us-west-2:123456789012:stack/App/5f3a2b10-0000-11ef-8f6e-0a1b2c3d4e5f"
)


class LayerReads:
    """A request observer: every request, and the GETs of the given layers' blobs."""

    def __init__(self, *layers: Blob) -> None:
        self.digests = {layer.digest for layer in layers}
        self.requests: list[tuple[str, str, int]] = []

    def __call__(self, method: str, url: str, status: int) -> None:
        self.requests.append((method, url, status))

    @property
    def layer_gets(self) -> int:
        return sum(
            1
            for method, url, _ in self.requests
            if method == "GET" and url.rsplit("/", 1)[-1] in self.digests
        )


def factory(
    registry: LocalRegistry, observer: LayerReads | None = None
) -> Callable[[str], RegistryClient]:
    client = registry.client(observer=observer)

    def for_host(host: str) -> RegistryClient:
        assert host == registry.host
        return client

    return for_host


def refuse(host: str) -> RegistryClient:
    raise AssertionError(f"a registry client was asked for {host}")


def push(registry: LocalRegistry, repository: str, *layers: Blob, tag: str = "v1") -> PushedImage:
    image = PlatformImage("linux", "amd64", (SMALL, *layers))
    return push_image(registry.client(), repository, tag, [image])


def properties(registry: LocalRegistry, repository: str, **more: object) -> dict[str, object]:
    """As CloudFormation passes them: numbers as strings, plus the ServiceToken."""
    props: dict[str, object] = {
        "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:App-SociImageProvider",
        settings.CR_REGISTRY: registry.host,
        settings.CR_REPOSITORY: repository,
        settings.CR_REFERENCE: "v1",
        settings.CR_MIN_LAYER_SIZE: str(MIN_LAYER),
        settings.CR_SPAN_SIZE: str(SPAN),
    }
    props.update(more)
    return props


def request(
    kind: str, props: dict[str, object], physical_id: str | None = None, **more: object
) -> dict[str, Any]:
    event: dict[str, Any] = {
        "RequestType": kind,
        "ServiceToken": props["ServiceToken"],
        "ResponseURL": "https://cloudformation-custom-resource-response-uswest2.s3.amazonaws.com/x",
        "StackId": STACK,
        "RequestId": "0b7c3a56-1d2e-4f3a-9b8c-7d6e5f4a3b2c",
        "LogicalResourceId": "AppImageSociImage1A2B3C4D",
        "ResourceType": settings.CUSTOM_RESOURCE_TYPE,
        "ResourceProperties": props,
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    event.update(more)
    return event


def requested_at(answer: dict[str, object]) -> list[float]:
    """The build request time on_event answered with, as a list (empty when none)."""
    data = answer.get("Data")
    assert isinstance(data, dict)
    return [float(data[settings.CR_BUILD_REQUESTED_AT])] if data else []


def merged(event: dict[str, Any], answer: dict[str, object]) -> dict[str, Any]:
    """The is_complete event: the request with on_event's answer over it."""
    return {**event, **answer}


def deploy(
    registry: LocalRegistry, event: dict[str, Any], observer: LayerReads | None = None
) -> tuple[dict[str, object], dict[str, object]]:
    """on_event, then is_complete once: both answers."""
    return deploy_with(factory(registry, observer), event)


def deploy_with(
    clients: Callable[[str], RegistryClient], event: dict[str, Any]
) -> tuple[dict[str, object], dict[str, object]]:
    answer = process_on_event(event, FakeContext(), client_factory=clients)
    done = process_is_complete(merged(event, answer), FakeContext(), client_factory=clients)
    return answer, done


def index_at_push_time(registry: LocalRegistry, repository: str) -> str:
    """What the push-time builder does, through the CLI's own path; returns v1-soci's digest."""
    from soci_indexer.pipeline import IndexOptions, ensure_soci_image

    options = IndexOptions(min_layer_size=MIN_LAYER, span_size=SPAN)
    ensure_soci_image(registry.client(), repository, "v1", options)
    return registry.served_digest(repository, "v1-soci")


# ---- Create ----------------------------------------------------------------------------------


def test_create_of_an_indexed_image_answers_at_once_without_reading_a_layer(
    registry: LocalRegistry,
) -> None:
    pushed = push(registry, "cr/indexed", BIG)
    soci = index_at_push_time(registry, "cr/indexed")
    reads = LayerReads(BIG, SMALL)
    event = request("Create", properties(registry, "cr/indexed"))
    answer, done = deploy(registry, event, reads)
    assert answer == {
        "PhysicalResourceId": f"{registry.host}/cr/indexed@{pushed.digest}",
        "Data": {
            settings.CR_IMAGE_URI: f"{registry.host}/cr/indexed@{soci}",
            settings.CR_IMAGE_DIGEST: soci,
            settings.CR_SOURCE_DIGEST: pushed.digest,
        },
    }
    assert done == {"IsComplete": True}
    assert reads.requests  # the observer saw the manifest reads
    assert reads.layer_gets == 0


def test_create_of_an_image_not_yet_indexed_builds_it_in_is_complete(
    registry: LocalRegistry,
) -> None:
    pushed = push(registry, "cr/build", BIG)
    event = request("Create", properties(registry, "cr/build"))
    clients = factory(registry)
    before = time.time()
    answer = process_on_event(event, FakeContext(), client_factory=clients)
    assert answer["PhysicalResourceId"] == f"{registry.host}/cr/build@{pushed.digest}"
    # No image yet, only the time the build was asked for (is_complete's wait starts there).
    (requested,) = requested_at(answer)
    assert before - 1 <= requested <= time.time() + 1
    assert registry.client().head_manifest("cr/build", "v1-soci") is None  # on_event built nothing
    done = process_is_complete(merged(event, answer), FakeContext(), client_factory=clients)
    soci = registry.served_digest("cr/build", "v1-soci")
    assert done == {
        "IsComplete": True,
        "Data": {
            settings.CR_IMAGE_URI: f"{registry.host}/cr/build@{soci}",
            settings.CR_IMAGE_DIGEST: soci,
            settings.CR_SOURCE_DIGEST: pushed.digest,
        },
    }
    report = verify.verify_image(registry.client(), "cr/build", soci)
    assert report.ok
    assert [check.layer.digest for check in report.layers] == [BIG.digest]


def test_create_by_digest_names_the_output_after_the_digest(registry: LocalRegistry) -> None:
    pushed = push(registry, "cr/by-digest", BIG)
    event = request("Create", properties(registry, "cr/by-digest", Reference=pushed.digest))
    answer, done = deploy(registry, event)
    assert answer["PhysicalResourceId"] == f"{registry.host}/cr/by-digest@{pushed.digest}"
    output_tag = "sha256-" + pushed.digest.removeprefix("sha256:") + "-soci"
    soci = registry.served_digest("cr/by-digest", output_tag)
    data = done["Data"]
    assert isinstance(data, dict)
    assert data[settings.CR_IMAGE_DIGEST] == soci


# ---- Update and Delete -----------------------------------------------------------------------


def test_update_after_the_tag_moved_gives_a_new_physical_id_and_image(
    registry: LocalRegistry,
) -> None:
    first = push(registry, "cr/moved", BIG)
    props = properties(registry, "cr/moved")
    created, created_done = deploy(registry, request("Create", props))
    second = push(registry, "cr/moved", NEWER)
    update = request(
        "Update",
        {**props, settings.CR_SPAN_SIZE: str(SPAN * 2)},
        physical_id=str(created["PhysicalResourceId"]),
        OldResourceProperties=props,
    )
    answer, done = deploy(registry, update)
    assert created["PhysicalResourceId"] == f"{registry.host}/cr/moved@{first.digest}"
    assert answer["PhysicalResourceId"] == f"{registry.host}/cr/moved@{second.digest}"
    soci = registry.served_digest("cr/moved", "v1-soci")
    old_data, data = created_done["Data"], done["Data"]
    assert isinstance(old_data, dict)
    assert isinstance(data, dict)
    assert data[settings.CR_IMAGE_URI] == f"{registry.host}/cr/moved@{soci}"
    assert data[settings.CR_IMAGE_URI] != old_data[settings.CR_IMAGE_URI]
    assert data[settings.CR_SOURCE_DIGEST] == second.digest


def test_update_of_the_same_image_keeps_the_physical_id(registry: LocalRegistry) -> None:
    push(registry, "cr/same", BIG)
    props = properties(registry, "cr/same")
    created, created_done = deploy(registry, request("Create", props))
    update = request(
        "Update",
        {**props, settings.CR_TAG_SUFFIX: "-soci"},
        physical_id=str(created["PhysicalResourceId"]),
        OldResourceProperties=props,
    )
    reads = LayerReads(BIG, SMALL)
    answer, done = deploy(registry, update, reads)
    assert answer == {
        "PhysicalResourceId": created["PhysicalResourceId"],
        "Data": created_done["Data"],
    }
    assert done == {"IsComplete": True}
    assert reads.layer_gets == 0


def test_delete_touches_nothing_and_keeps_the_physical_id() -> None:
    physical_id = "127.0.0.1:5000/cr/gone@sha256:" + "ab" * 32
    # Even properties that no longer validate must not block a stack's deletion.
    event = request("Delete", {"ServiceToken": "arn", "SpanSize": "-1"}, physical_id=physical_id)
    answer = process_on_event(event, FakeContext(), client_factory=refuse)
    assert answer == {"PhysicalResourceId": physical_id}
    done = process_is_complete(merged(event, answer), FakeContext(), client_factory=refuse)
    assert done == {"IsComplete": True}


# ---- failures --------------------------------------------------------------------------------


def test_a_missing_tag_fails_at_once_saying_what_to_do(registry: LocalRegistry) -> None:
    push(registry, "cr/missing", BIG)
    event = request("Create", properties(registry, "cr/missing", Reference="v9"))
    with pytest.raises(ImageNotFound) as raised:
        process_on_event(event, FakeContext(), client_factory=factory(registry))
    assert str(raised.value) == (
        f"tag v9 not found in repository cr/missing (registry {registry.host}): "
        "push it before deploying, or check the tag"
    )


def test_a_corrupt_layer_fails_the_build_with_one_line_naming_the_layer(
    registry: LocalRegistry,
) -> None:
    push(registry, "cr/corrupt", CORRUPT)
    event = request("Create", properties(registry, "cr/corrupt"))
    clients = factory(registry)
    answer = process_on_event(event, FakeContext(), client_factory=clients)
    with pytest.raises(NothingToIndex) as raised:
        process_is_complete(merged(event, answer), FakeContext(), client_factory=clients)
    message = str(raised.value)
    assert "\n" not in message
    assert f"layer {CORRUPT.digest} skipped-corrupt" in message
    assert registry.client().head_manifest("cr/corrupt", "v1-soci") is None


def test_too_little_time_left_asks_to_be_polled_again_and_writes_no_tag(
    registry: LocalRegistry,
) -> None:
    push(registry, "cr/late", BIG)
    event = request("Create", properties(registry, "cr/late"))
    clients = factory(registry)
    answer = process_on_event(event, FakeContext(), client_factory=clients)
    for remaining_ms in (30_000, 60_001):  # within the safety margin; 1 ms beyond it
        late = FakeContext(remaining_ms=remaining_ms)
        done = process_is_complete(merged(event, answer), late, client_factory=clients)
        assert done == {"IsComplete": False}
        assert registry.client().head_manifest("cr/late", "v1-soci") is None
    done = process_is_complete(merged(event, answer), FakeContext(), client_factory=clients)
    assert done["IsComplete"] is True  # the next poll, with time enough


def test_a_build_that_cannot_finish_before_the_wait_ends_fails_saying_what_to_do(
    registry: LocalRegistry,
) -> None:
    """Each attempt starts over: once another cannot end before ServiceTimeout, the
    deployment fails with our line, not CloudFormation's generic timeout."""
    push(registry, "cr/huge", BIG)
    event = request("Create", properties(registry, "cr/huge", ServiceTimeout="1800"))
    clients = factory(registry)
    answer = process_on_event(event, FakeContext(), client_factory=clients)
    late = FakeContext(remaining_ms=30_000)  # this attempt runs out of time at once
    fresh = merged(event, answer)
    assert process_is_complete(fresh, late, client_factory=clients) == {"IsComplete": False}
    # 10 s before the 30 minutes the deployment waits are over: not even the next poll comes.
    waited = {**fresh, "Data": {settings.CR_BUILD_REQUESTED_AT: f"{time.time() - 1790:.0f}"}}
    with pytest.raises(DeadlineExceeded) as raised:
        process_is_complete(waited, late, client_factory=clients)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith(
        f"{registry.host}/cr/huge:v1: no SOCI-enabled image after 30 of the 30 minutes"
    )
    assert f"soci-indexer ensure {registry.host}/cr/huge:v1" in message
    assert registry.client().head_manifest("cr/huge", "v1-soci") is None


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"Repository": "Team-A/App"}, "Repository='Team-A/App': expected an ECR repository name"),
        ({"Reference": "v1:latest"}, "Reference='v1:latest': expected a tag or a digest"),
        ({"Reference": "sha256:abc"}, "Reference='sha256:abc': expected a tag or a digest"),
        ({"SpanSize": "4 MiB"}, "SpanSize='4 MiB': expected a positive whole number of bytes"),
        ({"SpanSize": "0"}, "SpanSize='0': expected a positive whole number of bytes"),
        ({"MinLayerSize": "-1"}, "MinLayerSize='-1': expected a whole number of bytes"),
        ({"IndexVersion": "v3"}, """IndexVersion='v3': expected "v2" or "v1\""""),
        ({"TagSuffix": "/soci"}, "TagSuffix='/soci': expected 1 to 64 of"),
        ({"Platforms": "linux/amd64"}, "Platforms='linux/amd64': expected a list of"),
        ({"Platforms": ["linux"]}, "Platforms holds 'linux': expected a list of"),
        ({"TargetRepository": "a//b"}, "TargetRepository='a//b': expected an ECR repository"),
        ({"Registry": "https://x"}, "Registry='https://x': expected a registry host"),
        ({"Reference": "v1-soci"}, "ends with the tag suffix '-soci'"),
    ],
)
def test_a_bad_property_fails_before_any_request_naming_it(
    registry: LocalRegistry, changes: dict[str, object], expected: str
) -> None:
    event = request("Create", properties(registry, "cr/bad", **changes))
    with pytest.raises(InvalidProperty) as raised:
        process_on_event(event, FakeContext(), client_factory=refuse)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_property_is_named(registry: LocalRegistry) -> None:
    props = properties(registry, "cr/bad")
    del props[settings.CR_REFERENCE]
    with pytest.raises(InvalidProperty, match="Reference is missing: expected a tag or a digest"):
        process_on_event(request("Create", props), FakeContext(), client_factory=refuse)


# ---- TargetRepository ------------------------------------------------------------------------


def test_a_target_repository_gets_the_image_by_mount_and_its_soci_enabled_image(
    registry: LocalRegistry,
) -> None:
    pushed = push(registry, "cr/assets", BIG)
    event = request("Create", properties(registry, "cr/assets", TargetRepository="cr/soci"))
    reads = LayerReads(BIG, SMALL)
    answer, done = deploy(registry, event, reads)
    assert answer["PhysicalResourceId"] == f"{registry.host}/cr/soci@{pushed.digest}"
    assert settings.CR_IMAGE_URI not in answer["Data"]  # type: ignore[operator]
    soci = registry.served_digest("cr/soci", "v1-soci")
    data = done["Data"]
    assert isinstance(data, dict)
    assert data[settings.CR_IMAGE_URI] == f"{registry.host}/cr/soci@{soci}"
    assert registry.served_digest("cr/soci", pushed.digest) == pushed.digest
    assert registry.client().head_manifest("cr/assets", "v1-soci") is None  # source untouched
    assert not [r for r in reads.requests if r[0] == "PATCH"]  # no blob was uploaded again
    assert verify.verify_image(registry.client(), "cr/soci", "v1-soci").ok
    again_reads = LayerReads(BIG, SMALL)
    again, _ = deploy(registry, event, again_reads)
    assert again["Data"] == data
    assert again_reads.layer_gets == 0


# ---- as Lambda runs it -----------------------------------------------------------------------


def resolve(dotted: str) -> Callable[[dict[str, Any], FakeContext], dict[str, object]]:
    module, _, name = dotted.rpartition(".")
    function: Callable[[dict[str, Any], FakeContext], dict[str, object]] = getattr(
        importlib.import_module(module), name
    )
    return function


def test_the_handlers_lambda_resolves_refuse_a_registry_that_is_not_amazon_ecr(
    registry: LocalRegistry,
) -> None:
    push(registry, "cr/lambda", BIG)
    on_event = resolve(settings.CUSTOM_RESOURCE_ON_EVENT)
    with pytest.raises(InvalidProperty) as raised:
        on_event(request("Create", properties(registry, "cr/lambda")), FakeContext())
    assert str(raised.value) == (
        f"Registry={registry.host!r}: expected an Amazon ECR registry host, "
        "<account>.dkr.ecr.<region>.amazonaws.com"
    )
    is_complete = resolve(settings.CUSTOM_RESOURCE_IS_COMPLETE)
    physical_id = "123456789012.dkr.ecr.us-west-2.amazonaws.com/app@sha256:" + "cd" * 32
    delete = request("Delete", properties(registry, "cr/lambda"), physical_id=physical_id)
    assert on_event(delete, FakeContext()) == {"PhysicalResourceId": physical_id}
    assert is_complete(delete, FakeContext()) == {"IsComplete": True}


# ---- registry failures: worth another poll, or not -------------------------------------------


def through(front: str, registry: LocalRegistry) -> Callable[[str], RegistryClient]:
    client = registry.client(via=front)
    return lambda host: client


def test_a_registry_failing_for_now_is_polled_again_without_a_tag(
    registry: LocalRegistry,
) -> None:
    push(registry, "cr/busy", BIG)
    event = request("Create", properties(registry, "cr/busy"))

    def busy(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        return Answer(503) if method == "GET" and path.endswith(BIG.digest) else None

    with proxy(registry.host, busy) as front:
        _, done = deploy_with(through(front.host, registry), event)
    assert done == {"IsComplete": False}
    assert registry.client().head_manifest("cr/busy", "v1-soci") is None


def test_a_registry_refusing_a_write_fails_at_once_with_the_status(
    registry: LocalRegistry,
) -> None:
    push(registry, "cr/denied", BIG)
    event = request("Create", properties(registry, "cr/denied"))
    denied = b'{"errors": [{"code": "DENIED", "message": "not allowed to push"}]}'

    def refuse_pushes(method: str, path: str, headers: dict[str, str]) -> Answer | None:
        return Answer(403, body=denied) if method in ("POST", "PUT") else None

    with proxy(registry.host, refuse_pushes) as front:
        clients = through(front.host, registry)
        answer = process_on_event(event, FakeContext(), client_factory=clients)
        with pytest.raises(AuthError) as raised:
            process_is_complete(merged(event, answer), FakeContext(), client_factory=clients)
    message = str(raised.value)
    assert message.startswith(f"the registry refused a request for {registry.host}/cr/denied:v1")
    assert "HTTP 403" in message
    assert "DENIED: not allowed to push" in message
    assert "\n" not in message


def test_on_event_out_of_time_fails_saying_after_how_long(registry: LocalRegistry) -> None:
    push(registry, "cr/slow", BIG)
    event = request("Create", properties(registry, "cr/slow"))

    def slow(method: str, path: str, headers: dict[str, str]) -> None:
        if "/manifests/" in path:
            time.sleep(2.0)  # the answer comes after the invocation's time is up

    with proxy(registry.host, slow) as front, pytest.raises(DeadlineExceeded) as raised:
        process_on_event(
            event, FakeContext(remaining_ms=6_000), client_factory=through(front.host, registry)
        )
    message = str(raised.value)
    assert re.match(
        rf"{registry.host}/cr/slow:v1: timed out after 1\.\d s reading its manifests", message
    )
    assert message.endswith("deploy again, and check the registry if it persists")
