"""AWS CDK constructs that make ECR images start fast on Fargate with SOCI."""

from soci_cdk.backfill import Backfill
from soci_cdk.dashboard import SociDashboard
from soci_cdk.errors import InvalidPropError
from soci_cdk.fargate_task import SociFargateTask
from soci_cdk.index_builder import SociIndexBuilder
from soci_cdk.pull_time_monitor import PullTimeMonitor
from soci_cdk.repository import SociRepository, SociRepositoryTemplate
from soci_cdk.soci_image import SociImage, SociImageOptions, SociImageProvider

__all__ = [
    "Backfill",
    "InvalidPropError",
    "PullTimeMonitor",
    "SociDashboard",
    "SociFargateTask",
    "SociImage",
    "SociImageOptions",
    "SociImageProvider",
    "SociIndexBuilder",
    "SociRepository",
    "SociRepositoryTemplate",
]
