"""The deploy-time backfill against moto's ECR and SQS, and end to end through the handler.

Images are put into moto's ECR with real manifests (their digests are the
sha256 of the bytes put), and the messages are read back from moto's SQS
queue. ECR's API cannot put an image in the past, so an image's age is set on
moto's record of it (``age``); everything else goes through the API.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest
from moto import mock_aws
from moto.ecr.models import ecr_backends
from soci_indexer import settings
from soci_indexer.aws import backfill, handler
from soci_indexer.aws.config import HandlerConfig
from soci_indexer.aws.events import parse_image_action, parse_message_body, skip_reason
from soci_indexer.errors import InvalidBackfill, SqsError
from soci_indexer.oci.client import RegistryClient
from support.images import Blob, PlatformImage, gzip_tar_layer, manifest_for, push_image
from support.lambda_shapes import ACCOUNT, FakeContext, sqs_record
from support.registry import LocalRegistry

if TYPE_CHECKING:
    from mypy_boto3_ecr import ECRClient
    from mypy_boto3_sqs import SQSClient

REGION = "us-west-2"
NOW = datetime.now(UTC)
DAY = timedelta(days=1)


class Aws:
    def __init__(self, ecr: ECRClient, sqs: SQSClient) -> None:
        self.ecr = ecr
        self.sqs = sqs
        self.queue_url = sqs.create_queue(QueueName="indexer-queue")["QueueUrl"]
        self.seed = 0

    def put(self, repository: str, tag: str | None, days_old: float = 0) -> str:
        """Put a new image (a real manifest) tagged ``tag``; return its digest."""
        self.seed += 1
        layer = Blob(f"layer {self.seed}".encode(), "application/vnd.oci.image.layer.v1.tar+gzip")
        data, media_type = manifest_for(PlatformImage("linux", "amd64", (layer,)), docker=False)
        return self.put_manifest(repository, tag, data, media_type, days_old)

    def put_manifest(
        self, repository: str, tag: str | None, data: bytes, media_type: str, days_old: float = 0
    ) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if repository not in ecr_backends[ACCOUNT][REGION].repositories:
            self.ecr.create_repository(repositoryName=repository)
        extra = {"imageTag": tag} if tag is not None else {}
        self.ecr.put_image(
            repositoryName=repository,
            imageManifest=data.decode(),
            imageManifestMediaType=media_type,
            imageDigest=digest,
            **extra,
        )
        age(repository, digest, days_old)
        return digest

    def messages(self) -> list[dict[str, Any]]:
        """Every message on the queue, as the handler would receive them."""
        found = []
        while True:
            reply = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10)
            if not reply.get("Messages"):
                return found
            found.extend(reply["Messages"])

    def queued(self) -> set[tuple[str, str]]:
        """(repository, tag) of every queued event."""
        return {
            (event["detail"]["repository-name"], event["detail"]["image-tag"])
            for event in (json.loads(m["Body"]) for m in self.messages())
        }


def age(repository: str, digest: str, days: float) -> None:
    """Make the image look pushed ``days`` before NOW (moto's record of the push time)."""
    (image,) = [
        image
        for image in ecr_backends[ACCOUNT][REGION].repositories[repository].images
        if image.image_digest == digest
    ]
    image.image_pushed_at = int((NOW - days * DAY).timestamp())


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Aws]:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield Aws(boto3.client("ecr", region_name=REGION), boto3.client("sqs", region_name=REGION))


def properties(aws: Aws, **changes: object) -> dict[str, object]:
    """The properties the construct sets, as CloudFormation passes them (numbers as text)."""
    return {
        "ServiceToken": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:provider-framework-onEvent",
        settings.BF_ACCOUNT: ACCOUNT,
        settings.BF_REGION: REGION,
        settings.BF_QUEUE_URL: aws.queue_url,
        settings.BF_REPOSITORIES: ["team-a/*"],
        settings.BF_TAG_FILTERS: [],
        settings.BF_TAG_SUFFIX: "-soci",
        settings.BF_MAX_AGE_SECONDS: str(30 * 86400),
        settings.BF_MAX_IMAGES: "100",
        **changes,
    }


def cfn_event(request_type: str, props: dict[str, object], **more: object) -> dict[str, object]:
    event: dict[str, object] = {
        "RequestType": request_type,
        "RequestId": "9f3b5c1e-request",
        "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/Test/1a2b",
        "LogicalResourceId": "BuilderBackfill",
        "ResourceType": settings.BACKFILL_RESOURCE_TYPE,
        "ResourceProperties": props,
        **more,
    }
    return event


def run(aws: Aws, event: dict[str, object]) -> dict[str, object]:
    return backfill.handle(
        event, ecr_for=lambda region: aws.ecr, sqs_for=lambda region: aws.sqs, now=NOW
    )


def test_the_newest_matching_tags_within_the_age_are_queued_up_to_the_cap(aws: Aws) -> None:
    aws.put("team-a/api", "v2", days_old=1)
    aws.put("team-a/api", "v1", days_old=2)
    aws.put("team-a/api", "v0", days_old=40)  # older than max_age
    aws.put("team-a/api", "dev-1", days_old=1)  # no tag filter matches
    aws.put("team-a/api", "v2-soci", days_old=1)  # the builder's own output
    aws.put("team-a/api", None, days_old=1)  # untagged
    aws.put("team-a/web", "v4", days_old=5)  # over the cap: the oldest that matched
    aws.put("exact/name", "v9", days_old=3)
    aws.put("team-b/api", "v1", days_old=1)  # no repository filter matches
    props = properties(
        aws,
        Repositories=["team-a/*", "exact/name"],
        TagFilters=["v*"],
        MaxImages="3",
    )
    reply = run(aws, cfn_event("Create", props))
    assert aws.queued() == {("team-a/api", "v2"), ("team-a/api", "v1"), ("exact/name", "v9")}
    assert reply == {
        "PhysicalResourceId": "9f3b5c1e-request",
        "Data": {"Queued": 3, "Repositories": 3, "Skipped": 2},
    }


def test_without_tag_filters_every_tag_but_the_outputs_is_queued(aws: Aws) -> None:
    aws.put("team-a/api", "latest", days_old=1)
    aws.put("team-a/api", "dev-1", days_old=2)
    aws.put("team-a/api", "latest-soci", days_old=1)
    aws.put("team-a/api", None)
    run(aws, cfn_event("Create", properties(aws)))
    assert aws.queued() == {("team-a/api", "latest"), ("team-a/api", "dev-1")}


def test_a_tag_filter_that_matches_the_outputs_still_leaves_them_out(aws: Aws) -> None:
    aws.put("team-a/api", "v1", days_old=1)
    aws.put("team-a/api", "v1-soci", days_old=1)
    run(aws, cfn_event("Create", properties(aws, TagFilters=["v1*"])))
    assert aws.queued() == {("team-a/api", "v1")}


def test_every_repository_and_more_than_one_batch_of_ten(aws: Aws) -> None:
    for i in range(23):
        aws.put(f"r{i % 3}", f"t{i}", days_old=i / 100)
    reply = run(aws, cfn_event("Create", properties(aws, Repositories=["*"])))
    assert aws.queued() == {(f"r{i % 3}", f"t{i}") for i in range(23)}
    assert reply["Data"] == {"Queued": 23, "Repositories": 3, "Skipped": 0}


def test_each_message_is_the_push_event_ecr_would_have_sent(aws: Aws) -> None:
    digest = aws.put("team-a/api", "v1", days_old=2)
    run(aws, cfn_event("Create", properties(aws)))
    (message,) = aws.messages()
    event = parse_message_body(message["Body"])
    assert isinstance(event, dict)
    event_id = event.pop("id")
    assert len(event_id) == 36
    pushed = datetime.fromtimestamp(int((NOW - 2 * DAY).timestamp()), UTC)
    assert event == {
        "version": "0",
        "detail-type": "ECR Image Action",
        "source": "aws.ecr",
        "account": ACCOUNT,
        "time": pushed.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [],
        "detail": {
            "result": "SUCCESS",
            "repository-name": "team-a/api",
            "image-digest": digest,
            "action-type": "PUSH",
            "image-tag": "v1",
            "manifest-media-type": settings.OCI_MANIFEST,
        },
    }
    action = parse_image_action({**event, "id": event_id})
    assert skip_reason(action, "-soci") is None


def test_an_unchanged_update_queues_nothing_a_changed_one_queues_again(aws: Aws) -> None:
    aws.put("team-a/api", "v1", days_old=1)
    old = properties(aws)
    moved = {**old, "ServiceToken": "arn:aws:lambda:us-west-2:123456789012:function:other"}
    update = cfn_event("Update", moved, PhysicalResourceId="first", OldResourceProperties=old)
    assert run(aws, update) == {
        "PhysicalResourceId": "first",
        "Data": {"Queued": 0, "Repositories": 0, "Skipped": 0},
    }
    assert aws.queued() == set()
    wider = cfn_event(
        "Update",
        properties(aws, MaxImages="5"),
        PhysicalResourceId="first",
        OldResourceProperties=old,
    )
    assert run(aws, wider)["Data"] == {"Queued": 1, "Repositories": 1, "Skipped": 0}
    assert aws.queued() == {("team-a/api", "v1")}


def test_delete_does_nothing(aws: Aws) -> None:
    aws.put("team-a/api", "v1", days_old=1)
    event = cfn_event("Delete", properties(aws), PhysicalResourceId="first")
    assert run(aws, event) == {"PhysicalResourceId": "first"}
    assert aws.queued() == set()


def test_a_named_repository_that_does_not_exist_queues_nothing_and_says_so(
    aws: Aws, capsys: pytest.CaptureFixture[str]
) -> None:
    reply = run(aws, cfn_event("Create", properties(aws, Repositories=["not/there"])))
    assert reply["Data"] == {"Queued": 0, "Repositories": 1, "Skipped": 0}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {
        "message": "repository not found: nothing to queue",
        "repository": "not/there",
    }.items() <= lines[0].items()


def test_one_log_line_per_repository(aws: Aws, capsys: pytest.CaptureFixture[str]) -> None:
    aws.put("team-a/api", "v1", days_old=1)
    aws.put("team-a/api", "v0", days_old=90)
    aws.put("team-a/web", "v1", days_old=1)
    run(aws, cfn_event("Create", properties(aws)))
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    per_repository = {
        line["repository"]: (line["matching"], line["queued"], line["too_old"], line["over_cap"])
        for line in lines
        if line["message"] == "repository backfilled"
    }
    assert per_repository == {"team-a/api": (2, 1, 1, 0), "team-a/web": (1, 1, 0, 0)}


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"MaxImages": "0"}, "MaxImages"),
        ({"MaxImages": "1001"}, "MaxImages"),
        ({"MaxImages": 5}, "MaxImages"),
        ({"MaxAgeSeconds": "-1"}, "MaxAgeSeconds"),
        ({"MaxAgeSeconds": "1.5"}, "MaxAgeSeconds"),
        ({"Repositories": []}, "Repositories"),
        ({"Repositories": "team-a/*"}, "Repositories"),
        ({"Repositories": ["Team-A"]}, "Team-A"),
        ({"TagFilters": ["v 1"]}, "v 1"),
        ({"TagSuffix": ""}, "TagSuffix"),
        ({"Account": "12345"}, "Account"),
        ({"Region": "mars-1"}, "Region"),
        ({"QueueUrl": "file:///etc/passwd"}, "QueueUrl"),
    ],
)
def test_properties_that_cannot_be_used_fail_in_one_line(
    aws: Aws, change: dict[str, object], named: str
) -> None:
    aws.put("team-a/api", "v1", days_old=1)
    with pytest.raises(InvalidBackfill, match=named) as raised:
        run(aws, cfn_event("Create", properties(aws, **change)))
    assert "\n" not in str(raised.value)
    assert aws.queued() == set()


def test_a_queue_that_does_not_exist_fails_the_backfill(aws: Aws) -> None:
    aws.put("team-a/api", "v1", days_old=1)
    gone = aws.queue_url.rsplit("/", 1)[0] + "/deleted-queue"
    with pytest.raises(SqsError, match=r"SendMessageBatch to .*deleted-queue failed"):
        run(aws, cfn_event("Create", properties(aws, QueueUrl=gone)))


# ---- end to end: a queued message indexed by the push-time handler ---------------------------


@pytest.mark.registry
def test_a_queued_image_is_indexed_by_the_push_time_handler(
    aws: Aws, registry: LocalRegistry
) -> None:
    big = gzip_tar_layer(1.5, seed=51)
    pushed = push_image(
        registry.client(), "backfill/e2e", "v1", [PlatformImage("linux", "amd64", (big,))]
    )
    (data,) = pushed.manifest_bytes.values()
    aws.put_manifest("backfill/e2e", "v1", data, pushed.media_type, days_old=3)
    run(aws, cfn_event("Create", properties(aws, Repositories=["backfill/e2e"])))
    (message,) = aws.messages()

    options = replace(handler.CONFIG.index_options, min_layer_size=65536, span_size=65536)
    config: HandlerConfig = replace(handler.CONFIG, index_options=options)
    client = registry.client()
    loopback: Callable[[str, str], RegistryClient] = lambda account, region: client  # noqa: E731
    batch = {"Records": [sqs_record(message["Body"], message["MessageId"])]}
    result = handler.process_event(batch, FakeContext(), client_factory=loopback, config=config)

    assert result == {"batchItemFailures": []}
    output = json.loads(client.get_manifest("backfill/e2e", "v1-soci").data)
    assert output["mediaType"] == settings.OCI_INDEX
    annotated = [m for m in output["manifests"] if m.get("artifactType") != settings.SOCI_INDEX_V2]
    soci_digest = annotated[0]["annotations"]["com.amazon.soci.index-digest"]
    soci_index = json.loads(client.get_manifest("backfill/e2e", soci_digest).data)
    layers = [
        layer["annotations"]["com.amazon.soci.image-layer-digest"] for layer in soci_index["layers"]
    ]
    assert layers == [big.digest]
