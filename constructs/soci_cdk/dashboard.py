"""SociDashboard: the win (pull time, SOCI-enabled against plain) next to the indexer's health.

One CloudWatch dashboard. With a ``PullTimeMonitor``: pull time p50 and p90
of SOCI-enabled and plain tasks, side by side, and what the task events said.
With a ``SociIndexBuilder``: indexing outcomes (skipped by reason), the time
from a push to its ``<tag><suffix>``, bytes indexed per second, the
dead-letter queue's depth and the builder's alarms.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from constructs import Construct

from soci_cdk import _checks
from soci_cdk.errors import InvalidPropError
from soci_cdk.index_builder import SociIndexBuilder
from soci_cdk.pull_time_monitor import PullTimeMonitor

PERIOD = Duration.minutes(5)
HEIGHT = 6
SECONDS_AXIS = cloudwatch.YAxisProps(label="seconds", min=0, show_units=False)
COUNT_AXIS = cloudwatch.YAxisProps(label="count", min=0, show_units=False)


class SociDashboard(Construct):
    """A CloudWatch dashboard for a ``PullTimeMonitor``, a ``SociIndexBuilder``, or both."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        monitor: PullTimeMonitor | None = None,
        builder: SociIndexBuilder | None = None,
        dashboard_name: str | None = None,
    ) -> None:
        """Create the dashboard.

        :param monitor: its pull-time widgets. Default: none.
        :param builder: its indexing widgets. Default: none. One of the two is needed.
        :param dashboard_name: the dashboard's name. Default: one CloudFormation generates.
        """
        super().__init__(scope, id)
        _checks.check_instance(self, "monitor", monitor, PullTimeMonitor, optional=True)
        _checks.check_instance(self, "builder", builder, SociIndexBuilder, optional=True)
        _checks.check_str(self, "dashboard_name", dashboard_name, optional=True)
        if monitor is None and builder is None:
            raise InvalidPropError(
                self.node.path, "monitor", None, "a PullTimeMonitor, a SociIndexBuilder, or both"
            )
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=dashboard_name,
            default_interval=Duration.days(1),
        )
        if monitor is not None:
            self.dashboard.add_widgets(*pull_time_widgets(monitor))
        if builder is not None:
            self.dashboard.add_widgets(*indexing_widgets(builder))
            self.dashboard.add_widgets(*health_widgets(builder))


def pull_time_widgets(monitor: PullTimeMonitor) -> list[cloudwatch.IWidget]:
    """Pull time p50/p90, SOCI-enabled against plain; the same as two numbers; task events."""

    def pulls(soci: bool, percentile: int) -> cloudwatch.Metric:
        kind = "SOCI-enabled" if soci else "plain"
        return monitor.metric_pull_seconds(
            soci=soci,
            statistic=cloudwatch.Stats.p(percentile),
            label=f"{kind} p{percentile}",
            color=_COLORS[(soci, percentile)],
        )

    return [
        cloudwatch.GraphWidget(
            title="Image pull time: SOCI-enabled and plain images (p50, p90)",
            left=[pulls(True, 50), pulls(True, 90), pulls(False, 50), pulls(False, 90)],
            left_y_axis=SECONDS_AXIS,
            width=12,
            height=HEIGHT,
        ),
        cloudwatch.SingleValueWidget(
            title="Pull time p50 over the dashboard's time range",
            metrics=[pulls(True, 50), pulls(False, 50)],
            set_period_to_time_range=True,
            width=6,
            height=HEIGHT,
        ),
        cloudwatch.GraphWidget(
            title="Task events, by what they say of the pull",
            left=[
                _by_dimension(
                    monitor.metrics_namespace,
                    monitor.service_name,
                    "TaskEvents",
                    "reason",
                    "${PROP('Dim.reason')}",
                )
            ],
            left_y_axis=COUNT_AXIS,
            stacked=True,
            width=6,
            height=HEIGHT,
        ),
    ]


def indexing_widgets(builder: SociIndexBuilder) -> list[cloudwatch.IWidget]:
    """Outcomes (skipped by reason), push to ``<tag><suffix>``, bytes indexed per second."""
    return [
        cloudwatch.GraphWidget(
            title="Indexing outcomes: indexed, failed, skipped by reason",
            left=[
                builder.metric_images_indexed(label="indexed"),
                builder.metric_images_failed(label="failed"),
                _by_dimension(
                    builder.metrics_namespace,
                    builder.service_name,
                    "ImagesSkipped",
                    "reason",
                    "skipped ${PROP('Dim.reason')}",
                ),
            ],
            left_y_axis=COUNT_AXIS,
            width=8,
            height=HEIGHT,
        ),
        cloudwatch.GraphWidget(
            title=f"Time from push to <tag>{builder.tag_suffix}",
            left=[
                builder.metric_push_to_soci_seconds(label="p50"),
                builder.metric_push_to_soci_seconds(statistic=cloudwatch.Stats.p(90), label="p90"),
                builder.metric_push_to_soci_seconds(
                    statistic=cloudwatch.Stats.MAXIMUM, label="max"
                ),
            ],
            left_y_axis=SECONDS_AXIS,
            width=8,
            height=HEIGHT,
        ),
        cloudwatch.GraphWidget(
            title="Bytes indexed per second of building",
            left=[builder.metric_bytes_indexed_per_second()],
            left_y_axis=cloudwatch.YAxisProps(label="bytes/s", min=0, show_units=False),
            width=8,
            height=HEIGHT,
        ),
    ]


def health_widgets(builder: SociIndexBuilder) -> list[cloudwatch.IWidget]:
    """The dead-letter queue's depth and the state of the builder's alarms."""
    return [
        cloudwatch.GraphWidget(
            title="Dead-letter queue depth",
            left=[
                builder.dead_letter_queue.metric_approximate_number_of_messages_visible(
                    statistic=cloudwatch.Stats.MAXIMUM, period=PERIOD, label="messages"
                )
            ],
            left_y_axis=COUNT_AXIS,
            width=8,
            height=HEIGHT,
        ),
        cloudwatch.AlarmStatusWidget(
            title="Alarms",
            alarms=list(builder.alarms),
            width=16,
            height=HEIGHT,
        ),
    ]


def _by_dimension(
    namespace: str, service: str, metric_name: str, dimension: str, label: str
) -> cloudwatch.MathExpression:
    """One line per value of ``dimension`` (a CloudWatch search), summed per period."""
    schema = f'{{"{namespace}",service,{dimension}}}'
    query = f'{schema} MetricName="{metric_name}" service="{service}"'
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{query}', 'Sum', {int(PERIOD.to_seconds())})",
        using_metrics={},
        label=label,
        period=PERIOD,
    )


_COLORS = {
    (True, 50): cloudwatch.Color.GREEN,
    (True, 90): "#98df8a",
    (False, 50): cloudwatch.Color.ORANGE,
    (False, 90): "#ffbb78",
}
