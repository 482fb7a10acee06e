"""Image references: ``REGISTRY/REPO:TAG``, ``REGISTRY/REPO@sha256:...`` or both.

The grammar is the distribution project's (``reference.go``). A reference
without a registry host means Docker Hub, as it does for ``docker pull``; the
indexer itself always names one (ECR hosts, or a loopback registry in tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from soci_indexer import settings
from soci_indexer.errors import InvalidReference

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"

_HOST = re.compile(
    r"(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
)


@dataclass(frozen=True, slots=True)
class Reference:
    """A parsed image reference; at least one of ``tag`` and ``digest`` is set."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def api_host(self) -> str:
        """The host the distribution API lives on (Docker Hub's differs from its name)."""
        return _api_host(self.registry)

    @property
    def target(self) -> str:
        """``tag@digest``, ``tag`` or ``digest``: what the pipeline is asked to index."""
        return "@".join(part for part in (self.tag, self.digest) if part)

    def __str__(self) -> str:
        text = f"{self.registry}/{self.repository}"
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True, slots=True)
class Repository:
    """A repository alone, ``REGISTRY/REPO``: what a backfill walks the tags of."""

    registry: str
    name: str

    @property
    def api_host(self) -> str:
        return _api_host(self.registry)

    def __str__(self) -> str:
        return f"{self.registry}/{self.name}"


def _api_host(registry: str) -> str:
    return DOCKER_HUB_API if registry == DOCKER_HUB else registry


def parse_repository(text: str) -> Repository:
    """Parse ``REGISTRY/REPO``; a tag or digest is refused rather than ignored."""
    remainder, digest = _split_digest(text)
    registry, path = _split_registry(remainder, text)
    name, tag = _split_tag(path, text)
    if tag is not None or digest is not None:
        raise InvalidReference(
            f"repository {text!r} names an image: give REGISTRY/REPO without :tag or @digest"
        )
    return Repository(registry, name)


def parse_reference(text: str) -> Reference:
    """Parse ``text``; raises InvalidReference saying which part is wrong."""
    remainder, digest = _split_digest(text)
    registry, path = _split_registry(remainder, text)
    repository, tag = _split_tag(path, text)
    if tag is None and digest is None:
        raise InvalidReference(f"image reference {text!r} has neither a :tag nor an @digest")
    return Reference(registry, repository, tag, digest)


def is_valid_tag(tag: str) -> bool:
    return settings.TAG.fullmatch(tag) is not None


def _split_digest(text: str) -> tuple[str, str | None]:
    if "@" not in text:
        return text, None
    remainder, digest = text.rsplit("@", 1)
    if not settings.DIGEST.fullmatch(digest):
        raise InvalidReference(
            f"image reference {text!r}: {digest!r} is not a digest (expected sha256:<64 hex>)"
        )
    return remainder, digest


def _split_registry(remainder: str, text: str) -> tuple[str, str]:
    first, sep, rest = remainder.partition("/")
    is_host = sep and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    )
    if not is_host:
        path = remainder if "/" in remainder else f"library/{remainder}"
        return DOCKER_HUB, path
    if not _HOST.fullmatch(first):
        raise InvalidReference(f"image reference {text!r}: {first!r} is not a registry host")
    return first, rest


def _split_tag(path: str, text: str) -> tuple[str, str | None]:
    repository, tag = path, None
    last = path.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = path.rsplit(":", 1)
        if not settings.TAG.fullmatch(tag):
            raise InvalidReference(f"image reference {text!r}: {tag!r} is not a valid tag")
    if not repository or len(repository) > settings.MAX_REPOSITORY_NAME:
        raise InvalidReference(f"image reference {text!r} has no valid repository name")
    for component in repository.split("/"):
        if not settings.REPOSITORY_COMPONENT.fullmatch(component):
            raise InvalidReference(
                f"image reference {text!r}: repository component {component!r} must be "
                "lowercase letters, digits and separators (. _ __ -)"
            )
    return repository, tag
