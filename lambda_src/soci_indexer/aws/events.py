"""ECR "Image Action" events: what was pushed, whether to index it, and where its registry is.

The EventBridge rule filters most events; these guards are what a pattern
cannot express, and a second line of defence when the rule is edited by hand.
The registry host is derived from the event's account and region and nothing
else, so no event can point the function at a host outside ECR.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from soci_indexer import settings
from soci_indexer.aws.ecr import ACCOUNT, check_region, is_repository_name
from soci_indexer.aws.ecr import check_account as check_account_id
from soci_indexer.aws.event_time import parse_event_time
from soci_indexer.errors import AccountNotAllowed, InvalidEvent


class SkipReason(StrEnum):
    """Why an event is a successful no-op rather than an image to index."""

    NOT_AN_IMAGE_ACTION = "not-an-image-action"  # another ECR event (scan, replication...)
    NOT_A_PUSH = "not-a-push"
    PUSH_FAILED = "push-failed"
    SOCI_ARTIFACT = "soci-artifact"  # a SOCI index manifest pushed by an indexer
    NOT_AN_IMAGE = "not-an-image"  # Helm chart, signature...: the config type says so
    UNTAGGED = "untagged"  # children of multi-platform and SOCI-enabled images
    SOCI_OUTPUT_TAG = "soci-output-tag"  # our own output: indexing it would loop


@dataclass(frozen=True, slots=True)
class ImageAction:
    """The fields of one ECR Image Action event that the handler acts on."""

    event_id: str
    detail_type: str
    account: str
    region: str
    action_type: str
    result: str
    repository: str
    digest: str
    tag: str
    manifest_media_type: str = ""
    artifact_media_type: str = ""
    time: datetime | None = None  # when ECR sent the event (the push), if it says


def parse_image_action(event: object) -> ImageAction:
    """Check the envelope and the detail of an ECR event; raise ``InvalidEvent``.

    Other ECR events (scans, replication...) parse too, so that they can be
    skipped rather than failed. For Image Actions ``repository-name`` is
    required and other fields are checked for shape when present;
    ``image-tag`` may be absent or ``""`` (untagged pushes carry an empty string).
    """
    envelope = _mapping(event, "event")
    if envelope.get("source") != settings.ECR_EVENT_SOURCE:
        raise InvalidEvent(f"not an ECR event (source={envelope.get('source')!r})")
    detail = _mapping(envelope.get("detail"), "event detail")
    action = ImageAction(
        event_id=_text(envelope, "id"),
        detail_type=_text(envelope, "detail-type"),
        account=_text(envelope, "account"),
        region=_text(envelope, "region"),
        action_type=_text(detail, "action-type"),
        result=_text(detail, "result"),
        repository=_text(detail, "repository-name"),
        digest=_text(detail, "image-digest"),
        tag=_text(detail, "image-tag"),
        manifest_media_type=_text(detail, "manifest-media-type"),
        artifact_media_type=_text(detail, "artifact-media-type"),
        time=parse_event_time(_text(envelope, "time"), "time"),
    )
    check_account_id(action.account)
    check_region(action.region)
    if action.detail_type == settings.ECR_IMAGE_ACTION:
        _check_detail(action)
    return action


def skip_reason(action: ImageAction, tag_suffix: str) -> SkipReason | None:
    """Why this event needs no indexing, or None when the pushed image should be indexed."""
    if action.detail_type != settings.ECR_IMAGE_ACTION:
        return SkipReason.NOT_AN_IMAGE_ACTION
    if action.action_type != "PUSH":
        return SkipReason.NOT_A_PUSH
    if action.result != "SUCCESS":
        return SkipReason.PUSH_FAILED
    if action.artifact_media_type in settings.SOCI_INDEX_TYPES:
        return SkipReason.SOCI_ARTIFACT
    if action.artifact_media_type and action.artifact_media_type not in settings.IMAGE_CONFIG_TYPES:
        return SkipReason.NOT_AN_IMAGE
    if not action.tag:
        return SkipReason.UNTAGGED
    if action.tag.endswith(tag_suffix):
        return SkipReason.SOCI_OUTPUT_TAG
    return None


def check_account(
    action: ImageAction, invoked_function_arn: str, *, allow_cross_account: bool
) -> None:
    """Refuse events about another account unless cross-account indexing is allowed.

    The function's own account comes from its ARN; an ARN that does not parse
    refuses every event rather than guessing.
    """
    if allow_cross_account:
        return
    parts = invoked_function_arn.split(":")
    own_account = parts[4] if len(parts) > 4 and parts[0] == "arn" else ""
    if not ACCOUNT.fullmatch(own_account):
        raise AccountNotAllowed(
            f"cannot tell this function's account from its ARN {invoked_function_arn!r}"
        )
    if action.account != own_account:
        raise AccountNotAllowed(
            f"event is about account {action.account}, this function serves {own_account} "
            "(cross-account indexing is off)"
        )


def parse_message_body(body: object) -> object:
    """Decode an SQS message body holding an EventBridge event."""
    if not isinstance(body, str):
        raise InvalidEvent(f"SQS message body is {type(body).__name__}, expected JSON text")
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise InvalidEvent(
            f"SQS message body is not JSON: {exc.msg} at character {exc.pos}"
        ) from None


def sqs_records(event: object) -> list[Mapping[str, object]] | None:
    """The records of an SQS delivery (``{"Records": [...]}``), or None for anything else."""
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        return None
    if not all(
        isinstance(record, Mapping) and record.get("eventSource") == "aws:sqs" for record in records
    ):
        return None
    return records


def _check_detail(action: ImageAction) -> None:
    if not is_repository_name(action.repository):
        raise InvalidEvent(f"repository-name {action.repository!r} is not an ECR repository name")
    if action.tag and not settings.TAG.fullmatch(action.tag):
        raise InvalidEvent(f"image-tag {action.tag!r} is not an image tag")
    if action.digest and not settings.DIGEST_GRAMMAR.fullmatch(action.digest):
        raise InvalidEvent(f"image-digest {action.digest!r} is not a digest")


def _mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise InvalidEvent(f"{what} is {type(value).__name__}, expected a JSON object")
    return value


def _text(fields: Mapping[str, object], key: str) -> str:
    value = fields.get(key, "")
    if not isinstance(value, str):
        raise InvalidEvent(f"{key} is {type(value).__name__}, expected a string")
    return value
