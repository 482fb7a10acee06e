"""Synth-time checks of construct props.

Each check raises ``InvalidPropError`` (what, received, expected) and lets
unresolved Tokens through: their value is only known at deploy time.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from aws_cdk import Token
from constructs import Construct

from soci_cdk.errors import InvalidPropError


def check_whole_number(
    scope: Construct, prop: str, value: int, minimum: int, maximum: int | None = None
) -> None:
    """``value`` is an int in ``[minimum, maximum]`` (no upper bound when ``maximum`` is None)."""
    if Token.is_unresolved(value):
        return
    in_range = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= minimum
        and (maximum is None or value <= maximum)
    )
    if not in_range:
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f"{minimum} or more"
        raise InvalidPropError(scope.node.path, prop, value, f"a whole number {bounds}")


def check_choice(scope: Construct, prop: str, value: str, choices: Collection[str]) -> None:
    """``value`` is one of ``choices``."""
    if Token.is_unresolved(value):
        return
    if value not in choices:
        expected = "one of " + ", ".join(repr(choice) for choice in sorted(choices))
        raise InvalidPropError(scope.node.path, prop, value, expected)


def check_pattern(
    scope: Construct, prop: str, value: str, pattern: re.Pattern[str], expected: str
) -> None:
    """``value`` is a string that matches ``pattern`` in full."""
    if Token.is_unresolved(value):
        return
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise InvalidPropError(scope.node.path, prop, value, expected)
