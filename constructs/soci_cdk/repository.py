"""ECR repositories set up for lazy loading: SociRepository, and a creation template for later ones.

Two settings matter beyond the usual ones:

- Tag immutability with an exception for the output tags. Immutable tags are
  good practice, but the builder must be able to write ``<tag>-soci`` again
  (a retry after a partial push, a re-index with new settings), so tags
  matching ``*<suffix>`` stay mutable (``IMMUTABLE_WITH_EXCLUSION``).
- No lifecycle rule on untagged images. A SOCI-enabled image is an image index
  tagged ``<tag>-soci`` whose children, the SOCI index manifest and the
  re-annotated image manifest, are untagged. An "expire untagged images" rule
  deletes them and silently turns lazy loading off (Fargate then pulls the
  whole image, or fails on the dangling index). The only rules used here keep
  the newest N tagged images, counting original and ``-soci`` tags separately,
  so an image and its SOCI-enabled twin age out together.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct
from soci_indexer import settings

from soci_cdk import _checks, _nag
from soci_cdk.errors import InvalidPropError

if TYPE_CHECKING:
    from soci_cdk.index_builder import SociIndexBuilder

# Repository creation scenarios a template applies to.
APPLIED_FOR = ("CREATE_ON_PUSH", "PULL_THROUGH_CACHE", "REPLICATION")
# ECR's own prefix rule, plus ROOT for "every repository created later".
_TEMPLATE_PREFIX = re.compile(
    r"ROOT|[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*/?"
)


def keep_newest_rules(tag_suffix: str, max_image_count: int) -> list[dict[str, Any]]:
    """Lifecycle rules (ECR's JSON shape) keeping the newest tagged images and their twins.

    The ``*<suffix>`` rule comes first: ECR lets an image be claimed by one rule
    only, so the SOCI-enabled images are counted apart from the originals.
    """
    return [
        _keep_newest(1, f"*{tag_suffix}", max_image_count, "SOCI-enabled images"),
        _keep_newest(2, "*", max_image_count, "tagged images"),
    ]


def _keep_newest(priority: int, pattern: str, count: int, what: str) -> dict[str, Any]:
    return {
        "rulePriority": priority,
        "description": f"Keep the newest {count} {what}",
        "selection": {
            "tagStatus": "tagged",
            "tagPatternList": [pattern],
            "countType": "imageCountMoreThan",
            "countNumber": count,
        },
        "action": {"type": "expire"},
    }


def _check_types(
    path: str,
    *,
    builder: object,
    encryption_key: object,
    tag_suffix: object,
    immutable_tags: object,
    max_image_count: object,
) -> None:
    """The props SociRepository and its template share: checked before any is used."""
    # Imported here: index_builder imports this module.
    from soci_cdk.index_builder import SociIndexBuilder

    _checks.check_instance(path, "builder", builder, SociIndexBuilder, optional=True)
    _checks.check_instance(path, "encryption_key", encryption_key, kms.IKey, optional=True)
    _checks.check_pattern(
        path,
        "tag_suffix",
        tag_suffix,
        settings.TAG_SUFFIX,
        settings.TAG_SUFFIX_EXPECTED,
        optional=True,
    )
    _checks.check_bool(path, "immutable_tags", immutable_tags)
    if max_image_count is not None:
        _checks.check_whole_number(path, "max_image_count", max_image_count, 1, 10000)


def _suffix(path: str, tag_suffix: str | None, builder: SociIndexBuilder | None) -> str:
    """The output tag suffix to keep mutable: the builder's, unless told otherwise.

    A different suffix from the builder's would make its output tags immutable.
    """
    if builder is None:
        return settings.DEFAULT_TAG_SUFFIX if tag_suffix is None else tag_suffix
    if tag_suffix is not None and tag_suffix != builder.tag_suffix:
        raise InvalidPropError(
            path, "tag_suffix", tag_suffix, f"the builder's suffix {builder.tag_suffix!r} or unset"
        )
    return builder.tag_suffix


class SociRepository(ecr.Repository):
    """An ECR repository with defaults for SOCI lazy loading.

    Scan on push, encryption (AES-256, or KMS with ``encryption_key``),
    immutable tags except the SOCI output tags, no rule that could expire
    SOCI artifacts, and, with ``builder``, every tagged push indexed.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        builder: SociIndexBuilder | None = None,
        encryption_key: kms.IKey | None = None,
        tag_suffix: str | None = None,
        immutable_tags: bool = True,
        max_image_count: int | None = None,
        removal_policy: RemovalPolicy | None = None,
        empty_on_delete: bool | None = None,
    ) -> None:
        """
        :param builder: the SociIndexBuilder that indexes this repository's pushes.
            Default: none; call ``builder.add_repository(repo)`` later.
        :param encryption_key: KMS key for the images; the builder is granted
            its use. Default: AES-256 encryption managed by ECR.
        :param tag_suffix: the builder's output tag suffix, kept mutable.
            Default: the builder's, or ``-soci``.
        :param immutable_tags: make tags immutable, except ``*<tag_suffix>``.
            Default: True.
        :param max_image_count: keep only the newest N tagged images and the
            newest N SOCI-enabled images. Default: nothing expires.
        :param removal_policy: what happens to the repository when it leaves
            the stack. Default: retained.
        :param empty_on_delete: delete its images when the repository is
            deleted. Default: False.
        """
        path = f"{scope.node.path}/{id}"  # self.node exists only after super().__init__
        _check_types(
            path,
            builder=builder,
            encryption_key=encryption_key,
            tag_suffix=tag_suffix,
            immutable_tags=immutable_tags,
            max_image_count=max_image_count,
        )
        _checks.check_instance(path, "removal_policy", removal_policy, RemovalPolicy, optional=True)
        _checks.check_bool(path, "empty_on_delete", empty_on_delete, optional=True)
        suffix = _suffix(path, tag_suffix, builder)
        super().__init__(
            scope,
            id,
            image_scan_on_push=True,
            encryption=ecr.RepositoryEncryption.KMS
            if encryption_key
            else ecr.RepositoryEncryption.AES_256,
            encryption_key=encryption_key,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE_WITH_EXCLUSION
            if immutable_tags
            else ecr.TagMutability.MUTABLE,
            image_tag_mutability_exclusion_filters=[
                ecr.ImageTagMutabilityExclusionFilter.wildcard(f"*{suffix}")
            ]
            if immutable_tags
            else None,
            removal_policy=removal_policy,
            empty_on_delete=empty_on_delete,
        )
        self.encryption_key = encryption_key
        self.tag_suffix = suffix
        if max_image_count is not None:
            for rule in keep_newest_rules(suffix, max_image_count):
                self.add_lifecycle_rule(
                    rule_priority=rule["rulePriority"],
                    description=rule["description"],
                    tag_status=ecr.TagStatus.TAGGED,
                    tag_pattern_list=rule["selection"]["tagPatternList"],
                    max_image_count=rule["selection"]["countNumber"],
                )
        if builder is not None:
            builder.add_repository(self)


class SociRepositoryTemplate(Construct):
    """An ECR repository creation template: repositories created later under ``prefix``
    (on push, by pull-through cache or by replication) get SociRepository's settings,
    and, with ``builder``, their pushes get indexed.

    Names under ``prefix`` are ``<prefix>/...``; ``ROOT`` means every repository.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        prefix: str,
        builder: SociIndexBuilder | None = None,
        encryption_key: kms.IKey | None = None,
        tag_suffix: str | None = None,
        immutable_tags: bool = True,
        max_image_count: int | None = None,
    ) -> None:
        """
        :param prefix: repository namespace the template applies to, or ``ROOT``.
        :param builder: SociIndexBuilder to index those repositories. Default: none.
        :param encryption_key: KMS key for the new repositories (ECR then uses a
            role this construct creates). Default: AES-256.
        :param tag_suffix: see SociRepository. Default: the builder's, or ``-soci``.
        :param immutable_tags: see SociRepository. Default: True.
        :param max_image_count: see SociRepository. Default: nothing expires.
        """
        super().__init__(scope, id)
        _checks.check_pattern(
            self,
            "prefix",
            prefix,
            _TEMPLATE_PREFIX,
            "ROOT or an ECR repository namespace such as team-a or team-a/services",
        )
        _check_types(
            self.node.path,
            builder=builder,
            encryption_key=encryption_key,
            tag_suffix=tag_suffix,
            immutable_tags=immutable_tags,
            max_image_count=max_image_count,
        )
        suffix = _suffix(self.node.path, tag_suffix, builder)
        self.prefix = prefix
        self.name_filter = "*" if prefix == "ROOT" else f"{prefix.rstrip('/')}/*"
        self.role = self._make_role(encryption_key) if encryption_key else None
        self.resource = ecr.CfnRepositoryCreationTemplate(
            self,
            "Resource",
            prefix=prefix,
            applied_for=list(APPLIED_FOR),
            description="SOCI-ready repositories: scan on push, SOCI output tags kept mutable",
            encryption_configuration=ecr.CfnRepositoryCreationTemplate.EncryptionConfigurationProperty(
                encryption_type="KMS" if encryption_key else "AES256",
                kms_key=encryption_key.key_arn if encryption_key else None,
            ),
            custom_role_arn=self.role.role_arn if self.role else None,
            image_tag_mutability="IMMUTABLE_WITH_EXCLUSION" if immutable_tags else "MUTABLE",
            image_tag_mutability_exclusion_filters=[
                ecr.CfnRepositoryCreationTemplate.ImageTagMutabilityExclusionFilterProperty(
                    image_tag_mutability_exclusion_filter_type="WILDCARD",
                    image_tag_mutability_exclusion_filter_value=f"*{suffix}",
                )
            ]
            if immutable_tags
            else None,
            lifecycle_policy=json.dumps({"rules": keep_newest_rules(suffix, max_image_count)})
            if max_image_count is not None
            else None,
        )
        if builder is not None:
            builder.add_repository_name_filter(self.name_filter)
            if encryption_key is not None:
                builder.add_encryption_key(encryption_key)

    def _make_role(self, key: kms.IKey) -> iam.Role:
        """The role ECR assumes to create KMS-encrypted repositories from the template."""
        role = iam.Role(
            self,
            "CreationRole",
            assumed_by=iam.ServicePrincipal("ecr.amazonaws.com"),
            description="Lets ECR create KMS-encrypted repositories from a creation template",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["ecr:CreateRepository", "ecr:ReplicateImage", "ecr:TagResource"],
                resources=[
                    Stack.of(self).format_arn(
                        service="ecr", resource="repository", resource_name=self.name_filter
                    )
                ],
            )
        )
        if "*" in self.name_filter:
            _nag.acknowledge(
                role,
                _nag.repository_finding(self, self.name_filter),
                "ECR creates the repositories of the template's prefix: their names are not "
                "known in advance, only the prefix",
            )
        key.grant(role, "kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey")
        return role
