"""SociRepository and SociRepositoryTemplate: lazy-loading settings, registration with a builder."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms
from cdk_support import (
    as_list,
    logical_id,
    new_stack,
    only_resource,
    policy_statements,
    template_of,
)
from soci_cdk import InvalidPropError, SociIndexBuilder, SociRepository, SociRepositoryTemplate


@dataclass
class Built:
    stack: Stack
    template: dict[str, Any]
    builder: SociIndexBuilder
    plain: SociRepository
    encrypted: SociRepository
    expiring: SociRepository
    mutable: SociRepository
    template_construct: SociRepositoryTemplate
    encrypted_template: SociRepositoryTemplate
    key: kms.Key

    def props(self, construct: Any) -> dict[str, Any]:
        resource = self.template["Resources"][logical_id(self.stack, construct)]
        properties: dict[str, Any] = resource["Properties"]
        return properties


@pytest.fixture(scope="module")
def built() -> Built:
    stack = new_stack()
    key = kms.Key(stack, "Key")
    builder = SociIndexBuilder(stack, "Builder", repositories=[], tag_suffix="-lazy")
    plain = SociRepository(stack, "Plain")
    parts = {
        "plain": plain,
        "encrypted": SociRepository(stack, "Encrypted", builder=builder, encryption_key=key),
        "expiring": SociRepository(stack, "Expiring", max_image_count=20),
        "mutable": SociRepository(stack, "Mutable", immutable_tags=False),
        "template_construct": SociRepositoryTemplate(
            stack, "TeamTemplate", prefix="team-a", max_image_count=5
        ),
        "encrypted_template": SociRepositoryTemplate(
            stack, "EncryptedTemplate", prefix="team-b", builder=builder, encryption_key=key
        ),
    }
    return Built(stack=stack, template=template_of(stack), builder=builder, key=key, **parts)


def test_images_are_scanned_on_push(built: Built) -> None:
    assert built.props(built.plain)["ImageScanningConfiguration"] == {"ScanOnPush": True}


def test_images_are_encrypted_with_aes256_by_default(built: Built) -> None:
    # No EncryptionConfiguration is how CloudFormation asks ECR for its default, AES-256.
    props = built.props(built.plain)
    assert props.get("EncryptionConfiguration", {"EncryptionType": "AES256"}) == {
        "EncryptionType": "AES256"
    }


def test_images_are_encrypted_with_the_given_key(built: Built) -> None:
    assert built.props(built.encrypted)["EncryptionConfiguration"] == {
        "EncryptionType": "KMS",
        "KmsKey": {"Fn::GetAtt": [logical_id(built.stack, built.key), "Arn"]},
    }


def test_tags_are_immutable_except_the_soci_output_tags(built: Built) -> None:
    props = built.props(built.plain)
    assert props["ImageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert props["ImageTagMutabilityExclusionFilters"] == [
        {
            "ImageTagMutabilityExclusionFilterType": "WILDCARD",
            "ImageTagMutabilityExclusionFilterValue": "*-soci",
        }
    ]


def test_the_mutable_tag_exception_follows_the_builders_suffix(built: Built) -> None:
    (exclusion,) = built.props(built.encrypted)["ImageTagMutabilityExclusionFilters"]
    assert exclusion["ImageTagMutabilityExclusionFilterValue"] == "*-lazy"


def test_tags_can_be_left_mutable(built: Built) -> None:
    props = built.props(built.mutable)
    assert props["ImageTagMutability"] == "MUTABLE"
    assert "ImageTagMutabilityExclusionFilters" not in props


def test_nothing_expires_by_default(built: Built) -> None:
    assert "LifecyclePolicy" not in built.props(built.plain)


def lifecycle_rules(policy_text: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = json.loads(policy_text)["rules"]
    return rules


def test_lifecycle_rules_never_select_untagged_images(built: Built) -> None:
    policy = built.props(built.expiring)["LifecyclePolicy"]["LifecyclePolicyText"]
    assert {rule["selection"]["tagStatus"] for rule in lifecycle_rules(policy)} == {"tagged"}


def test_soci_enabled_images_are_counted_apart_from_the_originals(built: Built) -> None:
    policy = built.props(built.expiring)["LifecyclePolicy"]["LifecyclePolicyText"]
    rules = lifecycle_rules(policy)
    assert [
        (
            rule["rulePriority"],
            rule["selection"]["tagPatternList"],
            rule["selection"]["countNumber"],
        )
        for rule in rules
    ] == [(1, ["*-soci"], 20), (2, ["*"], 20)]


def test_a_repository_with_a_builder_is_matched_by_its_rule(built: Built) -> None:
    names = built.props(built.builder.rule)["EventPattern"]["detail"]["repository-name"]
    assert {"Ref": logical_id(built.stack, built.encrypted)} in names


def test_a_repository_without_a_builder_is_not_indexed(built: Built) -> None:
    names = built.props(built.builder.rule)["EventPattern"]["detail"]["repository-name"]
    assert {"Ref": logical_id(built.stack, built.plain)} not in names


def test_a_suffix_other_than_the_builders_is_refused() -> None:
    stack = new_stack()
    builder = SociIndexBuilder(stack, "Builder")
    with pytest.raises(InvalidPropError, match="tag_suffix must be the builder's suffix '-soci'"):
        SociRepository(stack, "Repository", builder=builder, tag_suffix="-lazy")


def test_a_repository_added_to_a_builder_with_another_suffix_is_refused() -> None:
    stack = new_stack()
    builder = SociIndexBuilder(stack, "Builder", repositories=[])
    repository = SociRepository(stack, "Repository", tag_suffix="-lazy")
    with pytest.raises(InvalidPropError, match="tag_suffix must be the suffix of the builder"):
        builder.add_repository(repository)


def only_repository_resource(stack: Stack) -> dict[str, Any]:
    return only_resource(template_of(stack), "AWS::ECR::Repository")


def test_repository_props_reach_the_ecr_repository() -> None:
    stack = new_stack()
    SociRepository(
        stack,
        "Repository",
        repository_name="team-a/api",
        removal_policy=RemovalPolicy.DESTROY,
        empty_on_delete=True,
    )
    resource = only_repository_resource(stack)
    assert (
        resource["Properties"]["RepositoryName"],
        resource["DeletionPolicy"],
        resource["Properties"]["EmptyOnDelete"],
    ) == ("team-a/api", "Delete", True)


def test_scan_on_push_can_be_turned_off() -> None:
    stack = new_stack()
    SociRepository(stack, "Repository", image_scan_on_push=False)
    properties = only_repository_resource(stack)["Properties"]
    assert properties.get("ImageScanningConfiguration", {"ScanOnPush": False}) == {
        "ScanOnPush": False
    }


def test_a_kms_repository_without_a_key_uses_the_aws_managed_key() -> None:
    stack = new_stack()
    SociRepository(stack, "Repository", encryption=ecr.RepositoryEncryption.KMS)
    assert only_repository_resource(stack)["Properties"]["EncryptionConfiguration"] == {
        "EncryptionType": "KMS"
    }


def test_given_lifecycle_rules_are_kept_next_to_the_max_image_count_rules() -> None:
    stack = new_stack()
    SociRepository(
        stack,
        "Repository",
        max_image_count=20,
        lifecycle_rules=[
            ecr.LifecycleRule(
                rule_priority=10,
                tag_status=ecr.TagStatus.TAGGED,
                tag_pattern_list=["pr-*"],
                max_image_age=Duration.days(7),
            )
        ],
    )
    policy = only_repository_resource(stack)["Properties"]["LifecyclePolicy"]
    rules = lifecycle_rules(policy["LifecyclePolicyText"])
    assert sorted(rule["rulePriority"] for rule in rules) == [1, 2, 10]


def test_a_lifecycle_rule_that_can_select_untagged_images_is_refused() -> None:
    with pytest.raises(InvalidPropError, match="lifecycle_rules must be rules on tagged images"):
        SociRepository(
            new_stack(),
            "Repository",
            lifecycle_rules=[ecr.LifecycleRule(max_image_age=Duration.days(7))],
        )


def test_immutable_tags_without_the_output_exception_are_refused() -> None:
    with pytest.raises(InvalidPropError, match="image_tag_mutability must be"):
        SociRepository(new_stack(), "Repository", image_tag_mutability=ecr.TagMutability.IMMUTABLE)


def test_given_tag_exclusions_are_kept_next_to_the_output_tags() -> None:
    stack = new_stack()
    SociRepository(
        stack,
        "Repository",
        image_tag_mutability_exclusion_filters=[
            ecr.ImageTagMutabilityExclusionFilter.wildcard("dev-*")
        ],
    )
    filters = only_repository_resource(stack)["Properties"]["ImageTagMutabilityExclusionFilters"]
    assert [f["ImageTagMutabilityExclusionFilterValue"] for f in filters] == ["dev-*", "*-soci"]


def test_max_image_count_must_be_positive() -> None:
    with pytest.raises(InvalidPropError, match="max_image_count must be a whole number"):
        SociRepository(new_stack(), "Repository", max_image_count=0)


# ------------------------------------------------------------------ creation template


def test_the_template_applies_to_repositories_created_on_push_or_by_replication(
    built: Built,
) -> None:
    # Not to pull-through cache: its images raise no push event, so nothing indexes them.
    props = built.props(built.template_construct.resource)
    assert (props["Prefix"], sorted(props["AppliedFor"])) == (
        "team-a",
        ["CREATE_ON_PUSH", "REPLICATION"],
    )


def test_the_template_keeps_the_soci_output_tags_mutable(built: Built) -> None:
    props = built.props(built.template_construct.resource)
    assert props["ImageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert props["ImageTagMutabilityExclusionFilters"] == [
        {
            "ImageTagMutabilityExclusionFilterType": "WILDCARD",
            "ImageTagMutabilityExclusionFilterValue": "*-soci",
        }
    ]


def test_the_templates_lifecycle_rules_never_select_untagged_images(built: Built) -> None:
    rules = lifecycle_rules(built.props(built.template_construct.resource)["LifecyclePolicy"])
    assert [
        (rule["selection"]["tagStatus"], rule["selection"]["tagPatternList"]) for rule in rules
    ] == [
        ("tagged", ["*-soci"]),
        ("tagged", ["*"]),
    ]


def test_a_template_with_a_key_gives_ecr_a_role_to_use_it(built: Built) -> None:
    props = built.props(built.encrypted_template.resource)
    role = built.encrypted_template.role
    assert role is not None
    assert props["CustomRoleArn"] == {"Fn::GetAtt": [logical_id(built.stack, role), "Arn"]}
    statements = policy_statements(built.template, logical_id(built.stack, role))
    granted = {action for statement in statements for action in as_list(statement["Action"])}
    assert {"kms:CreateGrant", "kms:DescribeKey"} <= granted


def test_a_template_without_a_key_needs_no_role(built: Built) -> None:
    assert "CustomRoleArn" not in built.props(built.template_construct.resource)


def test_repositories_of_a_templates_prefix_are_indexed_by_its_builder(built: Built) -> None:
    names = built.props(built.builder.rule)["EventPattern"]["detail"]["repository-name"]
    assert {"prefix": "team-b/"} in names


def test_a_bad_template_prefix_is_refused() -> None:
    with pytest.raises(
        InvalidPropError, match="prefix must be ROOT or an ECR repository namespace"
    ):
        SociRepositoryTemplate(new_stack(), "Template", prefix="Team A")
