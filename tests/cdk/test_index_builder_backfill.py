"""SociIndexBuilder(backfill=...): the custom resource, its function, permissions and checks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from aws_cdk import Duration, Stack
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from cdk_support import (
    as_list,
    logical_id,
    new_stack,
    policy_statements,
    repository_arn,
    resources,
    template_of,
)
from soci_cdk import Backfill, InvalidPropError, SociIndexBuilder, SociRepository
from soci_indexer import settings
from soci_indexer.aws.backfill import parse_properties


@dataclass
class Built:
    stack: Stack
    template: dict[str, Any]
    filtered: SociIndexBuilder
    named: SociIndexBuilder
    everything: SociIndexBuilder
    plain: SociIndexBuilder
    key: kms.Key
    repository: SociRepository

    def id(self, construct: Any) -> str:
        return logical_id(self.stack, construct)

    def props(self, construct: Any) -> dict[str, Any]:
        properties: dict[str, Any] = self.template["Resources"][self.id(construct)]["Properties"]
        return properties

    def backfill(self, builder: SociIndexBuilder) -> dict[str, Any]:
        assert builder.backfill is not None
        resource: dict[str, Any] = self.template["Resources"][self.id(builder.backfill.resource)]
        return resource

    def statements(self, builder: SociIndexBuilder) -> list[dict[str, Any]]:
        assert builder.backfill is not None
        return policy_statements(self.template, self.id(builder.backfill.role))


@pytest.fixture(scope="module")
def built() -> Built:
    stack = new_stack()
    key = kms.Key(stack, "Key")
    filtered = SociIndexBuilder(
        stack,
        "Filtered",
        repository_name_filters=["team-a/*"],
        tag_filters=["v*", "release-*"],
        encryption_key=key,
        log_retention=logs.RetentionDays.ONE_WEEK,
        backfill=Backfill(max_age=Duration.days(7), max_images=25),
    )
    repository = SociRepository(stack, "Repository", builder=filtered)
    named = SociIndexBuilder(
        stack,
        "Named",
        repositories=[ecr.Repository.from_repository_name(stack, "Imported", "platform/app")],
        tag_suffix="-named",
        backfill=Backfill(),
    )
    everything = SociIndexBuilder(stack, "Everything", tag_suffix="-all", backfill=Backfill())
    plain = SociIndexBuilder(stack, "Plain", repository_name_filters=["plain/*"], tag_suffix="-p")
    return Built(stack, template_of(stack), filtered, named, everything, plain, key, repository)


def getatt(built: Built, construct: Any) -> dict[str, Any]:
    return {"Fn::GetAtt": [built.id(construct), "Arn"]}


# ---------------------------------------------------------------- the custom resource


def test_the_properties_name_the_repositories_filters_and_settings(built: Built) -> None:
    props = built.backfill(built.filtered)["Properties"]
    assert built.backfill(built.filtered)["Type"] == "Custom::SociBackfill"
    assert {key: value for key, value in props.items() if key != "ServiceToken"} == {
        "Account": {"Ref": "AWS::AccountId"},
        "Region": {"Ref": "AWS::Region"},
        "QueueUrl": {"Ref": built.id(built.filtered.queue)},
        # The repository registered itself after the builder was made.
        "Repositories": ["team-a/*", {"Ref": built.id(built.repository)}],
        "TagFilters": ["v*", "release-*"],
        "TagSuffix": "-soci",
        "MaxAgeSeconds": str(7 * 86400),
        "MaxImages": "25",
    }


def test_the_defaults_are_thirty_days_and_a_hundred_images(built: Built) -> None:
    props = built.backfill(built.named)["Properties"]
    assert (props["MaxAgeSeconds"], props["MaxImages"]) == (str(30 * 86400), "100")
    assert (props["Repositories"], props["TagFilters"], props["TagSuffix"]) == (
        ["platform/app"],
        [],
        "-named",
    )


def test_a_builder_for_every_repository_backfills_every_repository(built: Built) -> None:
    assert built.backfill(built.everything)["Properties"]["Repositories"] == ["*"]


def test_the_handler_accepts_the_properties_the_construct_writes(built: Built) -> None:
    props = dict(built.backfill(built.filtered)["Properties"])
    # What CloudFormation substitutes for the references.
    props.update(
        Account="123456789012",
        Region="us-west-2",
        QueueUrl="https://sqs.us-west-2.amazonaws.com/123456789012/Test-FilteredQueue-1A2B",
        Repositories=["team-a/*", "test-repository-1a2b"],
    )
    request = parse_properties(props)
    assert (request.tag_filters, request.max_age_seconds, request.max_images) == (
        ("v*", "release-*"),
        7 * 86400,
        25,
    )


def test_the_backfill_runs_once_the_queue_rule_and_indexer_exist(built: Built) -> None:
    depends = set(built.backfill(built.filtered)["DependsOn"])
    (mapping,) = [
        name
        for name, mapping in resources(built.template, "AWS::Lambda::EventSourceMapping").items()
        if mapping["Properties"]["FunctionName"] == {"Ref": built.id(built.filtered.function)}
    ]
    wanted = {built.id(built.filtered.queue), built.id(built.filtered.rule), mapping}
    assert wanted | {built.id(built.filtered.function)} <= depends


def test_no_backfill_resources_without_backfill(built: Built) -> None:
    assert built.plain.backfill is None
    assert len(resources(built.template, "Custom::SociBackfill")) == 3
    plain_path = built.plain.node.path + "/"
    under_plain = [c for c in built.plain.node.find_all() if c.node.path.startswith(plain_path)]
    assert not [c for c in under_plain if "Backfill" in c.node.path]
    assert len(resources(new_template_without_backfill(), "AWS::Lambda::Function")) == 1


def new_template_without_backfill() -> dict[str, Any]:
    stack = new_stack()
    SociIndexBuilder(stack, "Builder", repository_name_filters=["team-a/*"])
    return template_of(stack)


# ---------------------------------------------------------------- the function


def test_the_function_runs_the_backfill_handler_from_the_indexers_asset(built: Built) -> None:
    assert built.filtered.backfill is not None
    function = built.props(built.filtered.backfill.function)
    indexer = built.props(built.filtered.function)
    assert function["Handler"] == settings.BACKFILL_HANDLER
    assert function["Runtime"] == indexer["Runtime"]
    assert function["Code"] == indexer["Code"]


def test_its_log_group_is_encrypted_and_kept_as_long_as_the_builders(built: Built) -> None:
    assert built.filtered.backfill is not None
    group = built.props(built.filtered.backfill.log_group)
    assert group["KmsKeyId"] == getatt(built, built.key)
    assert group["RetentionInDays"] == 7
    function = built.props(built.filtered.backfill.function)
    assert function["LoggingConfig"]["LogGroup"] == {
        "Ref": built.id(built.filtered.backfill.log_group)
    }
    framework = [
        props
        for props in (
            r["Properties"] for r in resources(built.template, "AWS::Lambda::Function").values()
        )
        if props.get("LoggingConfig", {}).get("LogGroup")
        == {"Ref": built.id(built.filtered.backfill.log_group)}
    ]
    assert len(framework) == 2  # the backfill function and the Provider's


# ---------------------------------------------------------------- permissions


def actions_on(statements: list[dict[str, Any]]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for statement in statements:
        for action in as_list(statement["Action"]):
            found.setdefault(action, []).extend(as_list(statement["Resource"]))
    return found


def test_filters_allow_describing_their_repositories_and_listing(built: Built) -> None:
    found = actions_on(built.statements(built.filtered))
    assert found["ecr:DescribeImages"] == [
        repository_arn("team-a/*"),
        getatt(built, built.repository),
    ]
    assert found["ecr:DescribeRepositories"] == [repository_arn("*")]


def test_named_repositories_need_no_listing(built: Built) -> None:
    found = actions_on(built.statements(built.named))
    assert found["ecr:DescribeImages"] == [repository_arn("platform/app")]
    assert "ecr:DescribeRepositories" not in found


def test_the_function_may_send_to_the_queue_with_its_key_and_nothing_more(built: Built) -> None:
    found = actions_on(built.statements(built.filtered))
    assert found["sqs:SendMessage"] == [getatt(built, built.filtered.queue)]
    assert found["kms:GenerateDataKey"] == found["kms:Decrypt"] == [getatt(built, built.key)]
    assert set(found) == {
        "ecr:DescribeImages",
        "ecr:DescribeRepositories",
        "sqs:SendMessage",
        "kms:GenerateDataKey",
        "kms:Decrypt",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
    }


def test_without_a_key_no_kms_permission(built: Built) -> None:
    assert not [a for a in actions_on(built.statements(built.named)) if a.startswith("kms:")]


# ---------------------------------------------------------------- checks


@pytest.mark.parametrize(
    ("backfill", "prop"),
    [
        (100, "backfill"),
        ("30d", "backfill"),
        (Backfill(max_images="100"), "backfill.max_images"),  # type: ignore[arg-type]
        (Backfill(max_images=0), "backfill.max_images"),
        (Backfill(max_images=1001), "backfill.max_images"),
        (Backfill(max_age=30), "backfill.max_age"),  # type: ignore[arg-type]
        (Backfill(max_age=Duration.seconds(30)), "backfill.max_age (seconds)"),
    ],
)
def test_a_backfill_that_cannot_be_used_is_refused_at_synth(backfill: object, prop: str) -> None:
    with pytest.raises(InvalidPropError) as raised:
        SociIndexBuilder(new_stack(), "Builder", backfill=backfill)  # type: ignore[arg-type]
    assert (raised.value.construct_path, raised.value.prop) == ("Test/Builder", prop)
