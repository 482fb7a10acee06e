"""The Lambda functions the constructs deploy: the indexer's package as their code,
each on a role of its own that may write to its own log group and nowhere else
(a role Lambda makes carries a managed policy with logs:* on every group).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct
from soci_indexer import settings

RUNTIME = lambda_.Runtime.PYTHON_3_14


def indexer_code() -> lambda_.Code:
    """The ``soci_indexer`` package as it is installed: the Lambda asset, no bundling.

    Found from the imported module, never from the working directory; the
    asset root holds only ``soci_indexer/``, without bytecode caches, so its
    hash changes only when the source does.
    """
    package = Path(settings.__file__).resolve().parent
    return lambda_.Code.from_asset(
        str(package.parent),
        exclude=["*", f"!{package.name}", f"!{package.name}/**", "**/__pycache__", "*.pyc"],
    )


def log_writing_role(
    scope: Construct, id: str, log_group: logs.ILogGroup, description: str
) -> iam.Role:
    """A role Lambda can assume that may write to ``log_group`` only."""
    role = iam.Role(
        scope,
        id,
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description=description,
    )
    log_group.grant_write(role)
    return role


def indexer_function(
    scope: Construct,
    id: str,
    *,
    handler: str,
    description: str,
    role: iam.IRole,
    log_group: logs.ILogGroup,
    memory_size_mib: int,
    timeout: Duration,
    architecture: lambda_.Architecture | None = None,
    **options: Any,
) -> lambda_.Function:
    """A function running ``handler`` from the indexer's asset, logging JSON to ``log_group``
    (ARM64 unless ``architecture`` says otherwise); ``options`` go to ``lambda_.Function``."""
    return lambda_.Function(
        scope,
        id,
        description=description,
        code=indexer_code(),
        handler=handler,
        runtime=RUNTIME,
        architecture=architecture or lambda_.Architecture.ARM_64,
        memory_size=memory_size_mib,
        timeout=timeout,
        role=role,
        log_group=log_group,
        logging_format=lambda_.LoggingFormat.JSON,
        **options,
    )
