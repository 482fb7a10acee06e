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
from collections.abc import Sequence
from typing import Any

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct
from soci_indexer import settings

from soci_cdk import _checks, _nag
from soci_cdk.errors import InvalidPropError
from soci_cdk.interfaces import ISociIndexBuilder

# Repository creation scenarios a template applies to. Pushes raise the events the
# builder indexes. Replication copies a source's ``<tag>-soci`` images, already
# indexed, and needs those tags mutable to copy a re-index. Pull-through cache is
# left out: its images arrive by pulls ("ECR Pull Through Cache Action" events),
# which nothing here indexes, so SOCI settings there would claim what is not done.
APPLIED_FOR = ("CREATE_ON_PUSH", "REPLICATION")
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
    if builder is not None and not isinstance(builder, ISociIndexBuilder):
        raise InvalidPropError(path, "builder", builder, "a SociIndexBuilder")
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


def _suffix(path: str, tag_suffix: str | None, builder: ISociIndexBuilder | None) -> str:
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
    ``ecr.Repository``'s props pass through; the defaults that differ are
    ``image_scan_on_push`` (True) and ``image_tag_mutability`` (immutable
    with the SOCI output tags excepted).
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        builder: ISociIndexBuilder | None = None,
        tag_suffix: str | None = None,
        immutable_tags: bool = True,
        max_image_count: int | None = None,
        repository_name: str | None = None,
        encryption: ecr.RepositoryEncryption | None = None,
        encryption_key: kms.IKey | None = None,
        image_scan_on_push: bool = True,
        image_tag_mutability: ecr.TagMutability | None = None,
        image_tag_mutability_exclusion_filters: Sequence[ecr.ImageTagMutabilityExclusionFilter]
        | None = None,
        lifecycle_registry_id: str | None = None,
        lifecycle_rules: Sequence[ecr.LifecycleRule] | None = None,
        removal_policy: RemovalPolicy | None = None,
        empty_on_delete: bool | None = None,
    ) -> None:
        """
        :param builder: the SociIndexBuilder that indexes this repository's pushes.
            Default: none; call ``builder.add_repository(repo)`` later.
        :param tag_suffix: the builder's output tag suffix, kept mutable.
            Default: the builder's, or ``-soci``.
        :param immutable_tags: make tags immutable, except ``*<tag_suffix>``.
            Default: True.
        :param max_image_count: keep only the newest N tagged images and the
            newest N SOCI-enabled images. Default: nothing expires.
        :param repository_name: Default: a name CloudFormation generates.
        :param encryption: Default: KMS with ``encryption_key``, else AES-256.
        :param encryption_key: KMS key for the images (ECR uses it through grants
            of its own; the builder needs no permission). Default: AES-256.
        :param image_scan_on_push: Default: True (ECR's is False), a basic scan
            of every pushed image.
        :param image_tag_mutability: ``MUTABLE`` or ``IMMUTABLE_WITH_EXCLUSION``;
            ``IMMUTABLE`` is refused, as the builder must rewrite its output
            tags. Default: from ``immutable_tags``.
        :param image_tag_mutability_exclusion_filters: tags kept mutable besides
            ``*<tag_suffix>``. Default: none.
        :param lifecycle_registry_id: Default: the stack's account.
        :param lifecycle_rules: rules on tagged images, kept next to the
            ``max_image_count`` ones; a rule that can select untagged images is
            refused, as it would expire SOCI indexes. Default: none.
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
        _checks.check_str(path, "repository_name", repository_name, optional=True)
        _checks.check_instance(
            path, "encryption", encryption, ecr.RepositoryEncryption, optional=True
        )
        _checks.check_bool(path, "image_scan_on_push", image_scan_on_push)
        _checks.check_instance(
            path, "image_tag_mutability", image_tag_mutability, ecr.TagMutability, optional=True
        )
        _checks.check_instance_list(
            path,
            "image_tag_mutability_exclusion_filters",
            image_tag_mutability_exclusion_filters,
            ecr.ImageTagMutabilityExclusionFilter,
            optional=True,
        )
        _checks.check_str(path, "lifecycle_registry_id", lifecycle_registry_id, optional=True)
        _checks.check_instance_list(
            path, "lifecycle_rules", lifecycle_rules, ecr.LifecycleRule, optional=True
        )
        _checks.check_instance(path, "removal_policy", removal_policy, RemovalPolicy, optional=True)
        _checks.check_bool(path, "empty_on_delete", empty_on_delete, optional=True)
        suffix = _suffix(path, tag_suffix, builder)
        for given in lifecycle_rules or ():
            _check_tagged_only(path, given)
        mutability = image_tag_mutability or (
            ecr.TagMutability.IMMUTABLE_WITH_EXCLUSION
            if immutable_tags
            else ecr.TagMutability.MUTABLE
        )
        if mutability == ecr.TagMutability.IMMUTABLE:
            raise InvalidPropError(
                path,
                "image_tag_mutability",
                "IMMUTABLE",
                "MUTABLE or IMMUTABLE_WITH_EXCLUSION: the builder must be able to rewrite "
                f"its output tags *{suffix}",
            )
        exclusions = list(image_tag_mutability_exclusion_filters or ())
        if mutability == ecr.TagMutability.IMMUTABLE_WITH_EXCLUSION:
            exclusions.append(ecr.ImageTagMutabilityExclusionFilter.wildcard(f"*{suffix}"))
        super().__init__(
            scope,
            id,
            repository_name=repository_name,
            image_scan_on_push=image_scan_on_push,
            encryption=encryption or _default_encryption(encryption_key),
            encryption_key=encryption_key,
            image_tag_mutability=mutability,
            image_tag_mutability_exclusion_filters=exclusions or None,
            lifecycle_registry_id=lifecycle_registry_id,
            lifecycle_rules=lifecycle_rules,
            removal_policy=removal_policy,
            empty_on_delete=empty_on_delete,
        )
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


def _default_encryption(key: kms.IKey | None) -> ecr.RepositoryEncryption:
    return ecr.RepositoryEncryption.KMS if key else ecr.RepositoryEncryption.AES_256


def _check_tagged_only(path: str, rule: ecr.LifecycleRule) -> None:
    """Refuse a rule that can select untagged images: the SOCI index and the image
    manifest under a ``-soci`` index are untagged, and expiring them turns lazy loading off.

    ECR's default tag status is ``any``, or ``tagged`` when tag prefixes or patterns are given.
    """
    tagged = rule.tag_status == ecr.TagStatus.TAGGED or (
        rule.tag_status is None and bool(rule.tag_prefix_list or rule.tag_pattern_list)
    )
    if not tagged:
        raise InvalidPropError(
            path,
            "lifecycle_rules",
            rule.description or f"rule {rule.rule_priority}",
            "rules on tagged images (tag_status TAGGED): a rule that can select untagged "
            "images expires the SOCI indexes",
        )


class SociRepositoryTemplate(Construct):
    """An ECR repository creation template: repositories created later under ``prefix``
    (on push or by replication, not by pull-through cache) get SociRepository's
    settings, and, with ``builder``, their pushes get indexed. Replicated images are
    not indexed here: they arrive with the ``-soci`` tags of an indexed source.

    Names under ``prefix`` are ``<prefix>/...``; ``ROOT`` means every repository.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        prefix: str,
        builder: ISociIndexBuilder | None = None,
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

    def _make_role(self, key: kms.IKey) -> iam.Role:
        """The role ECR assumes to create KMS-encrypted repositories from the template."""
        role = iam.Role(
            self,
            "CreationRole",
            assumed_by=iam.ServicePrincipal("ecr.amazonaws.com"),
            description="Lets ECR create KMS-encrypted repositories from a creation template",
        )
        # A policy of its own: the acknowledged wildcard covers nothing added to the role later.
        policy = iam.Policy(
            self,
            "CreationPolicy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    actions=["ecr:CreateRepository", "ecr:ReplicateImage", "ecr:TagResource"],
                    resources=[
                        Stack.of(self).format_arn(
                            service="ecr", resource="repository", resource_name=self.name_filter
                        )
                    ],
                )
            ],
        )
        if "*" in self.name_filter:
            _nag.acknowledge(
                policy,
                _nag.repository_finding(self, self.name_filter),
                "ECR creates the repositories of the template's prefix: their names are not "
                "known in advance, only the prefix",
            )
        key.grant(role, "kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey")
        return role
