"""Fixtures of the handler tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from support.lambda_shapes import FakeContext


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def no_registry() -> Callable[[str, str], object]:
    """A client factory for paths that must never reach a registry."""

    def refuse(account: str, region: str) -> object:
        raise AssertionError(f"a registry client was asked for ({account}, {region})")

    return refuse
