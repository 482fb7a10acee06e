"""What the builder and the repositories know of each other, and nothing more.

``SociRepository`` registers itself with a builder, and a builder checks the
output tag suffix of a repository added to it. Each side sees the other only
through a protocol here, so neither module imports the other (an import-linter
contract in ``pyproject.toml`` keeps it so).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from aws_cdk import aws_ecr as ecr


@runtime_checkable
class ISociIndexBuilder(Protocol):
    """A builder that repositories and templates register with: ``SociIndexBuilder``."""

    @property
    def tag_suffix(self) -> str:
        """Appended to a pushed tag to name the SOCI-enabled image."""
        ...

    def add_repository(self, repository: ecr.IRepository) -> None:
        """Index the images pushed to ``repository``."""
        ...

    def add_repository_name_filter(self, name_filter: str) -> None:
        """Index the repositories whose names match ``name_filter``."""
        ...


@runtime_checkable
class ISociRepository(Protocol):
    """A repository that keeps one output tag suffix mutable: ``SociRepository``."""

    @property
    def tag_suffix(self) -> str:
        """The SOCI output tags ``*<tag_suffix>`` stay mutable in the repository."""
        ...
