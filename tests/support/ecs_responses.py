"""Recorded ECS responses (tests/aws/fixtures), parsed the way botocore parses live ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import botocore.parsers

FIXTURES = Path(__file__).resolve().parent.parent / "aws" / "fixtures"


def ecs_client() -> Any:
    """A real botocore ECS client with dummy credentials, for a ``Stubber``."""
    return boto3.client(
        "ecs",
        region_name="us-west-2",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def wire_response(ecs: Any, operation: str, fixture: str) -> dict[str, Any]:
    """Parse a fixture body the way botocore parses a live ECS response."""
    shape = ecs.meta.service_model.operation_model(operation).output_shape
    parsed: dict[str, Any] = botocore.parsers.create_parser("json").parse(
        {"body": (FIXTURES / fixture).read_bytes(), "headers": {}, "status_code": 200}, shape
    )
    parsed.pop("ResponseMetadata", None)
    return parsed
