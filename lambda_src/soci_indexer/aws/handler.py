"""Lambda entry point: ECR push events -> the pipeline -> JSON logs and EMF metrics.

Deliveries come as SQS batches (the rule's target is a queue, so failures are
retried and then dead-lettered) or as one bare EventBridge event when the
function is invoked directly. A record that can never succeed (an invalid
event, a refused account, an unsupported image: ``PermanentError``) is skipped
and counted, not delivered again; any other failure is retried after a short,
growing delay (``aws.sqs``) rather than the queue's visibility timeout.
Configuration is read once, at cold start; a bad value fails the cold start
with a message naming the variable.

Security boundary: the only registry the production handler talks to is the
ECR registry of the event's account and region (``ecr.registry_host``), and
only for the function's own account unless cross-account indexing is on. No
environment variable or event field can name another host.
"""

from __future__ import annotations

import functools
import os
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from soci_indexer import pipeline, settings
from soci_indexer.aws.config import HandlerConfig, load_config
from soci_indexer.aws.ecr import ecr_client, registry_host
from soci_indexer.aws.events import (
    ImageAction,
    check_account,
    parse_image_action,
    parse_message_body,
    skip_reason,
    sqs_records,
)
from soci_indexer.aws.sqs import delay_retry
from soci_indexer.aws.telemetry import Logger, Metrics, Unit
from soci_indexer.errors import (
    ConfigurationError,
    IndexingFailed,
    NoTimeLeft,
    PermanentError,
    SociError,
)

if TYPE_CHECKING:
    from soci_indexer.oci.client import RegistryClient

# Stop this long before Lambda's timeout so a run never dies between pushing
# the SOCI index and tagging it: it gives up cleanly and the record is retried.
SAFETY_MARGIN_SECONDS = 60.0

ClientFactory = Callable[[str, str], "RegistryClient"]
"""``(account, region) -> RegistryClient`` for the registry an event is about."""

RetryDelay = Callable[[Mapping[str, object]], int]
"""Hides a failed SQS record until its retry is due; returns the seconds (``sqs.delay_retry``)."""


class LambdaContext(Protocol):
    """The part of the Lambda context object the handler uses."""

    aws_request_id: str
    invoked_function_arn: str

    def get_remaining_time_in_millis(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one event: ``indexed``, ``skipped`` (with why), ``rejected``
    (a permanent error: never worth another delivery) or ``failed`` (worth a retry)."""

    status: Literal["indexed", "skipped", "rejected", "failed"]
    reason: str = ""
    output_reference: str | None = None

    @property
    def failed(self) -> bool:
        """True when the event did not succeed: a direct invocation raises for it."""
        return self.status in ("rejected", "failed")


def _load_cold_start_config() -> HandlerConfig:
    try:
        return load_config(os.environ)
    except ConfigurationError as exc:
        Logger(HandlerConfig().service_name).error(
            "configuration rejected at cold start", problems=exc.problems
        )
        raise


CONFIG = _load_cold_start_config()
LOGGER = Logger(CONFIG.service_name, level=CONFIG.log_level)
METRICS = Metrics(CONFIG.metrics_namespace, CONFIG.service_name, level=CONFIG.log_level)


def handler(event: object, context: LambdaContext) -> dict[str, object]:
    """The Lambda handler: production settings, ECR registries only."""
    return process_event(event, context, client_factory=_ecr_client_for, retry_delay=delay_retry)


def process_event(
    event: object,
    context: LambdaContext,
    *,
    client_factory: ClientFactory,
    config: HandlerConfig | None = None,
    safety_margin_seconds: float = SAFETY_MARGIN_SECONDS,
    retry_delay: RetryDelay | None = None,
) -> dict[str, object]:
    """Handle one invocation exactly as production does, with the registry client injected.

    ``handler`` is this function with ``client_factory`` building an
    ECR-authenticated client for ``{account}.dkr.ecr.{region}.amazonaws.com``.
    The demo and the tests pass ``lambda account, region: loopback_client`` to
    run the same code against a local registry; nothing else changes.

    An SQS batch (``{"Records": [...]}``) returns
    ``{"batchItemFailures": [{"itemIdentifier": messageId}, ...]}`` naming only
    the records that failed and are worth a retry; each of them is first handed
    to ``retry_delay`` (production: ``sqs.delay_retry``; None leaves the queue's
    visibility timeout in force). Rejected records are skipped. A bare EventBridge
    event returns a summary, or raises ``IndexingFailed`` so the invocation
    counts as failed. Skipped events (untagged, our own output...) succeed.
    ``config`` defaults to the one read from the environment at cold start.
    """
    run = _Run(context, client_factory, config or CONFIG, safety_margin_seconds, retry_delay)
    run.log_context()
    try:
        records = sqs_records(event)
        if records is not None:
            return run.batch(records)
        outcome = run.one(event)
        if outcome.failed:
            raise IndexingFailed(outcome.reason)
        return {
            "status": outcome.status,
            "reason": outcome.reason,
            "output": outcome.output_reference,
        }
    finally:
        LOGGER.clear_keys()
        METRICS.flush()


@functools.lru_cache(maxsize=16)
def _ecr_client_for(account: str, region: str) -> RegistryClient:
    """Kept across warm invocations: it reuses connections and its ECR token (refreshed
    before expiry), so a warm start does not pay for ``GetAuthorizationToken`` again."""
    return ecr_client(registry_host(account, region), region)


class _Run:
    """One invocation: the context, where clients come from, and the settings in force."""

    def __init__(
        self,
        context: LambdaContext,
        client_factory: ClientFactory,
        config: HandlerConfig,
        safety_margin_seconds: float,
        retry_delay: RetryDelay | None,
    ) -> None:
        self.context = context
        self.client_factory = client_factory
        self.config = config
        self.safety_margin_seconds = safety_margin_seconds
        self.retry_delay = retry_delay

    def batch(self, records: list[Mapping[str, object]]) -> dict[str, object]:
        failures = []
        for record in records:
            message_id = str(record.get("messageId", ""))
            self.log_context(message_id=message_id)
            if self.one_message(record.get("body")).status == "failed":
                failures.append({"itemIdentifier": message_id})
                self._delay(record)
        self.log_context()
        LOGGER.info("batch done", records=len(records), failed=len(failures))
        return {"batchItemFailures": failures}

    def _delay(self, record: Mapping[str, object]) -> None:
        """Bring the record back in minutes; if SQS refuses, the visibility timeout applies."""
        if self.retry_delay is None:
            return
        try:
            seconds = self.retry_delay(record)
        except SociError as exc:
            LOGGER.warning(
                "retry not brought forward", error_type=type(exc).__name__, error=str(exc)
            )
            return
        LOGGER.info("retry scheduled", retry_in_seconds=seconds)

    def log_context(self, **keys: object) -> None:
        """Start the log context afresh, so one record's keys never label the next line."""
        LOGGER.clear_keys()
        LOGGER.append_keys(request_id=self.context.aws_request_id, **keys)

    def one_message(self, body: object) -> Outcome:
        try:
            event = parse_message_body(body)
        except SociError as exc:
            return self._failed(exc)
        return self.one(event)

    def one(self, event: object) -> Outcome:
        """Parse, guard and index one EventBridge event; never raises."""
        try:
            action = parse_image_action(event)
            LOGGER.append_keys(
                event_id=action.event_id,
                repository=action.repository,
                digest=action.digest,
                tag=action.tag,
            )
            check_account(
                action,
                self.context.invoked_function_arn,
                allow_cross_account=self.config.allow_cross_account,
            )
            reason = skip_reason(action, self.config.index_options.tag_suffix)
            if reason is not None:
                return self._skipped(str(reason))
            return self._report(self._index(action), action)
        except SociError as exc:
            return self._failed(exc)
        except Exception as exc:  # a bug must fail this record only, not the whole batch
            return self._failed(exc, with_traceback=True)

    def _index(self, action: ImageAction) -> pipeline.ImageResult:
        """Index what the tag names now, not the event's digest.

        SQS may deliver a tag's events out of order. Indexing by tag makes
        ``<tag><suffix>`` converge on the tag's current image; indexing by digest
        could let a late, older event point it back at a superseded image.
        """
        remaining = self.context.get_remaining_time_in_millis() / 1000
        if remaining <= self.safety_margin_seconds:
            raise NoTimeLeft(
                f"{remaining:.1f} s left, {self.safety_margin_seconds:.0f} s are kept in reserve"
            )
        options = replace(
            self.config.index_options,
            deadline=time.monotonic() + remaining - self.safety_margin_seconds,
        )
        LOGGER.info("indexing image")
        return pipeline.index_image(
            self.client_factory(action.account, action.region),
            action.repository,
            action.tag,
            options,
            progress=_log_progress,
        )

    def _report(self, result: pipeline.ImageResult, action: ImageAction) -> Outcome:
        for layer in result.layers:
            _report_layer(layer)
        if result.status is not pipeline.ImageStatus.INDEXED:
            return self._skipped(result.status.value.removeprefix("skipped-"), result.reason)
        # A layer shared by several platforms is indexed once: count distinct digests.
        indexed = {
            layer.digest: layer.size
            for layer in result.layers
            if layer.status is pipeline.LayerStatus.INDEXED
        }
        METRICS.add("ImagesIndexed", Unit.COUNT, 1)
        METRICS.add("LayersIndexed", Unit.COUNT, len(indexed))
        METRICS.add("BytesIndexed", Unit.BYTES, sum(indexed.values()))
        METRICS.add("BuildSeconds", Unit.SECONDS, round(result.seconds, 3))
        if action.time is not None:
            # The output tag is written last: from the push's event to here is what a user
            # waits for <tag><suffix>, queueing and retries included.
            waited = (datetime.now(UTC) - action.time).total_seconds()
            METRICS.add(
                settings.METRIC_PUSH_TO_SOCI_SECONDS, Unit.SECONDS, round(max(waited, 0), 3)
            )
        LOGGER.info(
            "image indexed",
            output=result.output_reference,
            layers_indexed=len(indexed),
            layers_total=len(result.layers),
            seconds=round(result.seconds, 3),
        )
        return Outcome("indexed", output_reference=result.output_reference)

    def _skipped(self, reason: str, detail: str = "") -> Outcome:
        METRICS.add("ImagesSkipped", Unit.COUNT, 1, reason=reason)
        LOGGER.info("image skipped", reason=reason, detail=detail)
        return Outcome("skipped", reason)

    def _failed(self, error: Exception, *, with_traceback: bool = False) -> Outcome:
        """Typed errors explain themselves in one line; anything else is a bug and
        gets its traceback. A permanent error is a counted skip, never retried."""
        kind = type(error).__name__
        if isinstance(error, PermanentError):
            reason = _kebab(kind)
            METRICS.add("ImagesSkipped", Unit.COUNT, 1, reason=reason)
            LOGGER.error(
                "image rejected, not retried", reason=reason, error_type=kind, error=str(error)
            )
            return Outcome("rejected", f"{kind}: {error}")
        METRICS.add("ImagesFailed", Unit.COUNT, 1, reason=kind)
        log = LOGGER.exception if with_traceback else LOGGER.error
        log("image failed", error_type=kind, error=str(error))
        return Outcome("failed", f"{kind}: {error}")


def _report_layer(layer: pipeline.LayerOutcome) -> None:
    indexed = layer.status is pipeline.LayerStatus.INDEXED
    if not indexed:
        METRICS.add(
            "LayersSkipped", Unit.COUNT, 1, reason=layer.status.value.removeprefix("skipped-")
        )
    LOGGER.info(
        "layer indexed" if indexed else "layer skipped",
        layer=layer.digest,
        platform=layer.platform,
        media_type=layer.media_type,
        size=layer.size,
        status=layer.status.value,
        reason=layer.reason,
        ztoc=layer.ztoc_digest,
        seconds=round(layer.seconds, 3),
    )


def _kebab(name: str) -> str:
    """``AccountNotAllowed`` -> ``account-not-allowed``: an error type as a metric reason."""
    return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower()


def _log_progress(layer_digest: str, done: int, total: int) -> None:
    LOGGER.debug("layer progress", layer=layer_digest, bytes_done=done, bytes_total=total)
