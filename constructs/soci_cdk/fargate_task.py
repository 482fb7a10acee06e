"""SociFargateTask: a Fargate task running the SOCI-enabled tag of an image, maybe on a schedule.

Fargate lazy-loads an image only when the task definition names the image
that carries the SOCI index: with index manifest v2 that is a new image
index (new digest, same layers), tagged ``<tag><suffix>`` by the builder.
Running the original tag works, but pulls the whole image first.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Duration
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from constructs import Construct

from soci_cdk import _checks, _nag
from soci_cdk.errors import InvalidPropError
from soci_cdk.soci_image import SociImage

# What ECS needs to pull the image with the execution role (and ecr:GetAuthorizationToken).
PULL_ACTIONS = (
    "ecr:BatchCheckLayerAvailability",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchGetImage",
)
# Fargate task sizes: memory (MiB) allowed for each CPU value.
_FARGATE_MEMORY = {
    256: (512, 1024, 2048),
    512: tuple(range(1024, 4097, 1024)),
    1024: tuple(range(2048, 8193, 1024)),
    2048: tuple(range(4096, 16385, 1024)),
    4096: tuple(range(8192, 30721, 1024)),
    8192: tuple(range(16384, 61441, 4096)),
    16384: tuple(range(32768, 122881, 8192)),
}


class SociFargateTask(Construct):
    """A Fargate task definition running ``repository:<image_tag><tag_suffix>``, or
    ``image``: a ``SociImage``'s pinned digest, or any ``ecs.ContainerImage``.

    With ``schedule`` (which needs ``cluster``), EventBridge Scheduler starts
    it on Fargate platform version 1.4.0, the version that lazy-loads.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        repository: ecr.IRepository | None = None,
        image: SociImage | ecs.ContainerImage | None = None,
        image_tag: str | None = None,
        tag_suffix: str | None = None,
        cpu: int = 1024,
        memory_limit_mib: int = 2048,
        cpu_architecture: ecs.CpuArchitecture | None = None,
        command: Sequence[str] | None = None,
        container_name: str = "main",
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        cluster: ecs.ICluster | None = None,
        schedule: scheduler.ScheduleExpression | None = None,
        vpc_subnets: ec2.SubnetSelection | None = None,
        security_groups: Sequence[ec2.ISecurityGroup] | None = None,
        assign_public_ip: bool = False,
    ) -> None:
        """
        :param repository: where the image and its SOCI-enabled twin live (the push-time
            builder's output). Give either this or ``image``.
        :param image: what the container runs: a ``SociImage`` (its SOCI-enabled image,
            pinned by digest; the execution role may pull it) or an ``ecs.ContainerImage``.
        :param image_tag: the tag pushed by the user, with ``repository``. Default: ``latest``.
        :param tag_suffix: the builder's suffix. Default: a ``SociRepository``'s
            (its builder's), else ``-soci``.
        :param cpu: task CPU units. Default: 1024 (1 vCPU).
        :param memory_limit_mib: task memory, valid for ``cpu``. Default: 2048.
        :param cpu_architecture: the image's architecture. Default: X86_64.
        :param command: container command. Default: the image's.
        :param container_name: Default: ``main``.
        :param log_retention: how long container logs are kept. Default: one month.
        :param cluster: where scheduled runs start. Default: none (no schedule).
        :param schedule: when to run the task, e.g.
            ``ScheduleExpression.rate(Duration.minutes(5))``. Default: never.
        :param vpc_subnets: subnets of scheduled runs. Default: the cluster VPC's
            private subnets.
        :param security_groups: security groups of scheduled runs. Default: a new
            one, ``security_group``, with no inbound rule and HTTPS out (ECR, S3
            for the layers, CloudWatch Logs).
        :param assign_public_ip: give scheduled runs a public IP (public subnets
            without NAT need it to reach ECR). Default: False.
        """
        super().__init__(scope, id)
        self._check_image(repository, image, image_tag, tag_suffix)
        _checks.check_whole_number(self, "cpu", cpu, min(_FARGATE_MEMORY))
        _checks.check_whole_number(self, "memory_limit_mib", memory_limit_mib, 1)
        _checks.check_instance(
            self, "cpu_architecture", cpu_architecture, ecs.CpuArchitecture, optional=True
        )
        _checks.check_str_list(self, "command", command, optional=True)
        _checks.check_str(self, "container_name", container_name)
        _checks.check_instance(self, "log_retention", log_retention, logs.RetentionDays)
        _checks.check_instance(self, "cluster", cluster, ecs.ICluster, optional=True)
        _checks.check_instance(
            self, "schedule", schedule, scheduler.ScheduleExpression, optional=True
        )
        _checks.check_instance(self, "vpc_subnets", vpc_subnets, ec2.SubnetSelection, optional=True)
        _checks.check_instance_list(
            self, "security_groups", security_groups, ec2.ISecurityGroup, optional=True
        )
        _checks.check_bool(self, "assign_public_ip", assign_public_ip)
        self._check_size(cpu, memory_limit_mib)
        if schedule is not None and cluster is None:
            raise InvalidPropError(
                self.node.path, "cluster", None, "an ecs.ICluster when schedule is given"
            )
        # The tag the container runs, with ``repository``; None with ``image``.
        self.image_tag: str | None = None
        if repository is not None:
            self.image_tag = (
                f"{image_tag or 'latest'}{_checks.output_tag_suffix(self, tag_suffix, repository)}"
            )
        self.log_group = logs.LogGroup(self, "LogGroup", retention=log_retention)
        self.task_definition = ecs.FargateTaskDefinition(
            self,
            "TaskDefinition",
            cpu=cpu,
            memory_limit_mib=memory_limit_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=cpu_architecture or ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        # Named by URI: the pull rights are granted below, in a policy of their own.
        container_image = (
            image.container_image if isinstance(image, SociImage) else image
        ) or ecs.ContainerImage.from_registry(
            repository.repository_uri_for_tag(self.image_tag)  # type: ignore[union-attr]
        )
        self.container = self.task_definition.add_container(
            "Container",
            container_name=container_name,
            image=container_image,
            command=list(command) if command else None,
            logging=ecs.LogDrivers.aws_logs(stream_prefix="task", log_group=self.log_group),
        )
        self.execution_role = self.task_definition.obtain_execution_role()
        # A SociImage grants its own pull rights when bound; another ContainerImage its own.
        self.pull_policy: iam.Policy | None = None
        if repository is not None:
            self.pull_policy = _nag.ecr_policy(
                self,
                "PullPolicy",
                self.execution_role,
                iam.PolicyStatement(
                    actions=list(PULL_ACTIONS), resources=[repository.repository_arn]
                ),
            )
        # Without a group of their own, runs would land in the VPC's default group,
        # which may have no rule at all (restrictDefaultSecurityGroup): no pull.
        self.security_group: ec2.SecurityGroup | None = None
        self.schedule: scheduler.Schedule | None = None
        if cluster is not None and schedule is not None:
            if not security_groups:
                self.security_group = self._make_security_group(cluster.vpc)
                security_groups = [self.security_group]
            self.schedule = self._make_schedule(
                cluster, schedule, vpc_subnets, security_groups, assign_public_ip
            )

    def _check_image(
        self, repository: object, image: object, image_tag: object, tag_suffix: object
    ) -> None:
        """Exactly one of ``repository`` and ``image``; the tag props go with ``repository``."""
        if image is not None and not isinstance(image, SociImage | ecs.ContainerImage):
            raise InvalidPropError(
                self.node.path, "image", image, "a SociImage or an aws_ecs.ContainerImage"
            )
        if (repository is None) == (image is None):
            raise InvalidPropError(
                self.node.path,
                "repository/image",
                (repository, image),
                "exactly one of repository (the push-time builder's output) and image "
                "(a SociImage or an ecs.ContainerImage)",
            )
        if repository is not None:
            _checks.check_instance(self, "repository", repository, ecr.IRepository)
            _checks.check_str(self, "image_tag", image_tag, optional=True)
            _checks.check_tag_suffix(self, tag_suffix)
            return
        for prop, value in (("image_tag", image_tag), ("tag_suffix", tag_suffix)):
            if value is not None:
                raise InvalidPropError(
                    self.node.path, prop, value, "unset with image (it names its own image)"
                )

    def _check_size(self, cpu: int, memory_limit_mib: int) -> None:
        if _checks.is_token(cpu) or _checks.is_token(memory_limit_mib):
            return
        if cpu not in _FARGATE_MEMORY:
            raise InvalidPropError(
                self.node.path, "cpu", cpu, f"a Fargate CPU size: one of {sorted(_FARGATE_MEMORY)}"
            )
        allowed = _FARGATE_MEMORY[cpu]
        if memory_limit_mib not in allowed:
            sizes = (
                ", ".join(map(str, allowed))
                if len(allowed) <= 8
                else (f"{allowed[0]} to {allowed[-1]} in steps of {allowed[1] - allowed[0]}")
            )
            raise InvalidPropError(
                self.node.path,
                "memory_limit_mib",
                memory_limit_mib,
                f"a Fargate memory size for cpu={cpu}: {sizes}",
            )

    def _make_security_group(self, vpc: ec2.IVpc) -> ec2.SecurityGroup:
        """No inbound rule; HTTPS out, all that pulling and logging need (DNS through the
        VPC resolver is not subject to security groups)."""
        group = ec2.SecurityGroup(
            self,
            "SecurityGroup",
            vpc=vpc,
            description="Scheduled SOCI task runs: HTTPS out to ECR, S3 and CloudWatch Logs",
            allow_all_outbound=False,
        )
        group.add_egress_rule(
            ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "ECR, S3 (image layers), CloudWatch Logs"
        )
        return group

    def _make_schedule(
        self,
        cluster: ecs.ICluster,
        expression: scheduler.ScheduleExpression,
        vpc_subnets: ec2.SubnetSelection | None,
        security_groups: Sequence[ec2.ISecurityGroup],
        assign_public_ip: bool,
    ) -> scheduler.Schedule:
        return scheduler.Schedule(
            self,
            "Schedule",
            description="Runs the SOCI-enabled image on Fargate",
            schedule=expression,
            target=scheduler_targets.EcsRunFargateTask(
                cluster,
                task_definition=self.task_definition,
                platform_version=ecs.FargatePlatformVersion.VERSION1_4,
                vpc_subnets=vpc_subnets,
                security_groups=list(security_groups),
                assign_public_ip=assign_public_ip,
                max_event_age=Duration.minutes(5),
                retry_attempts=0,
            ),
        )
