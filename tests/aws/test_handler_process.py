"""The handler on Lambda-shaped deliveries, for every path that stops before the registry."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace

import pytest
from soci_indexer.aws import handler
from soci_indexer.aws.handler import process_event
from soci_indexer.errors import AuthError, IndexingFailed
from support.lambda_shapes import (
    ACCOUNT,
    FakeContext,
    assert_valid_emf,
    emf_documents,
    load_event,
    log_lines,
    metric_values,
    sqs_batch,
)

OTHER_ACCOUNT = "210987654321"


def _body(name: str, **envelope: str) -> str:
    event = load_event(name)
    event.update(envelope)
    return json.dumps(event)


def _refusing_registry(account: str, region: str) -> object:
    raise AuthError("the registry refused our credentials")


def test_a_batch_reports_only_the_failing_record(context: FakeContext) -> None:
    batch = sqs_batch(_body("push-untagged-child"), _body("push-tagged"))
    result = process_event(batch, context, client_factory=_refusing_registry)
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}


def test_a_malformed_message_body_is_skipped_and_never_delivered_again(
    context: FakeContext, no_registry: Callable[[str, str], object]
) -> None:
    batch = sqs_batch(_body("delete"), '{"source": "aws.ecr", "detail', _body("push-failed"))
    result = process_event(batch, context, client_factory=no_registry)
    assert result == {"batchItemFailures": []}


def test_an_event_of_a_refused_account_is_skipped_and_never_delivered_again(
    context: FakeContext,
    no_registry: Callable[[str, str], object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    batch = sqs_batch(_body("push-tagged", account=OTHER_ACCOUNT))
    result = process_event(batch, context, client_factory=no_registry)
    assert result == {"batchItemFailures": []}
    values = metric_values(emf_documents(capsys.readouterr().out))
    assert values == {("ImagesSkipped", "account-not-allowed"): [1]}


def test_a_rejected_record_is_logged_as_an_error_with_its_type(
    context: FakeContext,
    no_registry: Callable[[str, str], object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    process_event(sqs_batch("not json"), context, client_factory=no_registry)
    (error,) = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert (error["error_type"], error["reason"]) == ("InvalidEvent", "invalid-event")


def test_a_retryable_failure_is_not_counted_as_a_skip(
    context: FakeContext, capsys: pytest.CaptureFixture[str]
) -> None:
    process_event(sqs_batch(_body("push-tagged")), context, client_factory=_refusing_registry)
    values = metric_values(emf_documents(capsys.readouterr().out))
    assert values == {("ImagesFailed", "AuthError"): [1]}


def test_a_batch_of_skipped_events_has_no_failures_and_never_asks_for_a_registry(
    context: FakeContext, no_registry: Callable[[str, str], object]
) -> None:
    names = ("push-untagged-child", "push-soci-output", "push-soci-index-manifest", "delete")
    batch = sqs_batch(*(_body(name) for name in names))
    result = process_event(batch, context, client_factory=no_registry)
    assert result == {"batchItemFailures": []}


def test_an_empty_batch_succeeds(
    context: FakeContext, no_registry: Callable[[str, str], object]
) -> None:
    result = process_event({"Records": []}, context, client_factory=no_registry)
    assert result == {"batchItemFailures": []}


def test_a_bare_eventbridge_event_that_is_skipped_returns_why(
    context: FakeContext, no_registry: Callable[[str, str], object]
) -> None:
    result = process_event(load_event("push-untagged-child"), context, client_factory=no_registry)
    assert (result["status"], result["reason"]) == ("skipped", "untagged")


def test_a_bare_eventbridge_event_that_fails_raises_so_lambda_retries_it(
    context: FakeContext, no_registry: Callable[[str, str], object]
) -> None:
    event = load_event("push-tagged")
    event["account"] = OTHER_ACCOUNT
    with pytest.raises(IndexingFailed, match="AccountNotAllowed"):
        process_event(event, context, client_factory=no_registry)


def test_an_invocation_that_is_neither_sqs_nor_eventbridge_fails(
    context: FakeContext, no_registry: Callable[[str, str], object]
) -> None:
    with pytest.raises(IndexingFailed, match="InvalidEvent"):
        process_event({"hello": "world"}, context, client_factory=no_registry)


def test_an_invocation_whose_payload_is_not_an_object_fails(
    context: FakeContext, no_registry: Callable[[str, str], object]
) -> None:
    with pytest.raises(IndexingFailed, match="InvalidEvent"):
        process_event(["Records"], context, client_factory=no_registry)


def test_too_little_time_left_fails_the_record_before_any_registry_call(
    no_registry: Callable[[str, str], object],
) -> None:
    context = FakeContext(remaining_ms=59_000)
    batch = sqs_batch(_body("push-tagged"))
    result = process_event(batch, context, client_factory=no_registry)
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}


def test_a_cross_account_event_reaches_that_accounts_registry_when_allowed(
    context: FakeContext,
) -> None:
    asked: list[tuple[str, str]] = []

    def refusing_registry(account: str, region: str) -> object:
        asked.append((account, region))
        raise AuthError("no token for this test")

    config = replace(handler.CONFIG, allow_cross_account=True)
    batch = sqs_batch(_body("push-tagged", account=OTHER_ACCOUNT, region="eu-west-1"))
    result = process_event(batch, context, client_factory=refusing_registry, config=config)
    assert asked == [(OTHER_ACCOUNT, "eu-west-1")]
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}


def test_an_unexpected_error_fails_its_record_and_logs_a_traceback(
    context: FakeContext, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken_registry(account: str, region: str) -> object:
        raise RuntimeError("bug")

    batch = sqs_batch(_body("push-tagged"), _body("delete"))
    result = process_event(batch, context, client_factory=broken_registry)
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}
    errors = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert errors[0]["error_type"] == "RuntimeError"
    assert "Traceback" in str(errors[0]["traceback"])


def test_skips_and_failures_are_counted_by_reason_in_valid_emf(
    context: FakeContext,
    no_registry: Callable[[str, str], object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    batch = sqs_batch(
        _body("push-untagged-child"),
        _body("push-soci-output"),
        _body("delete"),
        _body("push-failed"),
        _body("push-soci-index-manifest"),
        _body("push-untagged-child"),
        "not json",
    )
    process_event(batch, context, client_factory=no_registry)
    documents = emf_documents(capsys.readouterr().out)
    for document in documents:
        assert_valid_emf(document)
    assert metric_values(documents) == {
        ("ImagesSkipped", "untagged"): [1, 1],
        ("ImagesSkipped", "soci-output-tag"): [1],
        ("ImagesSkipped", "not-a-push"): [1],
        ("ImagesSkipped", "push-failed"): [1],
        ("ImagesSkipped", "soci-artifact"): [1],
        ("ImagesSkipped", "invalid-event"): [1],
    }


def test_metrics_use_the_configured_namespace_and_service(
    context: FakeContext,
    no_registry: Callable[[str, str], object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    process_event(load_event("delete"), context, client_factory=no_registry)
    (document,) = emf_documents(capsys.readouterr().out)
    directive = document["_aws"]["CloudWatchMetrics"][0]
    assert (directive["Namespace"], document["service"]) == (
        handler.CONFIG.metrics_namespace,
        handler.CONFIG.service_name,
    )


def test_log_lines_carry_request_message_repository_digest_and_tag(
    context: FakeContext,
    no_registry: Callable[[str, str], object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    process_event(sqs_batch(_body("push-soci-output")), context, client_factory=no_registry)
    (skipped,) = [
        line for line in log_lines(capsys.readouterr().out) if line["message"] == "image skipped"
    ]
    assert skipped["request_id"] == context.aws_request_id
    assert skipped["event_id"] == "13cde686-328b-6117-af20-0e5566167482"
    assert skipped["message_id"] == "msg-0"
    assert (skipped["repository"], skipped["tag"], skipped["reason"]) == (
        "team-a/simulation",
        "v1.4.2-soci",
        "soci-output-tag",
    )
    assert skipped["digest"] == "sha256:" + "2" * 64


def test_context_of_one_record_does_not_leak_into_the_next(
    context: FakeContext,
    no_registry: Callable[[str, str], object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    process_event(sqs_batch(_body("push-soci-output"), "[]"), context, client_factory=no_registry)
    (failed,) = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert failed["message_id"] == "msg-1"
    assert "tag" not in failed


def test_the_batch_summary_is_not_labelled_with_the_last_record(
    context: FakeContext,
    no_registry: Callable[[str, str], object],
    capsys: pytest.CaptureFixture[str],
) -> None:
    process_event(sqs_batch(_body("delete")), context, client_factory=no_registry)
    lines = log_lines(capsys.readouterr().out)
    (summary,) = [line for line in lines if line["message"] == "batch done"]
    assert (summary["records"], summary["failed"]) == (1, 0)
    assert "message_id" not in summary
    assert "repository" not in summary


def test_the_production_client_factory_targets_the_ecr_host_of_the_event() -> None:
    client = handler._ecr_client_for(ACCOUNT, "cn-north-1")
    assert client.host == f"{ACCOUNT}.dkr.ecr.cn-north-1.amazonaws.com.cn"
    assert client.scheme == "https"
