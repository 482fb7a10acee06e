"""The deploy-time custom resource behind ``SociImage`` (``Custom::SociImage``).

aws-cdk-lib's ``custom_resources.Provider`` runs two functions from the
indexer's asset: ``on_event`` (``settings.CUSTOM_RESOURCE_ON_EVENT``) answers
CloudFormation's request, then ``is_complete``
(``settings.CUSTOM_RESOURCE_IS_COMPLETE``) is polled every ``query_interval``
until it says done or the resource's ``ServiceTimeout`` (``SociImage``'s
``timeout``, at most an hour) passes and CloudFormation fails it.

- **Create / Update** resolve the source image (``Registry``, ``Repository``,
  ``Reference``) to its digest. The physical id is
  ``<registry>/<target repository>@<source digest>``: a tag that now names
  another image gives a new id, which CloudFormation treats as a replacement
  (the old resource's Delete is a no-op). When the SOCI-enabled image is
  already there (the push-time builder got there first), ``on_event`` answers
  with its ``ImageUri`` at once, after reading manifests alone. Otherwise
  ``is_complete`` builds it (``pipeline.ensure_soci_image``; with
  ``TargetRepository``, ``ensure_soci_image_in`` copies the image there first).
- **Delete** touches nothing: images stay, so a rollback to them still works.

A build must fit in one ``is_complete`` invocation: each is given the time the
invocation has left less ``SAFETY_MARGIN_SECONDS``; a run that runs out of it
(or hits a registry failure worth a retry) writes no output tag, answers
``IsComplete: False`` and starts over on the next poll (blobs already copied
to a target repository stay copied), as long as another attempt can end before
CloudFormation stops waiting (``ServiceTimeout``, counted from the time
``on_event`` asked for the build, ``BuildRequestedAt``); after that it fails
with a line that says to index the image beforehand. Permanent problems raise
at once with one line a person can act on.

What the provider framework does with that (aws-cdk-lib 2.275.0,
``custom-resources/lib/provider-framework/runtime/framework.js`` and
``cfn-response.js``): an exception from either function is not retried. The
framework turns the function error into a JavaScript ``Error`` whose message is
our ``errorMessage`` plus ``"Logs: /aws/lambda/<function>"``, and its
``safeHandler`` reports FAILED to CloudFormation at once with that error's
*stack* as ``Reason`` (``includeStackTraces`` is on): our line, the log group,
and a few lines of the framework's own JavaScript stack. Only
``IsComplete: False`` makes the waiter state machine poll again, until
CloudFormation's ``ServiceTimeout`` for the resource (or the provider's
``total_timeout``, whichever is first; the latter fails with the framework's
fixed "Operation timed out").
``Data`` with ``IsComplete: False`` is refused by the framework. CloudFormation
takes a response body of at most 4,096 bytes (Reason, ids and Data together),
so messages are kept to one line of at most ``MAX_REASON`` characters.

Security boundary: in production only Amazon ECR registry hosts are accepted
(``ecr.parse_registry_host``), with the function's own AWS credentials. Tests
and the demo call ``process_on_event`` / ``process_is_complete`` with a client
factory for a loopback registry instead, as ``handler.process_event`` does.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from soci_indexer import pipeline, settings
from soci_indexer.aws.config import matching, parse_index_version, parse_whole_number
from soci_indexer.aws.ecr import ecr_client, is_repository_name, parse_registry_host
from soci_indexer.aws.handler import CONFIG, LOGGER, SAFETY_MARGIN_SECONDS, LambdaContext
from soci_indexer.errors import (
    DeadlineExceeded,
    ImageNotFound,
    InvalidProperty,
    ManifestError,
    NothingToIndex,
    RegistryError,
    SociError,
    TagMoved,
)
from soci_indexer.oci.manifests import is_digest

if TYPE_CHECKING:
    from soci_indexer.oci.client import RegistryClient

T = TypeVar("T")

ClientFactory = Callable[[str], "RegistryClient"]
"""``registry host -> RegistryClient``; production refuses any host but Amazon ECR's."""

MAX_REASON = 1000  # characters of an error message (CloudFormation takes 4 KiB in all)
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?(?::[0-9]{1,5})?")
# HTTP statuses worth another attempt: the registry is busy or failing, not refusing.
_TRANSIENT = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Properties:
    """The resource's properties, checked."""

    registry: str
    repository: str
    reference: str  # a tag or a digest
    target_repository: str  # where the SOCI-enabled image goes: ``repository`` unless given
    options: pipeline.IndexOptions

    @property
    def copies(self) -> bool:
        return self.target_repository != self.repository

    @property
    def tag(self) -> str:
        return "" if is_digest(self.reference) else self.reference

    def pinned(self, source_digest: str) -> str:
        """The reference that names the image found at Create/Update, whatever the tag
        names later: ``tag@digest`` (the output is still named after the tag)."""
        return f"{self.tag}@{source_digest}" if self.tag else source_digest

    def physical_id(self, source_digest: str) -> str:
        return f"{self.registry}/{self.target_repository}@{source_digest}"


def parse_properties(properties: object) -> Properties:
    """Check every property (CloudFormation sends numbers as strings); raises
    InvalidProperty naming each bad one, its value and what is expected."""
    if not isinstance(properties, Mapping):
        raise InvalidProperty(f"ResourceProperties is {_show(properties)}: expected an object")
    read = _Reader(properties)
    registry = read.required(settings.CR_REGISTRY, matching(_HOST), "a registry host[:port]")
    repository = read.required(settings.CR_REPOSITORY, _repository, _REPOSITORY_EXPECTED)
    reference = read.required(
        settings.CR_REFERENCE, _reference, 'a tag or a digest ("sha256:" and 64 hex digits)'
    )
    target = read.optional(settings.CR_TARGET_REPOSITORY, repository, _repository,
                           _REPOSITORY_EXPECTED)  # fmt: skip
    base = CONFIG.index_options
    options = replace(
        base,
        index_version=read.optional(
            settings.CR_INDEX_VERSION, base.index_version, parse_index_version, '"v2" or "v1"'
        ),
        span_size=read.optional(
            settings.CR_SPAN_SIZE, base.span_size, parse_whole_number(1),
            "a positive whole number of bytes",
        ),
        min_layer_size=read.optional(
            settings.CR_MIN_LAYER_SIZE, base.min_layer_size, parse_whole_number(0),
            "a whole number of bytes, zero or more",
        ),
        tag_suffix=read.optional(
            settings.CR_TAG_SUFFIX, base.tag_suffix, matching(settings.TAG_SUFFIX),
            settings.TAG_SUFFIX_EXPECTED,
        ),
        platforms=read.platforms(settings.CR_PLATFORMS, base.platforms),
    )  # fmt: skip
    if read.problems:
        raise InvalidProperty(_line("invalid properties: " + "; ".join(read.problems)))
    if reference.endswith(options.tag_suffix):
        raise InvalidProperty(
            f"{settings.CR_REFERENCE}={reference!r} ends with the tag suffix "
            f"{options.tag_suffix!r}: name the image itself, not its SOCI-enabled image"
        )
    return Properties(registry, repository, reference, target, options)


_REPOSITORY_EXPECTED = "an ECR repository name (lowercase, / . _ - between letters or digits)"


def _repository(text: str) -> str:
    if not is_repository_name(text):
        raise ValueError(text)
    return text


def _reference(text: str) -> str:
    if not (settings.TAG.fullmatch(text) or settings.DIGEST.fullmatch(text)):
        raise ValueError(text)
    return text


class _Reader:
    """Reads properties, collecting problems instead of stopping at the first."""

    def __init__(self, properties: Mapping[object, object]) -> None:
        self.properties = properties
        self.problems: list[str] = []

    def required(self, name: str, parse: Callable[[str], str], expected: str) -> str:
        if name not in self.properties:
            self.problems.append(f"{name} is missing: expected {expected}")
            return ""
        return self.optional(name, "", parse, expected)

    def optional(self, name: str, default: T, parse: Callable[[str], T], expected: str) -> T:
        value = self.properties.get(name)
        if value is None or value == "":
            return default
        if isinstance(value, bool) or not isinstance(value, str | int):
            self.problems.append(f"{name}={_show(value)}: expected {expected}")
            return default
        try:
            return parse(str(value))
        except ValueError:
            self.problems.append(f"{name}={_show(value)}: expected {expected}")
            return default

    def platforms(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.properties.get(name)
        if value is None:
            return default
        expected = f"a list of {settings.PLATFORM_EXPECTED}"
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.problems.append(f"{name}={_show(value)}: expected {expected}")
            return default
        bad = [item for item in value if not settings.PLATFORM.fullmatch(item)]
        if bad:
            self.problems.append(f"{name} holds {_show(bad[0])}: expected {expected}")
            return default
        return tuple(value)


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _line(text: str) -> str:
    """One line of at most MAX_REASON characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_REASON else flat[: MAX_REASON - 3] + "..."


# ---- the two entry points ------------------------------------------------------------------


def on_event(event: Mapping[str, object], context: LambdaContext) -> dict[str, object]:
    """The provider's ``on_event_handler``: Amazon ECR registries only."""
    return process_on_event(event, context, client_factory=_ecr_client_for)


def is_complete(event: Mapping[str, object], context: LambdaContext) -> dict[str, object]:
    """The provider's ``is_complete_handler``: Amazon ECR registries only."""
    return process_is_complete(event, context, client_factory=_ecr_client_for)


@functools.lru_cache(maxsize=16)
def _ecr_client_for(host: str) -> RegistryClient:
    if parse_registry_host(host) is None:
        raise InvalidProperty(
            f"{settings.CR_REGISTRY}={host!r}: expected an Amazon ECR registry host, "
            "<account>.dkr.ecr.<region>.amazonaws.com"
        )
    return ecr_client(host)


def process_on_event(
    event: Mapping[str, object], context: LambdaContext, *, client_factory: ClientFactory
) -> dict[str, object]:
    """``on_event`` with the registry client injected (tests, the demo).

    Delete answers with the physical id it was given and reads nothing.
    Create and Update answer ``{"PhysicalResourceId": ..., "Data": {...}}`` when
    the SOCI-enabled image already exists, and without ``Data`` when
    ``is_complete`` has to build it.
    """
    request = _request_type(event)
    LOGGER.clear_keys()
    LOGGER.append_keys(request_id=context.aws_request_id, request_type=request,
                       logical_id=str(event.get("LogicalResourceId", "")))  # fmt: skip
    if request == "Delete":
        physical_id = str(event.get("PhysicalResourceId", ""))
        LOGGER.info("delete: nothing to do, images are kept", physical_id=physical_id)
        return {"PhysicalResourceId": physical_id}
    props = parse_properties(event.get("ResourceProperties"))
    client = _deadline_client(client_factory(props.registry), context)
    started = time.monotonic()
    try:
        source = client.head_manifest(props.repository, props.reference)
        if source is None:
            raise ImageNotFound(_not_found(props))
        physical_id = props.physical_id(source)
        found = pipeline.find_soci_image(
            client, props.target_repository, props.pinned(source), props.options
        )
    except SociError as exc:
        raise _permanent(exc, props, time.monotonic() - started) from None
    if found is None:
        LOGGER.info("SOCI-enabled image missing: is_complete builds it", physical_id=physical_id)
        requested = {settings.CR_BUILD_REQUESTED_AT: f"{time.time():.0f}"}
        return {"PhysicalResourceId": physical_id, "Data": requested}
    LOGGER.info("SOCI-enabled image already there", physical_id=physical_id, image=found.reference)
    return {"PhysicalResourceId": physical_id, "Data": _data(found)}


def process_is_complete(
    event: Mapping[str, object],
    context: LambdaContext,
    *,
    client_factory: ClientFactory,
    safety_margin_seconds: float = SAFETY_MARGIN_SECONDS,
) -> dict[str, object]:
    """``is_complete`` with the registry client injected (tests, the demo).

    The event is ``on_event``'s request with its answer merged in. Done when
    that answer carried the image (or for Delete); otherwise builds it within
    this invocation's time: ``{"IsComplete": True, "Data": {...}}``, or
    ``{"IsComplete": False}`` to be polled again after a deadline or a registry
    failure worth a retry. Permanent problems raise.
    """
    request = _request_type(event)
    data = event.get("Data")
    if request == "Delete" or (isinstance(data, Mapping) and settings.CR_IMAGE_URI in data):
        return {"IsComplete": True}
    LOGGER.clear_keys()
    LOGGER.append_keys(request_id=context.aws_request_id, request_type=request,
                       logical_id=str(event.get("LogicalResourceId", "")))  # fmt: skip
    props = parse_properties(event.get("ResourceProperties"))
    source = _source_digest(event, props)
    remaining = context.get_remaining_time_in_millis() / 1000
    budget = remaining - safety_margin_seconds
    options = replace(props.options, deadline=time.monotonic() + budget)
    client = client_factory(props.registry)
    started = time.monotonic()
    try:
        if budget <= 0:
            raise DeadlineExceeded(f"{remaining:.1f} s left, {safety_margin_seconds:.0f} s kept")
        ensured = _build(client, props, source, options)
    except (DeadlineExceeded, RegistryError) as exc:
        if isinstance(exc, DeadlineExceeded):
            attempt = max(budget, time.monotonic() - started)
            over = _wait_over(event, props, attempt)
            if over is not None:
                raise over from None
        if isinstance(exc, DeadlineExceeded) or _worth_retry(exc):
            LOGGER.warning(
                "build stopped, polled again", error_type=type(exc).__name__,
                error=_line(str(exc)), seconds=round(time.monotonic() - started, 1),
            )  # fmt: skip
            return {"IsComplete": False}
        raise _permanent(exc, props) from None
    except SociError as exc:
        raise _permanent(exc, props) from None
    LOGGER.info("SOCI-enabled image built", image=ensured.reference,
                seconds=round(time.monotonic() - started, 1))  # fmt: skip
    return {"IsComplete": True, "Data": _data(ensured)}


def _wait_over(
    event: Mapping[str, object], props: Properties, attempt_seconds: float
) -> DeadlineExceeded | None:
    """The error that ends the deployment when another attempt cannot finish before
    CloudFormation stops waiting (``ServiceTimeout``); None while one still can.

    Attempts restart the build, so waiting longer only helps when something else
    (the push-time builder) writes the image meanwhile: this says so while the
    message can still be ours, not CloudFormation's generic timeout.
    """
    data = event.get("Data")
    requested = data.get(settings.CR_BUILD_REQUESTED_AT) if isinstance(data, Mapping) else None
    timeout = _service_timeout(event.get("ResourceProperties"))
    try:
        waited = time.time() - float(str(requested))
    except ValueError:
        return None  # an event without on_event's mark: leave the ending to CloudFormation
    if waited + settings.CR_QUERY_INTERVAL_SECONDS + attempt_seconds < timeout:
        return None
    image = _image(props)
    return DeadlineExceeded(
        _line(
            f"{image}: no SOCI-enabled image after {waited / 60:.0f} of the {timeout / 60:.0f} "
            f"minutes the deployment waits; each attempt stops after {attempt_seconds / 60:.0f} "
            "minutes (one Lambda invocation) and the next starts over, so this image takes "
            f"longer: index it beforehand (soci-indexer ensure {image}, or the push-time "
            "builder), then deploy again"
        )
    )


def _service_timeout(properties: object) -> float:
    """The resource's ``ServiceTimeout`` in seconds; CloudFormation's hour when unset."""
    raw = properties.get(settings.CR_SERVICE_TIMEOUT) if isinstance(properties, Mapping) else None
    try:
        return float(str(raw))
    except ValueError:
        return float(settings.CR_MAX_SERVICE_TIMEOUT_SECONDS)


def _build(
    client: RegistryClient, props: Properties, source: str, options: pipeline.IndexOptions
) -> pipeline.EnsuredImage:
    if props.copies:
        return pipeline.ensure_soci_image_in(
            client, props.repository, props.pinned(source), props.target_repository, options
        )
    # Follow the tag (the pipeline stops if a push moves it while the run works), but
    # only while it still names the image this resource's physical id was given for.
    current = client.with_deadline(options.deadline).head_manifest(
        props.repository, props.reference
    )
    if current is None:
        raise ImageNotFound(_not_found(props))
    if current != source:
        raise TagMoved(
            f"tag {props.reference} of {props.repository} now names {current}, not {source} "
            "it named when the deployment started: deploy again"
        )
    return pipeline.ensure_soci_image(client, props.repository, props.reference, options)


def _source_digest(event: Mapping[str, object], props: Properties) -> str:
    physical_id = str(event.get("PhysicalResourceId", ""))
    prefix = f"{props.registry}/{props.target_repository}@"
    digest = physical_id.removeprefix(prefix)
    if not physical_id.startswith(prefix) or not settings.DIGEST.fullmatch(digest):
        raise InvalidProperty(
            f"PhysicalResourceId {_show(physical_id)} is not {prefix}<digest>, "
            "as on_event answers: is_complete needs on_event's answer merged into its event"
        )
    return digest


def _request_type(event: Mapping[str, object]) -> str:
    request = event.get("RequestType")
    if request not in ("Create", "Update", "Delete"):
        raise InvalidProperty(
            f"RequestType {_show(request)}: expected Create, Update or Delete "
            "(a CloudFormation custom resource request)"
        )
    return str(request)


def _deadline_client(client: RegistryClient, context: LambdaContext) -> RegistryClient:
    """``on_event`` reads manifests only; it too stops before Lambda's timeout."""
    left = context.get_remaining_time_in_millis() / 1000 - 5
    return client.with_deadline(time.monotonic() + max(left, 1))


def _data(image: pipeline.EnsuredImage) -> dict[str, object]:
    return {
        settings.CR_IMAGE_URI: image.reference,
        settings.CR_IMAGE_DIGEST: image.soci_digest,
        settings.CR_SOURCE_DIGEST: image.source_digest,
    }


def _not_found(props: Properties) -> str:
    what = f"tag {props.reference}" if props.tag else f"image {props.reference}"
    return (
        f"{what} not found in repository {props.repository} (registry {props.registry}): "
        "push it before deploying, or check the " + ("tag" if props.tag else "digest")
    )


def _worth_retry(error: RegistryError) -> bool:
    """No status (the connection failed or broke), or a status that says "later"."""
    return error.status is None or error.status in _TRANSIENT


def _image(props: Properties) -> str:
    """``registry/repository:tag`` or ``registry/repository@sha256:...``: the source image."""
    return f"{props.registry}/{props.repository}:{props.reference}".replace(":sha256:", "@sha256:")


def _permanent(error: SociError, props: Properties, seconds: float = 0.0) -> SociError:
    """The error to raise: typed as the problem it is, one line that says what to do."""
    image = _image(props)
    message = str(error)
    if isinstance(error, NothingToIndex):
        message = (
            f"{message}; lower {settings.CR_MIN_LAYER_SIZE} if its layers are small, or "
            "rebuild and push the image (SOCI indexes gzip and uncompressed tar layers)"
        )
    elif isinstance(error, TagMoved):
        message = f"{message}; deploy again"
    elif isinstance(error, DeadlineExceeded):
        message = (
            f"{image}: timed out after {seconds:.1f} s reading its manifests ({message}): "
            "deploy again, and check the registry if it persists"
        )
    elif isinstance(error, RegistryError):
        status = f"HTTP {error.status}" if error.status else "no answer"
        message = f"the registry refused a request for {image} ({status}): {message}"
    elif isinstance(error, ManifestError):
        message = f"{image} cannot be read as an image: {message}"
    return type(error)(_line(message))
