"""A failed SQS record comes back after minutes, not after the queue's visibility timeout.

The queue's visibility timeout is six times the function timeout (90 minutes by
default), so that a message is never handed out twice while an invocation may
still work on it. A record the handler failed and reported for retry would wait
that long too, three times, before the dead-letter queue. Instead the handler
hides it only for ``retry_delay_seconds(receive count)`` with
``sqs:ChangeMessageVisibility`` on its receipt handle; the queue URL comes from
the record's ``eventSourceARN``. boto3 is imported only when a delay is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from soci_indexer import settings
from soci_indexer.aws.ecr import ACCOUNT, REGION
from soci_indexer.errors import SqsError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient


def retry_delay_seconds(receive_count: int) -> int:
    """How long a record failed on its ``receive_count``-th delivery stays hidden."""
    doublings = min(max(receive_count, 1) - 1, 16)
    return min(settings.RETRY_DELAY_SECONDS << doublings, settings.MAX_RETRY_DELAY_SECONDS)


def queue_url(queue_arn: str) -> tuple[str, str]:
    """``(region, URL)`` of the queue ``arn:<partition>:sqs:<region>:<account>:<name>``."""
    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs":
        raise SqsError(f"eventSourceARN {queue_arn!r} is not an SQS queue ARN")
    region, account, name = parts[3], parts[4], parts[5]
    if not REGION.fullmatch(region) or not ACCOUNT.fullmatch(account) or not name:
        raise SqsError(f"eventSourceARN {queue_arn!r} is not an SQS queue ARN")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return region, f"https://sqs.{region}.{suffix}/{account}/{name}"


def delay_retry(record: Mapping[str, object]) -> int:
    """Hide the SQS ``record`` for its retry delay; return the delay in seconds.

    Raises ``SqsError`` when the record lacks what is needed or SQS refuses;
    the record is then retried after the queue's visibility timeout.
    """
    arn = record.get("eventSourceARN")
    handle = record.get("receiptHandle")
    attributes = record.get("attributes")
    if not isinstance(arn, str) or not isinstance(handle, str) or not handle:
        raise SqsError("the SQS record has no eventSourceARN or receiptHandle")
    count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
    try:
        receive_count = int(str(count))
    except ValueError:
        raise SqsError(f"ApproximateReceiveCount {count!r} is not a number") from None
    region, url = queue_url(arn)
    seconds = retry_delay_seconds(receive_count)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        _client(region).change_message_visibility(
            QueueUrl=url, ReceiptHandle=handle, VisibilityTimeout=seconds
        )
    except (BotoCoreError, ClientError) as exc:
        raise SqsError(f"ChangeMessageVisibility on {url} failed: {exc}") from None
    return seconds


def _client(region: str) -> SQSClient:
    """A new client per failed record: rare enough that keeping one buys nothing."""
    import boto3  # the Lambda runtime ships it

    return boto3.client("sqs", region_name=region)
