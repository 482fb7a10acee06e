"""PullTimeMonitor and SociDashboard, synthesized: rule pattern, function, IAM, widgets, nag.

The rule's pattern is matched by moto's EventBridge matcher against the ECS
"Task State Change" fixtures the handler tests use (tests/events/ecs/). The
last test does what a deployment does: finds the function in the template,
imports its handler by name with the template's environment, and invokes it.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack, Validations
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from cdk_nag import AwsSolutionsChecks
from cdk_support import (
    PatternMatcher,
    cfn_lint_findings,
    load_event,
    logical_id,
    only_resource,
    policy_statements,
    resources,
    template_of,
)
from soci_cdk import InvalidPropError, PullTimeMonitor, SociDashboard, SociIndexBuilder
from soci_indexer import settings

SIMS = "arn:aws:ecs:us-west-2:123456789012:cluster/sims"
PINNED = "sha256:1f2e3d4c5b6a79880716253443526170a9b8c7d6e5f40312a1b2c3d4e5f60718"


def ecs_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(load_event(f"ecs/{name}.json"))


class Synthesized:
    def __init__(self, outdir: Path) -> None:
        app = App(outdir=str(outdir))
        self.stack = Stack(app, "Monitored")
        self.builder = SociIndexBuilder(self.stack, "Builder", repositories=[], tag_suffix="-lazy")
        self.builder.add_repository(ecr.Repository(self.stack, "Repository"))
        cluster = ecs.Cluster.from_cluster_arn(self.stack, "Sims", SIMS)
        self.monitor = PullTimeMonitor(
            self.stack,
            "Monitor",
            clusters=[cluster],
            builder=self.builder,
            soci_image_digests=[PINNED],
        )
        self.dashboard = SociDashboard(
            self.stack, "Dashboard", monitor=self.monitor, builder=self.builder
        )
        Validations.of(app).add_plugins(AwsSolutionsChecks(app))
        with contextlib.suppress(RuntimeError):  # a finding fails the synth; the report says
            app.synth()
        self.template = template_of(self.stack)
        report = json.loads((outdir / "validation-report.json").read_text())
        (self.nag,) = report["pluginReports"]

    def resource(self, construct: Any) -> dict[str, Any]:
        found: dict[str, Any] = self.template["Resources"][logical_id(self.stack, construct)]
        return found


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return Synthesized(tmp_path_factory.mktemp("cdk.out"))


def monitor_pattern(**props: Any) -> dict[str, Any]:
    stack = Stack(App(), "Pattern")
    monitor = PullTimeMonitor(stack, "Monitor", **props)
    rule = template_of(stack)["Resources"][logical_id(stack, monitor.rule)]
    pattern: dict[str, Any] = rule["Properties"]["EventPattern"]
    return pattern


# ---- The rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "delivered"),
    [
        ("task-running-soci", True),
        ("task-running-plain", True),
        ("task-running-pinned-digest", True),
        ("task-stopped-before-pull", True),
        ("task-pending", False),  # says nothing of the pull yet
        ("task-stopped-after-running", False),  # its pull was recorded when it ran
    ],
)
def test_the_rule_delivers_running_tasks_and_tasks_stopped_before_their_pull(
    synth: Synthesized, matches: PatternMatcher, fixture: str, delivered: bool
) -> None:
    pattern = synth.resource(synth.monitor.rule)["Properties"]["EventPattern"]
    assert matches(pattern, ecs_event(fixture)) is delivered


def test_a_running_task_whose_stop_was_asked_for_is_not_delivered_again(
    synth: Synthesized, matches: PatternMatcher
) -> None:
    pattern = synth.resource(synth.monitor.rule)["Properties"]["EventPattern"]
    event = ecs_event("task-running-soci")
    event["detail"]["desiredStatus"] = "STOPPED"
    assert not matches(pattern, event)


def test_the_rule_watches_only_the_given_clusters(
    synth: Synthesized, matches: PatternMatcher
) -> None:
    pattern = synth.resource(synth.monitor.rule)["Properties"]["EventPattern"]
    other = ecs_event("task-running-soci")
    other["detail"]["clusterArn"] = "arn:aws:ecs:us-west-2:123456789012:cluster/other"
    assert not matches(pattern, other)
    assert matches(monitor_pattern(), other)


def test_ecr_events_do_not_reach_the_monitor(synth: Synthesized, matches: PatternMatcher) -> None:
    pattern = synth.resource(synth.monitor.rule)["Properties"]["EventPattern"]
    assert not matches(pattern, load_event("push-tagged.json"))


def test_the_rule_invokes_the_function_with_retries(synth: Synthesized) -> None:
    (target,) = synth.resource(synth.monitor.rule)["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [logical_id(synth.stack, synth.monitor.function), "Arn"]}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}


# ---- The function and its permissions -------------------------------------------------------


def test_the_function_runs_the_monitor_handler_from_the_indexers_asset(synth: Synthesized) -> None:
    monitor = synth.resource(synth.monitor.function)["Properties"]
    indexer = synth.resource(synth.builder.function)["Properties"]
    assert monitor["Handler"] == "soci_indexer.aws.pull_time_monitor.handler"
    assert monitor["Code"] == indexer["Code"]
    assert monitor["Environment"]["Variables"] == {
        "SOCI_TAG_SUFFIX": "-lazy",  # the builder's
        "SOCI_ENABLED_DIGESTS": PINNED,
        "POWERTOOLS_METRICS_NAMESPACE": "SociPullTimes",
        "POWERTOOLS_SERVICE_NAME": "Monitored/Monitor",
        "LOG_LEVEL": "INFO",
    }


def test_the_role_may_write_its_own_log_group_and_nothing_else(synth: Synthesized) -> None:
    role = logical_id(synth.stack, synth.monitor.role)
    statements = policy_statements(synth.template, role)
    log_group = logical_id(synth.stack, synth.monitor.log_group)
    assert [s["Action"] for s in statements] == [["logs:CreateLogStream", "logs:PutLogEvents"]]
    assert statements[0]["Resource"] == {"Fn::GetAtt": [log_group, "Arn"]}
    assert synth.resource(synth.monitor.role)["Properties"].get("ManagedPolicyArns") is None


def test_only_eventbridge_may_invoke_the_function(synth: Synthesized) -> None:
    function = logical_id(synth.stack, synth.monitor.function)
    permissions = [
        p["Properties"]
        for p in resources(synth.template, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Fn::GetAtt": [function, "Arn"]}
    ]
    assert [(p["Principal"], p["SourceArn"]) for p in permissions] == [
        (
            "events.amazonaws.com",
            {"Fn::GetAtt": [logical_id(synth.stack, synth.monitor.rule), "Arn"]},
        )
    ]


def test_aws_solutions_checks_pass_without_acknowledgments_for_the_monitor(
    synth: Synthesized,
) -> None:
    assert synth.nag["violations"] == []
    acknowledged = {v["acknowledgedAt"] for v in synth.nag["suppressedViolations"]}
    assert not any(path.startswith("Monitored/Monitor") for path in acknowledged)


def test_cfn_lint_accepts_the_stack(synth: Synthesized) -> None:
    assert cfn_lint_findings(synth.template) == []


# ---- The dashboard -------------------------------------------------------------------------


def dashboard_body(synth: Synthesized) -> dict[str, Any]:
    """The body with each reference written as ``<Ref:Id>``/``<GetAtt:Id>``."""
    body = only_resource(synth.template, "AWS::CloudWatch::Dashboard")["Properties"]
    _, parts = body["DashboardBody"]["Fn::Join"]

    def text(part: Any) -> str:
        if isinstance(part, str):
            return part
        if "Ref" in part:
            return f"<Ref:{part['Ref']}>"
        return f"<GetAtt:{part['Fn::GetAtt'][0]}>"

    loaded: dict[str, Any] = json.loads("".join(text(part) for part in parts))
    return loaded


def widget(synth: Synthesized, title_start: str) -> dict[str, Any]:
    (found,) = [
        w["properties"]
        for w in dashboard_body(synth)["widgets"]
        if w["properties"].get("title", "").startswith(title_start)
    ]
    return found


def test_the_dashboard_shows_soci_and_plain_pull_times_side_by_side(synth: Synthesized) -> None:
    pulls = widget(synth, "Image pull time")
    lines = [
        (m[0], m[1], dict(zip(m[2:-1:2], m[3:-1:2], strict=True)), m[-1]["stat"])
        for m in pulls["metrics"]
    ]
    service = {"service": "Monitored/Monitor"}
    assert lines == [
        ("SociPullTimes", "PullSeconds", {**service, "soci": "true"}, "p50"),
        ("SociPullTimes", "PullSeconds", {**service, "soci": "true"}, "p90"),
        ("SociPullTimes", "PullSeconds", {**service, "soci": "false"}, "p50"),
        ("SociPullTimes", "PullSeconds", {**service, "soci": "false"}, "p90"),
    ]
    single = widget(synth, "Pull time p50")
    assert (single["view"], single["setPeriodToTimeRange"]) == ("singleValue", True)


def test_the_dashboard_shows_indexing_outcomes_with_skips_by_reason(synth: Synthesized) -> None:
    outcomes = widget(synth, "Indexing outcomes")["metrics"]
    assert [m[1] for m in outcomes[:2]] == ["ImagesIndexed", "ImagesFailed"]
    assert outcomes[2][0]["expression"] == (
        'SEARCH(\'{"SociIndexBuilder",service,reason} MetricName="ImagesSkipped" '
        "service=\"Monitored/Builder\"', 'Sum', 300)"
    )


def test_the_dashboard_shows_push_to_output_tag_time_and_indexing_speed(
    synth: Synthesized,
) -> None:
    waited = widget(synth, "Time from push to <tag>-lazy")["metrics"]
    assert [(m[1], m[-1]["stat"]) for m in waited] == [
        ("PushToSociSeconds", "p50"),
        ("PushToSociSeconds", "p90"),
        ("PushToSociSeconds", "Maximum"),
    ]
    speed = widget(synth, "Bytes indexed per second")["metrics"]
    expression, *used = speed
    assert expression[0]["expression"] == "bytes / seconds"
    assert sorted((m[1], m[-1]["stat"], m[-1]["id"]) for m in used) == [
        ("BuildSeconds", "Sum", "seconds"),
        ("BytesIndexed", "Sum", "bytes"),
    ]


def test_the_dashboard_shows_the_dead_letter_depth_and_the_builders_alarms(
    synth: Synthesized,
) -> None:
    (depth,) = widget(synth, "Dead-letter queue depth")["metrics"]
    dead_letters = logical_id(synth.stack, synth.builder.dead_letter_queue)
    assert depth[:4] == [
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "QueueName",
        f"<GetAtt:{dead_letters}>",
    ]
    alarms = widget(synth, "Alarms")["alarms"]
    assert alarms == [
        f"<GetAtt:{logical_id(synth.stack, alarm)}>" for alarm in synth.builder.alarms
    ]


def test_a_dashboard_of_a_monitor_alone_has_only_its_widgets() -> None:
    stack = Stack(App(), "Alone")
    SociDashboard(stack, "Dashboard", monitor=PullTimeMonitor(stack, "Monitor"))
    body = json.dumps(only_resource(template_of(stack), "AWS::CloudWatch::Dashboard"))
    assert "PullSeconds" in body
    assert "ImagesIndexed" not in body


# ---- Props ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "message"),
    [
        ({"clusters": "sims"}, "clusters"),
        ({"soci_image_digests": PINNED}, "soci_image_digests"),
        ({"soci_image_digests": ["sha256:abc"]}, "soci_image_digests"),
        ({"tag_suffix": "no/slash"}, "tag_suffix"),
        ({"metrics_namespace": "AWS/ECS"}, "metrics_namespace"),
        ({"builder": "Builder"}, "builder"),
    ],
)
def test_bad_props_fail_at_synth_naming_the_prop(props: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPropError, match=message):
        PullTimeMonitor(Stack(App(), "Bad"), "Monitor", **props)


def test_a_tag_suffix_other_than_the_builders_is_refused() -> None:
    stack = Stack(App(), "Bad")
    builder = SociIndexBuilder(stack, "Builder")
    with pytest.raises(InvalidPropError, match="the builder's suffix '-soci'"):
        PullTimeMonitor(stack, "Monitor", builder=builder, tag_suffix="-lazy")


def test_a_dashboard_needs_a_monitor_or_a_builder() -> None:
    with pytest.raises(InvalidPropError, match="a PullTimeMonitor, a SociIndexBuilder, or both"):
        SociDashboard(Stack(App(), "Bad"), "Dashboard")


def test_pull_seconds_metrics_follow_the_published_dimension_levels() -> None:
    monitor = PullTimeMonitor(Stack(App(), "Metrics"), "Monitor")
    metric = monitor.metric_pull_seconds(soci=True, cluster="sims", family="simulation")
    assert metric.dimensions == {
        "service": "Metrics/Monitor",
        "soci": "true",
        "cluster": "sims",
        "family": "simulation",
    }
    with pytest.raises(InvalidPropError, match="each needs the ones before it"):
        monitor.metric_pull_seconds(family="simulation")


# ---- What a deployment runs ----------------------------------------------------------------


def test_the_deployed_handler_records_a_held_out_event_from_the_template_alone(
    synth: Synthesized, tmp_path: Path
) -> None:
    """Find the monitor's function by its handler, run that handler in a fresh interpreter
    with the template's environment, on an event none of the fixtures is."""
    (function,) = [
        f["Properties"]
        for f in resources(synth.template, "AWS::Lambda::Function").values()
        if f["Properties"]["Handler"].endswith("pull_time_monitor.handler")
    ]
    module_name, _, function_name = function["Handler"].rpartition(".")
    importlib.import_module(module_name)  # the name resolves in the installed asset
    event = ecs_event("task-running-plain")
    event["detail"].update(
        {
            "pullStartedAt": "2026-12-01T09:00:00.000Z",
            "pullStoppedAt": "2026-12-01T09:01:13.600Z",
            "taskDefinitionArn": "arn:aws:ecs:us-west-2:123456789012:task-definition/etl:12",
        }
    )
    event["detail"]["containers"][0]["image"] = "registry.example/etl:2026.12-lazy"
    script = (
        "import json, sys, importlib\n"
        f"module = importlib.import_module({module_name!r})\n"
        "context = type('Context', (), {'aws_request_id': 'held-out'})()\n"
        f"module.{function_name}(json.loads(sys.stdin.read()), context)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(event),
        env={**os.environ, **function["Environment"]["Variables"]},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    documents = [json.loads(line) for line in result.stdout.splitlines() if '"_aws"' in line]
    (pulled,) = [d for d in documents if settings.METRIC_PULL_SECONDS in d]
    assert pulled[settings.METRIC_PULL_SECONDS] == 73.6  # 09:01:13.600 - 09:00:00
    assert (pulled["soci"], pulled["family"]) == ("true", "etl")  # "-lazy": the builder's
