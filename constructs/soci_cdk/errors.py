"""Errors the constructs raise at synth, before anything reaches CloudFormation."""

from __future__ import annotations


class InvalidPropError(ValueError):
    """A construct prop holds a value the construct cannot use.

    The message names the construct, the prop, what was received and what is
    expected, so the fix is obvious from the synth output alone.
    """

    def __init__(self, construct_path: str, prop: str, received: object, expected: str) -> None:
        self.construct_path = construct_path
        self.prop = prop
        self.received = received
        self.expected = expected
        super().__init__(f"{construct_path}: {prop} must be {expected}; received {received!r}")
