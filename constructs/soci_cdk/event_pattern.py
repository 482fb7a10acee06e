"""Which ECR pushes get indexed: the EventBridge pattern, and the IAM scope that goes with it.

EventBridge ANDs the fields of a pattern but only ORs the filters of one
field, so "tagged, and not the builder's own ``<tag>-soci`` output" cannot
both be said of ``image-tag``. The pattern therefore splits pushes by
``manifest-media-type`` (``$or``), where each branch needs one exclusion only:

- image indexes: the builder's output is always an OCI image index tagged
  ``<tag><suffix>``, so this branch drops that suffix. Indexes are rarely
  pushed untagged (their children are manifests), so the handler catches those.
- image manifests: the untagged children of every multi-platform and every
  SOCI-enabled image land here, so this branch drops ``""``, and keeps only
  manifests whose config is an image config (``artifact-media-type``), which
  leaves out SOCI index manifests, attestations, Helm charts and signatures.
- events without media types (the documented, older event shape) get the
  manifest branch's tag rule.

With tag filters the user's filters replace both tag rules; they never match
``""``, and the handler drops the output suffix if a filter also matches it.

Repository filters use ``*`` as a wildcard, in the spirit of ECR's own
repository filters; each becomes the cheapest EventBridge filter that says
the same (exact, prefix, suffix or wildcard), and the same string, as an ARN
wildcard, scopes the function's ECR permissions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import cache
from typing import Any

from soci_indexer import settings

# ECR repository names are lowercase; tags are case-sensitive. "*" is our wildcard.
REPOSITORY_FILTER = settings.REPOSITORY_FILTER
TAG_FILTER = settings.TAG_FILTER
REPOSITORY_FILTER_EXPECTED = settings.REPOSITORY_FILTER_EXPECTED
TAG_FILTER_EXPECTED = settings.TAG_FILTER_EXPECTED

# EventBridge's quota on the size of one event pattern, in characters.
MAX_PATTERN_SIZE = 2048

Matcher = str | dict[str, Any]


def matches_everything(name_filter: str) -> bool:
    """True for ``*`` (or ``**``...): no filter at all."""
    return set(name_filter) == {"*"}


def normalize(name_filter: str) -> str:
    """Collapse runs of ``*``: EventBridge rejects consecutive wildcards, and they mean one."""
    return re.sub(r"\*+", "*", name_filter)


def matcher(name_filter: str) -> Matcher:
    """The EventBridge filter that matches exactly what ``name_filter`` matches.

    ``name_filter`` must not match everything (``*``): EventBridge has no
    empty prefix, and no filter is the way to say "anything".
    """
    if matches_everything(name_filter):
        raise ValueError("a filter of only '*' matches everything: leave the field out instead")
    text = normalize(name_filter)
    stars = text.count("*")
    if stars == 0:
        return text
    if stars == 1 and text.endswith("*"):
        return {"prefix": text[:-1]}
    if stars == 1 and text.startswith("*"):
        return {"suffix": text[1:]}
    return {"wildcard": text}


def push_detail(*, tag_filters: Sequence[str], tag_suffix: str) -> dict[str, Any]:
    """The ``detail`` part of the rule: successful pushes of tagged images, per media type.

    ``tag_filters`` empty means every tag; repository names are added by the caller.
    """
    if tag_filters:
        index_tags: list[Matcher] = [matcher(tag) for tag in tag_filters]
        manifest_tags = index_tags
    else:
        index_tags = [{"anything-but": {"suffix": tag_suffix}}]
        manifest_tags = [{"anything-but": [""]}]
    return {
        "action-type": ["PUSH"],
        "result": ["SUCCESS"],
        "$or": [
            {"manifest-media-type": list(settings.INDEX_TYPES), "image-tag": index_tags},
            {
                "manifest-media-type": list(settings.MANIFEST_TYPES),
                "artifact-media-type": list(settings.IMAGE_CONFIG_TYPES),
                "image-tag": manifest_tags,
            },
            {"manifest-media-type": [{"exists": False}], "image-tag": manifest_tags},
        ],
    }


def serialized_size(pattern: dict[str, Any]) -> int:
    """Characters of ``pattern`` (resolved) as JSON without spaces, as EventBridge counts them."""
    return len(json.dumps(pattern, separators=(",", ":")))


def names_that_fit(pattern: dict[str, Any]) -> int:
    """How many of the pattern's ``repository-name`` filters fit in ``MAX_PATTERN_SIZE``."""
    names = pattern["detail"].get("repository-name", [])
    for count in range(len(names), -1, -1):
        fewer = {**pattern, "detail": {**pattern["detail"], "repository-name": names[:count]}}
        if serialized_size(fewer) <= MAX_PATTERN_SIZE:
            return count
    return 0


def filters_overlap(first: str, second: str) -> bool:
    """True when some name matches both filters (``*`` matches any text, ``/`` included)."""
    first, second = normalize(first), normalize(second)

    @cache
    def overlap(i: int, j: int) -> bool:
        a = first[i] if i < len(first) else None
        b = second[j] if j < len(second) else None
        if a is None and b is None:
            return True
        if a == "*":  # the star matches nothing more, or takes the other's next character
            return overlap(i + 1, j) or (b is not None and overlap(i, j + 1))
        if b == "*":
            return overlap(i, j + 1) or (a is not None and overlap(i + 1, j))
        return a is not None and a == b and overlap(i + 1, j + 1)

    return overlap(0, 0)
