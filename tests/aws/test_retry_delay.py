"""Failed SQS records come back after minutes, through moto's SQS (ChangeMessageVisibility).

The queue under test has a visibility timeout of zero, so a received message is
visible again at once unless the handler hides it: what the handler does is
seen in what the next ReceiveMessage returns.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from moto import mock_aws
from soci_indexer.aws import sqs
from soci_indexer.aws.handler import process_event
from soci_indexer.errors import AuthError, SqsError
from support.lambda_shapes import ACCOUNT, FakeContext, load_event, log_lines, sqs_record

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

REGION = "us-west-2"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[SQSClient]:
    import boto3

    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "testing")
    with mock_aws():
        yield boto3.client("sqs", region_name=REGION)


def received_record(client: SQSClient, queue: str = "indexer-queue") -> dict[str, object]:
    """Send a push event to a new queue, receive it, and shape it as Lambda delivers it."""
    url = client.create_queue(QueueName=queue, Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    client.send_message(QueueUrl=url, MessageBody=json.dumps(load_event("push-tagged")))
    (message,) = client.receive_message(
        QueueUrl=url, MessageSystemAttributeNames=["ApproximateReceiveCount"]
    )["Messages"]
    record = sqs_record(message["Body"], message["MessageId"])
    arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    record["eventSourceARN"] = arn["QueueArn"]
    record["receiptHandle"] = message["ReceiptHandle"]
    record["attributes"] = {**message.get("Attributes", {})}
    return record


def refusing_registry(account: str, region: str) -> object:
    raise AuthError("the registry refused our credentials")


def visible_now(client: SQSClient, queue: str = "indexer-queue") -> int:
    url = client.get_queue_url(QueueName=queue)["QueueUrl"]
    return len(client.receive_message(QueueUrl=url).get("Messages", []))


def test_a_record_that_failed_is_hidden_until_its_retry_is_due(aws: SQSClient) -> None:
    record = received_record(aws)
    result = process_event(
        {"Records": [record]},
        FakeContext(),
        client_factory=refusing_registry,
        retry_delay=sqs.delay_retry,
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    assert visible_now(aws) == 0


def test_a_record_that_succeeded_is_left_for_lambda_to_delete(aws: SQSClient) -> None:
    record = received_record(aws)
    event = load_event("push-untagged-child")
    record["body"] = json.dumps(event)
    process_event(
        {"Records": [record]},
        FakeContext(),
        client_factory=refusing_registry,
        retry_delay=sqs.delay_retry,
    )
    assert visible_now(aws) == 1


def test_a_record_sqs_will_not_delay_is_still_reported_for_retry(
    aws: SQSClient, capsys: pytest.CaptureFixture[str]
) -> None:
    record = received_record(aws)
    record["eventSourceARN"] = f"arn:aws:sqs:{REGION}:{ACCOUNT}:a-queue-that-does-not-exist"
    result = process_event(
        {"Records": [record]},
        FakeContext(),
        client_factory=refusing_registry,
        retry_delay=sqs.delay_retry,
    )
    assert result == {"batchItemFailures": [{"itemIdentifier": record["messageId"]}]}
    (warning,) = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "WARN"]
    assert warning["error_type"] == "SqsError"


def test_the_retry_delay_doubles_from_one_minute_with_each_delivery() -> None:
    assert [sqs.retry_delay_seconds(count) for count in (1, 2, 3)] == [60, 120, 240]


def test_the_retry_delay_stops_growing_at_fifteen_minutes() -> None:
    assert sqs.retry_delay_seconds(1000) == 15 * 60


@pytest.mark.parametrize(
    ("arn", "expected"),
    [
        (
            f"arn:aws:sqs:us-west-2:{ACCOUNT}:Indexer-Queue4A7E3555",
            ("us-west-2", f"https://sqs.us-west-2.amazonaws.com/{ACCOUNT}/Indexer-Queue4A7E3555"),
        ),
        (
            f"arn:aws-cn:sqs:cn-north-1:{ACCOUNT}:q",
            ("cn-north-1", f"https://sqs.cn-north-1.amazonaws.com.cn/{ACCOUNT}/q"),
        ),
    ],
)
def test_the_queue_url_comes_from_the_records_arn(arn: str, expected: tuple[str, str]) -> None:
    assert sqs.queue_url(arn) == expected


@pytest.mark.parametrize(
    "arn", ["", "arn:aws:sns:us-west-2:123456789012:q", "arn:aws:sqs:us-west-2:1234:q"]
)
def test_an_arn_that_is_not_a_queue_is_refused(arn: str) -> None:
    with pytest.raises(SqsError, match="not an SQS queue ARN"):
        sqs.queue_url(arn)
