"""The pull-time monitor's handler on "ECS Task State Change" events shaped like AWS's examples.

The fixtures (tests/events/ecs/task-*.json) follow the example events of the ECS
documentation ("Amazon ECS task state change events"): ISO 8601 times with
milliseconds, ``containers[].image`` as the task definition names it and
``imageDigest`` once ECS resolved it. Expected durations are the fixtures'
``pullStoppedAt - pullStartedAt``, worked out by hand in each test.
"""

from __future__ import annotations

import pytest
from soci_indexer import settings
from soci_indexer.aws import pull_time_monitor
from soci_indexer.aws.pull_time_monitor import MonitorConfig, load_config, process_event
from soci_indexer.aws.soci_enabled import is_soci_image
from soci_indexer.errors import ConfigurationError
from support.lambda_shapes import (
    FakeContext,
    assert_valid_emf,
    emf_documents,
    load_event,
    log_lines,
    metric_values,
)

PINNED = "sha256:1f2e3d4c5b6a79880716253443526170a9b8c7d6e5f40312a1b2c3d4e5f60718"
CONFIG = MonitorConfig(metrics_namespace="Test/PullTimes", service_name="Stack/Monitor")


def run(name: str, capsys: pytest.CaptureFixture[str], config: MonitorConfig = CONFIG) -> str:
    capsys.readouterr()
    process_event(load_event(f"ecs/{name}"), FakeContext(), config=config)
    return capsys.readouterr().out


def pull_documents(out: str) -> list[dict[str, object]]:
    return [d for d in emf_documents(out) if settings.METRIC_PULL_SECONDS in d]


def test_a_running_soci_task_records_its_pull_seconds_with_its_dimensions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (document,) = pull_documents(run("task-running-soci", capsys))
    assert_valid_emf(document)
    # 02:10:24.857 - 02:10:12.512
    assert document[settings.METRIC_PULL_SECONDS] == 12.345
    assert (document["soci"], document["cluster"], document["family"]) == (
        "true",
        "sims",
        "simulation",
    )
    meta = document["_aws"]
    assert isinstance(meta, dict)
    (directive,) = meta["CloudWatchMetrics"]
    assert directive["Namespace"] == "Test/PullTimes"
    assert directive["Dimensions"] == [
        ["service"],
        ["service", "soci"],
        ["service", "soci", "cluster"],
        ["service", "soci", "cluster", "family"],
    ]
    assert directive["Metrics"] == [{"Name": "PullSeconds", "Unit": "Seconds"}]
    assert document["service"] == "Stack/Monitor"


def test_a_running_plain_task_records_its_pull_as_not_soci(
    capsys: pytest.CaptureFixture[str],
) -> None:
    (document,) = pull_documents(run("task-running-plain", capsys))
    # 02:05:56.750 - 02:05:11.250
    assert (document[settings.METRIC_PULL_SECONDS], document["soci"]) == (45.5, "false")


def test_an_image_pinned_to_a_listed_digest_counts_as_soci(
    capsys: pytest.CaptureFixture[str],
) -> None:
    listed = MonitorConfig(soci_digests=frozenset({PINNED}))
    (document,) = pull_documents(run("task-running-pinned-digest", capsys, listed))
    # 02:20:15.250 - 02:20:07.000
    assert (document[settings.METRIC_PULL_SECONDS], document["soci"]) == (8.25, "true")
    assert document["family"] == "worker"
    (unlisted,) = pull_documents(run("task-running-pinned-digest", capsys))
    assert unlisted["soci"] == "false"


@pytest.mark.parametrize(
    ("fixture", "reason"),
    [
        ("task-running-soci", "pulled"),
        ("task-pending", "pending"),
        ("task-stopped-before-pull", "not-pulled"),
        ("task-stopped-after-running", "not-running"),
    ],
)
def test_every_event_is_counted_by_what_it_says_of_the_pull(
    fixture: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    values = metric_values(emf_documents(run(fixture, capsys)))
    assert values[(settings.METRIC_TASK_EVENTS, reason)] == [1]


@pytest.mark.parametrize(
    "fixture", ["task-pending", "task-stopped-before-pull", "task-stopped-after-running"]
)
def test_events_that_are_not_a_finished_pull_of_a_running_task_record_no_pull_time(
    fixture: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = run(fixture, capsys)
    assert pull_documents(out) == []
    assert all(line["level"] == "INFO" for line in log_lines(out))


def test_a_malformed_event_is_counted_and_logged_in_one_line_not_raised(
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = load_event("ecs/task-running-soci")
    event["detail"]["pullStoppedAt"] = "yesterday"
    result = process_event(event, FakeContext(), config=CONFIG)
    out = capsys.readouterr().out
    assert result["state"] == "invalid-event"
    assert metric_values(emf_documents(out))[(settings.METRIC_TASK_EVENTS, "invalid-event")] == [1]
    (line,) = log_lines(out)
    assert line["level"] == "ERROR"
    assert line["error"] == "pullStoppedAt is not an ISO 8601 time: 'yesterday'"


def test_an_ecr_event_is_not_a_task_event(capsys: pytest.CaptureFixture[str]) -> None:
    result = process_event(load_event("push-tagged"), FakeContext(), config=CONFIG)
    assert result["state"] == "invalid-event"
    assert "not an ECS Task State Change event" in str(result["error"])


def test_the_handler_returns_what_it_recorded(capsys: pytest.CaptureFixture[str]) -> None:
    result = pull_time_monitor.handler(load_event("ecs/task-running-soci"), FakeContext())
    assert result == {
        "task": "arn:aws:ecs:us-west-2:123456789012:task/sims/0a1b2c3d4e5f40718293a4b5c6d7e8f9",
        "cluster": "sims",
        "family": "simulation",
        "state": "pulled",
        "pull_seconds": 12.345,
        "soci": True,
    }


@pytest.mark.parametrize(
    ("image", "digest", "expected"),
    [
        ("123456789012.dkr.ecr.us-west-2.amazonaws.com/app:v1-soci", "", True),
        ("123456789012.dkr.ecr.us-west-2.amazonaws.com/app:v1", "", False),
        ("registry:5000/app-soci:v1", "", False),  # the suffix is on the repository, not the tag
        ("registry:5000/app", "", False),  # no tag: latest, not a SOCI output tag
        ("app:-soci", "", False),  # the suffix alone is no output tag of the builder
        ("app:v1-soci@" + PINNED, "", True),
        ("app@" + PINNED, "", True),
        ("app:v1", PINNED, True),  # resolved by ECS to a listed digest
        ("app@sha256:" + "0" * 64, "", False),
    ],
)
def test_the_soci_decision_reads_the_tag_suffix_and_the_listed_digests(
    image: str, digest: str, expected: bool
) -> None:
    assert is_soci_image(image, digest, "-soci", {PINNED}) is expected


def test_the_configuration_comes_from_the_variables_the_construct_sets() -> None:
    config = load_config(
        {
            settings.ENV_TAG_SUFFIX: "-lazy",
            settings.ENV_SOCI_DIGESTS: f"{PINNED}, ",
            settings.ENV_METRICS_NAMESPACE: "Team/Pulls",
            settings.ENV_SERVICE_NAME: "Stack/Monitor",
            settings.ENV_LOG_LEVEL: "warn",
        }
    )
    assert config == MonitorConfig(
        "-lazy", frozenset({PINNED}), "Team/Pulls", "Stack/Monitor", "WARN"
    )
    assert load_config({}) == MonitorConfig()


def test_bad_configuration_names_every_variable_in_one_error() -> None:
    with pytest.raises(ConfigurationError) as raised:
        load_config(
            {
                settings.ENV_TAG_SUFFIX: "no/slash",
                settings.ENV_SOCI_DIGESTS: "sha256:abc",
                settings.ENV_METRICS_NAMESPACE: "AWS/ECS",
            }
        )
    assert [problem.split("=")[0].split(":")[0] for problem in raised.value.problems] == [
        settings.ENV_TAG_SUFFIX,
        settings.ENV_SOCI_DIGESTS,
        settings.ENV_METRICS_NAMESPACE,
    ]


def test_the_handler_needs_no_context_object_to_record_a_pull(
    capsys: pytest.CaptureFixture[str],
) -> None:
    result = pull_time_monitor.handler(load_event("ecs/task-running-plain"), None)
    assert result["pull_seconds"] == 45.5
    (document,) = pull_documents(capsys.readouterr().out)
    assert document[settings.METRIC_PULL_SECONDS] == 45.5


def test_a_pull_is_recorded_even_when_the_detail_has_no_task_arn(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The ARN is only logged: the task's resource ARN stands in, the pull time is kept."""
    event = load_event("ecs/task-running-plain")
    detail = dict(event["detail"])
    arn = detail.pop("taskArn")
    result = process_event({**event, "detail": detail}, FakeContext(), config=CONFIG)
    assert (result["state"], result["pull_seconds"], result["task"]) == ("pulled", 45.5, arn)
    (document,) = pull_documents(capsys.readouterr().out)
    assert document[settings.METRIC_PULL_SECONDS] == 45.5
