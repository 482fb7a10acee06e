"""Times in EventBridge events (ISO 8601, with a zone): ECR's ``time``, ECS's ``pullStartedAt``.

Standard library only, so both the indexer's handler and the pull-time monitor use it.
"""

from __future__ import annotations

from datetime import datetime

from soci_indexer.errors import InvalidEvent


def parse_event_time(text: str, field: str) -> datetime | None:
    """``text`` as an aware datetime; None for ""; ``InvalidEvent`` naming ``field`` otherwise."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidEvent(f"{field} is not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise InvalidEvent(f"{field} has no time zone: {text!r}")
    return moment
