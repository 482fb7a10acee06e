"""JSON log lines and EMF documents, checked against their specifications."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime

import pytest
from soci_indexer.aws.telemetry import Logger, Metrics, Unit, redact
from support.lambda_shapes import assert_valid_emf


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def logger(stream: io.StringIO) -> Logger:
    return Logger("indexer", name="soci_indexer_test", stream=stream)


def test_a_log_line_is_one_json_object_with_level_message_time_and_service(
    logger: Logger, stream: io.StringIO
) -> None:
    logger.info("image indexed", seconds=1.5)
    (line,) = _lines(stream)
    assert (line["level"], line["message"], line["service"], line["seconds"]) == (
        "INFO",
        "image indexed",
        "indexer",
        1.5,
    )
    stamp = datetime.fromisoformat(str(line["timestamp"]))
    assert stamp.utcoffset() == UTC.utcoffset(None)


def test_appended_keys_appear_on_every_following_line(logger: Logger, stream: io.StringIO) -> None:
    logger.append_keys(request_id="r-1", repository="team-a/simulation")
    logger.info("one")
    logger.warning("two")
    assert [(line["request_id"], line["repository"]) for line in _lines(stream)] == [
        ("r-1", "team-a/simulation"),
        ("r-1", "team-a/simulation"),
    ]


def test_cleared_keys_do_not_leak_into_the_next_invocation(
    logger: Logger, stream: io.StringIO
) -> None:
    logger.append_keys(request_id="r-1")
    logger.clear_keys()
    logger.info("next")
    assert "request_id" not in _lines(stream)[0]


def test_lines_below_the_level_are_not_written(stream: io.StringIO) -> None:
    logger = Logger("indexer", name="soci_indexer_test", level="WARNING", stream=stream)
    logger.info("quiet")
    logger.error("loud")
    assert [line["message"] for line in _lines(stream)] == ["loud"]


def test_records_of_child_loggers_come_out_as_json_with_the_context(
    logger: Logger, stream: io.StringIO
) -> None:
    logger.append_keys(request_id="r-1")
    logging.getLogger("soci_indexer_test.registry").warning("retrying %s", "GET /v2/")
    (line,) = _lines(stream)
    assert (line["message"], line["logger"], line["request_id"]) == (
        "retrying GET /v2/",
        "soci_indexer_test.registry",
        "r-1",
    )


def test_an_exception_line_carries_its_type_and_traceback(
    logger: Logger, stream: io.StringIO
) -> None:
    try:
        raise KeyError("layers")
    except KeyError:
        logger.exception("unexpected error")
    (line,) = _lines(stream)
    assert line["error_type"] == "KeyError"
    assert "Traceback" in str(line["traceback"])


def test_fields_named_like_secrets_are_redacted(logger: Logger, stream: io.StringIO) -> None:
    logger.info("auth", authorization="Basic dXNlcjpwYXNz", password="hunter2", token="t0k3n")
    line = _lines(stream)[0]
    assert (line["authorization"], line["password"], line["token"]) == ("[redacted]",) * 3


def test_auth_header_values_in_messages_are_redacted(logger: Logger, stream: io.StringIO) -> None:
    logger.error("sent Authorization: Basic QVdTOmV5SnBZWGxzYjJGa0lq and got 401")
    assert "QVdTOmV5SnBZWGxzYjJGa0lq" not in stream.getvalue()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Bearer eyJhbGciOiJFUzI1NiJ9.x.y", "Bearer [redacted]"),
        ("basic QVdTOnRva2Vu==", "basic [redacted]"),
        ("https://AWS:s3cr3t@123456789012.dkr.ecr", "https://[redacted]@123456789012.dkr.ecr"),
        ("pulled sha256:abc in 2 s", "pulled sha256:abc in 2 s"),
    ],
)
def test_redaction_blanks_credentials_and_leaves_other_text(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_metrics_are_written_as_valid_emf_with_the_service_dimension(
    stream: io.StringIO,
) -> None:
    metrics = Metrics("SociIndexBuilder", "indexer", stream=stream)
    metrics.add("ImagesIndexed", Unit.COUNT, 1)
    metrics.add("BytesIndexed", Unit.BYTES, 52428800)
    metrics.flush()
    (document,) = _lines(stream)
    assert_valid_emf(document)
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert directive["Namespace"] == "SociIndexBuilder"
    assert directive["Dimensions"] == [["service"]]
    assert directive["Metrics"] == [
        {"Name": "ImagesIndexed", "Unit": "Count"},
        {"Name": "BytesIndexed", "Unit": "Bytes"},
    ]
    assert (document["service"], document["ImagesIndexed"], document["BytesIndexed"]) == (
        "indexer",
        1,
        52428800,
    )


def test_a_metric_with_a_reason_is_published_with_and_without_the_reason(
    stream: io.StringIO,
) -> None:
    metrics = Metrics("SociIndexBuilder", "indexer", stream=stream)
    metrics.add("ImagesSkipped", Unit.COUNT, 1, reason="untagged")
    metrics.flush()
    (document,) = _lines(stream)
    assert_valid_emf(document)
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
        ["service"],
        ["service", "reason"],
    ]
    assert document["reason"] == "untagged"


def test_reasons_go_to_separate_documents(stream: io.StringIO) -> None:
    metrics = Metrics("SociIndexBuilder", "indexer", stream=stream)
    metrics.add("ImagesSkipped", Unit.COUNT, 1, reason="untagged")
    metrics.add("ImagesSkipped", Unit.COUNT, 1, reason="not-a-push")
    metrics.flush()
    assert sorted(str(document["reason"]) for document in _lines(stream)) == [
        "not-a-push",
        "untagged",
    ]


def test_dimensions_are_published_at_each_leading_level_in_the_order_given(
    stream: io.StringIO,
) -> None:
    metrics = Metrics("SociPullTimes", "monitor", stream=stream)
    metrics.add("PullSeconds", Unit.SECONDS, 12.5, dimensions={"soci": "true", "cluster": "c"})
    metrics.add("PullSeconds", Unit.SECONDS, 40.0, dimensions={"soci": "false", "cluster": "c"})
    metrics.flush()
    documents = _lines(stream)
    for document in documents:
        assert_valid_emf(document)
        assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [
            ["service"],
            ["service", "soci"],
            ["service", "soci", "cluster"],
        ]
    assert sorted((d["soci"], d["cluster"], d["PullSeconds"]) for d in documents) == [
        ("false", "c", 40.0),
        ("true", "c", 12.5),
    ]


def test_repeated_values_become_arrays_of_at_most_one_hundred(stream: io.StringIO) -> None:
    metrics = Metrics("SociIndexBuilder", "indexer", stream=stream)
    for seconds in range(150):
        metrics.add("BuildSeconds", Unit.SECONDS, seconds)
    metrics.flush()
    documents = _lines(stream)
    for document in documents:
        assert_valid_emf(document)
    assert [document["BuildSeconds"] for document in documents] == [
        list(range(100)),
        list(range(100, 150)),
    ]


def test_flush_forgets_what_it_wrote(stream: io.StringIO) -> None:
    metrics = Metrics("SociIndexBuilder", "indexer", stream=stream)
    metrics.add("ImagesIndexed", Unit.COUNT, 1)
    metrics.flush()
    metrics.flush()
    assert len(_lines(stream)) == 1


def test_a_metric_keeps_one_unit() -> None:
    metrics = Metrics("SociIndexBuilder", "indexer")
    metrics.add("BuildSeconds", Unit.SECONDS, 1.0)
    with pytest.raises(ValueError, match="BuildSeconds"):
        metrics.add("BuildSeconds", Unit.COUNT, 1)


# Lambda's application log-level filter (JSON log format): a line whose "level" is missing
# or not one of these counts as INFO; a line is kept when its level is at or above the
# function's level.
LAMBDA_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")


def _lambda_keeps(line: dict[str, object], function_level: str) -> bool:
    level = str(line.get("level", "")).upper()
    rank = LAMBDA_LEVELS.index(level) if level in LAMBDA_LEVELS else LAMBDA_LEVELS.index("INFO")
    return rank >= LAMBDA_LEVELS.index(function_level)


def _write_everything(level: str, stream: io.StringIO) -> None:
    logger = Logger("indexer", name="soci_indexer_test", level=level, stream=stream)
    metrics = Metrics("SociIndexBuilder", "indexer", level=level, stream=stream)
    logger.debug("progress")
    logger.info("image indexed")
    logger.warning("layer skipped")
    logger.error("image failed")
    metrics.add("ImagesIndexed", Unit.COUNT, 1)
    metrics.add("ImagesSkipped", Unit.COUNT, 1, reason="untagged")
    metrics.flush()


@pytest.mark.parametrize("level", LAMBDA_LEVELS)
def test_every_metric_survives_lambdas_log_level_filter_at_each_level(
    level: str, stream: io.StringIO
) -> None:
    _write_everything(level, stream)
    documents = [line for line in _lines(stream) if "_aws" in line]
    assert len(documents) == 2
    assert [d for d in documents if _lambda_keeps(d, level)] == documents


@pytest.mark.parametrize("level", LAMBDA_LEVELS)
def test_every_line_says_a_level_lambda_knows(level: str, stream: io.StringIO) -> None:
    _write_everything(level, stream)
    assert {str(line.get("level")) for line in _lines(stream)} <= set(LAMBDA_LEVELS)


def test_a_warning_is_written_with_lambdas_name_for_it(logger: Logger, stream: io.StringIO) -> None:
    logger.warning("layer skipped")
    assert _lines(stream)[0]["level"] == "WARN"
