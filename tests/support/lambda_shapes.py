"""Lambda-shaped inputs and output readers for the handler tests."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).resolve().parent.parent / "events"
ACCOUNT = "123456789012"
FUNCTION_ARN = f"arn:aws:lambda:us-west-2:{ACCOUNT}:function:soci-index-builder-Function76856677"


@dataclass
class FakeContext:
    """The attributes and method of the Lambda context object the handler reads."""

    remaining_ms: int = 900_000
    aws_request_id: str = "8f5e5a4c-2c5b-4c8e-9d43-6f0e1c2b7a10"
    invoked_function_arn: str = FUNCTION_ARN

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def load_event(name: str) -> dict[str, Any]:
    """A fresh copy of ``tests/events/<name>.json``."""
    loaded: dict[str, Any] = json.loads((EVENTS_DIR / f"{name}.json").read_text())
    return copy.deepcopy(loaded)


def sqs_record(body: str, message_id: str) -> dict[str, object]:
    """One record as an SQS event source mapping delivers it to Lambda."""
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id.replace('-', '')}Zj6rYigCgxlaS3SLy0a",
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1794794074000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1794794074012",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:us-west-2:{ACCOUNT}:soci-index-builder-Queue4A7E3555",
        "awsRegion": "us-west-2",
    }


def sqs_batch(*bodies: str) -> dict[str, object]:
    """An SQS event whose records carry ``bodies``; message ids are ``msg-0``, ``msg-1``..."""
    return {"Records": [sqs_record(body, f"msg-{i}") for i, body in enumerate(bodies)]}


def emitted_json(text: str) -> list[dict[str, object]]:
    """Every stdout line parsed as JSON; a line that is not JSON fails the test."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def emf_documents(text: str) -> list[dict[str, object]]:
    return [line for line in emitted_json(text) if "_aws" in line]


def log_lines(text: str) -> list[dict[str, object]]:
    return [line for line in emitted_json(text) if "_aws" not in line]


EMF_UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)


def assert_valid_emf(document: dict[str, object]) -> None:
    """Check one document against the CloudWatch embedded metric format specification.

    Written from the specification, not from our writer: root ``_aws`` with an
    integer ``Timestamp`` and ``CloudWatchMetrics`` directives; each directive has a
    ``Namespace``, ``Dimensions`` (arrays of at most 30 keys, each a string member
    at the top level) and ``Metrics`` (``Name`` and a known ``Unit``, the value a
    number or an array of at most 100 numbers at the top level).
    """
    meta = document["_aws"]
    assert isinstance(meta, dict)
    assert isinstance(meta["Timestamp"], int)
    directives = meta["CloudWatchMetrics"]
    assert isinstance(directives, list)
    assert directives
    for directive in directives:
        assert isinstance(directive["Namespace"], str)
        assert 1 <= len(directive["Namespace"]) <= 255
        for dimension_set in directive["Dimensions"]:
            assert 1 <= len(dimension_set) <= 30
            for key in dimension_set:
                assert isinstance(document[key], str)
        assert 1 <= len(directive["Metrics"]) <= 100
        for metric in directive["Metrics"]:
            assert set(metric) <= {"Name", "Unit", "StorageResolution"}
            assert metric["Unit"] in EMF_UNITS
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def metric_values(documents: list[dict[str, object]]) -> dict[tuple[str, str], list[float]]:
    """``(metric name, reason or "") -> values`` over every EMF document."""
    found: dict[tuple[str, str], list[float]] = {}
    for document in documents:
        meta = document["_aws"]
        assert isinstance(meta, dict)
        for directive in meta["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                value = document[metric["Name"]]
                values = value if isinstance(value, list) else [value]
                key = (metric["Name"], str(document.get("reason", "")))
                found.setdefault(key, []).extend(values)
    return found
