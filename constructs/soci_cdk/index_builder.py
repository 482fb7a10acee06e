"""SociIndexBuilder: every tagged image pushed to ECR gets a SOCI index, within minutes.

ECR push -> EventBridge rule (the filtering) -> SQS queue (buffering, retries)
-> Lambda function (the streaming indexer) -> the SOCI-enabled image is pushed
back to the same repository as ``<tag><suffix>``. A failed image raises an
alarm at once; its message is retried after minutes and, failing a few times,
lands in a dead-letter queue, which raises an alarm too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypedDict, Unpack, cast

import jsii
from aws_cdk import Annotations, ArnFormat, Duration, Names, Stack, Token, Tokenization
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IValidation
from soci_indexer import settings

from soci_cdk import _checks, _nag, event_pattern
from soci_cdk._function import indexer_function, log_writing_role
from soci_cdk.backfill import Backfill, BackfillRun
from soci_cdk.backfill import check as check_backfill
from soci_cdk.errors import InvalidPropError
from soci_cdk.interfaces import ISociRepository

HANDLER = settings.LAMBDA_HANDLER
# The newest Python the Lambda service, aws-cdk-lib and cfn-lint all know.
# Lambda gives one vCPU per 1769 MiB. Two vCPUs index 1.7x faster than one for
# about 14% more per byte (bench/sizing_bench.py; README, "Lambda memory and the
# largest image"): the speed sets the largest image one invocation can take.
MEMORY_SIZE_MIB = 3538
DEFAULT_TIMEOUT_MINUTES = 15
MAX_TIMEOUT_SECONDS = 900
# The handler stops 60 s before its timeout to fail cleanly; leave it time to work.
MIN_TIMEOUT_SECONDS = 120
DEFAULT_MAX_CONCURRENCY = 10
# An image that fails this many deliveries is parked in the dead-letter queue.
MAX_RECEIVE_COUNT = 3
# AWS guidance for SQS event sources: visibility timeout >= 6 x function timeout,
# so a message is not redelivered while a throttled or retried invocation may
# still be working on it (there is no batching window to add).
VISIBILITY_TIMEOUT_FACTOR = 6
LOG_LEVELS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARNING": "WARN", "ERROR": "ERROR"}


class MetricOptions(TypedDict, total=False):
    """``cloudwatch.MetricOptions`` as keyword arguments of the ``metric_*`` methods."""

    account: str
    color: str
    dimensions_map: Mapping[str, str]
    label: str
    period: Duration
    region: str
    stack_account: str
    stack_region: str
    statistic: str
    unit: cloudwatch.Unit
    visible: bool


# The registry API calls the indexer makes: read the image, upload zTOC blobs
# and manifests. ecr:GetAuthorizationToken has no resource-level permissions.
PULL_ACTIONS = ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
PUSH_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
)
# No KMS permission on repository keys: ECR encrypts and decrypts images through
# grants it creates on the key for the repository, so who pushes or pulls needs
# none (https://docs.aws.amazon.com/AmazonECR/latest/userguide/encryption-at-rest.html).
# Keeps targets.SqsQueue from giving EventBridge the queues' key with no condition:
# with it, the key policy statement requires aws:SourceAccount to be this account.
EVENTS_QUEUE_SAME_ACCOUNT = "@aws-cdk/aws-events:eventsTargetQueueSameAccount"
VPC_ACCESS_POLICY = "service-role/AWSLambdaVPCAccessExecutionRole"


@jsii.implements(IValidation)
class _PatternFits:
    """The rule's event pattern stays within EventBridge's size limit.

    Every repository and repository filter adds to the pattern, so about 60 of
    them exceed it, which CloudFormation would only report at deploy. Names
    known only at deploy (repositories created in the same stack) count as the
    length of their reference, so the check can pass a pattern that is too big
    at deploy, never the other way round.
    """

    def __init__(self, builder: SociIndexBuilder) -> None:
        self._builder = builder

    def validate(self) -> list[str]:
        builder = self._builder
        rule = cast(events.CfnRule, builder.rule.node.default_child)
        pattern = Stack.of(builder).resolve(rule.event_pattern)
        size = event_pattern.serialized_size(pattern)
        if size <= event_pattern.MAX_PATTERN_SIZE:
            return []
        names = pattern["detail"].get("repository-name", [])
        fit = event_pattern.names_that_fit(pattern)
        return [
            f"SociIndexBuilder's event pattern would be {size} characters, more than "
            f"EventBridge's limit of {event_pattern.MAX_PATTERN_SIZE}: {fit} of its "
            f"{len(names)} repositories and repository filters fit. Select repositories "
            "with a wildcard filter (team-a/*) instead of one by one, or split them "
            "between several SociIndexBuilders"
        ]


@jsii.implements(IValidation)
class _NoOverlap:
    """No repository is indexed by two builders of the same stack.

    Two builders that select the same repository and tag both index every push
    of it. With the same tag suffix they race to write the same ``<tag><suffix>``
    tag, each undoing the other's work: an error. With different suffixes the
    result is two SOCI-enabled images (v1 and v2 for instance), which may be
    deliberate but doubles the cost: a warning.
    """

    def __init__(self, builder: SociIndexBuilder) -> None:
        self._builder = builder

    def validate(self) -> list[str]:
        builder = self._builder
        stack = Stack.of(builder)
        builders = [
            found
            for found in stack.node.find_all()
            if isinstance(found, SociIndexBuilder) and Stack.of(found) is stack
        ]
        # Each pair is reported once, by the builder found first.
        errors = []
        for other in builders[builders.index(builder) + 1 :]:
            overlap = _overlap(builder, other)
            if overlap is None:
                continue
            repository, tag = overlap
            what = (
                f"SociIndexBuilders {builder.node.path} and {other.node.path} both index "
                f"tags {tag!r} of the repositories {repository!r}"
            )
            if builder.tag_suffix == other.tag_suffix:
                errors.append(
                    f"{what}, and both write {builder.tag_suffix!r} tags, which each undoes "
                    "the other's work: give them repository or tag filters that do not "
                    "overlap, or merge them"
                )
            else:
                Annotations.of(other).add_warning_v2(
                    "soci-fargate:overlapping-builders",
                    f"{what}: every push is indexed twice, once per tag suffix",
                )
        return errors


def _overlap(first: SociIndexBuilder, second: SociIndexBuilder) -> tuple[str, str] | None:
    """A repository selector and a tag selector both builders match, if any.

    A repository known only at deploy overlaps only with itself.
    """
    stack = Stack.of(first)

    def show(name: str) -> str:
        return str(stack.resolve(name)) if Token.is_unresolved(name) else name

    repositories = next(
        (
            show(mine)
            for mine in first._repository_selectors
            for theirs in second._repository_selectors
            if _names_overlap(stack, mine, theirs)
        ),
        None,
    )
    tags = next(
        (
            mine
            for mine in first._tag_selectors
            for theirs in second._tag_selectors
            if event_pattern.filters_overlap(mine, theirs)
        ),
        None,
    )
    return None if repositories is None or tags is None else (repositories, tags)


def _names_overlap(stack: Stack, first: str, second: str) -> bool:
    if event_pattern.matches_everything(first) or event_pattern.matches_everything(second):
        return True
    if Token.is_unresolved(first) or Token.is_unresolved(second):
        return bool(stack.resolve(first) == stack.resolve(second))
    return event_pattern.filters_overlap(first, second)


@jsii.implements(IValidation)
class _IndexesSomething:
    """A builder scoped to repositories must end up with at least one of them."""

    def __init__(self, builder: SociIndexBuilder) -> None:
        self._builder = builder

    def validate(self) -> list[str]:
        if self._builder.indexes_every_repository or self._builder.repository_count:
            return []
        return [
            "SociIndexBuilder indexes no repository: pass repositories or "
            "repository_name_filters, call add_repository(), or leave both unset "
            "to index every repository of the account and region"
        ]


class SociIndexBuilder(Construct):
    """Builds a SOCI index for every tagged image pushed to the selected ECR repositories.

    The SOCI-enabled image is pushed to the same repository under
    ``<tag><tag_suffix>`` (default ``<tag>-soci``); Fargate task definitions
    reference that tag to start with lazy loading. Nothing has a physical name,
    so several builders fit in one account.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        repositories: Sequence[ecr.IRepository] | None = None,
        repository_name_filters: Sequence[str] | None = None,
        tag_filters: Sequence[str] | None = None,
        index_version: str = settings.DEFAULT_INDEX_VERSION,
        tag_suffix: str = settings.DEFAULT_TAG_SUFFIX,
        min_layer_size_bytes: int = settings.DEFAULT_MIN_LAYER_SIZE,
        span_size_bytes: int = settings.DEFAULT_SPAN_SIZE,
        platforms: Sequence[str] = (),
        max_layer_workers: int = settings.DEFAULT_MAX_LAYER_WORKERS,
        blob_connections: int = settings.DEFAULT_BLOB_CONNECTIONS,
        range_size_bytes: int = settings.DEFAULT_RANGE_SIZE,
        memory_size_mib: int = MEMORY_SIZE_MIB,
        timeout: Duration | None = None,
        architecture: lambda_.Architecture | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        reserved_concurrency: int | None = None,
        encryption_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_level: str = settings.DEFAULT_LOG_LEVEL,
        metrics_namespace: str = settings.DEFAULT_METRICS_NAMESPACE,
        service_name: str | None = None,
        alarm_topic: sns.ITopic | None = None,
        vpc: ec2.IVpc | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] | None = None,
        backfill: Backfill | None = None,
    ) -> None:
        """Create the rule, the queues, the function and the alarms.

        :param repositories: repositories to index. Default: with neither this
            nor ``repository_name_filters``, every repository of the stack's
            account and region.
        :param repository_name_filters: repository names, ``*`` as a wildcard
            (``team-a/*``). Default: see ``repositories``.
        :param tag_filters: image tags to index, ``*`` as a wildcard
            (``v*``, ``release-*``). Default: every tag.
        :param index_version: ``"v2"`` (SOCI index manifest v2, what Fargate
            needs for new users) or ``"v1"`` (legacy). Default: ``"v2"``.
        :param tag_suffix: appended to the pushed tag to name the SOCI-enabled
            image. Default: ``"-soci"``.
        :param min_layer_size_bytes: smaller layers are not indexed (they load
            fast anyway). Default: 10 MiB.
        :param span_size_bytes: uncompressed bytes between two zTOC checkpoints.
            Default: 4 MiB.
        :param platforms: ``os/arch[/variant]`` to index in multi-platform
            images. Default: every platform.
        :param max_layer_workers: layers indexed at once per image. Default: 4.
        :param blob_connections: connections fetching one layer in ranges, 1 to
            16 (1: one stream). Default: 4.
        :param range_size_bytes: bytes per ranged request, 256 KiB to 64 MiB; a
            layer holds at most ``blob_connections`` of them in memory.
            Default: 8 MiB.
        :param memory_size_mib: Lambda memory. Default: 3538 MiB (two vCPUs).
        :param timeout: Lambda timeout, 2 to 15 minutes. Default: 15 minutes.
        :param architecture: Lambda architecture. Default: ARM64.
        :param max_concurrency: most images indexed at once (SQS event source
            maximum concurrency, 2 to 1000). Default: 10.
        :param reserved_concurrency: concurrency reserved for the function, at
            least ``max_concurrency``. Default: none reserved.
        :param encryption_key: KMS key for the queues and the log group.
            Default: SQS-managed encryption and CloudWatch Logs' own.
        :param log_retention: how long the function's logs are kept. Default: one month.
        :param log_level: ``DEBUG``, ``INFO``, ``WARNING`` or ``ERROR``. Default: ``INFO``.
        :param metrics_namespace: CloudWatch namespace of the builder's metrics.
            Default: ``SociIndexBuilder``.
        :param service_name: the ``service`` dimension of the metrics and the
            ``service`` field of the logs. Default: the builder's construct path
            (``MyStack/Builder``), so two builders never mix their metrics.
        :param alarm_topic: SNS topic the alarms notify. Default: alarms only.
        :param vpc: VPC to run the function in; it then needs a route to ECR and
            S3 (README, "Running the builder in a VPC"). Default: no VPC.
        :param vpc_subnets: subnets of ``vpc`` for the function. Default: the
            VPC's private subnets.
        :param security_groups: security groups of the function. Default: a new
            one with no inbound rule.
        :param backfill: at deploy, queue the images already in the repositories
            (``Backfill(max_age=..., max_images=...)``), again whenever the
            repositories, the tag filters or these settings change. Default: only
            pushes after the deploy are indexed.
        """
        super().__init__(scope, id)
        self.node.set_context(EVENTS_QUEUE_SAME_ACCOUNT, True)
        self._check_types(
            repositories=repositories,
            repository_name_filters=repository_name_filters,
            tag_filters=tag_filters,
            index_version=index_version,
            platforms=platforms,
            timeout=timeout,
            architecture=architecture,
            encryption_key=encryption_key,
            log_retention=log_retention,
            log_level=log_level,
            alarm_topic=alarm_topic,
            vpc=vpc,
            vpc_subnets=vpc_subnets,
            security_groups=security_groups,
            backfill=backfill,
        )
        self.tag_suffix = tag_suffix
        self.metrics_namespace = metrics_namespace
        self.service_name = default_service_name(self) if service_name is None else service_name
        timeout = timeout or Duration.minutes(DEFAULT_TIMEOUT_MINUTES)
        self._check_props(
            tag_filters=tag_filters or (),
            index_version=index_version,
            min_layer_size_bytes=min_layer_size_bytes,
            span_size_bytes=span_size_bytes,
            platforms=platforms,
            max_layer_workers=max_layer_workers,
            blob_connections=blob_connections,
            range_size_bytes=range_size_bytes,
            memory_size_mib=memory_size_mib,
            timeout=timeout,
            max_concurrency=max_concurrency,
            reserved_concurrency=reserved_concurrency,
            log_level=log_level,
        )
        scoped = repositories is not None or repository_name_filters is not None
        self.indexes_every_repository = not scoped or any(
            event_pattern.matches_everything(name) for name in repository_name_filters or ()
        )
        self.repository_count = 0
        # What the rule selects, for the checks of the whole stack at synth.
        self._repository_selectors: list[str] = ["*"] if self.indexes_every_repository else []
        self._tag_selectors = ["*"] if _all_tags(tag_filters) else list(tag_filters or ())

        self.log_group = self._make_log_group(log_retention, encryption_key)
        self.dead_letter_queue, self.queue = self._make_queues(timeout, encryption_key)
        self.function = self._make_function(
            environment={
                settings.ENV_INDEX_VERSION: index_version,
                settings.ENV_TAG_SUFFIX: tag_suffix,
                settings.ENV_MIN_LAYER_SIZE: Tokenization.stringify_number(min_layer_size_bytes),
                settings.ENV_SPAN_SIZE: Tokenization.stringify_number(span_size_bytes),
                settings.ENV_PLATFORMS: ",".join(platforms),
                settings.ENV_BUILD_TOOL: settings.DEFAULT_BUILD_TOOL,
                settings.ENV_MAX_WORKERS: Tokenization.stringify_number(max_layer_workers),
                settings.ENV_BLOB_CONNECTIONS: Tokenization.stringify_number(blob_connections),
                settings.ENV_RANGE_SIZE: Tokenization.stringify_number(range_size_bytes),
                settings.ENV_METRICS_NAMESPACE: metrics_namespace,
                settings.ENV_SERVICE_NAME: self.service_name,
                settings.ENV_LOG_LEVEL: log_level,
            },
            memory_size_mib=memory_size_mib,
            timeout=timeout,
            architecture=architecture or lambda_.Architecture.ARM_64,
            reserved_concurrency=reserved_concurrency,
            log_level=log_level,
            vpc=vpc,
            vpc_subnets=vpc_subnets,
            security_groups=security_groups,
        )
        # The handler hides a failed message for minutes, not the whole visibility timeout.
        self.queue.grant(self.function, "sqs:ChangeMessageVisibility")
        self.function.add_event_source(
            event_sources.SqsEventSource(
                self.queue,
                batch_size=1,  # one image can take the whole timeout
                max_concurrency=max_concurrency,
                report_batch_item_failures=True,
            )
        )
        self.rule = events.Rule(
            self,
            "Rule",
            description="Successful pushes of tagged images to index with SOCI",
            event_pattern=events.EventPattern(
                source=[settings.ECR_EVENT_SOURCE],
                detail_type=[settings.ECR_IMAGE_ACTION],
                detail=event_pattern.push_detail(
                    tag_filters=[] if _all_tags(tag_filters) else list(tag_filters or ()),
                    tag_suffix=tag_suffix,
                ),
            ),
        )
        # Events EventBridge cannot deliver are parked with the failed images.
        self.rule.add_target(targets.SqsQueue(self.queue, dead_letter_queue=self.dead_letter_queue))
        self.backfill: BackfillRun | None = None
        if backfill is not None:
            self.backfill = BackfillRun(
                self,
                "Backfill",
                backfill=backfill,
                queue=self.queue,
                key=encryption_key,
                log_retention=log_retention,
                repositories=self._repository_selectors,
                tag_filters=[] if _all_tags(tag_filters) else list(tag_filters or ()),
                tag_suffix=tag_suffix,
                after=[self.queue, self.rule, self.function],
            )
        self._grant_ecr()

        for name_filter in repository_name_filters or ():
            self.add_repository_name_filter(name_filter)
        for repository in repositories or ():
            self.add_repository(repository)
        self.node.add_validation(_IndexesSomething(self))
        self.node.add_validation(_PatternFits(self))
        self.node.add_validation(_NoOverlap(self))

        self.dead_letter_alarm, self.errors_alarm, self.images_failed_alarm = self._make_alarms(
            alarm_topic
        )
        self.alarms = (self.dead_letter_alarm, self.errors_alarm, self.images_failed_alarm)

    # ----------------------------------------------------------- repositories

    def add_repository(self, repository: ecr.IRepository) -> None:
        """Index the images pushed to ``repository`` too.

        A ``SociRepository`` must keep this builder's output tags mutable. On a
        builder that indexes every repository nothing else changes: the rule and
        the permissions already cover the repository.
        """
        if isinstance(repository, ISociRepository) and repository.tag_suffix != self.tag_suffix:
            raise InvalidPropError(
                repository.node.path,
                "tag_suffix",
                repository.tag_suffix,
                f"the suffix of the builder it is added to, {self.tag_suffix!r}",
            )
        if self.indexes_every_repository:
            return
        self.rule.add_event_pattern(detail={"repository-name": [repository.repository_name]})
        self._pull_push.add_resources(repository.repository_arn)
        if self.backfill is not None:
            self.backfill.allow_repository(repository.repository_arn)
        self._repository_selectors.append(repository.repository_name)
        self.repository_count += 1

    def add_repository_name_filter(self, name_filter: str) -> None:
        """Index the repositories whose names match ``name_filter`` (``*`` is a wildcard)."""
        _checks.check_pattern(
            self,
            "repository_name_filters",
            name_filter,
            event_pattern.REPOSITORY_FILTER,
            event_pattern.REPOSITORY_FILTER_EXPECTED,
        )
        if self.indexes_every_repository:
            return
        if event_pattern.matches_everything(name_filter):
            raise InvalidPropError(
                self.node.path,
                "repository_name_filters",
                name_filter,
                "a filter narrower than '*' on a builder scoped to some repositories "
                "(to index every repository, leave repositories and repository_name_filters unset)",
            )
        self.rule.add_event_pattern(
            detail={"repository-name": [event_pattern.matcher(name_filter)]}
        )
        self._allow_repositories_named(
            event_pattern.normalize(name_filter),
            f"they are selected by the repository name filter {name_filter!r}",
        )
        self._repository_selectors.append(event_pattern.normalize(name_filter))
        self.repository_count += 1

    # ------------------------------------------------------------------ grants

    def grant_enqueue(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` send ECR Image Action events to the queue (re-index on demand)."""
        return self.queue.grant_send_messages(grantee)

    def grant_invoke(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` invoke the indexer directly with an ECR Image Action event."""
        return self.function.grant_invoke(grantee)

    def grant_redrive(self, grantee: iam.IGrantable) -> iam.Grant:
        """Let ``grantee`` read and delete the dead-letter queue's messages (to redrive them)."""
        return self.dead_letter_queue.grant_consume_messages(grantee)

    # ----------------------------------------------------------------- metrics

    def metric(self, metric_name: str, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """One of the builder's EMF metrics, under its ``service`` dimension.

        ``options`` are ``cloudwatch.MetricOptions``' (``period``, ``statistic``,
        ``label``, ``unit``...). Default: the sum over 5 minutes.
        """
        return service_metric(self.metrics_namespace, self.service_name, metric_name, options)

    def metric_images_indexed(self, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """Images that got a SOCI index pushed (sum)."""
        return self.metric("ImagesIndexed", **options)

    def metric_images_skipped(self, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """Pushes that needed no index: untagged, own output, no layer worth indexing (sum)."""
        return self.metric("ImagesSkipped", **options)

    def metric_images_failed(self, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """Images whose indexing failed and will be retried (sum); ``images_failed_alarm``."""
        return self.metric("ImagesFailed", **options)

    def metric_layers_indexed(self, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """Layers that got a zTOC (sum)."""
        return self.metric("LayersIndexed", **options)

    def metric_layers_skipped(self, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """Layers left without a zTOC: too small, unsupported, corrupt (sum)."""
        return self.metric("LayersSkipped", **options)

    def metric_bytes_indexed(self, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """Compressed bytes of the layers indexed (sum)."""
        return self.metric("BytesIndexed", **options)

    def metric_build_seconds(self, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """Seconds from event to pushed index, per image (average by default)."""
        options.setdefault("statistic", cloudwatch.Stats.AVERAGE)
        return self.metric("BuildSeconds", **options)

    def metric_push_to_soci_seconds(self, **options: Unpack[MetricOptions]) -> cloudwatch.Metric:
        """Seconds from the push (its event's time) to the written ``<tag><suffix>``, per
        indexed image, queueing and retries included (median by default)."""
        options.setdefault("statistic", cloudwatch.Stats.p(50))
        return self.metric(settings.METRIC_PUSH_TO_SOCI_SECONDS, **options)

    def metric_bytes_indexed_per_second(
        self, *, period: Duration | None = None, label: str | None = None
    ) -> cloudwatch.MathExpression:
        """Compressed bytes indexed per second of building: ``BytesIndexed / BuildSeconds``,
        both summed over ``period`` (default 5 minutes)."""
        period = period or Duration.minutes(5)
        return cloudwatch.MathExpression(
            expression="bytes / seconds",
            using_metrics={
                "bytes": self.metric_bytes_indexed(period=period),
                "seconds": self.metric_build_seconds(statistic=cloudwatch.Stats.SUM, period=period),
            },
            label=label or "Bytes indexed per second",
            period=period,
        )

    # ---------------------------------------------------------------- building

    def _check_types(
        self,
        *,
        repositories: object,
        repository_name_filters: object,
        tag_filters: object,
        index_version: object,
        platforms: object,
        timeout: object,
        architecture: object,
        encryption_key: object,
        log_retention: object,
        log_level: object,
        alarm_topic: object,
        vpc: object,
        vpc_subnets: object,
        security_groups: object,
        backfill: object,
    ) -> None:
        """The props whose values are read before ``_check_props`` checks them, and the
        objects handed to aws-cdk-lib: the right type, or an error naming the prop."""
        _checks.check_instance_list(
            self, "repositories", repositories, ecr.IRepository, optional=True
        )
        _checks.check_str_list(
            self, "repository_name_filters", repository_name_filters, optional=True
        )
        _checks.check_str_list(self, "tag_filters", tag_filters, optional=True)
        _checks.check_str(self, "index_version", index_version)
        _checks.check_str_list(self, "platforms", platforms)
        _checks.check_duration(self, "timeout", timeout, optional=True)
        _checks.check_instance(
            self, "architecture", architecture, lambda_.Architecture, optional=True
        )
        _checks.check_instance(self, "encryption_key", encryption_key, kms.IKey, optional=True)
        _checks.check_instance(self, "log_retention", log_retention, logs.RetentionDays)
        _checks.check_str(self, "log_level", log_level)
        _checks.check_instance(self, "alarm_topic", alarm_topic, sns.ITopic, optional=True)
        _checks.check_instance(self, "vpc", vpc, ec2.IVpc, optional=True)
        _checks.check_instance(self, "vpc_subnets", vpc_subnets, ec2.SubnetSelection, optional=True)
        _checks.check_instance_list(
            self, "security_groups", security_groups, ec2.ISecurityGroup, optional=True
        )
        check_backfill(self, backfill)
        if vpc is None and (vpc_subnets is not None or security_groups is not None):
            raise InvalidPropError(
                self.node.path,
                "vpc",
                vpc,
                "an aws_ec2.IVpc when vpc_subnets or security_groups is given",
            )

    def _check_props(
        self,
        *,
        tag_filters: Sequence[str],
        index_version: str,
        min_layer_size_bytes: int,
        span_size_bytes: int,
        platforms: Sequence[str],
        max_layer_workers: int,
        blob_connections: int,
        range_size_bytes: int,
        memory_size_mib: int,
        timeout: Duration,
        max_concurrency: int,
        reserved_concurrency: int | None,
        log_level: str,
    ) -> None:
        for tag in tag_filters:
            _checks.check_pattern(
                self,
                "tag_filters",
                tag,
                event_pattern.TAG_FILTER,
                event_pattern.TAG_FILTER_EXPECTED,
            )
        _checks.check_choice(self, "index_version", index_version, settings.INDEX_VERSIONS)
        _checks.check_pattern(
            self,
            "tag_suffix",
            self.tag_suffix,
            settings.TAG_SUFFIX,
            settings.TAG_SUFFIX_EXPECTED + " (an empty suffix would overwrite the pushed tag)",
        )
        _checks.check_whole_number(self, "min_layer_size_bytes", min_layer_size_bytes, 0)
        _checks.check_whole_number(self, "span_size_bytes", span_size_bytes, 1)
        for platform in platforms:
            _checks.check_pattern(
                self, "platforms", platform, settings.PLATFORM, settings.PLATFORM_EXPECTED
            )
        _checks.check_whole_number(
            self, "max_layer_workers", max_layer_workers, 1, settings.MAX_LAYER_WORKERS
        )
        _checks.check_whole_number(
            self, "blob_connections", blob_connections, 1, settings.MAX_BLOB_CONNECTIONS
        )
        _checks.check_whole_number(
            self,
            "range_size_bytes",
            range_size_bytes,
            settings.MIN_RANGE_SIZE,
            settings.MAX_RANGE_SIZE,
        )
        _checks.check_whole_number(self, "memory_size_mib", memory_size_mib, 128, 10240)
        _checks.check_whole_number(
            self,
            "timeout (seconds)",
            int(timeout.to_seconds()),
            MIN_TIMEOUT_SECONDS,
            MAX_TIMEOUT_SECONDS,
        )
        _checks.check_whole_number(self, "max_concurrency", max_concurrency, 2, 1000)
        if reserved_concurrency is not None:
            # Fewer reserved than the event source may run would throttle messages into the DLQ.
            _checks.check_whole_number(
                self, "reserved_concurrency", reserved_concurrency, max_concurrency
            )
        _checks.check_choice(self, "log_level", log_level, LOG_LEVELS.keys())
        check_metric_names(self, self.metrics_namespace, self.service_name)

    def _make_log_group(self, retention: logs.RetentionDays, key: kms.IKey | None) -> logs.LogGroup:
        if key is not None:
            # CloudWatch Logs encrypts with the key itself, for log groups named in the
            # encryption context: only those of this account and region (any name, as the
            # group's generated name would make the key depend on it, and it on the key).
            # A key this stack owns gets the statement; an imported key's owner adds it.
            # https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
            stack = Stack.of(self)
            key.add_to_resource_policy(
                iam.PolicyStatement(
                    principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                    actions=[
                        "kms:Decrypt",
                        "kms:Encrypt",
                        "kms:ReEncrypt*",
                        "kms:GenerateDataKey*",
                    ],
                    resources=["*"],
                    conditions={
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                                service="logs",
                                resource="log-group",
                                resource_name="*",
                                arn_format=ArnFormat.COLON_RESOURCE_NAME,
                            )
                        }
                    },
                )
            )
        return logs.LogGroup(self, "LogGroup", retention=retention, encryption_key=key)

    def _make_queues(self, timeout: Duration, key: kms.IKey | None) -> tuple[sqs.Queue, sqs.Queue]:
        encryption = sqs.QueueEncryption.KMS if key else sqs.QueueEncryption.SQS_MANAGED
        dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=encryption,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
        )
        queue = sqs.Queue(
            self,
            "Queue",
            encryption=encryption,
            encryption_master_key=key,
            enforce_ssl=True,
            visibility_timeout=Duration.seconds(timeout.to_seconds() * VISIBILITY_TIMEOUT_FACTOR),
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dead_letter_queue, max_receive_count=MAX_RECEIVE_COUNT
            ),
        )
        return dead_letter_queue, queue

    def _make_function(
        self,
        *,
        environment: dict[str, str],
        memory_size_mib: int,
        timeout: Duration,
        architecture: lambda_.Architecture,
        reserved_concurrency: int | None,
        log_level: str,
        vpc: ec2.IVpc | None,
        vpc_subnets: ec2.SubnetSelection | None,
        security_groups: Sequence[ec2.ISecurityGroup] | None,
    ) -> lambda_.Function:
        # Our own role: the default one carries a managed policy with logs:* on every group.
        role = log_writing_role(
            self,
            "ServiceRole",
            self.log_group,
            "Reads pushed ECR images and pushes their SOCI indexes",
        )
        self.role = role
        if vpc is not None:
            # What Lambda needs to attach the function to the VPC (network interfaces);
            # the function's own role gets it as it would with a role made by Lambda.
            role.add_managed_policy(
                iam.ManagedPolicy.from_aws_managed_policy_name(VPC_ACCESS_POLICY)
            )
            _nag.acknowledge(
                role,
                f"AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/{VPC_ACCESS_POLICY}]",
                "Lambda's own policy for functions in a VPC: the network interface actions it "
                "needs, kept current by AWS",
            )
        return indexer_function(
            self,
            "Function",
            handler=HANDLER,
            description="Builds SOCI indexes for images pushed to Amazon ECR",
            role=role,
            log_group=self.log_group,
            memory_size_mib=memory_size_mib,
            timeout=timeout,
            architecture=architecture,
            environment=environment,
            reserved_concurrent_executions=reserved_concurrency,
            application_log_level_v2=lambda_.ApplicationLogLevel(LOG_LEVELS[log_level]),
            vpc=vpc,
            vpc_subnets=vpc_subnets,
            security_groups=list(security_groups) if security_groups is not None else None,
        )

    def _grant_ecr(self) -> None:
        """Authorization tokens everywhere (no resource-level permission exists); pull and
        push only in the selected repositories, added to ``self._pull_push`` one by one.
        Both in ``self.ecr_policy``, where the wildcards are acknowledged."""
        self._pull_push = iam.PolicyStatement(actions=[*PULL_ACTIONS, *PUSH_ACTIONS])
        self.ecr_policy = _nag.ecr_policy(self, "EcrPolicy", self.role, self._pull_push)
        self.function.node.add_dependency(self.ecr_policy)
        if self.indexes_every_repository:
            self._allow_repositories_named(
                "*", "no repository or filter was given, so every repository is indexed"
            )

    def _allow_repositories_named(self, name: str, why: str) -> None:
        """Add ``repository/<name>`` to the pull/push statement; a wildcard says ``why``."""
        arn = _repository_arn(self, name)
        self._pull_push.add_resources(arn)
        if "*" in name:
            _nag.acknowledge(
                self.ecr_policy,
                _nag.repository_finding(self, name),
                f"image actions are limited to the repositories the builder indexes: {why}",
            )
        if self.backfill is None:
            return
        if "*" in name:
            self.backfill.allow_repositories_named(arn, _nag.repository_finding(self, name), why)
        else:
            self.backfill.allow_repository(arn)

    def _make_alarms(
        self, topic: sns.ITopic | None
    ) -> tuple[cloudwatch.Alarm, cloudwatch.Alarm, cloudwatch.Alarm]:
        dead_letters = self.dead_letter_queue.metric_approximate_number_of_messages_visible(
            statistic=cloudwatch.Stats.MAXIMUM, period=Duration.minutes(5)
        ).create_alarm(
            self,
            "DeadLetterAlarm",
            alarm_description="Images could not be indexed after retries: see the dead-letter "
            "queue and the function's logs",
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        errors = self.function.metric_errors(
            statistic=cloudwatch.Stats.SUM, period=Duration.minutes(5)
        ).create_alarm(
            self,
            "ErrorsAlarm",
            alarm_description="The SOCI indexer failed whole invocations (crash, timeout, "
            "bad configuration): see the function's logs",
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        # The handler catches what fails an image (the invocation succeeds): its metric
        # shows the first failure, one-minute periods show it within minutes.
        images_failed = self.metric_images_failed(period=Duration.minutes(1)).create_alarm(
            self,
            "ImagesFailedAlarm",
            alarm_description="The SOCI indexer failed to index an image (it is retried "
            "within minutes): see the function's logs, error_type and error",
            threshold=0,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        if topic is not None:
            for alarm in (dead_letters, errors, images_failed):
                alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
        return dead_letters, errors, images_failed


def check_metric_names(where: Construct, namespace: str, service: str) -> None:
    """The ``metrics_namespace`` and ``service_name`` props: what CloudWatch takes as a
    namespace and a dimension value, and what the handlers' configuration accepts."""
    _checks.check_pattern(
        where,
        "metrics_namespace",
        namespace,
        settings.METRICS_NAMESPACE,
        "a CloudWatch namespace: " + settings.METRICS_NAMESPACE_EXPECTED,
    )
    _checks.check_pattern(
        where, "service_name", service, settings.SERVICE_NAME, settings.SERVICE_NAME_EXPECTED
    )


def service_metric(
    namespace: str, service: str, metric_name: str, options: MetricOptions
) -> cloudwatch.Metric:
    """An EMF metric of a handler under its ``service`` dimension (and ``options``'
    dimensions); default: the sum over 5 minutes."""
    options["dimensions_map"] = {"service": service, **options.get("dimensions_map", {})}
    options.setdefault("statistic", cloudwatch.Stats.SUM)
    options.setdefault("period", Duration.minutes(5))
    return cloudwatch.Metric(namespace=namespace, metric_name=metric_name, **options)


def default_service_name(builder: Construct) -> str:
    """The builder's construct path (``MyStack/Builder``): distinct for every builder of an
    app and the same on every synth. A path the ``service`` dimension cannot hold (an id
    with other characters, more than 255 of them) gives way to the construct's unique id.
    """
    path = builder.node.path
    return path if settings.SERVICE_NAME.fullmatch(path) else Names.unique_id(builder)


def _all_tags(tag_filters: Sequence[str] | None) -> bool:
    return not tag_filters or any(event_pattern.matches_everything(tag) for tag in tag_filters)


def _repository_arn(scope: Construct, name: str) -> str:
    """``arn:${Partition}:ecr:${Region}:${Account}:repository/<name>``; ``*`` stays a wildcard."""
    return Stack.of(scope).format_arn(service="ecr", resource="repository", resource_name=name)
