"""``soci-indexer pull-times`` against canned ECS responses on the real botocore client.

The fixtures are response bodies as ECS sends them (JSON 1.1, timestamps in
epoch seconds). They go through botocore's own response parser and the
Stubber validates them against the ECS service model, so the code under test
sees exactly the types a live call returns. moto is not used: its ECS does not
record pull timestamps.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import Stubber
from soci_indexer.aws import pull_times
from soci_indexer.aws.pull_times import collect
from soci_indexer.cli.main import main
from soci_indexer.errors import EcsError
from support.ecs_responses import ecs_client, wire_response

TASK = "arn:aws:ecs:us-west-2:123456789012:task/sims/"
RUNNING_SOCI = TASK + "0a1b2c3d4e5f40718293a4b5c6d7e8f9"
STOPPED_PLAIN = TASK + "7c9e6679742540de944be07fc1f90ae7"
PROVISIONING = TASK + "3f2504e04f8941d39a0c0305e82c3301"
RUNNING_EC2 = TASK + "9b2f1c0d6e7a48b5a3c4d5e6f7a8b9c0"
NEVER_PULLED = TASK + "5d41402abc4b4a76b9719d911017c592"
ALL_TASKS = [RUNNING_SOCI, STOPPED_PLAIN, PROVISIONING, RUNNING_EC2, NEVER_PULLED]


@pytest.fixture
def ecs() -> Any:
    return ecs_client()


@pytest.fixture
def stub(ecs: Any) -> Iterator[Stubber]:
    with Stubber(ecs) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def expect_describe(
    stub: Stubber, ecs: Any, tasks: list[str], fixture: str = "describe-tasks.json"
) -> None:
    response = wire_response(ecs, "DescribeTasks", fixture)
    stub.add_response("describe_tasks", response, {"cluster": "sims", "tasks": tasks})


def expect_listing(stub: Stubber, ecs: Any) -> None:
    for status, fixture in (("RUNNING", "running"), ("STOPPED", "stopped")):
        stub.add_response(
            "list_tasks",
            wire_response(ecs, "ListTasks", f"list-tasks-{fixture}.json"),
            {"cluster": "sims", "desiredStatus": status, "maxResults": 100},
        )


def test_pull_seconds_are_pull_stopped_minus_pull_started(stub: Stubber, ecs: Any) -> None:
    expect_describe(stub, ecs, ALL_TASKS)
    tasks = {task.task_arn: task for task in collect(ecs, "sims", ALL_TASKS).tasks}
    # 1794795024.857 - 1794795012.512, 1794792656.75 - 1794792611.25, 1794794704.6 - 1794794702.1
    assert tasks[RUNNING_SOCI].pull_seconds == pytest.approx(12.345, abs=1e-3)
    assert tasks[STOPPED_PLAIN].pull_seconds == pytest.approx(45.5, abs=1e-3)
    assert tasks[RUNNING_EC2].pull_seconds == pytest.approx(2.5, abs=1e-3)


def test_tasks_without_pull_timestamps_are_pending_until_they_stop(stub: Stubber, ecs: Any) -> None:
    expect_describe(stub, ecs, ALL_TASKS)
    tasks = {task.task_arn: task for task in collect(ecs, "sims", ALL_TASKS).tasks}
    assert (tasks[PROVISIONING].pull_seconds, tasks[PROVISIONING].pull_state) == (None, "pending")
    assert tasks[NEVER_PULLED].pull_state == "not-pulled"


def test_tasks_are_listed_most_recently_created_first(stub: Stubber, ecs: Any) -> None:
    expect_describe(stub, ecs, ALL_TASKS)
    report = collect(ecs, "sims", ALL_TASKS)
    assert [task.task_arn for task in report.tasks] == [
        PROVISIONING,
        RUNNING_SOCI,
        RUNNING_EC2,
        NEVER_PULLED,
        STOPPED_PLAIN,
    ]


def test_without_tasks_the_recent_running_and_stopped_tasks_are_described(
    stub: Stubber, ecs: Any
) -> None:
    expect_listing(stub, ecs)
    expect_describe(
        stub, ecs, [PROVISIONING, RUNNING_SOCI, RUNNING_EC2, NEVER_PULLED, STOPPED_PLAIN]
    )
    assert len(collect(ecs, "sims").tasks) == 5


def test_tasks_are_described_in_batches_of_one_hundred(stub: Stubber, ecs: Any) -> None:
    ids = [f"{n:032x}" for n in range(150)]
    expect_describe(stub, ecs, ids[:100], "describe-tasks-missing.json")
    expect_describe(stub, ecs, ids[100:], "describe-tasks-missing.json")
    collect(ecs, "sims", ids)


def test_a_task_given_twice_is_described_once(stub: Stubber, ecs: Any) -> None:
    expect_describe(stub, ecs, [RUNNING_SOCI], "describe-tasks-missing.json")
    collect(ecs, "sims", [RUNNING_SOCI, RUNNING_SOCI])


def test_the_table_shows_id_definition_launch_start_pull_and_status(
    stub: Stubber, ecs: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pull_times, "ecs_client", lambda region: ecs)
    expect_describe(stub, ecs, ALL_TASKS)
    argv = ["pull-times", "--cluster", "sims", *(arg for t in ALL_TASKS for arg in ("--task", t))]
    assert main(argv) == 0
    rows = [re.split(r"\s{2,}", line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == ["TASK", "DEFINITION", "LAUNCH", "STARTED", "PULL", "STATUS"]
    assert rows[1:6] == [
        [PROVISIONING[-32:], "simulation:7", "FARGATE 1.4.0", "-", "pending", "PROVISIONING"],
        [
            RUNNING_SOCI[-32:],
            "simulation:7",
            "FARGATE 1.4.0",
            "2026-11-16T02:10:31Z",
            "12.3 s",
            "RUNNING",
        ],
        [RUNNING_EC2[-32:], "worker:3", "EC2", "2026-11-16T02:05:06Z", "2.5 s", "RUNNING"],
        [NEVER_PULLED[-32:], "simulation:7", "FARGATE 1.4.0", "-", "not-pulled", "STOPPED"],
        [
            STOPPED_PLAIN[-32:],
            "simulation:6",
            "FARGATE 1.4.0",
            "2026-11-16T01:31:02Z",
            "45.5 s",
            "STOPPED",
        ],
    ]
    assert rows[6] == ["5 tasks, 3 pulled: median 12.3 s, max 45.5 s"]


def test_json_output_carries_iso_times_and_null_for_missing_pulls(
    stub: Stubber, ecs: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pull_times, "ecs_client", lambda region: ecs)
    expect_describe(stub, ecs, ALL_TASKS)
    argv = ["pull-times", "--cluster", "sims", "--json"]
    assert main([*argv, *(arg for t in ALL_TASKS for arg in ("--task", t))]) == 0
    document = json.loads(capsys.readouterr().out)
    first, second = document["tasks"][:2]
    assert (first["task_id"], first["pull_seconds"], first["pull"]) == (
        "3f2504e04f8941d39a0c0305e82c3301",
        None,
        "pending",
    )
    assert (second["pull_started_at"], second["pull_stopped_at"]) == (
        "2026-11-16T02:10:12Z",
        "2026-11-16T02:10:24Z",
    )
    assert second["images"] == [
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/team-a/simulation:v1.4.2-soci"
    ]
    assert document["failures"] == []


def test_tasks_ecs_cannot_find_are_reported_and_fail_the_command(
    stub: Stubber, ecs: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pull_times, "ecs_client", lambda region: ecs)
    missing = TASK + "ffffffffffffffffffffffffffffffff"
    expect_describe(stub, ecs, [missing], "describe-tasks-missing.json")
    assert main(["pull-times", "--cluster", "sims", "--task", missing]) == 1
    assert f"not found: {missing} (MISSING)" in capsys.readouterr().out


def test_an_ecs_error_is_one_line_on_stderr_and_exit_status_one(
    stub: Stubber, ecs: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(pull_times, "ecs_client", lambda region: ecs)
    stub.add_client_error(
        "list_tasks",
        service_error_code="ClusterNotFoundException",
        service_message="Cluster not found.",
        http_status_code=400,
    )
    assert main(["pull-times", "--cluster", "sims"]) == 1
    assert capsys.readouterr().err == (
        "soci-indexer: ECS refused: ClusterNotFoundException: Cluster not found.\n"
    )


def test_no_region_anywhere_is_a_typed_error_naming_the_problem(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "absent-config"))
    with pytest.raises(EcsError, match="region"):
        pull_times.ecs_client(None)


def test_without_boto3_pull_times_says_which_package_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # what `import boto3` meets when absent
    with pytest.raises(EcsError, match=r": pip install boto3$"):
        pull_times.ecs_client("us-west-2")
