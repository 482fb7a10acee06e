"""The sample stack as ``make synth`` builds it: snapshot, cdk-nag, cfn-lint, context, outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Validations
from cdk_nag import AwsSolutionsChecks
from cdk_support import (
    cfn_lint_findings,
    logical_id,
    mask_asset_hashes,
    only_resource,
    resources,
    template_of,
)
from soci_cdk.errors import InvalidPropError
from soci_cdk.sample_stack import SociSampleStack
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

REPO_ROOT = Path(__file__).resolve().parents[2]
CDK_CONTEXT: dict[str, Any] = json.loads((REPO_ROOT / "cdk.json").read_text())["context"]


@dataclass
class Synthesized:
    stack: SociSampleStack
    template: dict[str, Any]
    nag_report: dict[str, Any]
    outdir: Path


def nag_report(outdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = json.loads((outdir / "validation-report.json").read_text())
    (nag,) = (r for r in report["pluginReports"] if r["pluginName"] == "AwsSolutions")
    return nag


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The stack as ``cdk synth`` makes it: cdk.json's context and the AWS Solutions pack."""
    outdir = tmp_path_factory.mktemp("cdk.out")
    app = App(context=CDK_CONTEXT, outdir=str(outdir))
    stack = SociSampleStack(app, "SociFargateSample")
    Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
    except RuntimeError:
        violations = nag_report(outdir)["violations"]
        pytest.fail(f"cdk-nag findings: {json.dumps(violations, indent=1)[:4000]}")
    return Synthesized(stack, template_of(stack), nag_report(outdir), outdir)


def test_the_sample_stack_matches_its_snapshot(
    sample: Synthesized, snapshot: SnapshotAssertion
) -> None:
    assert mask_asset_hashes(sample.template) == snapshot(extension_class=JSONSnapshotExtension)


def test_aws_solutions_checks_pass(sample: Synthesized) -> None:
    assert (sample.nag_report["conclusion"], sample.nag_report["violations"]) == ("success", [])


def test_acknowledged_findings_are_the_expected_ones_and_explained(sample: Synthesized) -> None:
    acknowledged = {
        (finding["ruleName"], finding["acknowledgedAt"])
        for finding in sample.nag_report["suppressedViolations"]
    }
    ecr_login = {
        "SociFargateSample/IndexBuilder/EcrPolicy",
        "SociFargateSample/SampleTask/PullPolicy",
        "SociFargateSample/DeployTimeTask/TaskDefinition/Container/SociImagePull",
        "SociFargateSample/SociImageProvider/OnEventEcrPolicy",
        "SociFargateSample/SociImageProvider/IsCompleteEcrPolicy",
    }
    framework = {
        "SociFargateSample/SociImageProvider/FrameworkOnEventRole/DefaultPolicy",
        "SociFargateSample/SociImageProvider/FrameworkWaiterRole/DefaultPolicy",
        "SociFargateSample/SociImageProvider/Provider/waiter-state-machine/Role/DefaultPolicy",
        "SociFargateSample/IndexBuilder/Backfill/ProviderRole/DefaultPolicy",
    }
    assert {path for _, path in acknowledged} == ecr_login | framework
    assert {rule for rule, _ in acknowledged} == {
        "AwsSolutions-IAM5[Resource::*]",
        "AwsSolutions-IAM5[Resource::<SociImageProviderOnEvent767679A0.Arn>:*]",
        "AwsSolutions-IAM5[Resource::<SociImageProviderIsComplete97E575E0.Arn>:*]",
        "AwsSolutions-IAM5[Resource::<SociImageProviderframeworkisComplete5CDF7F31.Arn>:*]",
        "AwsSolutions-IAM5[Resource::<SociImageProviderframeworkonTimeoutEE45A64E.Arn>:*]",
        "AwsSolutions-IAM5[Resource::<IndexBuilderBackfillFunction6A735988.Arn>:*]",
    }
    for finding in sample.nag_report["suppressedViolations"]:
        if finding["acknowledgedAt"] in ecr_login:
            assert "GetAuthorizationToken" in finding["reason"]
        else:
            assert "provider framework" in finding["reason"].lower()


def test_cfn_lint_finds_nothing_unexplained(sample: Synthesized) -> None:
    assert cfn_lint_findings(sample.template) == []


def test_the_sample_builder_indexes_the_sample_repository(sample: Synthesized) -> None:
    rule = rule_of(sample.template, "aws.ecr")["Properties"]
    assert rule["EventPattern"]["detail"]["repository-name"] == [
        {"Ref": logical_id(sample.stack, sample.stack.repository)}
    ]


def container_of(template: dict[str, Any], task: str) -> dict[str, Any]:
    """The one container of the task definition whose logical id starts with ``task``."""
    (definition,) = (
        resource
        for name, resource in resources(template, "AWS::ECS::TaskDefinition").items()
        if name.startswith(task)
    )
    (container,) = definition["Properties"]["ContainerDefinitions"]
    return dict(container)


def rule_of(template: dict[str, Any], source: str) -> dict[str, Any]:
    """The one rule of the template on events of ``source`` (aws.ecr: the builder's)."""
    (rule,) = [
        rule
        for rule in resources(template, "AWS::Events::Rule").values()
        if rule["Properties"]["EventPattern"]["source"] == [source]
    ]
    return rule


def test_the_sample_monitor_records_the_pull_times_of_the_sample_cluster(
    sample: Synthesized,
) -> None:
    rule = rule_of(sample.template, "aws.ecs")["Properties"]
    assert rule["EventPattern"]["detail"]["clusterArn"] == [
        {"Fn::GetAtt": [logical_id(sample.stack, sample.stack.cluster), "Arn"]}
    ]
    dashboard = json.dumps(only_resource(sample.template, "AWS::CloudWatch::Dashboard"))
    assert "PullSeconds" in dashboard
    assert "PushToSociSeconds" in dashboard


def test_the_sample_task_runs_the_soci_enabled_v1_tag(sample: Synthesized) -> None:
    container = container_of(sample.template, "SampleTask")
    assert container["Image"]["Fn::Join"][1][-1] == ":v1-soci"


def test_without_context_the_sample_runs_v1_not_a_tag_pushed_twice() -> None:
    """The repository's tags are immutable: ``latest`` could be pushed only once."""
    container = container_of(template_of(SociSampleStack(App(), "Bare")), "SampleTask")
    assert container["Image"]["Fn::Join"][1][-1] == ":v1-soci"


def test_the_deploy_time_task_runs_the_sample_assets_soci_image_by_digest(
    sample: Synthesized,
) -> None:
    """The image is the custom resource's ImageUri, so CloudFormation orders it after the
    index; the resource indexes the asset's tag in the asset's repository."""
    container = container_of(sample.template, "DeployTimeTask")
    image_resource = logical_id(sample.stack, sample.stack.soci_image.resource)
    assert container["Image"] == {"Fn::GetAtt": [image_resource, "ImageUri"]}
    properties = sample.template["Resources"][image_resource]["Properties"]
    assert properties["Reference"] == sample.stack.asset.image_tag
    assert properties["Repository"] == {
        "Fn::Sub": "cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}"
    }


def test_synth_only_copies_the_sample_image_folder(sample: Synthesized) -> None:
    """No Docker at synth: the image's folder is copied into the assembly, to be built
    by `cdk deploy` (the assets manifest says how)."""
    manifest = json.loads((sample.outdir / "SociFargateSample.assets.json").read_text())
    (image,) = manifest["dockerImages"].values()
    copied = sample.outdir / image["source"]["directory"]
    assert (copied / "Dockerfile").read_bytes() == (
        REPO_ROOT / "constructs/soci_cdk/sample_image/Dockerfile"
    ).read_bytes()


def test_both_sample_tasks_run_every_five_minutes(sample: Synthesized) -> None:
    schedules = resources(sample.template, "AWS::Scheduler::Schedule").values()
    assert [s["Properties"]["ScheduleExpression"] for s in schedules] == ["rate(5 minutes)"] * 2


def run_networks(template: dict[str, Any]) -> list[dict[str, Any]]:
    """The network configuration of each schedule's runs."""
    return [
        schedule["Properties"]["Target"]["EcsParameters"]["NetworkConfiguration"][
            "AwsvpcConfiguration"
        ]
        for schedule in resources(template, "AWS::Scheduler::Schedule").values()
    ]


def test_the_sample_runs_security_groups_let_https_out(sample: Synthesized) -> None:
    for network in run_networks(sample.template):
        (group,) = network["SecurityGroups"]
        egress = sample.template["Resources"][group["Fn::GetAtt"][0]]["Properties"][
            "SecurityGroupEgress"
        ]
        assert any(
            rule["IpProtocol"] in ("tcp", "-1")
            and rule.get("FromPort", 0) <= 443 <= rule.get("ToPort", 65535)
            and rule["CidrIp"] == "0.0.0.0/0"
            for rule in egress
        )


def default_route(template: dict[str, Any], subnet: dict[str, Any]) -> dict[str, Any]:
    """The 0.0.0.0/0 route of the route table associated with ``subnet`` (a Ref)."""
    (table,) = (
        association["Properties"]["RouteTableId"]
        for association in resources(template, "AWS::EC2::SubnetRouteTableAssociation").values()
        if association["Properties"]["SubnetId"] == subnet
    )
    (route,) = (
        route["Properties"]
        for route in resources(template, "AWS::EC2::Route").values()
        if route["Properties"]["RouteTableId"] == table
        and route["Properties"].get("DestinationCidrBlock") == "0.0.0.0/0"
    )
    return route


def test_the_sample_runs_subnets_reach_the_internet(sample: Synthesized) -> None:
    gateways = set(resources(sample.template, "AWS::EC2::InternetGateway"))
    for network in run_networks(sample.template):
        for subnet in network["Subnets"]:
            route = default_route(sample.template, subnet)
            through_gateway = route.get("GatewayId", {}).get("Ref") in gateways
            assert "NatGatewayId" in route or (
                through_gateway and network["AssignPublicIp"] == "ENABLED"
            ), f"no way out from {subnet}"


def output_text(sample: Synthesized, name: str) -> str:
    value = sample.template["Outputs"][name]["Value"]
    parts = value["Fn::Join"][1] if isinstance(value, dict) else [value]
    return "".join(part if isinstance(part, str) else "<token>" for part in parts)


def test_an_output_gives_the_pull_times_command_for_the_cluster(sample: Synthesized) -> None:
    assert output_text(sample, "PullTimesCommand") == (
        "soci-indexer pull-times --cluster <token> --region <token>"
    )


def test_an_output_says_how_to_see_that_fargate_lazy_loaded(sample: Synthesized) -> None:
    assert '"Snapshotter": "soci"' in output_text(sample, "LazyLoadingCheck")


def test_an_output_names_the_soci_enabled_image(sample: Synthesized) -> None:
    assert output_text(sample, "SociImage").endswith(":v1-soci")


# --------------------------------------------------------------------------- context


@pytest.fixture(scope="module")
def configured() -> dict[str, Any]:
    """The sample stack with every context value set the way ``-c key=value`` sets it."""
    app = App(
        context={
            "repository_name_filters": "team-a/*, team-b/api",
            "tag_filters": "v*",
            "image_tag": "v3",
            "schedule": "none",
        }
    )
    return template_of(SociSampleStack(app, "Configured"))


def test_repository_filters_from_context_reach_the_rule(configured: dict[str, Any]) -> None:
    rule = rule_of(configured, "aws.ecr")["Properties"]
    names = rule["EventPattern"]["detail"]["repository-name"]
    assert [name for name in names if "Ref" not in name] == [{"prefix": "team-a/"}, "team-b/api"]


def test_tag_filters_from_context_reach_the_rule(configured: dict[str, Any]) -> None:
    rule = rule_of(configured, "aws.ecr")["Properties"]
    tags = {json.dumps(branch["image-tag"]) for branch in rule["EventPattern"]["detail"]["$or"]}
    assert tags == {json.dumps([{"prefix": "v"}])}


def test_the_image_tag_from_context_is_run(configured: dict[str, Any]) -> None:
    assert container_of(configured, "SampleTask")["Image"]["Fn::Join"][1][-1] == ":v3-soci"


def test_schedule_none_turns_the_schedule_off(configured: dict[str, Any]) -> None:
    assert resources(configured, "AWS::Scheduler::Schedule") == {}


def test_a_schedule_that_is_not_an_expression_is_refused() -> None:
    app = App(context={"schedule": "every 5 minutes"})
    with pytest.raises(InvalidPropError, match="context schedule must be an EventBridge"):
        SociSampleStack(app, "Sample")


@pytest.mark.slow
def test_the_app_synthesizes_with_the_aws_solutions_checks(tmp_path: Path) -> None:
    """Without Docker on the PATH: synth copies the sample image's folder, builds nothing."""
    path = os.pathsep.join(
        folder
        for folder in os.environ["PATH"].split(os.pathsep)
        if not (Path(folder) / "docker").exists()
    )
    env = {**os.environ, "CDK_OUTDIR": str(tmp_path), "PATH": path}
    subprocess.run(
        [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, check=True, capture_output=True
    )
    assert nag_report(tmp_path)["conclusion"] == "success"
