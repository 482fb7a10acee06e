"""ECR Image Action events: parsing, the guards the rule cannot express, the registry host."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from soci_indexer.aws.events import (
    SkipReason,
    check_account,
    parse_image_action,
    parse_message_body,
    skip_reason,
    sqs_records,
)
from soci_indexer.errors import AccountNotAllowed, InvalidEvent, InvalidReference
from soci_indexer.oci.reference import parse_reference
from support.lambda_shapes import ACCOUNT, EVENTS_DIR, FUNCTION_ARN, load_event

# Every sample event, and what the handler must decide for it with the default suffix.
EXPECTED_DECISIONS: dict[str, SkipReason | None] = {
    "push-tagged": None,
    "push-tagged-with-media-types": None,
    "push-tagged-manifest": None,
    "push-tagged-docker-manifest": None,
    "push-other-repo": None,
    "push-untagged-child": SkipReason.UNTAGGED,
    "push-untagged-legacy": SkipReason.UNTAGGED,
    "push-helm-chart": SkipReason.NOT_AN_IMAGE,
    "image-scan": SkipReason.NOT_AN_IMAGE_ACTION,
    "push-soci-output": SkipReason.SOCI_OUTPUT_TAG,
    "push-soci-index-manifest": SkipReason.SOCI_ARTIFACT,
    "delete": SkipReason.NOT_A_PUSH,
    "push-failed": SkipReason.PUSH_FAILED,
}


def test_every_sample_event_has_an_expected_decision() -> None:
    assert {path.stem for path in EVENTS_DIR.glob("*.json")} == set(EXPECTED_DECISIONS)


@pytest.mark.parametrize(("name", "expected"), EXPECTED_DECISIONS.items())
def test_sample_events_are_indexed_or_skipped_for_the_right_reason(
    name: str, expected: SkipReason | None
) -> None:
    assert skip_reason(parse_image_action(load_event(name)), "-soci") == expected


def test_a_tagged_push_yields_repository_tag_digest_account_and_region() -> None:
    action = parse_image_action(load_event("push-tagged"))
    assert (action.repository, action.tag, action.account, action.region) == (
        "team-a/simulation",
        "v1.4.2",
        "123456789012",
        "us-west-2",
    )
    assert action.digest == "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234"


def test_media_types_are_read_when_the_event_carries_them() -> None:
    action = parse_image_action(load_event("push-untagged-child"))
    assert action.manifest_media_type == "application/vnd.oci.image.manifest.v1+json"
    assert action.artifact_media_type == "application/vnd.oci.image.config.v1+json"


def test_the_output_tag_guard_follows_the_configured_suffix() -> None:
    event = load_event("push-tagged")
    event["detail"]["image-tag"] = "v1.4.2-lazy"
    action = parse_image_action(event)
    assert skip_reason(action, "-lazy") is SkipReason.SOCI_OUTPUT_TAG
    assert skip_reason(action, "-soci") is None


def test_a_missing_image_tag_counts_as_untagged() -> None:
    event = load_event("push-tagged")
    del event["detail"]["image-tag"]
    assert skip_reason(parse_image_action(event), "-soci") is SkipReason.UNTAGGED


@pytest.mark.parametrize(("key", "value"), [("source", "aws.ecs"), ("detail", "PUSH")])
def test_events_that_are_not_ecr_events_are_refused(key: str, value: str) -> None:
    event = load_event("push-tagged")
    event[key] = value
    with pytest.raises(InvalidEvent):
        parse_image_action(event)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("repository-name", "Team-A/Simulation"),
        ("repository-name", "team-a/../simulation"),
        ("repository-name", ""),
        ("image-tag", "v1.4.2/../../x"),
        ("image-tag", "-leading-dash"),
        ("image-tag", 142),
        ("image-digest", "not a digest"),
    ],
)
def test_detail_fields_of_the_wrong_shape_are_refused(key: str, value: object) -> None:
    event = load_event("push-tagged")
    event["detail"][key] = value
    with pytest.raises(InvalidEvent, match=key):
        parse_image_action(event)


def test_an_event_without_a_repository_is_refused() -> None:
    event = load_event("push-tagged")
    del event["detail"]["repository-name"]
    with pytest.raises(InvalidEvent, match="repository-name"):
        parse_image_action(event)


def test_an_event_naming_a_foreign_host_as_its_region_is_refused_when_parsed() -> None:
    event = load_event("push-tagged")
    event["region"] = "us-west-2.attacker.example"
    with pytest.raises(InvalidEvent, match="region"):
        parse_image_action(event)


def test_an_event_of_the_functions_own_account_is_accepted() -> None:
    action = parse_image_action(load_event("push-tagged"))
    check_account(action, FUNCTION_ARN, allow_cross_account=False)


def test_an_event_naming_another_account_is_refused() -> None:
    event = load_event("push-tagged")
    event["account"] = "210987654321"
    with pytest.raises(AccountNotAllowed, match="210987654321"):
        check_account(parse_image_action(event), FUNCTION_ARN, allow_cross_account=False)


def test_an_event_naming_another_account_is_accepted_when_cross_account_is_allowed() -> None:
    event = load_event("push-tagged")
    event["account"] = "210987654321"
    check_account(parse_image_action(event), FUNCTION_ARN, allow_cross_account=True)


def test_the_own_account_is_read_from_china_partition_function_arns() -> None:
    event = load_event("push-tagged")
    event["region"] = "cn-north-1"
    arn = f"arn:aws-cn:lambda:cn-north-1:{ACCOUNT}:function:indexer:live"
    check_account(parse_image_action(event), arn, allow_cross_account=False)


def test_a_function_arn_without_an_account_refuses_every_event() -> None:
    action = parse_image_action(load_event("push-tagged"))
    with pytest.raises(AccountNotAllowed, match="ARN"):
        check_account(action, "not-an-arn", allow_cross_account=False)


def test_a_message_body_that_is_not_json_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="not JSON"):
        parse_message_body('{"source": "aws.ecr",')


def test_a_message_body_that_is_not_text_is_an_invalid_event() -> None:
    with pytest.raises(InvalidEvent, match="expected JSON text"):
        parse_message_body(None)


def test_sqs_deliveries_are_told_apart_from_bare_eventbridge_events() -> None:
    record = {"eventSource": "aws:sqs", "body": "{}"}
    assert sqs_records({"Records": [record]}) == [record]
    assert sqs_records(load_event("push-tagged")) is None
    assert sqs_records({"Records": [{"eventSource": "aws:sns"}]}) is None
    assert sqs_records(["Records"]) is None


def _event_accepts(tag: str) -> bool:
    event = load_event("push-tagged")
    event["detail"]["image-tag"] = tag
    try:
        parse_image_action(event)
    except InvalidEvent:
        return False
    return True


def _reference_accepts(tag: str) -> bool:
    try:
        parse_reference(f"registry.example/team/app:{tag}")
    except InvalidReference:
        return False
    return True


@pytest.mark.parametrize(
    "tag", ["v\u00e91", "v\u0661", "\uff561", "v1\u00a0", "-v1", ".v1", "x" * 129]
)
def test_a_tag_outside_the_ascii_tag_grammar_is_refused_by_events_and_references_alike(
    tag: str,
) -> None:
    assert (_event_accepts(tag), _reference_accepts(tag)) == (False, False)


@given(tag=st.text(min_size=1, max_size=130))
def test_events_and_image_references_accept_exactly_the_same_tags(tag: str) -> None:
    if ":" in tag or "/" in tag or "@" in tag:
        return  # these end the tag in a reference; the reference grammar splits on them
    assert _event_accepts(tag) == _reference_accepts(tag)


def test_the_event_time_is_read_as_an_aware_moment() -> None:
    action = parse_image_action(load_event("push-tagged"))
    assert action.time is not None
    assert action.time.isoformat() == "2026-11-16T01:54:34+00:00"


@pytest.mark.parametrize("time", ["yesterday", "2026-11-16T01:54:34"])
def test_an_event_time_that_is_not_an_aware_iso_time_is_invalid(time: str) -> None:
    event = load_event("push-tagged")
    event["time"] = time
    with pytest.raises(InvalidEvent, match="time"):
        parse_image_action(event)
