"""Deploy-time backfill for ``SociIndexBuilder``: images already in ECR are queued as pushes.

A builder indexes what is pushed after it is deployed. With ``backfill=Backfill()``
a custom resource also queues, at deploy, the images already in its
repositories (tagged, matching its tag filters, newer than ``max_age``, at
most ``max_images``, newest first) on the builder's own queue, as the push
events ECR would have sent: the indexer takes them with the same retries,
dead-letter queue and metrics. The custom resource's properties are the
builder's repositories, filters and these settings, so a deploy re-runs the
backfill only when one of them changes; there is no nonce.

The function (``settings.BACKFILL_HANDLER``, from the indexer's asset) may
describe the images of the builder's repositories only, list repositories
only when a filter needs it, and send to the builder's queue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import jsii
from aws_cdk import (
    CustomResource,
    Duration,
    IStableListProducer,
    Lazy,
    Stack,
    custom_resources,
)
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct
from soci_indexer import settings

from soci_cdk import _checks, _nag
from soci_cdk._function import indexer_function, log_writing_role

# Listing repositories and describing a few thousand images takes seconds; the cap
# keeps what is queued small. The Provider's framework waits for the function.
TIMEOUT = Duration.minutes(10)
MEMORY_SIZE_MIB = 256
MIN_MAX_AGE_SECONDS = 60


@dataclass(frozen=True)
class Backfill:
    """What ``SociIndexBuilder(backfill=...)`` queues at deploy.

    :param max_age: images pushed longer ago are left out. Default: 30 days.
    :param max_images: most tags queued in all, newest first (1 to 1000): each
        is one indexing run. Default: 100.
    """

    max_age: Duration = field(
        default_factory=lambda: Duration.days(settings.DEFAULT_BACKFILL_MAX_AGE_DAYS)
    )
    max_images: int = settings.DEFAULT_BACKFILL_MAX_IMAGES


def check(where: Construct, backfill: object) -> None:
    """``backfill`` is None or a ``Backfill`` whose fields are usable; else InvalidPropError."""
    _checks.check_instance(where, "backfill", backfill, Backfill, optional=True)
    if not isinstance(backfill, Backfill):
        return
    _checks.check_duration(where, "backfill.max_age", backfill.max_age)
    _checks.check_whole_number(
        where,
        "backfill.max_age (seconds)",
        int(backfill.max_age.to_seconds()),
        MIN_MAX_AGE_SECONDS,
    )
    _checks.check_whole_number(
        where, "backfill.max_images", backfill.max_images, 1, settings.MAX_BACKFILL_IMAGES
    )


@jsii.implements(IStableListProducer)
class _Listed:
    """The list as it is when the template is written (repositories are added later)."""

    def __init__(self, items: list[str]) -> None:
        self._items = items

    def produce(self) -> list[str] | None:
        return list(self._items)


class BackfillRun(Construct):
    """The backfill's function, its Provider and the custom resource that runs it at deploy.

    The builder adds the repositories it indexes with ``allow_repository`` and
    ``allow_repositories_named``; ``repositories`` (names and filters, ``*`` for
    every repository) is read when the template is written.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        backfill: Backfill,
        queue: sqs.IQueue,
        key: kms.IKey | None,
        log_retention: logs.RetentionDays,
        repositories: list[str],
        tag_filters: Sequence[str],
        tag_suffix: str,
        after: Sequence[IConstruct],
    ) -> None:
        super().__init__(scope, id)
        stack = Stack.of(self)
        self.log_group = logs.LogGroup(
            self, "LogGroup", retention=log_retention, encryption_key=key
        )
        self.role = log_writing_role(
            self,
            "ServiceRole",
            self.log_group,
            "Queues the images already in ECR for SOCI indexing, at deploy",
        )
        self._describe_images = iam.PolicyStatement(actions=["ecr:DescribeImages"])
        self._describe_repositories: iam.PolicyStatement | None = None
        self._acknowledged: set[str] = set()
        self.ecr_policy = iam.Policy(
            self, "EcrPolicy", roles=[self.role], statements=[self._describe_images]
        )
        queue.grant(self.role, "sqs:SendMessage")
        if key is not None:
            # SQS encrypts each message with a data key of the queue's key.
            key.grant(self.role, "kms:GenerateDataKey", "kms:Decrypt")
        self.function = indexer_function(
            self,
            "Function",
            handler=settings.BACKFILL_HANDLER,
            description="Queues the images already in ECR for SOCI indexing, at deploy",
            role=self.role,
            log_group=self.log_group,
            memory_size_mib=MEMORY_SIZE_MIB,
            timeout=TIMEOUT,
        )
        self.function.node.add_dependency(self.ecr_policy)
        # The framework's function: our own role, without the managed policy that
        # allows writing to every log group, and our log group.
        framework_role = log_writing_role(
            self, "ProviderRole", self.log_group, "Runs the backfill function for CloudFormation"
        )
        self.provider = custom_resources.Provider(
            self,
            "Provider",
            on_event_handler=self.function,
            framework_on_event_role=framework_role,
            log_group=self.log_group,
        )
        # The framework invokes the function's ARN and its versions (":*"), nothing else.
        _nag.acknowledge(
            framework_role.node.find_child("DefaultPolicy"),
            _nag.invoke_versions_finding(self.function),
            "the Provider framework may invoke the backfill function and its versions, "
            "and no other function",
        )
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.provider.service_token,
            resource_type=settings.BACKFILL_RESOURCE_TYPE,
            properties={
                settings.BF_ACCOUNT: stack.account,
                settings.BF_REGION: stack.region,
                settings.BF_QUEUE_URL: queue.queue_url,
                settings.BF_REPOSITORIES: Lazy.list(_Listed(repositories)),
                settings.BF_TAG_FILTERS: list(tag_filters),
                settings.BF_TAG_SUFFIX: tag_suffix,
                settings.BF_MAX_AGE_SECONDS: str(int(backfill.max_age.to_seconds())),
                settings.BF_MAX_IMAGES: str(backfill.max_images),
            },
        )
        # Queued messages must find the rule's queue read by the indexer, with its grants.
        self.resource.node.add_dependency(*after)

    def allow_repository(self, arn: str) -> None:
        """Let the backfill describe the images of the repository ``arn``."""
        self._describe_images.add_resources(arn)

    def allow_repositories_named(self, arn: str, finding: str, why: str) -> None:
        """Let the backfill describe the images of the repositories the ARN wildcard
        ``arn`` selects, and list repositories to find them; ``why`` the wildcard."""
        self._describe_images.add_resources(arn)
        self._acknowledge(
            finding,
            f"image descriptions are limited to the repositories the builder indexes: {why}",
        )
        if self._describe_repositories is None:
            every = Stack.of(self).format_arn(
                service="ecr", resource="repository", resource_name="*"
            )
            self._describe_repositories = iam.PolicyStatement(
                actions=["ecr:DescribeRepositories"], resources=[every]
            )
            self.ecr_policy.add_statements(self._describe_repositories)
            self._acknowledge(
                _nag.repository_finding(self, "*"),
                "ecr:DescribeRepositories lists the repositories whose names the builder's "
                "filters match; a listing is authorized on every repository of the registry, "
                "and returns repository settings, no image",
            )

    def _acknowledge(self, finding: str, reason: str) -> None:
        if finding not in self._acknowledged:
            self._acknowledged.add(finding)
            _nag.acknowledge(self.ecr_policy, finding, reason)
