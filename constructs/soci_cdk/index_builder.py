"""SociIndexBuilder: every tagged image pushed to ECR gets a SOCI index, within minutes.

ECR push -> EventBridge rule (the filtering) -> SQS queue (buffering, retries)
-> Lambda function (the streaming indexer) -> the SOCI-enabled image is pushed
back to the same repository as ``<tag><suffix>``. A failed image raises an
alarm at once; its message is retried after minutes and, failing a few times,
lands in a dead-letter queue, which raises an alarm too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypedDict, Unpack

import jsii
from aws_cdk import ArnFormat, Duration, Stack, Tokenization
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
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
from soci_cdk.errors import InvalidPropError
from soci_cdk.interfaces import ISociRepository

HANDLER = settings.LAMBDA_HANDLER
# The newest Python the Lambda service, aws-cdk-lib and cfn-lint all know.
RUNTIME = lambda_.Runtime.PYTHON_3_14
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


def indexer_code() -> lambda_.Code:
    """The ``soci_indexer`` package as it is installed: the Lambda asset, no bundling.

    Found from the imported module, never from the working directory; the
    asset root holds only ``soci_indexer/``, without bytecode caches, so its
    hash changes only when the source does.
    """
    package = Path(settings.__file__).resolve().parent
    return lambda_.Code.from_asset(
        str(package.parent),
        exclude=["*", f"!{package.name}", f"!{package.name}/**", "**/__pycache__", "*.pyc"],
    )


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
        memory_size_mib: int = MEMORY_SIZE_MIB,
        timeout: Duration | None = None,
        architecture: lambda_.Architecture | None = None,
        max_concurrency: int = DEFAULT_MAX_CONCURRENCY,
        reserved_concurrency: int | None = None,
        encryption_key: kms.IKey | None = None,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        log_level: str = settings.DEFAULT_LOG_LEVEL,
        metrics_namespace: str = settings.DEFAULT_METRICS_NAMESPACE,
        service_name: str = settings.DEFAULT_SERVICE_NAME,
        alarm_topic: sns.ITopic | None = None,
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
            ``service`` field of the logs. Default: ``soci-index-builder``.
        :param alarm_topic: SNS topic the alarms notify. Default: alarms only.
        """
        super().__init__(scope, id)
        self.node.set_context(EVENTS_QUEUE_SAME_ACCOUNT, True)
        self.tag_suffix = tag_suffix
        self.metrics_namespace = metrics_namespace
        self.service_name = service_name
        timeout = timeout or Duration.minutes(DEFAULT_TIMEOUT_MINUTES)
        self._check_props(
            tag_filters=tag_filters or (),
            index_version=index_version,
            min_layer_size_bytes=min_layer_size_bytes,
            span_size_bytes=span_size_bytes,
            platforms=platforms,
            max_layer_workers=max_layer_workers,
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
                settings.ENV_METRICS_NAMESPACE: metrics_namespace,
                settings.ENV_SERVICE_NAME: service_name,
                settings.ENV_LOG_LEVEL: log_level,
            },
            memory_size_mib=memory_size_mib,
            timeout=timeout,
            architecture=architecture or lambda_.Architecture.ARM_64,
            reserved_concurrency=reserved_concurrency,
            log_level=log_level,
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
        self._grant_ecr()

        for name_filter in repository_name_filters or ():
            self.add_repository_name_filter(name_filter)
        for repository in repositories or ():
            self.add_repository(repository)
        self.node.add_validation(_IndexesSomething(self))

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
        options["dimensions_map"] = {
            "service": self.service_name,
            **options.get("dimensions_map", {}),
        }
        options.setdefault("statistic", cloudwatch.Stats.SUM)
        options.setdefault("period", Duration.minutes(5))
        return cloudwatch.Metric(
            namespace=self.metrics_namespace, metric_name=metric_name, **options
        )

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

    # ---------------------------------------------------------------- building

    def _check_props(
        self,
        *,
        tag_filters: Sequence[str],
        index_version: str,
        min_layer_size_bytes: int,
        span_size_bytes: int,
        platforms: Sequence[str],
        max_layer_workers: int,
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
        _checks.check_pattern(
            self,
            "metrics_namespace",
            self.metrics_namespace,
            settings.METRICS_NAMESPACE,
            "a CloudWatch namespace: " + settings.METRICS_NAMESPACE_EXPECTED,
        )

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
    ) -> lambda_.Function:
        # Our own role: the default one carries a managed policy with logs:* on every group.
        role = iam.Role(
            self,
            "ServiceRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Reads pushed ECR images and pushes their SOCI indexes",
        )
        self.role = role
        self.log_group.grant_write(role)
        return lambda_.Function(
            self,
            "Function",
            description="Builds SOCI indexes for images pushed to Amazon ECR",
            code=indexer_code(),
            handler=HANDLER,
            runtime=RUNTIME,
            architecture=architecture,
            memory_size=memory_size_mib,
            timeout=timeout,
            environment=environment,
            role=role,
            reserved_concurrent_executions=reserved_concurrency,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel(LOG_LEVELS[log_level]),
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


def _all_tags(tag_filters: Sequence[str] | None) -> bool:
    return not tag_filters or any(event_pattern.matches_everything(tag) for tag in tag_filters)


def _repository_arn(scope: Construct, name: str) -> str:
    """``arn:${Partition}:ecr:${Region}:${Account}:repository/<name>``; ``*`` stays a wildcard."""
    return Stack.of(scope).format_arn(service="ecr", resource="repository", resource_name=name)
