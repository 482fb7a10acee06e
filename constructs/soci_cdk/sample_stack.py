"""The stack ``app.py`` synthesizes: both ways to a SOCI-enabled image, each run by a
Fargate task every five minutes. Push-time: a SOCI-ready repository and its index
builder. Deploy-time: a ``SociImage`` of a ``DockerImageAsset`` (``sample_image/``),
indexed while the stack deploys.

Everything is configured through context values (``cdk.json`` or ``-c key=value``);
the defaults synthesize as they are, with no AWS credentials and no lookups.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from constructs import Construct, Node

from soci_cdk import _checks
from soci_cdk.backfill import Backfill
from soci_cdk.dashboard import SociDashboard
from soci_cdk.errors import InvalidPropError
from soci_cdk.fargate_task import SociFargateTask
from soci_cdk.index_builder import SociIndexBuilder
from soci_cdk.pull_time_monitor import PullTimeMonitor
from soci_cdk.repository import SociRepository
from soci_cdk.soci_image import SociImage

CONTEXT_REPOSITORY_NAME_FILTERS = "repository_name_filters"
CONTEXT_TAG_FILTERS = "tag_filters"
CONTEXT_IMAGE_TAG = "image_tag"
CONTEXT_SCHEDULE = "schedule"
DEFAULT_IMAGE_TAG = "v1"
DEFAULT_SCHEDULE = "rate(5 minutes)"
NO_SCHEDULE = "none"
# Copied into cdk.out at synth (no Docker); built and pushed by `cdk deploy`.
SAMPLE_IMAGE_DIRECTORY = Path(__file__).resolve().parent / "sample_image"


@dataclass(frozen=True)
class SampleSettings:
    """What the sample stack reads from context."""

    repository_name_filters: tuple[str, ...] = ()
    tag_filters: tuple[str, ...] = ()
    image_tag: str = DEFAULT_IMAGE_TAG
    schedule: str = DEFAULT_SCHEDULE

    @classmethod
    def from_context(cls, node: Node) -> SampleSettings:
        """Lists come as JSON lists (cdk.json) or comma-separated text (``-c``)."""
        return cls(
            repository_name_filters=_as_list(node, CONTEXT_REPOSITORY_NAME_FILTERS),
            tag_filters=_as_list(node, CONTEXT_TAG_FILTERS),
            image_tag=_as_text(node, CONTEXT_IMAGE_TAG) or DEFAULT_IMAGE_TAG,
            schedule=_as_text(node, CONTEXT_SCHEDULE) or DEFAULT_SCHEDULE,
        )


class SociSampleStack(Stack):
    """Push an image to the repository; a minute later ``<tag>-soci`` exists and the
    scheduled task starts it with lazy loading."""

    def __init__(self, scope: Construct, id: str, **kwargs: Any) -> None:
        super().__init__(
            scope,
            id,
            description="soci-fargate sample: push-time and deploy-time SOCI indexing, "
            "and a Fargate task for each",
            **kwargs,
        )
        config = SampleSettings.from_context(self.node)
        self.builder = SociIndexBuilder(
            self,
            "IndexBuilder",
            repositories=[],
            repository_name_filters=list(config.repository_name_filters) or None,
            tag_filters=list(config.tag_filters) or None,
            # Images already in matched repositories (say, with -c repositoryNameFilters=...)
            # are queued at deploy, like pushes: the last 30 days, at most 100.
            backfill=Backfill(),
        )
        self.repository = SociRepository(self, "Repository", builder=self.builder)
        # Public subnets only: tasks reach ECR through a public IP, no NAT gateway to pay for.
        self.vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=2,
            nat_gateways=0,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="Public", subnet_type=ec2.SubnetType.PUBLIC)
            ],
            flow_logs={"FlowLogs": ec2.FlowLogOptions()},
        )
        self.cluster = ecs.Cluster(
            self, "Cluster", vpc=self.vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
        )
        schedule = _schedule(self, config.schedule)
        self.task = SociFargateTask(
            self,
            "SampleTask",
            repository=self.repository,
            image_tag=config.image_tag,
            cluster=self.cluster,
            schedule=schedule,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            assign_public_ip=True,
            log_retention=logs.RetentionDays.ONE_WEEK,
        )
        # Deploy-time: the image is built and pushed by `cdk deploy` (to the CDK bootstrap
        # repository), indexed by the custom resource, and run by its digest.
        self.asset = ecr_assets.DockerImageAsset(
            self, "SampleImage", directory=str(SAMPLE_IMAGE_DIRECTORY)
        )
        self.soci_image = SociImage.from_docker_image_asset(self, "SampleSociImage", self.asset)
        self.deploy_time_task = SociFargateTask(
            self,
            "DeployTimeTask",
            image=self.soci_image,
            cluster=self.cluster,
            schedule=schedule,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            assign_public_ip=True,
            log_retention=logs.RetentionDays.ONE_WEEK,
        )
        # The win, measured: every task's pull time, SOCI-enabled or plain, on a dashboard.
        # Tasks on the builder's -soci tags count as SOCI-enabled by their tag; the
        # deploy-time task runs a digest, which the monitor learns from the SociImage.
        self.monitor = PullTimeMonitor(
            self,
            "PullTimes",
            clusters=[self.cluster],
            builder=self.builder,
            soci_image_digests=[self.soci_image.image_digest],
        )
        self.dashboard = SociDashboard(
            self, "Dashboard", monitor=self.monitor, builder=self.builder
        )
        self._add_outputs(config)

    def _add_outputs(self, config: SampleSettings) -> None:
        CfnOutput(
            self,
            "PushImage",
            description="Tag and push an image here; the builder then writes the -soci tag",
            value=self.repository.repository_uri_for_tag(config.image_tag),
        )
        CfnOutput(
            self,
            "SociImage",
            description="The SOCI-enabled image the task runs",
            value=self.repository.repository_uri_for_tag(self.task.image_tag or ""),
        )
        CfnOutput(
            self,
            "DeployTimeSociImage",
            description="The SOCI-enabled image of the sample asset, indexed at deploy time",
            value=self.soci_image.image_uri,
        )
        CfnOutput(
            self,
            "PullTimesCommand",
            description="Image pull durations of the cluster's recent tasks",
            value=f"soci-indexer pull-times --cluster {self.cluster.cluster_name} "
            f"--region {self.region}",
        )
        CfnOutput(
            self,
            "LazyLoadingCheck",
            description="How to tell that Fargate lazy-loaded the image",
            value="Inside the task, GET ${ECS_CONTAINER_METADATA_URI_V4}/task reports "
            '"Snapshotter": "soci" ("overlayfs" means the whole image was pulled)',
        )
        CfnOutput(
            self,
            "DeadLetterQueue",
            description="Images that could not be indexed after retries",
            value=self.builder.dead_letter_queue.queue_url,
        )


def _schedule(scope: Construct, text: str) -> scheduler.ScheduleExpression | None:
    """``rate(...)``, ``cron(...)`` or ``at(...)``; ``none`` turns the schedule off."""
    if text == NO_SCHEDULE:
        return None
    if not text.endswith(")") or not text.startswith(("rate(", "cron(", "at(")):
        raise InvalidPropError(
            scope.node.path,
            f"context {CONTEXT_SCHEDULE}",
            text,
            f'an EventBridge Scheduler expression such as "{DEFAULT_SCHEDULE}", or "{NO_SCHEDULE}"',
        )
    return scheduler.ScheduleExpression.expression(text)


def _as_text(node: Node, key: str) -> str:
    """A string context value, or "" when unset; anything else is refused."""
    value = node.try_get_context(key)
    if value is None:
        return ""
    _checks.check_str(node.path, f"context {key}", value)
    return str(value).strip()


def _as_list(node: Node, key: str) -> tuple[str, ...]:
    """A JSON list of strings, or comma-separated text; anything else is refused."""
    value = node.try_get_context(key)
    if value is None:
        return ()
    if isinstance(value, str):
        value = value.split(",")
    _checks.check_str_list(node.path, f"context {key}", value)
    items: Sequence[str] = value
    return tuple(item.strip() for item in items if item.strip())
