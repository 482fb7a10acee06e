"""Fixtures for the CDK tests."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cdk_support import PatternMatcher
from moto.events.models import EventPattern


@pytest.fixture(scope="session")
def matches() -> PatternMatcher:
    """``matches(pattern, event)``: moto's EventBridge pattern matcher.

    The pattern language (prefix, suffix, wildcard, anything-but, exists, $or)
    is evaluated by an existing implementation, not by code of ours. moto's
    TestEventPattern API is not implemented, so the matcher its rules use is
    called directly, after its own pattern parser and validation.
    """

    def match(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
        return bool(EventPattern.load(json.dumps(pattern)).matches_event(event))

    return match
