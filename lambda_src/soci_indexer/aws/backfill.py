"""Deploy-time backfill: images already in the builder's repositories are queued as pushes.

``SociIndexBuilder(backfill=...)`` runs ``on_event`` through a CloudFormation
custom resource (a ``custom_resources.Provider``). On Create, and on Update when
its properties changed, it lists the repositories the builder selects, keeps the
tags its rule would have let through (tag filters, never the builder's own
``<tag><suffix>`` outputs, images only), pushed within the maximum age, newest
first, at most the maximum in all, and sends each to the builder's queue as the
EventBridge "ECR Image Action" PUSH/SUCCESS event ECR would have sent. The
push-time handler then indexes them with the same retries, dead-letter queue and
metrics as any push. Delete does nothing.

Every event is built, then read back through ``events.parse_image_action`` and
``events.skip_reason``, the guards of the push-time handler: what the handler
would skip is never queued. boto3 retries throttled calls (standard mode);
properties that cannot be used raise ``InvalidBackfill``, one line, which the
Provider reports to CloudFormation.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from soci_indexer import settings
from soci_indexer.aws.ecr import ACCOUNT, REGION
from soci_indexer.aws.events import parse_image_action, skip_reason
from soci_indexer.aws.telemetry import Logger
from soci_indexer.errors import EcrError, InvalidBackfill, InvalidEvent, SqsError
from soci_indexer.pipeline import tag_matches

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_sqs import SQSClient

SEND_BATCH = 10  # SendMessageBatch takes at most 10 entries
SEND_ATTEMPTS = 3  # entries SQS failed on its side are sent again, this many times in all
BOTO_ATTEMPTS = 10  # boto3's own retries of throttled and failed calls (standard mode)
QUEUE_URL = re.compile(r"https://[A-Za-z0-9.-]+/[0-9]{12}/[A-Za-z0-9_-]{1,80}(?:\.fifo)?")

LOGGER = Logger("soci-backfill", name="soci_indexer.backfill")


@dataclass(frozen=True, slots=True)
class Request:
    """The custom resource's properties, checked."""

    account: str
    region: str
    queue_url: str
    repositories: tuple[str, ...]  # names, and filters with "*"
    tag_filters: tuple[str, ...]  # empty: every tag
    tag_suffix: str
    max_age_seconds: int
    max_images: int


@dataclass(frozen=True, slots=True)
class Candidate:
    """One tag of one image that the builder's rule would have let through."""

    repository: str
    tag: str
    digest: str
    pushed_at: datetime
    manifest_media_type: str = ""
    artifact_media_type: str = ""


@dataclass(frozen=True, slots=True)
class Summary:
    """What a backfill did: tags queued, repositories looked at, matching tags left out."""

    queued: int
    repositories: int
    skipped: int

    def data(self) -> dict[str, int]:
        return {
            settings.BF_QUEUED: self.queued,
            settings.BF_REPOSITORY_COUNT: self.repositories,
            settings.BF_SKIPPED: self.skipped,
        }


def on_event(event: Mapping[str, Any], context: object) -> dict[str, object]:
    """The Provider's onEvent handler: production clients, the clock now."""
    return handle(event, ecr_for=_ecr_client, sqs_for=_sqs_client, now=datetime.now(UTC))


def handle(
    event: Mapping[str, Any],
    *,
    ecr_for: Callable[[str], ECRClient],
    sqs_for: Callable[[str], SQSClient],
    now: datetime,
) -> dict[str, object]:
    """Create and changed Update: backfill; unchanged Update and Delete: nothing.

    ``ecr_for`` and ``sqs_for`` make a client for a region; ``now`` is when the
    maximum age counts from.
    """
    request_type = event.get("RequestType")
    if request_type not in ("Create", "Update", "Delete"):
        raise InvalidBackfill(f"RequestType {request_type!r} is not Create, Update or Delete")
    physical_id = str(event.get("PhysicalResourceId") or event.get("RequestId") or "backfill")
    if request_type == "Delete":
        return {"PhysicalResourceId": physical_id}
    properties = event.get("ResourceProperties")
    request = parse_properties(properties)
    if request_type == "Update" and _settings(properties) == _settings(
        event.get("OldResourceProperties")
    ):
        LOGGER.info("backfill settings unchanged: nothing queued")
        return {"PhysicalResourceId": physical_id, "Data": Summary(0, 0, 0).data()}
    summary = backfill(request, ecr_for(request.region), sqs_for(request.region), now)
    LOGGER.info("backfill done", **summary.data())
    return {"PhysicalResourceId": physical_id, "Data": summary.data()}


def parse_properties(properties: object) -> Request:
    """The custom resource's properties as CloudFormation passes them (numbers as strings)."""
    if not isinstance(properties, Mapping):
        raise InvalidBackfill("ResourceProperties is missing: the construct sets them")
    repositories = _strings(properties, settings.BF_REPOSITORIES)
    if not repositories:
        raise InvalidBackfill(f"{settings.BF_REPOSITORIES} is empty: name at least one")
    for name in repositories:
        _check(name, settings.REPOSITORY_FILTER, settings.REPOSITORY_FILTER_EXPECTED, "repository")
    tag_filters = _strings(properties, settings.BF_TAG_FILTERS, optional=True)
    for tag in tag_filters:
        _check(tag, settings.TAG_FILTER, settings.TAG_FILTER_EXPECTED, "tag filter")
    account = _string(properties, settings.BF_ACCOUNT)
    _check(account, ACCOUNT, "a 12-digit AWS account id", settings.BF_ACCOUNT)
    region = _string(properties, settings.BF_REGION)
    _check(region, REGION, "an AWS region", settings.BF_REGION)
    queue_url = _string(properties, settings.BF_QUEUE_URL)
    _check(queue_url, QUEUE_URL, "an SQS queue URL", settings.BF_QUEUE_URL)
    tag_suffix = _string(properties, settings.BF_TAG_SUFFIX)
    _check(tag_suffix, settings.TAG_SUFFIX, settings.TAG_SUFFIX_EXPECTED, settings.BF_TAG_SUFFIX)
    return Request(
        account=account,
        region=region,
        queue_url=queue_url,
        repositories=tuple(repositories),
        tag_filters=tuple(tag_filters),
        tag_suffix=tag_suffix,
        max_age_seconds=_whole_number(properties, settings.BF_MAX_AGE_SECONDS, 1),
        max_images=_whole_number(
            properties, settings.BF_MAX_IMAGES, 1, settings.MAX_BACKFILL_IMAGES
        ),
    )


def backfill(request: Request, ecr: ECRClient, sqs: SQSClient, now: datetime) -> Summary:
    """Queue the newest matching tags of the selected repositories; one log line each."""
    cutoff = now - timedelta(seconds=request.max_age_seconds)
    names = repository_names(ecr, request)
    found: dict[str, list[Candidate]] = {name: candidates(ecr, request, name) for name in names}
    recent = [c for listed in found.values() for c in listed if c.pushed_at >= cutoff]
    recent.sort(key=lambda c: (-c.pushed_at.timestamp(), c.repository, c.tag))
    chosen = recent[: request.max_images]
    send(sqs, request.queue_url, [push_event(c, request.account, request.region) for c in chosen])
    for name, listed in found.items():
        queued = sum(1 for c in chosen if c.repository == name)
        too_old = sum(1 for c in listed if c.pushed_at < cutoff)
        LOGGER.info(
            "repository backfilled",
            repository=name,
            matching=len(listed),
            queued=queued,
            too_old=too_old,
            over_cap=len(listed) - too_old - queued,
        )
    total = sum(len(listed) for listed in found.values())
    return Summary(queued=len(chosen), repositories=len(names), skipped=total - len(chosen))


def repository_names(ecr: ECRClient, request: Request) -> list[str]:
    """The repositories the request selects that exist: names as given, filters by listing."""
    exact = {name for name in request.repositories if "*" not in name}
    patterns = [name for name in request.repositories if "*" in name]
    listed = set()
    if patterns:
        listed = {
            name
            for name in _all_repositories(ecr, request.account)
            if any(tag_matches(name, pattern) for pattern in patterns)
        }
    return sorted(listed | exact)


def candidates(ecr: ECRClient, request: Request, repository: str) -> list[Candidate]:
    """Every tag of ``repository`` the builder's rule would have let through, any age.

    Untagged images, tags no filter matches, the builder's own output tags and
    pushes the handler would skip (SOCI indexes, Helm charts, signatures) are
    left out. A repository that does not exist has none.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    found = []
    try:
        pages = ecr.get_paginator("describe_images").paginate(
            repositoryName=repository,
            registryId=request.account,
            filter={"tagStatus": "TAGGED"},
        )
        details = [detail for page in pages for detail in page.get("imageDetails", [])]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "RepositoryNotFoundException":
            LOGGER.warning("repository not found: nothing to queue", repository=repository)
            return []
        raise EcrError(f"DescribeImages on {repository} failed: {exc}") from None
    except BotoCoreError as exc:
        raise EcrError(f"DescribeImages on {repository} failed: {exc}") from None
    for detail in details:
        for tag in detail.get("imageTags", []):
            if request.tag_filters and not any(tag_matches(tag, f) for f in request.tag_filters):
                continue
            candidate = Candidate(
                repository=repository,
                tag=tag,
                digest=detail.get("imageDigest", ""),
                pushed_at=detail["imagePushedAt"],
                manifest_media_type=detail.get("imageManifestMediaType", ""),
                artifact_media_type=detail.get("artifactMediaType", ""),
            )
            if _as_the_handler_reads_it(candidate, request):
                found.append(candidate)
    return found


def push_event(candidate: Candidate, account: str, region: str) -> dict[str, object]:
    """The "ECR Image Action" event ECR sends for a successful push of this tag."""
    detail = {
        "result": "SUCCESS",
        "repository-name": candidate.repository,
        "image-digest": candidate.digest,
        "action-type": "PUSH",
        "image-tag": candidate.tag,
    }
    if candidate.manifest_media_type:
        detail["manifest-media-type"] = candidate.manifest_media_type
    if candidate.artifact_media_type:
        detail["artifact-media-type"] = candidate.artifact_media_type
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": settings.ECR_IMAGE_ACTION,
        "source": settings.ECR_EVENT_SOURCE,
        "account": account,
        "time": candidate.pushed_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [],
        "detail": detail,
    }


def send(sqs: SQSClient, queue_url: str, events: Sequence[Mapping[str, object]]) -> None:
    """SendMessageBatch, 10 at a time; entries SQS failed on its side are sent again.

    Raises ``SqsError`` naming how many could not be queued and why; those sent
    before stay queued (indexing a tag twice finds it already indexed).
    """
    from botocore.exceptions import BotoCoreError, ClientError

    bodies = [json.dumps(event, separators=(",", ":")) for event in events]
    for start in range(0, len(bodies), SEND_BATCH):
        pending = {str(i): body for i, body in enumerate(bodies[start : start + SEND_BATCH])}
        failed: list[Mapping[str, Any]] = []
        for _ in range(SEND_ATTEMPTS):
            try:
                reply = sqs.send_message_batch(
                    QueueUrl=queue_url,
                    Entries=[{"Id": key, "MessageBody": body} for key, body in pending.items()],
                )
            except (BotoCoreError, ClientError) as exc:
                raise SqsError(f"SendMessageBatch to {queue_url} failed: {exc}") from None
            failed = list(reply.get("Failed", []))
            retry = {entry["Id"] for entry in failed if not entry.get("SenderFault")}
            if not failed or len(retry) < len(failed):
                break
            pending = {key: body for key, body in pending.items() if key in retry}
        if failed:
            first = failed[0]
            raise SqsError(
                f"{len(failed)} of {len(bodies)} backfill messages could not be queued to "
                f"{queue_url}: {first.get('Code')}: {first.get('Message')}"
            )


def _as_the_handler_reads_it(candidate: Candidate, request: Request) -> bool:
    """True when the push-time handler would index this tag's event (not skip or reject it)."""
    event = push_event(candidate, request.account, request.region)
    try:
        action = parse_image_action(event)
    except InvalidEvent as exc:
        LOGGER.warning("image left out", repository=candidate.repository, reason=str(exc))
        return False
    return skip_reason(action, request.tag_suffix) is None


def _all_repositories(ecr: ECRClient, account: str) -> Iterable[str]:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        pages = ecr.get_paginator("describe_repositories").paginate(registryId=account)
        return [repo["repositoryName"] for page in pages for repo in page["repositories"]]
    except (BotoCoreError, ClientError) as exc:
        raise EcrError(f"DescribeRepositories failed: {exc}") from None


def _settings(properties: object) -> dict[str, object] | None:
    """The properties that decide what a backfill queues (not the provider's ServiceToken)."""
    if not isinstance(properties, Mapping):
        return None
    return {key: value for key, value in properties.items() if key != "ServiceToken"}


def _string(properties: Mapping[str, object], key: str) -> str:
    value = properties.get(key)
    if not isinstance(value, str):
        raise InvalidBackfill(f"{key} is {type(value).__name__}, expected a string")
    return value


def _strings(properties: Mapping[str, object], key: str, *, optional: bool = False) -> list[str]:
    value = properties.get(key)
    if value is None and optional:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidBackfill(f"{key} is {value!r}, expected a list of strings")
    return value


def _whole_number(
    properties: Mapping[str, object], key: str, minimum: int, maximum: int | None = None
) -> int:
    text = _string(properties, key)
    number = int(text) if re.fullmatch(r"[0-9]{1,12}", text) else -1
    if number < minimum or (maximum is not None and number > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise InvalidBackfill(f"{key} is {text!r}, expected a whole number {bounds}")
    return number


def _check(value: str, pattern: re.Pattern[str], expected: str, what: str) -> None:
    if not pattern.fullmatch(value):
        raise InvalidBackfill(f"{what} {value!r} is not {expected}")


def _boto_config() -> Any:
    from botocore.config import Config

    return Config(retries={"mode": "standard", "max_attempts": BOTO_ATTEMPTS})


def _ecr_client(region: str) -> ECRClient:
    import boto3  # the Lambda runtime ships it

    return boto3.client("ecr", region_name=region, config=_boto_config())


def _sqs_client(region: str) -> SQSClient:
    import boto3

    return boto3.client("sqs", region_name=region, config=_boto_config())
