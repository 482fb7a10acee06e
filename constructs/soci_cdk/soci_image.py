"""SociImage: at deploy time, the SOCI-enabled image of one source image exists, pinned by digest.

A CloudFormation custom resource (``Custom::SociImage``) backed by this
project's indexer (the ``soci_indexer`` package, the same Lambda asset as the
builder's): no Docker, no CodeBuild, nothing downloaded at synth or deploy.
``on_event`` resolves the source image and looks for its SOCI-enabled image;
``is_complete`` builds it when missing, polled every 30 s until it is done or
the resource's ``timeout`` ends the wait. The task definition names the
resource's ``ImageUri`` attribute, so CloudFormation creates it after the index.

Every ``SociImage`` of a stack shares one provider (``SociImageProvider``,
found by its fixed id on the stack); each adds its repositories to the
provider's ECR statements, so the functions may touch those repositories only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TypedDict, Unpack

from aws_cdk import Annotations, CustomResource, Duration, Fn, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import custom_resources as cr
from constructs import Construct
from soci_indexer import settings

from soci_cdk import _checks, _nag
from soci_cdk._function import indexer_function, log_writing_role
from soci_cdk.errors import InvalidPropError
from soci_cdk.index_builder import PULL_ACTIONS, PUSH_ACTIONS

# The provider's construct id on the stack: every SociImage of the stack finds it there.
PROVIDER_ID = "SociImageProvider"
# How often the deployment asks is_complete whether the SOCI-enabled image is there.
QUERY_INTERVAL = Duration.seconds(settings.CR_QUERY_INTERVAL_SECONDS)
DEFAULT_TIMEOUT = Duration.minutes(30)
# CloudFormation waits at most an hour for a custom resource (its ServiceTimeout, 1 to
# 3600 s), and the provider's waiter no longer than that either.
MAX_TIMEOUT_SECONDS = settings.CR_MAX_SERVICE_TIMEOUT_SECONDS
MIN_TIMEOUT_SECONDS = 60
# Both user functions may run as long as Lambda allows: is_complete builds in one invocation.
FUNCTION_TIMEOUT = Duration.minutes(15)
# on_event reads manifests only; is_complete indexes layers, with the builder's two vCPUs.
ON_EVENT_MEMORY_MIB = 512
IS_COMPLETE_MEMORY_MIB = 3538
# What ECS needs to pull with the task's execution role (and ecr:GetAuthorizationToken).
TASK_PULL_ACTIONS = ("ecr:BatchCheckLayerAvailability", *PULL_ACTIONS)

WHY_INVOKE_VERSIONS = (
    "the provider framework may invoke its handler function and that function's versions "
    "(lambda.Function.grant_invoke writes '<function ARN>:*'); no other function"
)
WHY_WAITER_ANY_RESOURCE = (
    "Step Functions log delivery (logs:CreateLogDelivery and the rest) and X-Ray "
    "(xray:PutTraceSegments and the rest) support no resource-level permissions: the "
    "provider framework's waiter logs to the provider's log group and is traced"
)
# What a traced state machine's role needs (X-Ray has no resource-level permissions).
XRAY_ACTIONS = [
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
]


TAG_EXPECTED = "an image tag: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with . or -"
DIGEST_EXPECTED = 'a digest "sha256:<64 lowercase hex digits>"'


class SociImageOptions(TypedDict, total=False):
    """What ``SociImage.from_docker_image_asset`` takes besides the asset: ``SociImage``'s
    options."""

    target_repository: ecr.IRepository | None
    index_version: str
    span_size_bytes: int
    min_layer_size_bytes: int
    platforms: Sequence[str]
    tag_suffix: str | None
    timeout: Duration | None


class SociImageProvider(Construct):
    """The stack-wide custom resource provider behind every ``SociImage``: two functions
    running the indexer, the provider framework, and a log group they all write to."""

    @classmethod
    def of(cls, scope: Construct) -> SociImageProvider:
        """The provider of ``scope``'s stack, created by the first ``SociImage`` that asks."""
        stack = Stack.of(scope)
        found = stack.node.try_find_child(PROVIDER_ID)
        if isinstance(found, SociImageProvider):
            return found
        return cls(stack, PROVIDER_ID)

    def __init__(self, scope: Construct, id: str) -> None:
        super().__init__(scope, id)
        self.log_group = logs.LogGroup(self, "LogGroup", retention=logs.RetentionDays.ONE_MONTH)
        self._granted: set[tuple[str, str]] = set()
        # on_event: pull where the source and its SOCI-enabled image live.
        self.on_event_role = self._role("OnEventRole", "Resolves images for Custom::SociImage")
        self._on_event_pull = iam.PolicyStatement(actions=list(PULL_ACTIONS))
        self.on_event_ecr_policy = _nag.ecr_policy(
            self, "OnEventEcrPolicy", self.on_event_role, self._on_event_pull
        )
        # is_complete: pull the source; pull and push where the SOCI-enabled image is written.
        self.is_complete_role = self._role(
            "IsCompleteRole", "Builds SOCI-enabled images for Custom::SociImage"
        )
        self._is_complete_pull = iam.PolicyStatement(actions=list(PULL_ACTIONS))
        self._is_complete_push = iam.PolicyStatement(actions=[*PULL_ACTIONS, *PUSH_ACTIONS])
        self.is_complete_ecr_policy = _nag.ecr_policy(
            self,
            "IsCompleteEcrPolicy",
            self.is_complete_role,
            self._is_complete_pull,
            self._is_complete_push,
        )
        self.on_event_function = self._function(
            "OnEvent",
            settings.CUSTOM_RESOURCE_ON_EVENT,
            self.on_event_role,
            ON_EVENT_MEMORY_MIB,
            "Resolves the source image of a Custom::SociImage and finds its SOCI-enabled image",
        )
        self.on_event_function.node.add_dependency(self.on_event_ecr_policy)
        self.is_complete_function = self._function(
            "IsComplete",
            settings.CUSTOM_RESOURCE_IS_COMPLETE,
            self.is_complete_role,
            IS_COMPLETE_MEMORY_MIB,
            "Builds the SOCI-enabled image of a Custom::SociImage",
        )
        self.is_complete_function.node.add_dependency(self.is_complete_ecr_policy)
        # The framework's own roles: the default ones carry a managed policy with logs:* on '*'.
        framework_on_event_role = self._role(
            "FrameworkOnEventRole", "Custom::SociImage provider framework: onEvent"
        )
        framework_waiter_role = self._role(
            "FrameworkWaiterRole", "Custom::SociImage provider framework: isComplete, onTimeout"
        )
        self.provider = cr.Provider(
            self,
            "Provider",
            on_event_handler=self.on_event_function,
            is_complete_handler=self.is_complete_function,
            query_interval=QUERY_INTERVAL,
            # Each resource's own timeout is its ServiceTimeout; the waiter allows the most.
            total_timeout=Duration.seconds(MAX_TIMEOUT_SECONDS),
            log_group=self.log_group,
            framework_on_event_role=framework_on_event_role,
            framework_complete_and_timeout_role=framework_waiter_role,
            framework_lambda_logging_level=lambda_.ApplicationLogLevel.INFO,
            disable_waiter_state_machine_logging=False,
            waiter_state_machine_log_options=cr.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=False
            ),
        )
        self._trace_waiter()
        self._acknowledge_framework(framework_on_event_role, framework_waiter_role)

    @property
    def service_token(self) -> str:
        """What a ``Custom::SociImage`` resource names as its ``ServiceToken``."""
        return self.provider.service_token

    def allow_source(self, repository: ecr.IRepository) -> None:
        """Both functions may read images from ``repository``."""
        if self._first_grant("source", repository):
            self._on_event_pull.add_resources(repository.repository_arn)
            self._is_complete_pull.add_resources(repository.repository_arn)

    def allow_output(self, repository: ecr.IRepository) -> None:
        """on_event may find, is_complete may write, SOCI-enabled images in ``repository``."""
        if self._first_grant("output", repository):
            self._on_event_pull.add_resources(repository.repository_arn)
            self._is_complete_push.add_resources(repository.repository_arn)

    def _first_grant(self, kind: str, repository: ecr.IRepository) -> bool:
        """True once per repository ARN (compared as resolved) and kind of access."""
        key = (kind, json.dumps(Stack.of(self).resolve(repository.repository_arn), sort_keys=True))
        if key in self._granted:
            return False
        self._granted.add(key)
        return True

    def _role(self, id: str, description: str) -> iam.Role:
        return log_writing_role(self, id, self.log_group, description)

    def _function(
        self, id: str, handler: str, role: iam.IRole, memory_size_mib: int, description: str
    ) -> lambda_.Function:
        return indexer_function(
            self,
            id,
            handler=handler,
            description=description,
            role=role,
            log_group=self.log_group,
            memory_size_mib=memory_size_mib,
            timeout=FUNCTION_TIMEOUT,
        )

    def _trace_waiter(self) -> None:
        """X-Ray tracing of the waiter's executions, which the provider offers no prop for."""
        waiter = self.provider.node.find_child("waiter-state-machine")
        state_machine = waiter.node.default_child
        assert isinstance(state_machine, sfn.CfnStateMachine)
        state_machine.tracing_configuration = sfn.CfnStateMachine.TracingConfigurationProperty(
            enabled=True
        )
        role = waiter.node.find_child("Role")
        assert isinstance(role, iam.Role)
        role.add_to_principal_policy(iam.PolicyStatement(actions=XRAY_ACTIONS, resources=["*"]))

    def _acknowledge_framework(self, *framework_roles: iam.Role) -> None:
        """What aws-cdk-lib's provider framework writes and no prop changes, each on the
        policy that holds it."""
        functions = [self.on_event_function, self.is_complete_function]
        for role in framework_roles:
            for function in functions:
                _nag.acknowledge(
                    role.node.find_child("DefaultPolicy"),
                    _nag.invoke_versions_finding(function),
                    WHY_INVOKE_VERSIONS,
                )
        waiter = self.provider.node.find_child("waiter-state-machine")
        waiter_policy = waiter.node.find_child("Role").node.find_child("DefaultPolicy")
        for function_id in ("framework-isComplete", "framework-onTimeout"):
            _nag.acknowledge(
                waiter_policy,
                _nag.invoke_versions_finding(self.provider.node.find_child(function_id)),
                WHY_INVOKE_VERSIONS,
            )
        _nag.acknowledge(
            waiter_policy, _nag.wildcard_resource_finding("*"), WHY_WAITER_ANY_RESOURCE
        )


class SociImage(Construct):
    """The SOCI-enabled image of one source image, made to exist at deploy time.

    ``image_uri`` (``<repository URI>@sha256:<digest>``) pins it;
    ``container_image`` hands it to any ECS task definition and lets the
    execution role pull it. Deleting the resource leaves the images in place.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        repository: ecr.IRepository,
        tag: str | None = None,
        digest: str | None = None,
        target_repository: ecr.IRepository | None = None,
        index_version: str = settings.DEFAULT_INDEX_VERSION,
        span_size_bytes: int = settings.DEFAULT_SPAN_SIZE,
        min_layer_size_bytes: int = settings.DEFAULT_MIN_LAYER_SIZE,
        platforms: Sequence[str] = (),
        tag_suffix: str | None = None,
        timeout: Duration | None = None,
    ) -> None:
        """
        :param repository: where the source image lives (in the stack's account and region).
        :param tag: the source image's tag. Give either this or ``digest``.
        :param digest: the source image's ``sha256:...`` digest.
        :param target_repository: write the SOCI-enabled image into this repository
            (same registry; typically a ``SociRepository``) instead of ``repository``;
            the layers are mounted across, not copied. Default: ``repository``.
        :param index_version: ``"v2"`` or ``"v1"``. Default: ``"v2"``.
        :param span_size_bytes: uncompressed bytes between zTOC checkpoints. Default: 4 MiB.
        :param min_layer_size_bytes: smaller layers get no zTOC. Default: 10 MiB.
        :param platforms: ``os/arch[/variant]`` to index. Default: every platform.
        :param tag_suffix: the SOCI-enabled image is tagged ``<tag><tag_suffix>``.
            Default: the output repository's when it is a ``SociRepository``, else ``-soci``.
        :param timeout: how long the deployment waits for the image, 1 to 60 minutes
            (CloudFormation waits no longer for a custom resource). Default: 30 minutes.
        """
        super().__init__(scope, id)
        self._check(
            repository=repository,
            tag=tag,
            digest=digest,
            target_repository=target_repository,
            index_version=index_version,
            span_size_bytes=span_size_bytes,
            min_layer_size_bytes=min_layer_size_bytes,
            platforms=platforms,
            tag_suffix=tag_suffix,
            timeout=timeout,
        )
        timeout = timeout or DEFAULT_TIMEOUT
        target = target_repository
        self.source_repository = repository
        self.repository: ecr.IRepository = target if target is not None else repository
        self.tag_suffix = _checks.output_tag_suffix(self, tag_suffix, self.repository)
        reference = tag if tag is not None else digest
        assert reference is not None  # _check: exactly one of them
        if tag is not None and not _checks.is_token(tag):
            self._check_tag_length(tag)
        self.provider = SociImageProvider.of(self)
        self.provider.allow_source(repository)
        self.provider.allow_output(self.repository)
        properties: dict[str, object] = {
            settings.CR_REGISTRY: Fn.select(0, Fn.split("/", repository.repository_uri)),
            settings.CR_REPOSITORY: repository.repository_name,
            settings.CR_REFERENCE: reference,
            settings.CR_INDEX_VERSION: index_version,
            settings.CR_SPAN_SIZE: str(span_size_bytes),
            settings.CR_MIN_LAYER_SIZE: str(min_layer_size_bytes),
            settings.CR_PLATFORMS: list(platforms),
            settings.CR_TAG_SUFFIX: self.tag_suffix,
        }
        if target is not None:
            properties[settings.CR_TARGET_REPOSITORY] = target.repository_name
        self.resource = CustomResource(
            self,
            "Resource",
            service_token=self.provider.service_token,
            resource_type=settings.CUSTOM_RESOURCE_TYPE,
            properties=properties,
            service_timeout=timeout,
        )
        self.timeout = timeout
        self.index_version = index_version
        self.image_uri = self.resource.get_att_string(settings.CR_IMAGE_URI)
        self.image_digest = self.resource.get_att_string(settings.CR_IMAGE_DIGEST)
        self.source_digest = self.resource.get_att_string(settings.CR_SOURCE_DIGEST)
        self.container_image: ecs.ContainerImage = _PinnedImage(self)

    @classmethod
    def from_docker_image_asset(
        cls,
        scope: Construct,
        id: str,
        asset: ecr_assets.DockerImageAsset,
        **options: Unpack[SociImageOptions],
    ) -> SociImage:
        """The SOCI-enabled image of a ``DockerImageAsset``: its repository (the CDK
        bootstrap repository), its tag (the asset hash). A new asset hash is a new image."""
        _checks.check_instance(
            f"{scope.node.path}/{id}", "asset", asset, ecr_assets.DockerImageAsset
        )
        image = cls(scope, id, repository=asset.repository, tag=asset.image_tag, **options)
        if image.index_version == "v1" and options.get("target_repository") is None:
            # A v1 SOCI index is an untagged artifact of its own, no index's child.
            Annotations.of(image).add_warning_v2(
                "soci-fargate:v1-index-may-expire",
                "A v1 SOCI index is an untagged image in the CDK bootstrap repository, whose "
                "lifecycle rule expires untagged images after 365 days: pass a SociRepository "
                "as target_repository, or use index_version v2",
            )
        return image

    def grant_pull(self, grantee: iam.IRole, scope: Construct) -> iam.Policy:
        """Let ``grantee`` pull the SOCI-enabled image: a policy of its own in ``scope``,
        where the '*' of ecr:GetAuthorizationToken is acknowledged."""
        return _nag.ecr_policy(
            scope,
            "SociImagePull",
            grantee,
            iam.PolicyStatement(
                actions=list(TASK_PULL_ACTIONS), resources=[self.repository.repository_arn]
            ),
        )

    def _check(
        self,
        *,
        repository: object,
        tag: object,
        digest: object,
        target_repository: object,
        index_version: object,
        span_size_bytes: object,
        min_layer_size_bytes: object,
        platforms: object,
        tag_suffix: object,
        timeout: object,
    ) -> None:
        _checks.check_instance(self, "repository", repository, ecr.IRepository)
        _checks.check_pattern(self, "tag", tag, settings.TAG, TAG_EXPECTED, optional=True)
        _checks.check_pattern(
            self, "digest", digest, settings.DIGEST, DIGEST_EXPECTED, optional=True
        )
        if (tag is None) == (digest is None):
            raise InvalidPropError(
                self.node.path, "tag/digest", (tag, digest), "exactly one of tag and digest"
            )
        _checks.check_instance(
            self, "target_repository", target_repository, ecr.IRepository, optional=True
        )
        _checks.check_str(self, "index_version", index_version)
        _checks.check_choice(self, "index_version", index_version, settings.INDEX_VERSIONS)
        _checks.check_whole_number(self, "span_size_bytes", span_size_bytes, 1)
        _checks.check_whole_number(self, "min_layer_size_bytes", min_layer_size_bytes, 0)
        _checks.check_str_list(self, "platforms", platforms)
        if isinstance(platforms, list | tuple):
            for platform in platforms:
                _checks.check_pattern(
                    self, "platforms", platform, settings.PLATFORM, settings.PLATFORM_EXPECTED
                )
        _checks.check_tag_suffix(self, tag_suffix)
        _checks.check_duration(self, "timeout", timeout, optional=True)
        if isinstance(timeout, Duration):
            _checks.check_whole_number(
                self,
                "timeout (seconds)",
                int(timeout.to_seconds()),
                MIN_TIMEOUT_SECONDS,
                MAX_TIMEOUT_SECONDS,
            )

    def _check_tag_length(self, tag: str) -> None:
        longest = 128 - len(self.tag_suffix)
        if len(tag) > longest:
            raise InvalidPropError(
                self.node.path,
                "tag",
                tag,
                f"at most {longest} characters, so that <tag>{self.tag_suffix} is a valid tag",
            )


class _PinnedImage(ecs.ContainerImage):
    """The SOCI-enabled image by digest. ``ecs.EcrImage`` cannot tell a digest from a tag
    when it is a token, and would write ``repo:sha256:...``."""

    def __init__(self, image: SociImage) -> None:
        super().__init__()
        self._image = image

    def bind(
        self, scope: Construct, container_definition: ecs.ContainerDefinition
    ) -> ecs.ContainerImageConfig:
        role = container_definition.task_definition.obtain_execution_role()
        self._image.grant_pull(role, scope)
        return ecs.ContainerImageConfig(image_name=self._image.image_uri)
