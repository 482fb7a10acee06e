"""PullTimeMonitor: every ECS task's image pull time, SOCI-enabled or plain, as a metric.

ECS "Task State Change" events of the chosen clusters -> EventBridge rule ->
a small Lambda function (``soci_indexer.aws.pull_time_monitor``, standard
library only, from the indexer's asset) -> ``PullSeconds`` in EMF, with the
dimensions ``soci``, ``cluster`` and ``family``. No API call, no permission
beyond writing its own logs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Unpack

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from soci_indexer import settings

from soci_cdk import _checks
from soci_cdk._function import indexer_function, log_writing_role
from soci_cdk.errors import InvalidPropError
from soci_cdk.index_builder import (
    MetricOptions,
    check_metric_names,
    default_service_name,
    service_metric,
)
from soci_cdk.interfaces import ISociIndexBuilder

HANDLER = settings.PULL_TIME_MONITOR_HANDLER
MEMORY_SIZE_MIB = 256
TIMEOUT_SECONDS = 30
# A task sends its RUNNING event once it is up; STOPPED events are only wanted for tasks that
# never finished a pull (the others were recorded when RUNNING). Pending-phase events
# (PROVISIONING, PENDING, ACTIVATING) say nothing about the pull and are left out.
RUNNING_OR_STOPPED_BEFORE_PULL = [
    {"lastStatus": ["RUNNING"], "desiredStatus": ["RUNNING"]},
    {"lastStatus": ["STOPPED"], "pullStoppedAt": [{"exists": False}]},
]
DIGEST_EXPECTED = "image digests such as 'sha256:<64 hex digits>'"


class PullTimeMonitor(Construct):
    """Records the image pull time of every task that reaches RUNNING in the given clusters.

    A task counts as SOCI-enabled when one of its containers runs an image tagged
    ``<tag><tag_suffix>`` or pinned to one of ``soci_image_digests`` (README,
    "Measuring the win", says where that rule can be wrong).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        clusters: Sequence[ecs.ICluster] | None = None,
        builder: ISociIndexBuilder | None = None,
        tag_suffix: str | None = None,
        soci_image_digests: Sequence[str] = (),
        metrics_namespace: str = settings.DEFAULT_PULL_TIME_NAMESPACE,
        service_name: str | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
    ) -> None:
        """Create the rule, the function and its log group.

        :param clusters: the ECS clusters to watch. Default: every cluster of the
            stack's account and region.
        :param builder: the ``SociIndexBuilder`` whose output tags mark a
            SOCI-enabled image; its ``tag_suffix`` is used. Default: none.
        :param tag_suffix: the suffix of SOCI-enabled image tags. Default: the
            builder's, or ``"-soci"``.
        :param soci_image_digests: digests of images known to be SOCI-enabled
            (what a task definition pins, e.g. ``SociImage``'s digest). Default: none.
        :param metrics_namespace: CloudWatch namespace of ``PullSeconds`` and
            ``TaskEvents``. Default: ``SociPullTimes``.
        :param service_name: the ``service`` dimension. Default: the construct path.
        :param log_retention: how long the function's logs are kept. Default: one month.
        """
        super().__init__(scope, id)
        _checks.check_instance_list(self, "clusters", clusters, ecs.ICluster, optional=True)
        if builder is not None and not isinstance(builder, ISociIndexBuilder):
            raise InvalidPropError(self.node.path, "builder", builder, "a SociIndexBuilder")
        _checks.check_str(self, "tag_suffix", tag_suffix, optional=True)
        _checks.check_str_list(self, "soci_image_digests", soci_image_digests)
        _checks.check_str(self, "metrics_namespace", metrics_namespace)
        _checks.check_str(self, "service_name", service_name, optional=True)
        _checks.check_instance(self, "log_retention", log_retention, logs.RetentionDays)
        if builder is not None and tag_suffix is not None and tag_suffix != builder.tag_suffix:
            raise InvalidPropError(
                self.node.path,
                "tag_suffix",
                tag_suffix,
                f"the builder's suffix {builder.tag_suffix!r}, or no tag_suffix",
            )
        self.tag_suffix = tag_suffix or (
            builder.tag_suffix if builder is not None else settings.DEFAULT_TAG_SUFFIX
        )
        self.metrics_namespace = metrics_namespace
        self.service_name = service_name or default_service_name(self)
        self._check_props(soci_image_digests)

        self.log_group = logs.LogGroup(self, "LogGroup", retention=log_retention)
        # Our own role: the default one carries a managed policy with logs:* on every group.
        self.role = log_writing_role(
            self,
            "ServiceRole",
            self.log_group,
            "Writes the image pull times of ECS tasks to its log group (EMF)",
        )
        self.function = indexer_function(
            self,
            "Function",
            handler=HANDLER,
            description="Records the image pull time of ECS tasks, SOCI-enabled or plain",
            role=self.role,
            log_group=self.log_group,
            memory_size_mib=MEMORY_SIZE_MIB,
            timeout=Duration.seconds(TIMEOUT_SECONDS),
            environment={
                settings.ENV_TAG_SUFFIX: self.tag_suffix,
                settings.ENV_SOCI_DIGESTS: ",".join(soci_image_digests),
                settings.ENV_METRICS_NAMESPACE: metrics_namespace,
                settings.ENV_SERVICE_NAME: self.service_name,
                settings.ENV_LOG_LEVEL: settings.DEFAULT_LOG_LEVEL,
            },
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
        )
        detail: dict[str, object] = {"$or": RUNNING_OR_STOPPED_BEFORE_PULL}
        if clusters is not None:
            detail["clusterArn"] = [cluster.cluster_arn for cluster in clusters]
        self.rule = events.Rule(
            self,
            "Rule",
            description="ECS tasks that reached RUNNING, or stopped before their image pull ended",
            event_pattern=events.EventPattern(
                source=[settings.ECS_EVENT_SOURCE],
                detail_type=[settings.ECS_TASK_STATE_CHANGE],
                detail=detail,
            ),
        )
        self.rule.add_target(
            targets.LambdaFunction(self.function, retry_attempts=2, max_event_age=Duration.hours(1))
        )

    def _check_props(self, soci_image_digests: Sequence[str]) -> None:
        _checks.check_pattern(
            self,
            "tag_suffix",
            self.tag_suffix,
            settings.TAG_SUFFIX,
            settings.TAG_SUFFIX_EXPECTED,
        )
        for digest in soci_image_digests:
            _checks.check_pattern(
                self, "soci_image_digests", digest, settings.DIGEST, DIGEST_EXPECTED
            )
        check_metric_names(self, self.metrics_namespace, self.service_name)

    # ----------------------------------------------------------------- metrics

    def metric(self, metric_name: str, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """One of the monitor's EMF metrics, under its ``service`` dimension (sum, 5 minutes)."""
        return service_metric(self.metrics_namespace, self.service_name, metric_name, options)

    def metric_pull_seconds(
        self,
        *,
        soci: bool | None = None,
        cluster: str | None = None,
        family: str | None = None,
        **options: Unpack[MetricOptions],
    ) -> cloudwatch.Metric:
        """Image pull seconds of tasks that reached RUNNING (median by default).

        ``soci`` narrows to SOCI-enabled (True) or plain (False) tasks; with it,
        ``cluster`` (a cluster name) and then ``family`` narrow further. The handler
        publishes exactly these levels, so ``family`` needs ``cluster`` and ``soci``.
        """
        levels = {"soci": None if soci is None else str(soci).lower()}
        levels.update(cluster=cluster, family=family)
        dimensions: dict[str, str] = {}
        for key, value in levels.items():
            if value is None:
                break
            dimensions[key] = value
        given = [key for key, value in levels.items() if value is not None]
        if given != list(dimensions):
            raise InvalidPropError(
                self.node.path,
                "metric_pull_seconds",
                ", ".join(given),
                "soci, then cluster, then family: each needs the ones before it",
            )
        options["dimensions_map"] = {**dimensions, **options.get("dimensions_map", {})}
        options.setdefault("statistic", cloudwatch.Stats.p(50))
        return self.metric(settings.METRIC_PULL_SECONDS, **options)

    def metric_task_events(
        self, reason: str | None = None, **options: Unpack[MetricOptions]
    ) -> cloudwatch.Metric:
        """Task events received (sum); ``reason``: pulled, pending, not-pulled, not-running,
        invalid-event. Default: all of them."""
        if reason is not None:
            options["dimensions_map"] = {"reason": reason, **options.get("dimensions_map", {})}
        return self.metric(settings.METRIC_TASK_EVENTS, **options)
