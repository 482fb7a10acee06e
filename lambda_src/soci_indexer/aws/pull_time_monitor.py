"""Lambda entry point of ``PullTimeMonitor``: ECS "Task State Change" events -> pull times in EMF.

ECS records when a task started and stopped pulling its images
(``pullStartedAt``/``pullStoppedAt``); the difference is what lazy loading
shortens. For each task that reached RUNNING this writes that duration as the
``PullSeconds`` metric, with the dimensions that let a dashboard compare like
with like: ``soci`` (``true``/``false``), ``cluster`` and ``family`` (the task
definition family), published at each level (``[service]``, ``[service, soci]``,
``[service, soci, cluster]``, ``[service, soci, cluster, family]``).

A task counts as SOCI-enabled when one of its containers runs an image whose
tag ends with the builder's tag suffix (``v1-soci``), or whose digest (pinned
in the reference, or the ``imageDigest`` ECS resolved) is one of the digests
the monitor was given. Everything else is plain: an image pinned to an
unlisted digest, or a SOCI-enabled image retagged without the suffix.

Events without a finished pull are counted (``TaskEvents`` by ``reason``), not
errors: ``pending`` (still provisioning), ``not-pulled`` (stopped before its
pull finished, or ran from a cached image), ``not-running`` (pull done, but the
event is not the RUNNING one: a STOPPED event of a task already counted),
``invalid-event``. Standard library only: no boto3, no engine (a contract in
``pyproject.toml`` checks it), so the function starts in milliseconds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from soci_indexer import settings
from soci_indexer.aws.event_time import parse_event_time
from soci_indexer.aws.soci_enabled import is_soci_image
from soci_indexer.aws.telemetry import Logger, Metrics, Unit, logging_level
from soci_indexer.errors import ConfigurationError, InvalidEvent


class PullState(StrEnum):
    """What one task event says about the task's image pull (the ``reason`` counted)."""

    PULLED = "pulled"  # reached RUNNING with both pull timestamps: PullSeconds recorded
    PENDING = "pending"  # may still pull
    NOT_PULLED = "not-pulled"  # stopped (or running) without a finished pull
    NOT_RUNNING = "not-running"  # pulled, but not the RUNNING event: recorded there, not here
    INVALID = "invalid-event"


@dataclass(frozen=True, slots=True)
class MonitorConfig:
    """The monitor's settings, from its environment (``load_config``)."""

    tag_suffix: str = settings.DEFAULT_TAG_SUFFIX
    soci_digests: frozenset[str] = frozenset()
    metrics_namespace: str = settings.DEFAULT_PULL_TIME_NAMESPACE
    service_name: str = settings.DEFAULT_PULL_TIME_SERVICE
    log_level: str = settings.DEFAULT_LOG_LEVEL


@dataclass(frozen=True, slots=True)
class ContainerImage:
    image: str  # the reference the task definition names
    digest: str = ""  # the manifest digest ECS resolved it to, when it says


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """The fields of one "ECS Task State Change" event the monitor reads."""

    task_arn: str
    cluster: str  # the cluster's name
    family: str  # the task definition's family
    last_status: str
    desired_status: str
    pull_started_at: datetime | None
    pull_stopped_at: datetime | None
    containers: tuple[ContainerImage, ...]

    @property
    def pull_seconds(self) -> float | None:
        if self.pull_started_at is None or self.pull_stopped_at is None:
            return None
        return round((self.pull_stopped_at - self.pull_started_at).total_seconds(), 3)

    @property
    def state(self) -> PullState:
        if self.pull_seconds is not None:
            return PullState.PULLED if self.last_status == "RUNNING" else PullState.NOT_RUNNING
        stopping = "STOPPED" in (self.last_status, self.desired_status)
        if stopping or self.last_status == "RUNNING":
            return PullState.NOT_PULLED
        return PullState.PENDING


class LambdaContext(Protocol):
    aws_request_id: str


def load_config(environ: Mapping[str, str]) -> MonitorConfig:
    """Read and check the variables the construct sets; every problem in one error."""
    problems: list[str] = []
    suffix = environ.get(settings.ENV_TAG_SUFFIX, "").strip() or settings.DEFAULT_TAG_SUFFIX
    if not settings.TAG_SUFFIX.fullmatch(suffix):
        problems.append(
            f"{settings.ENV_TAG_SUFFIX}={suffix!r}: expected {settings.TAG_SUFFIX_EXPECTED}"
        )
    digests = [d.strip() for d in environ.get(settings.ENV_SOCI_DIGESTS, "").split(",")]
    problems.extend(
        f"{settings.ENV_SOCI_DIGESTS}: {digest!r} is no digest: expected sha256:<64 hex digits>"
        for digest in digests
        if digest and not settings.DIGEST.fullmatch(digest)
    )
    namespace = (
        environ.get(settings.ENV_METRICS_NAMESPACE, "").strip()
        or settings.DEFAULT_PULL_TIME_NAMESPACE
    )
    if not settings.METRICS_NAMESPACE.fullmatch(namespace):
        problems.append(
            f"{settings.ENV_METRICS_NAMESPACE}={namespace!r}: expected "
            + settings.METRICS_NAMESPACE_EXPECTED
        )
    service = (
        environ.get(settings.ENV_SERVICE_NAME, "").strip() or settings.DEFAULT_PULL_TIME_SERVICE
    )
    if not settings.SERVICE_NAME.fullmatch(service):
        problems.append(
            f"{settings.ENV_SERVICE_NAME}={service!r}: expected {settings.SERVICE_NAME_EXPECTED}"
        )
    level = environ.get(settings.ENV_LOG_LEVEL, "").strip().upper() or settings.DEFAULT_LOG_LEVEL
    try:
        logging_level(level)
    except ValueError:
        problems.append(
            f"{settings.ENV_LOG_LEVEL}={level!r}: expected one of {', '.join(settings.LOG_LEVELS)}"
        )
    if problems:
        raise ConfigurationError(problems)
    return MonitorConfig(suffix, frozenset(filter(None, digests)), namespace, service, level)


# ---- The SOCI decision ------------------------------------------------------------------------


def runs_soci(event: TaskEvent, config: MonitorConfig) -> bool:
    """A task is SOCI-enabled when one of its containers' images is."""
    return any(
        is_soci_image(c.image, c.digest, config.tag_suffix, config.soci_digests)
        for c in event.containers
    )


# ---- Parsing ---------------------------------------------------------------------------------


def parse_task_event(event: object) -> TaskEvent:
    """Check an EventBridge "ECS Task State Change" event; raise ``InvalidEvent``."""
    if not isinstance(event, Mapping):
        raise InvalidEvent(f"expected an EventBridge event (a JSON object), got {type(event)}")
    if (event.get("source"), event.get("detail-type")) != (
        settings.ECS_EVENT_SOURCE,
        settings.ECS_TASK_STATE_CHANGE,
    ):
        raise InvalidEvent(
            f"not an {settings.ECS_TASK_STATE_CHANGE} event (source={event.get('source')!r}, "
            f"detail-type={event.get('detail-type')!r})"
        )
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise InvalidEvent("the event has no detail object")
    containers = detail.get("containers", [])
    if not isinstance(containers, list):
        raise InvalidEvent("detail.containers is not a list")
    return TaskEvent(
        # Only logged: a task without its ARN is still worth its pull time.
        task_arn=_text(detail, "taskArn") or _first_resource(event),
        cluster=_text(detail, "clusterArn", required=True).rsplit("/", 1)[-1],
        family=_text(detail, "taskDefinitionArn", required=True)
        .rsplit("/", 1)[-1]
        .split(":", 1)[0],
        last_status=_text(detail, "lastStatus", required=True),
        desired_status=_text(detail, "desiredStatus"),
        pull_started_at=_moment(detail, "pullStartedAt"),
        pull_stopped_at=_moment(detail, "pullStoppedAt"),
        containers=tuple(
            ContainerImage(_text(c, "image"), _text(c, "imageDigest"))
            for c in containers
            if isinstance(c, Mapping) and c.get("image")
        ),
    )


def _first_resource(event: Mapping[str, object]) -> str:
    resources = event.get("resources")
    if isinstance(resources, list) and resources and isinstance(resources[0], str):
        return resources[0]
    return ""


def _text(fields: Mapping[str, object], key: str, *, required: bool = False) -> str:
    value = fields.get(key, "")
    if not isinstance(value, str):
        raise InvalidEvent(f"{key} is not a string: {value!r}")
    if required and not value:
        raise InvalidEvent(f"the event's detail has no {key}")
    return value


def _moment(fields: Mapping[str, object], key: str) -> datetime | None:
    return parse_event_time(_text(fields, key), key)


# ---- The entry point -------------------------------------------------------------------------


def _load_cold_start_config() -> MonitorConfig:
    try:
        return load_config(os.environ)
    except ConfigurationError as exc:
        Logger(settings.DEFAULT_PULL_TIME_SERVICE, name=_LOGGER_NAME).error(
            "configuration rejected at cold start", problems=exc.problems
        )
        raise


_LOGGER_NAME = "soci_indexer.pull_time_monitor"
CONFIG = _load_cold_start_config()
LOGGER = Logger(CONFIG.service_name, level=CONFIG.log_level, name=_LOGGER_NAME)


def handler(event: object, context: LambdaContext | None) -> dict[str, object]:
    """The Lambda handler: one EventBridge event per invocation, never raises for an event."""
    return process_event(event, context)


def process_event(
    event: object, context: LambdaContext | None, *, config: MonitorConfig | None = None
) -> dict[str, object]:
    """Record one task event: ``PullSeconds`` for a task that reached RUNNING, and
    ``TaskEvents`` (by reason) for every event. Returns what was recorded."""
    config = config or CONFIG
    metrics = Metrics(config.metrics_namespace, config.service_name, level=config.log_level)
    LOGGER.clear_keys()
    # Lambda always passes a context; a test harness or a local run may not.
    LOGGER.append_keys(request_id=getattr(context, "aws_request_id", ""))
    try:
        try:
            task = parse_task_event(event)
        except InvalidEvent as exc:
            metrics.add(settings.METRIC_TASK_EVENTS, Unit.COUNT, 1, reason=PullState.INVALID)
            LOGGER.error("event not recorded", reason=str(PullState.INVALID), error=str(exc))
            return {"state": str(PullState.INVALID), "error": str(exc)}
        state = task.state
        metrics.add(settings.METRIC_TASK_EVENTS, Unit.COUNT, 1, reason=state)
        summary: dict[str, object] = {
            "task": task.task_arn,
            "cluster": task.cluster,
            "family": task.family,
            "state": str(state),
            "pull_seconds": task.pull_seconds,
            "soci": runs_soci(task, config),
        }
        if state is PullState.PULLED and task.pull_seconds is not None:
            metrics.add(
                settings.METRIC_PULL_SECONDS,
                Unit.SECONDS,
                task.pull_seconds,
                dimensions={
                    "soci": "true" if summary["soci"] else "false",
                    "cluster": task.cluster,
                    "family": task.family,
                },
            )
        LOGGER.info(
            "task pull recorded" if state is PullState.PULLED else "task event counted",
            last_status=task.last_status,
            images=[c.image for c in task.containers],
            **summary,
        )
        return summary
    finally:
        metrics.flush()
