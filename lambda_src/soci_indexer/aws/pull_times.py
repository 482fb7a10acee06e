"""Image pull durations of recent ECS tasks: the number that says whether SOCI helps.

ECS records when a task started and stopped pulling its images
(``pullStartedAt``/``pullStoppedAt`` in ``DescribeTasks``); the difference is
what lazy loading shortens. This is what an operator runs to diagnose slow
starts, before and after indexing an image.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, TypeVar

from soci_indexer.aws.soci_enabled import is_soci_image
from soci_indexer.errors import EcsError

if TYPE_CHECKING:
    from mypy_boto3_ecs import ECSClient
    from mypy_boto3_ecs.type_defs import TaskTypeDef

T = TypeVar("T")

PERCENTILES = (50, 90)

DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks per call
LISTED_PER_STATUS = 100  # recent RUNNING and STOPPED tasks looked at without --task
_COLUMNS = ("TASK", "DEFINITION", "LAUNCH", "STARTED", "PULL", "STATUS")


@dataclass(frozen=True, slots=True)
class TaskPull:
    """One task's image pull, as ``DescribeTasks`` reports it."""

    task_arn: str
    task_definition: str  # family:revision
    launch_type: str
    platform_version: str
    status: str  # lastStatus
    created_at: datetime | None
    started_at: datetime | None
    pull_started_at: datetime | None
    pull_stopped_at: datetime | None
    images: tuple[str, ...]
    image_digests: tuple[str, ...] = ()  # what ECS resolved the images to, where it says

    @property
    def task_id(self) -> str:
        return self.task_arn.rsplit("/", 1)[-1]

    @property
    def family(self) -> str:
        return self.task_definition.split(":", 1)[0]

    @property
    def pull_seconds(self) -> float | None:
        if self.pull_started_at is None or self.pull_stopped_at is None:
            return None
        return (self.pull_stopped_at - self.pull_started_at).total_seconds()

    @property
    def pull_state(self) -> str:
        """``done``; ``pending`` while it may still pull; ``not-pulled`` if it stopped first."""
        if self.pull_seconds is not None:
            return "done"
        return "not-pulled" if self.status == "STOPPED" else "pending"


@dataclass(frozen=True, slots=True)
class PullTimes:
    cluster: str
    tasks: tuple[TaskPull, ...]  # most recently created first
    failures: tuple[tuple[str, str], ...]  # (task ARN or id, reason) ECS could not describe


def collect(ecs: ECSClient, cluster: str, tasks: Sequence[str] | None = None) -> PullTimes:
    """Describe ``tasks`` (ARNs or ids), or the cluster's recent tasks when none are given."""
    wanted = list(dict.fromkeys(tasks)) if tasks else _recent_task_arns(ecs, cluster)
    found: list[TaskPull] = []
    failures: list[tuple[str, str]] = []
    for batch in _batches(wanted, DESCRIBE_BATCH):
        response = _call(partial(ecs.describe_tasks, cluster=cluster, tasks=batch))
        found.extend(_task_pull(task) for task in response.get("tasks", []))
        failures.extend(
            (failure.get("arn", ""), failure.get("reason", ""))
            for failure in response.get("failures", [])
        )
    found.sort(key=lambda task: task.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return PullTimes(cluster, tuple(found), tuple(failures))


def ecs_client(region: str | None) -> ECSClient:
    """A boto3 ECS client; boto3 is imported only here, when AWS is really needed."""
    try:
        import boto3
    except ImportError:
        raise EcsError("boto3 is needed for pull-times: pip install boto3") from None
    return _call(lambda: boto3.client("ecs", region_name=region))


def format_table(report: PullTimes) -> str:
    """A fixed-width table, one task per line, and a one-line summary of pull seconds."""
    rows = [_COLUMNS, *(_row(task) for task in report.tasks)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.extend(f"not found: {arn} ({reason})" for arn, reason in report.failures)
    lines.append(_summary(report))
    return "\n".join(lines)


def to_json(report: PullTimes) -> str:
    """The same facts as the table, machine-readable; times in ISO 8601 UTC."""
    document = {
        "cluster": report.cluster,
        "tasks": [
            {
                "task_id": task.task_id,
                "task_arn": task.task_arn,
                "task_definition": task.task_definition,
                "launch_type": task.launch_type,
                "platform_version": task.platform_version,
                "status": task.status,
                "created_at": _iso(task.created_at),
                "started_at": _iso(task.started_at),
                "pull_started_at": _iso(task.pull_started_at),
                "pull_stopped_at": _iso(task.pull_stopped_at),
                "pull_seconds": task.pull_seconds,
                "pull": task.pull_state,
                "images": list(task.images),
            }
            for task in report.tasks
        ],
        "failures": [{"task": arn, "reason": reason} for arn, reason in report.failures],
    }
    return json.dumps(document, indent=2)


# ---- Comparing two groups of tasks: the article's "70% less pull time" ---------------------


@dataclass(frozen=True, slots=True)
class Distribution:
    """The finished pulls of one group of tasks."""

    label: str
    tasks: tuple[TaskPull, ...]  # every task of the group, pulled or not

    @property
    def seconds(self) -> tuple[float, ...]:
        """Pull seconds of the tasks whose pull finished, shortest first."""
        return tuple(sorted(s for s in (t.pull_seconds for t in self.tasks) if s is not None))

    def percentile(self, percent: float) -> float | None:
        """Linear interpolation between the closest ranks (numpy's default); None if empty."""
        values = self.seconds
        if not values:
            return None
        rank = (len(values) - 1) * percent / 100
        low = int(rank)
        high = min(low + 1, len(values) - 1)
        return values[low] + (values[high] - values[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Comparison:
    """A baseline (plain images, or the family before) against a candidate (SOCI-enabled)."""

    cluster: str
    baseline: Distribution
    candidate: Distribution

    def reduction(self, percent: float) -> float | None:
        """How much shorter the candidate's pull is at ``percent``, in percent of the
        baseline's (negative: longer); None when a group has no finished pull."""
        before = self.baseline.percentile(percent)
        after = self.candidate.percentile(percent)
        if before is None or after is None or before == 0:
            return None
        return (1 - after / before) * 100

    @property
    def complete(self) -> bool:
        return bool(self.baseline.seconds and self.candidate.seconds)


def compare_soci(
    report: PullTimes, tag_suffix: str, soci_digests: Sequence[str] = ()
) -> Comparison:
    """Plain tasks against SOCI-enabled ones (the rule of ``aws.soci_enabled``)."""
    digests = frozenset(soci_digests)

    def soci(task: TaskPull) -> bool:
        return any(is_soci_image(image, "", tag_suffix, digests) for image in task.images) or any(
            digest in digests for digest in task.image_digests
        )

    return Comparison(
        report.cluster,
        Distribution("plain", tuple(t for t in report.tasks if not soci(t))),
        Distribution("SOCI-enabled", tuple(t for t in report.tasks if soci(t))),
    )


def compare_families(report: PullTimes, baseline: str, candidate: str) -> Comparison:
    """Two task definition families, or ``family:revision``s (before and after indexing)."""

    def of(selector: str) -> Distribution:
        exact = ":" in selector
        return Distribution(
            selector,
            tuple(
                t for t in report.tasks if (t.task_definition if exact else t.family) == selector
            ),
        )

    return Comparison(report.cluster, of(baseline), of(candidate))


def format_comparison(comparison: Comparison) -> str:
    """Both distributions, one line each, and the reduction the way the article reports it."""
    header = ("", "TASKS", "PULLED", "MIN", *(f"P{p}" for p in PERCENTILES), "MAX")
    rows = [header]
    for group in (comparison.baseline, comparison.candidate):
        seconds = group.seconds
        rows.append(
            (
                group.label,
                str(len(group.tasks)),
                str(len(seconds)),
                _seconds(seconds[0] if seconds else None),
                *(_seconds(group.percentile(p)) for p in PERCENTILES),
                _seconds(seconds[-1] if seconds else None),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    lines.append(_verdict(comparison))
    return "\n".join(lines)


def comparison_to_json(comparison: Comparison) -> str:
    def group(distribution: Distribution) -> dict[str, object]:
        seconds = distribution.seconds
        return {
            "label": distribution.label,
            "tasks": len(distribution.tasks),
            "pulled": len(seconds),
            "min": seconds[0] if seconds else None,
            **{f"p{p}": distribution.percentile(p) for p in PERCENTILES},
            "max": seconds[-1] if seconds else None,
            "pull_seconds": list(seconds),
            "task_ids": [t.task_id for t in distribution.tasks if t.pull_seconds is not None],
        }

    document = {
        "cluster": comparison.cluster,
        "baseline": group(comparison.baseline),
        "candidate": group(comparison.candidate),
        "reduction_percent": {f"p{p}": comparison.reduction(p) for p in PERCENTILES},
    }
    return json.dumps(document, indent=2)


def _verdict(comparison: Comparison) -> str:
    before, after = comparison.baseline, comparison.candidate
    missing = [g.label for g in (before, after) if not g.seconds]
    if missing:
        return "no comparison: " + " and ".join(missing) + " had no finished pull"
    parts = []
    for p in PERCENTILES:
        change = comparison.reduction(p)
        if change is None:
            continue
        how = f"{change:.0f}% less" if change >= 0 else f"{-change:.0f}% more"
        parts.append(
            f"{how} at p{p} ({_seconds(before.percentile(p))} -> {_seconds(after.percentile(p))})"
        )
    return f"{after.label} pulls took " + ", ".join(parts) + f" than {before.label}"


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _recent_task_arns(ecs: ECSClient, cluster: str) -> list[str]:
    arns: list[str] = []
    for status in ("RUNNING", "STOPPED"):
        response = _call(
            partial(
                ecs.list_tasks, cluster=cluster, desiredStatus=status, maxResults=LISTED_PER_STATUS
            )
        )
        arns.extend(response.get("taskArns", []))
    return list(dict.fromkeys(arns))


def _task_pull(task: TaskTypeDef) -> TaskPull:
    definition = task.get("taskDefinitionArn", "")
    return TaskPull(
        task_arn=task.get("taskArn", ""),
        task_definition=definition.rsplit("task-definition/", 1)[-1],
        launch_type=task.get("launchType", ""),
        platform_version=task.get("platformVersion", ""),
        status=task.get("lastStatus", ""),
        created_at=task.get("createdAt"),
        started_at=task.get("startedAt"),
        pull_started_at=task.get("pullStartedAt"),
        pull_stopped_at=task.get("pullStoppedAt"),
        images=tuple(c["image"] for c in task.get("containers", []) if "image" in c),
        image_digests=tuple(
            c["imageDigest"] for c in task.get("containers", []) if "imageDigest" in c
        ),
    )


def _row(task: TaskPull) -> tuple[str, ...]:
    seconds = task.pull_seconds
    return (
        task.task_id,
        task.task_definition,
        " ".join(part for part in (task.launch_type, task.platform_version) if part) or "-",
        _iso(task.started_at) or "-",
        f"{seconds:.1f} s" if seconds is not None else task.pull_state,
        task.status,
    )


def _summary(report: PullTimes) -> str:
    seconds = [s for s in (task.pull_seconds for task in report.tasks) if s is not None]
    if not seconds:
        return f"{len(report.tasks)} tasks, none with a finished pull"
    return (
        f"{len(report.tasks)} tasks, {len(seconds)} pulled: "
        f"median {statistics.median(seconds):.1f} s, max {max(seconds):.1f} s"
    )


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _batches(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def _call(request: Callable[[], T]) -> T:
    """Run one AWS call, turning botocore's errors into ``EcsError`` with AWS's own message."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return request()
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise EcsError(
            f"ECS refused: {error.get('Code', '?')}: {error.get('Message', '')}"
        ) from None
    except BotoCoreError as exc:
        raise EcsError(f"ECS call failed: {exc}") from None
