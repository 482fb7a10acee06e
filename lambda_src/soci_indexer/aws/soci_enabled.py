"""Which images count as SOCI-enabled, judged from an image reference alone.

Shared by the pull-time monitor (Lambda, standard library only) and
``soci-indexer pull-times --compare``. The rule: the tag ends with the
builder's tag suffix (``v1-soci``), or the image's digest (pinned in the
reference, or the one ECS resolved) is one known to be SOCI-enabled. Its blind
spots: a SOCI-enabled image retagged without the suffix, or pinned to a digest
nobody listed, counts as plain; a tag that merely ends with the suffix counts
as SOCI-enabled whether or not a builder wrote it. No import of the project.
"""

from __future__ import annotations

from collections.abc import Collection


def reference_tag(image: str) -> str:
    """The tag of an image reference (``repo:tag``, ``host:5000/repo:tag@sha256:...``), or ""."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.rpartition(":")[2] if ":" in last else ""


def reference_digest(image: str) -> str:
    """The digest an image reference is pinned to (``repo@sha256:...``), or ""."""
    return image.partition("@")[2]


def is_soci_image(
    image: str, digest: str, tag_suffix: str, soci_digests: Collection[str] = ()
) -> bool:
    """Whether a container's image is a SOCI-enabled one, judged from its reference alone:
    its tag ends with ``tag_suffix``, or its digest (pinned, or resolved by ECS) is listed."""
    tag = reference_tag(image)
    if tag.endswith(tag_suffix) and tag != tag_suffix:
        return True
    pinned = reference_digest(image)
    return bool((pinned and pinned in soci_digests) or (digest and digest in soci_digests))
